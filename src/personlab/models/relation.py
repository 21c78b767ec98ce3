"""Relation Network for person re-ID (Park & Ham, AAAI 2020; cvlab-yonsei/RRID).

A ResNet with last stride 1 gives a feature map that is cut into 6, 4 and 2 horizontal stripes. For every
partition size ``n``:

* **one-vs-rest relation** per stripe ``i``: the stripe's max-pooled feature ``p_i`` and the mean of the other
  ``n − 1`` stripes ``rest_i`` are reduced to ``l_i`` and ``r_i`` (1×1 conv + BN + ReLU), and
  ``q_i = l_i + relation_i([l_i; r_i])`` — the part feature plus what it adds relative to the rest of the body;
* **global contrastive pooling**: the global max feature ``g`` and the averaged contrast
  ``rest_g = (Σ_i p_i − g) / (n − 1)`` are reduced to ``g'`` and ``r'``, and ``G_n = g' + pool([g'; r'])``.

The test embedding concatenates the 12 relation features and the 3 global ones (15 × 256 = 3840-d). Every
``q_i``, ``l_i``, ``r_i``, ``G_n``, ``g'`` and ``r'`` has its own classifier (45 heads).

Stripes are taken with adaptive max pooling over the height. When the height is a multiple of ``n`` (24 rows
for the published 384×128 input: 4, 6 and 12 rows) they are exact, equal stripes as in the original, which
asserts divisibility; for other heights (small CPU inputs) the stripes are near-equal and neighbouring ones
may share one row, so any input size works.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from personlab.models.resnet import ResNet

__all__ = ["PARTITIONS", "RelationBranch", "RelationNet"]

PARTITIONS = (6, 4, 2)


class ConvBNReLU(nn.Sequential):
    """1×1 conv (with bias) → BN → ReLU on a pooled ``(B, C, 1, 1)`` feature, the original's reduction unit."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 1), nn.BatchNorm2d(out_channels), nn.ReLU(inplace=True))


def _classifier(in_features: int, num_classes: int) -> nn.Linear:
    fc = nn.Linear(in_features, num_classes)
    nn.init.normal_(fc.weight, std=0.001)
    nn.init.zeros_(fc.bias)
    return fc


class RelationBranch(nn.Module):
    """The relation and contrastive-pooling modules of one partition into ``parts`` stripes."""

    def __init__(self, parts: int, in_channels: int, dim: int, num_classes: int) -> None:
        super().__init__()
        if parts < 2:
            raise ValueError(f"a relation branch needs at least 2 stripes, got {parts}")
        self.parts = parts
        self.local = nn.ModuleList(ConvBNReLU(in_channels, dim) for _ in range(parts))
        self.rest = nn.ModuleList(ConvBNReLU(in_channels, dim) for _ in range(parts))
        self.relation = nn.ModuleList(ConvBNReLU(2 * dim, dim) for _ in range(parts))
        self.global_max = ConvBNReLU(in_channels, dim)
        self.global_rest = ConvBNReLU(in_channels, dim)
        self.global_pool = ConvBNReLU(2 * dim, dim)
        self.num_classes = num_classes
        if num_classes > 0:
            self.fc_local = nn.ModuleList(_classifier(dim, num_classes) for _ in range(parts))
            self.fc_rest = nn.ModuleList(_classifier(dim, num_classes) for _ in range(parts))
            self.fc_local_rest = nn.ModuleList(_classifier(dim, num_classes) for _ in range(parts))
            self.fc_global = _classifier(dim, num_classes)
            self.fc_global_max = _classifier(dim, num_classes)
            self.fc_global_rest = _classifier(dim, num_classes)

    def forward(self, fmap: torch.Tensor, global_max: torch.Tensor) -> dict[str, list[torch.Tensor]]:
        """``fmap`` (B, C, H, W) and its global max ``(B, C, 1, 1)`` → features (and logits when training)."""
        stripes = F.adaptive_max_pool2d(fmap, (self.parts, 1))  # (B, C, n, 1)
        total = stripes.sum(dim=2, keepdim=True)
        relations, locals_, rests = [], [], []
        for i in range(self.parts):
            p_i = stripes[:, :, i : i + 1]
            rest_i = (total - p_i) / (self.parts - 1)
            l_i = self.local[i](p_i)
            r_i = self.rest[i](rest_i)
            relations.append((l_i + self.relation[i](torch.cat([l_i, r_i], dim=1))).flatten(1))
            locals_.append(l_i.flatten(1))
            rests.append(r_i.flatten(1))
        g = self.global_max(global_max)
        r = self.global_rest((total - global_max) / (self.parts - 1))
        pooled = (g + self.global_pool(torch.cat([g, r], dim=1))).flatten(1)
        out = {"relation": relations, "global": [pooled]}
        if self.training and self.num_classes > 0:
            out["logits"] = (
                [fc(q) for fc, q in zip(self.fc_local_rest, relations)]
                + [fc(l) for fc, l in zip(self.fc_local, locals_)]
                + [fc(r_) for fc, r_ in zip(self.fc_rest, rests)]
                + [self.fc_global(pooled), self.fc_global_max(g.flatten(1)), self.fc_global_rest(r.flatten(1))]
            )
        return out


class RelationNet(nn.Module):
    """RRID: ResNet trunk + relation branches for 6, 4 and 2 stripes.

    Train mode returns ``(features, logits)``: the 15 final 256-d features (each trained with the triplet
    loss) and the 45 classifier outputs (each trained with cross-entropy). Eval mode returns the test
    embedding, the concatenation of the 15 features.
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        last_stride: int = 1,
        dim: int = 256,
        partitions: tuple[int, ...] = PARTITIONS,
    ) -> None:
        super().__init__()
        self.backbone = ResNet(depth, last_stride=last_stride, stem_relu=True)
        self.partitions = tuple(partitions)
        self.branches = nn.ModuleDict(
            {str(n): RelationBranch(n, self.backbone.out_channels, dim, num_classes) for n in self.partitions}
        )
        self.embedding_dim = dim * (sum(self.partitions) + len(self.partitions))

    def forward(self, x: torch.Tensor):
        fmap = self.backbone(x)
        global_max = F.adaptive_max_pool2d(fmap, 1)
        outs = [self.branches[str(n)](fmap, global_max) for n in self.partitions]
        features = [q for o in outs for q in o["relation"]] + [g for o in outs for g in o["global"]]
        if not self.training:
            return torch.cat(features, dim=1)
        return features, [z for o in outs for z in o.get("logits", [])]
