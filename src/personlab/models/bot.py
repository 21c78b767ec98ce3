"""BoT strong baseline (Luo et al., CVPRW 2019 / TMM 2020): ResNet + GAP + BNNeck + bias-free classifier.

The BNNeck separates the two losses' feature spaces: triplet and center loss see the pooled feature
*before* the BatchNorm, the ID loss sees logits of the feature *after* it, and the test embedding is the
post-BN feature. The BN's shift is frozen at zero (``requires_grad=False``) so the normalised feature stays
centred on the origin, where the bias-free classifier's angular decision boundaries sit.

Also here: the per-epoch warm-up/multi-step learning-rate factor of BoT's recipe.
"""

from __future__ import annotations

import bisect
from typing import Literal, Sequence

import torch
import torch.nn as nn

from personlab.models.resnet import ResNet

__all__ = ["Baseline", "warmup_multistep_factor"]


class Baseline(nn.Module):
    """BoT ``Baseline``. Train mode: ``(logits, pre-BN feature)``; eval mode: the test embedding ``(B, D)``.

    ``neck="no"`` is BoT's plain variant (a biased linear classifier on the pooled feature, which is then also
    the test embedding). ``neck_feat="before"`` evaluates on the pre-BN feature instead of the post-BN one.
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        last_stride: int = 1,
        stem_relu: bool = False,
        neck: Literal["bnneck", "no"] = "bnneck",
        neck_feat: Literal["after", "before"] = "after",
    ) -> None:
        super().__init__()
        if neck not in ("bnneck", "no"):
            raise ValueError(f"neck must be 'bnneck' or 'no', got {neck!r}")
        if neck_feat not in ("after", "before"):
            raise ValueError(f"neck_feat must be 'after' or 'before', got {neck_feat!r}")
        self.neck, self.neck_feat = neck, neck_feat
        self.backbone = ResNet(depth, last_stride=last_stride, stem_relu=stem_relu)
        self.gap = nn.AdaptiveAvgPool2d(1)
        dim = self.backbone.out_channels
        if neck == "bnneck":
            self.bottleneck = nn.BatchNorm1d(dim)
            self.bottleneck.bias.requires_grad_(False)
            self.classifier = nn.Linear(dim, num_classes, bias=False)
            nn.init.normal_(self.classifier.weight, std=0.001)
        else:
            self.bottleneck = None
            self.classifier = nn.Linear(dim, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        global_feat = self.gap(self.backbone(x)).flatten(1)
        feat = global_feat if self.bottleneck is None else self.bottleneck(global_feat)
        if self.training:
            return self.classifier(feat), global_feat
        return feat if self.neck_feat == "after" else global_feat


def warmup_multistep_factor(
    epoch: int,
    milestones: Sequence[int],
    gamma: float,
    warmup_factor: float,
    warmup_epochs: int,
) -> float:
    """BoT's ``WarmupMultiStepLR`` factor for 0-based ``epoch`` (the scheduler is stepped once per epoch).

    ``factor = warmup · gamma^(#milestones <= epoch)`` with a linear warm-up
    ``warmup = warmup_factor·(1 − e/E) + e/E`` for ``e < E`` epochs, else 1.
    """
    warmup = 1.0
    if epoch < warmup_epochs:
        alpha = epoch / warmup_epochs
        warmup = warmup_factor * (1 - alpha) + alpha
    return warmup * gamma ** bisect.bisect_right(list(milestones), epoch)
