"""DG-Net: joint discriminative and generative learning (Zheng et al., CVPR 2019).

Four networks (the shapes below are those of the paper, ``configs/latest.yaml``; every width is an argument
so the embedded CPU default can run a tiny copy):

* :class:`StructureEncoder` ``E_s`` — a one-channel gray image (the plain mean of the three *normalised*
  channels, see :func:`to_gray`) to a 128×H/4×W/4 structure code: conv blocks, residual blocks and an ASPP.
* :class:`AppearanceEncoder` ``E_a`` — a ResNet with last stride 1 whose layer-4 map is max-pooled into four
  horizontal stripes; flattened channel-major this is the appearance code (4·C values, C = 2048 for
  ResNet-50). A global max pool feeds two :class:`ClassBlock` heads, the primary one
  (dropout 0.5) and the fine-grained one (dropout 0.75). This is the re-ID model: in eval mode it returns the
  two 512-d bottleneck features concatenated, which the evaluator L2-normalises separately.
* :class:`Generator` — the decoder ``G`` (residual blocks with AdaIN, two nearest-neighbour upsamplings with
  the custom :class:`LayerNorm`, no output tanh: images live in normalised space) and the eight MLPs that
  turn the appearance code into AdaIN scales and shifts, plus ``E_s``.
* :class:`MultiScaleDiscriminator` ``D`` — three LSGAN PatchGAN discriminators on the image and its 2× and 4×
  average-pooled copies.

The four MLP pairs read four *channel groups* of the appearance code, not four stripes: the code is
flattened channel-major (index = channel·4 + stripe), so group k holds channels C·k/4 … C·(k+1)/4 − 1 of
every stripe. Pair k drives residual block k of the decoder (its two AdaIN layers).
"""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from personlab.models.resnet import ResNet

__all__ = [
    "AdaIN",
    "AppearanceEncoder",
    "AppearanceOutput",
    "ClassBlock",
    "ConvBlock",
    "Decoder",
    "Generator",
    "LayerNorm",
    "MLP",
    "MultiScaleDiscriminator",
    "PatchDiscriminator",
    "StructureEncoder",
    "to_gray",
]

NormKind = Literal["none", "in", "ln", "adain"]


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """The structure encoder's input: the mean of the normalised RGB channels (not a luminance transform)."""
    return x.mean(dim=1, keepdim=True)


