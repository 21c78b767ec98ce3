"""layumi's ``ft_net`` (the "IDE" baseline of Person_reID_baseline_pytorch), DG-Net's teacher.

ResNet + global average pooling + a ClassBlock: ``add_block`` = Linear(D→512) → BatchNorm1d → Dropout, then a
linear classifier. The 512-d ``add_block`` output (dropout off) is the test embedding. The original keeps the
unused ImageNet ``fc`` in its state dict; ours drops it (``convert.import_ft_net`` discards it on import).

For DG-Net's distillation the teacher's logits with dropout off are ``model.classifier(model.eval()(x))``.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from personlab.models.resnet import ResNet

__all__ = ["FtNet"]


class FtNet(nn.Module):
    """``ft_net``. Train mode: logits ``(B, C)``; eval mode: the 512-d embedding ``(B, linear)``."""

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        stride: int = 2,
        linear: int = 512,
        droprate: float = 0.5,
    ) -> None:
        super().__init__()
        self.backbone = ResNet(depth, last_stride=stride, stem_relu=True)
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.add_block = nn.Sequential(
            nn.Linear(self.backbone.out_channels, linear),
            nn.BatchNorm1d(linear),
            nn.Dropout(droprate),
        )
        self.classifier = nn.Linear(linear, num_classes)
        # layumi's init: kaiming fan-out bottleneck, BN scale N(1, 0.02), small classifier (DG-Net's teacher: 1e-3).
        nn.init.kaiming_normal_(self.add_block[0].weight, a=0, mode="fan_out")
        nn.init.zeros_(self.add_block[0].bias)
        nn.init.normal_(self.add_block[1].weight, 1.0, 0.02)
        nn.init.zeros_(self.add_block[1].bias)
        nn.init.normal_(self.classifier.weight, std=0.001)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        embedding = self.add_block(self.gap(self.backbone(x)).flatten(1))
        return self.classifier(embedding) if self.training else embedding
