"""V2V-Net: the 3D encoder-decoder that both VoxelPose networks (CPN and PRN) are built on.

Architecture as in the original (spec §1.6): a 7³ stem and a residual block, then a two-level hourglass
(max-pool by 2 twice, transposed-convolution up-sampling, residual skips added back) and a 1³ output
convolution with no activation. ``width`` is the channel count at full resolution (32 in the original; the
stem has ``width // 2`` and the two coarser levels ``2 * width`` and ``4 * width``), so the CPU default can run
a thinner network with the same structure. Every spatial size must be divisible by 4 (two poolings).

Module names are our own; :mod:`personlab.pose.convert` maps the original key layout onto them.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["Basic3d", "Res3d", "Up3d", "V2VNet"]


class Basic3d(nn.Module):
    """Conv3d (same padding) + BN + ReLU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv3d(in_channels, out_channels, kernel_size, padding=kernel_size // 2)
        self.bn = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


class Res3d(nn.Module):
    """Two 3³ convolutions with a residual connection (1³ projection when the width changes)."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv3d(in_channels, out_channels, 3, padding=1)
        self.bn1 = nn.BatchNorm3d(out_channels)
        self.conv2 = nn.Conv3d(out_channels, out_channels, 3, padding=1)
        self.bn2 = nn.BatchNorm3d(out_channels)
        self.downsample = None
        if in_channels != out_channels:
            self.downsample = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, 1), nn.BatchNorm3d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)), inplace=True)
        out = self.bn2(self.conv2(out))
        skip = x if self.downsample is None else self.downsample(x)
        return F.relu(out + skip, inplace=True)


class Up3d(nn.Module):
    """Transposed convolution (kernel 2, stride 2) + BN + ReLU: doubles each spatial size."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.deconv = nn.ConvTranspose3d(in_channels, out_channels, 2, stride=2)
        self.bn = nn.BatchNorm3d(out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.deconv(x)), inplace=True)


class V2VNet(nn.Module):
    """(B, in_channels, X, Y, Z) -> (B, out_channels, X, Y, Z), raw outputs (no activation)."""

    def __init__(self, in_channels: int, out_channels: int, width: int = 32) -> None:
        super().__init__()
        if width < 2 or width % 2:
            raise ValueError(f"V2VNet width must be an even number >= 2, got {width}")
        w = width
        self.stem = Basic3d(in_channels, w // 2, 7)
        self.stem_res = Res3d(w // 2, w)
        self.skip1 = Res3d(w, w)
        self.enc1 = Res3d(w, 2 * w)
        self.skip2 = Res3d(2 * w, 2 * w)
        self.enc2 = Res3d(2 * w, 4 * w)
        self.mid = Res3d(4 * w, 4 * w)
        self.dec2 = Res3d(4 * w, 4 * w)
        self.up2 = Up3d(4 * w, 2 * w)
        self.dec1 = Res3d(2 * w, 2 * w)
        self.up1 = Up3d(2 * w, w)
        self.head = nn.Conv3d(w, out_channels, 1)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.001) weights and zero biases for every (transposed) convolution, as the original."""
        for m in self.modules():
            if isinstance(m, (nn.Conv3d, nn.ConvTranspose3d)):
                nn.init.normal_(m.weight, std=0.001)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % 4 for s in x.shape[2:]):
            raise ValueError(f"V2VNet needs spatial sizes divisible by 4, got {tuple(x.shape[2:])}")
        x = self.stem_res(self.stem(x))
        s1 = self.skip1(x)
        x = self.enc1(F.max_pool3d(x, 2))
        s2 = self.skip2(x)
        x = self.enc2(F.max_pool3d(x, 2))
        x = self.dec2(self.mid(x))
        x = self.up2(x) + s2
        x = self.up1(self.dec1(x)) + s1
        return self.head(x)