class LayerNorm(nn.Module):
    """DG-Net/MUNIT layer norm: per sample over (C, H, W), **unbiased** std, eps added to the std.

    Neither ``nn.LayerNorm`` nor ``GroupNorm(1)`` (both biased variance, eps inside the root). The affine
    scale starts Uniform(0, 1) as in the original, the shift at 0.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.rand(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(x.shape[0], -1)
        shape = (-1,) + (1,) * (x.dim() - 1)
        mean = flat.mean(1).view(shape)
        std = flat.std(1).view(shape)
        x = (x - mean) / (std + self.eps)
        affine = (1, -1) + (1,) * (x.dim() - 2)
        return x * self.weight.view(affine) + self.bias.view(affine)


class AdaIN(nn.Module):
    """Adaptive instance norm: per sample and channel, normalise (biased variance, eps 1e-5 inside the
    root), then apply a scale and shift given per sample by the appearance code.

    The original stores the per-sample parameters as attributes of the layer before each decode; here they
    are arguments, so a decode is a pure function of (structure, appearance) and needs no hidden state.
    """

    def __init__(self, num_features: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.num_features = num_features
        self.eps = eps

    def forward(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        normed = F.instance_norm(x, eps=self.eps)
        return normed * scale[:, :, None, None] + shift[:, :, None, None]


class ConvBlock(nn.Module):
    """Reflection pad → conv (with bias) → optional norm → optional LeakyReLU(0.2).

    With ``norm="adain"`` the block's forward takes the AdaIN scale and shift as extra arguments.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int,
        stride: int = 1,
        padding: int = 0,
        dilation: int = 1,
        norm: NormKind = "none",
        activation: bool = True,
    ) -> None:
        super().__init__()
        self.pad = nn.ReflectionPad2d(padding)
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, stride, dilation=dilation)
        if norm == "in":
            self.norm: nn.Module | None = nn.InstanceNorm2d(out_channels)
        elif norm == "ln":
            self.norm = LayerNorm(out_channels)
        elif norm == "adain":
            self.norm = AdaIN(out_channels)
        else:
            self.norm = None
        self.activation = nn.LeakyReLU(0.2) if activation else None

    def forward(
        self, x: torch.Tensor, scale: torch.Tensor | None = None, shift: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = self.conv(self.pad(x))
        if isinstance(self.norm, AdaIN):
            x = self.norm(x, scale, shift)
        elif self.norm is not None:
            x = self.norm(x)
        if self.activation is not None:
            x = self.activation(x)
        return x


class ResBlock(nn.Module):
    """Two 3×3 conv blocks (the second without activation) plus the identity; no post-activation."""

    def __init__(self, channels: int, norm: NormKind) -> None:
        super().__init__()
        self.conv1 = ConvBlock(channels, channels, 3, padding=1, norm=norm)
        self.conv2 = ConvBlock(channels, channels, 3, padding=1, norm=norm, activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.conv1(x))


class AdaINResBlock(ResBlock):
    """A decoder residual block: both convs are AdaIN-normalised with parameters from one MLP pair."""

    def __init__(self, channels: int) -> None:
        super().__init__(channels, norm="adain")

    def forward(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        c = self.conv1.conv.out_channels
        y = self.conv1(x, scale[:, :c], shift[:, :c])
        return x + self.conv2(y, scale[:, c:], shift[:, c:])


class ASPP(nn.Module):
    """Atrous spatial pyramid: a 1×1 branch and three 1×1→3×3 branches dilated 3, 6 and 9 (the paper's;
    smaller inputs need smaller ones, reflection padding must stay below the map size), fused by a 1×1 conv
    that doubles the input width (64 → 128 in the paper)."""

    def __init__(self, channels: int, dilations: tuple[int, int, int] = (3, 6, 9)) -> None:
        super().__init__()
        half = channels // 2

        def dilated(d: int) -> nn.Sequential:
            return nn.Sequential(
                ConvBlock(channels, half, 1, norm="in"),
                ConvBlock(half, half, 3, padding=d, dilation=d, norm="in", activation=False),
            )

        self.branch1 = ConvBlock(channels, half, 1, norm="in", activation=False)
        self.branch_d3 = dilated(dilations[0])
        self.branch_d6 = dilated(dilations[1])
        self.branch_d9 = dilated(dilations[2])
        self.fuse = ConvBlock(4 * half, 2 * channels, 1, norm="in", activation=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch_d3(x), self.branch_d6(x), self.branch_d9(x))
        return self.fuse(torch.cat(branches, dim=1))


class StructureEncoder(nn.Module):
    """``E_s``: gray image (1 channel) → structure code with ``8·dim`` channels at a quarter of the size.

    Paper (dim 16): 3×3/2 1→16, 3×3 16→32, 3×3 32→32, 3×3/2 32→64, four residual blocks at 64, ASPP → 128.
    Every block uses reflection padding, InstanceNorm without affine and LeakyReLU(0.2).
    """

    def __init__(
        self, dim: int = 16, num_res: int = 4, in_channels: int = 1, dilations: tuple[int, int, int] = (3, 6, 9)
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            ConvBlock(in_channels, dim, 3, stride=2, padding=1, norm="in"),
            ConvBlock(dim, 2 * dim, 3, padding=1, norm="in"),
            ConvBlock(2 * dim, 2 * dim, 3, padding=1, norm="in"),
            ConvBlock(2 * dim, 4 * dim, 3, stride=2, padding=1, norm="in"),
        )
        self.res_blocks = nn.Sequential(*[ResBlock(4 * dim, norm="in") for _ in range(num_res)])
        self.aspp = ASPP(4 * dim, dilations)
        self.out_channels = 8 * dim

    def forward(self, gray: torch.Tensor) -> torch.Tensor:
        return self.aspp(self.res_blocks(self.stem(gray)))


class UpBlock(nn.Module):
    """Nearest ×2 upsampling, 5×5 conv halving the width, custom LayerNorm, LeakyReLU."""

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.block = ConvBlock(in_channels, in_channels // 2, 5, padding=2, norm="ln")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class Decoder(nn.Module):
    """``G``'s image decoder: AdaIN residual blocks, two :class:`UpBlock` s, then 3×3, 3×3 and 1×1 convs.

    The output has no tanh: like the inputs it lives in ImageNet-normalised space.
    """

    def __init__(self, channels: int = 128, num_res: int = 4, out_channels: int = 3) -> None:
        super().__init__()
        self.res_blocks = nn.ModuleList([AdaINResBlock(channels) for _ in range(num_res)])
        self.up_blocks = nn.Sequential(UpBlock(channels), UpBlock(channels // 2))
        top = channels // 4
        self.head = nn.Sequential(
            ConvBlock(top, top, 3, padding=1),
            ConvBlock(top, top, 3, padding=1),
            ConvBlock(top, out_channels, 1, activation=False),
        )

    def forward(self, structure: torch.Tensor, scales: list[torch.Tensor], shifts: list[torch.Tensor]) -> torch.Tensor:
        x = structure
        for block, scale, shift in zip(self.res_blocks, scales, shifts):
            x = block(x, scale, shift)
        return self.head(self.up_blocks(x))


class MLP(nn.Module):
    """Linear → LReLU → Linear → LReLU → Linear: one appearance-code group to one residual block's AdaIN
    scales (or shifts), 2·channels values."""

    def __init__(self, in_features: int, out_features: int, hidden: int = 512) -> None:
        super().__init__()
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, hidden)
        self.fc3 = nn.Linear(hidden, out_features)
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc3(self.act(self.fc2(self.act(self.fc1(x)))))


class Generator(nn.Module):
    """``E_s`` + decoder + the four (scale, shift) MLP pairs. ``code_channels`` is C, the appearance
    encoder's layer-4 width (2048 for ResNet-50); the appearance code has 4·C values.

    Initialisation as the original's ``init: kaiming``: every conv and linear weight Kaiming-normal
    (fan-in, gain √2), biases 0; the LayerNorm scales keep their Uniform(0, 1) start.
    """

    num_groups = 4

    def __init__(
        self,
        code_channels: int = 2048,
        dim: int = 16,
        mlp_dim: int = 512,
        num_res: int = 4,
        dilations: tuple[int, int, int] = (3, 6, 9),
    ) -> None:
        super().__init__()
        if num_res != self.num_groups:
            raise ValueError(f"num_res must be {self.num_groups}: each residual block is driven by one code group")
        self.code_channels = code_channels
        self.structure_encoder = StructureEncoder(dim=dim, num_res=num_res, dilations=tuple(dilations))
        channels = self.structure_encoder.out_channels
        self.decoder = Decoder(channels, num_res=num_res)
        self.mlp_scale = nn.ModuleList([MLP(code_channels, 2 * channels, mlp_dim) for _ in range(self.num_groups)])
        self.mlp_shift = nn.ModuleList([MLP(code_channels, 2 * channels, mlp_dim) for _ in range(self.num_groups)])
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
                nn.init.zeros_(m.bias)

    def encode(self, gray: torch.Tensor) -> torch.Tensor:
        """Structure code of a one-channel gray image (see :func:`to_gray`)."""
        return self.structure_encoder(gray)

    def decode(self, structure: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """An image with ``structure``'s layout and ``code``'s appearance (normalised space)."""
        groups = code.reshape(code.shape[0], self.num_groups, self.code_channels).unbind(1)
        scales = [mlp(g) for mlp, g in zip(self.mlp_scale, groups)]
        shifts = [mlp(g) for mlp, g in zip(self.mlp_shift, groups)]
        return self.decoder(structure, scales, shifts)

    def forward(self, x_structure: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """Swap: the structure of RGB image ``x_structure`` rendered with appearance ``code``."""
        return self.decode(self.encode(to_gray(x_structure)), code)


class PatchDiscriminator(nn.Module):
    """One scale of ``D``: 1×1 in→dim, 3×3, 3×3/2, then (3×3, 3×3/2 doubling) ``num_layers − 1`` times,
    ``num_res`` residual blocks, 1×1 → 1 (a PatchGAN score map). No normalisation, LeakyReLU(0.2)."""

    def __init__(self, in_channels: int = 3, dim: int = 32, num_layers: int = 2, num_res: int = 4) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            ConvBlock(in_channels, dim, 1),
            ConvBlock(dim, dim, 3, padding=1),
            ConvBlock(dim, dim, 3, stride=2, padding=1),
        ]
        for _ in range(num_layers - 1):
            wider = min(2 * dim, 512)
            layers += [ConvBlock(dim, dim, 3, padding=1), ConvBlock(dim, wider, 3, stride=2, padding=1)]
            dim = wider
        layers += [ResBlock(dim, norm="none") for _ in range(num_res)]
        self.body = nn.Sequential(*layers)
        self.head = nn.Conv2d(dim, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class MultiScaleDiscriminator(nn.Module):
    """``D``: a :class:`PatchDiscriminator` per scale; between scales the image is average-pooled 3×3/2
    (padding 1, padding not counted). Weights start N(0, 0.02), biases 0, as the original's ``gaussian``."""

    def __init__(
        self, in_channels: int = 3, dim: int = 32, num_layers: int = 2, num_res: int = 4, num_scales: int = 3
    ) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            [PatchDiscriminator(in_channels, dim, num_layers, num_res) for _ in range(num_scales)]
        )
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        outputs = []
        for i, scale in enumerate(self.scales):
            if i:
                x = F.avg_pool2d(x, 3, stride=2, padding=1, count_include_pad=False)
            outputs.append(scale(x))
        return outputs


class ClassBlock(nn.Module):
    """DG-Net's head: ``add_block`` = Linear(C→512) → BatchNorm1d → Dropout, then a linear classifier.

    Init as DG-Net's copy of layumi's block: bottleneck Kaiming-normal (fan-out), BN at torch's default,
    classifier N(0, 1e-3), biases 0. The 512-d ``add_block`` output is this head's test feature.
    """

    def __init__(self, in_features: int, num_classes: int, droprate: float, bottleneck: int = 512) -> None:
        super().__init__()
        self.add_block = nn.Sequential(
            nn.Linear(in_features, bottleneck), nn.BatchNorm1d(bottleneck), nn.Dropout(droprate)
        )
        self.classifier = nn.Linear(bottleneck, num_classes)
        nn.init.kaiming_normal_(self.add_block[0].weight, a=0, mode="fan_out")
        nn.init.zeros_(self.add_block[0].bias)
        nn.init.normal_(self.classifier.weight, std=1e-3)
        nn.init.zeros_(self.classifier.bias)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(512-d feature, logits)``."""
        feature = self.add_block(x)
        return feature, self.classifier(feature)


class AppearanceOutput(NamedTuple):
    """What the training losses need from ``E_a``."""

    code: torch.Tensor  # (B, 4·C) appearance code, channel-major stripes
    logits_primary: torch.Tensor  # (B, num_classes)
    logits_fine: torch.Tensor  # (B, num_classes)


class AppearanceEncoder(nn.Module):
    """``E_a`` (the original's ``ft_netAB``), registered as arch ``dgnet``: the re-ID model of DG-Net.

    A ResNet (``depth``, last stride 1 by default); layer 4 is max-pooled into ``stripes`` horizontal parts
    (the appearance code, flattened channel-major) and globally max-pooled into the two heads' input.
    ``detach_code`` reproduces the original's ``f.detach()``: no generation loss reaches ``E_a`` through the
    code (trap: "fixing" it changes results). The ImageNet ``fc`` the original keeps is not built.

    ``forward(x)``: in eval mode the test embedding, ``[primary 512 | fine-grained 512]`` (Linear + BN
    outputs, unnormalised; ``model.json`` lists ``embedding_parts: [512, 512]``); in train mode an
    :class:`AppearanceOutput`. ``outputs="train"`` asks for the latter in any mode (the training step runs
    a frozen-weight copy with dropout off and batch-statistics BN).
    """

    def __init__(
        self,
        num_classes: int,
        depth: int = 50,
        stride: int = 1,
        stripes: int = 4,
        bottleneck: int = 512,
        detach_code: bool = True,
    ) -> None:
        super().__init__()
        self.backbone = ResNet(depth, last_stride=stride, stem_relu=True)
        self.stripes = stripes
        self.detach_code = detach_code
        channels = self.backbone.out_channels
        self.code_channels = channels
        self.primary = ClassBlock(channels, num_classes, droprate=0.5, bottleneck=bottleneck)
        self.fine = ClassBlock(channels, num_classes, droprate=0.75, bottleneck=bottleneck)

    def forward(
        self, x: torch.Tensor, outputs: Literal["auto", "train", "embedding"] = "auto"
    ) -> torch.Tensor | AppearanceOutput:
        fmap = self.backbone(x)
        pooled = F.adaptive_max_pool2d(fmap, 1).flatten(1)
        if outputs == "embedding" or (outputs == "auto" and not self.training):
            return torch.cat([self.primary.add_block(pooled), self.fine.add_block(pooled)], dim=1)
        _, logits1 = self.primary(pooled)
        _, logits2 = self.fine(pooled)
        code = F.adaptive_max_pool2d(fmap, (self.stripes, 1)).flatten(1)
        if self.detach_code:
            code = code.detach()
        return AppearanceOutput(code, logits1, logits2)
