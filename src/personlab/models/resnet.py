"""ResNet trunk shared by the re-ID models: torchvision's network up to ``layer4``, no pooling, no ``fc``.

Re-ID heads pool the feature map themselves, so the trunk stops at ``layer4``. Two switches reproduce the
reference repositories:

* ``last_stride=1`` removes the down-sampling of ``layer4`` (a 16×8 map for a 256×128 input instead of 8×4).
  It must change both the 3×3 (Bottleneck ``conv2``) / first (BasicBlock ``conv1``) convolution and the 1×1
  ``downsample`` of ``layer4[0]``; changing only one breaks the residual sum.
* ``stem_relu=False`` drops the ReLU after the stem BN, as in BoT's own ResNet (a known slip kept there "for
  consistency"); it is needed to reproduce BoT's numbers and to evaluate its released weights faithfully.

The module keeps torchvision's parameter names (``conv1``, ``bn1``, ``layer1.0.conv1`` ...), so torchvision
and reference ImageNet files load with no renaming.
"""

from __future__ import annotations

import urllib.error
from pathlib import Path

import torch
import torch.nn as nn
import torchvision
from torchvision.models.resnet import BasicBlock, Bottleneck

from personlab.models.state import load_strict, read_state_dict

__all__ = ["DEPTHS", "PretrainedWeightsError", "ResNet", "imagenet_weights_file", "load_pretrained"]

# depth -> (block, blocks per stage, torchvision weights enum name)
DEPTHS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int], str]] = {
    18: (BasicBlock, (2, 2, 2, 2), "ResNet18_Weights"),
    34: (BasicBlock, (3, 4, 6, 3), "ResNet34_Weights"),
    50: (Bottleneck, (3, 4, 6, 3), "ResNet50_Weights"),
    101: (Bottleneck, (3, 4, 23, 3), "ResNet101_Weights"),
    152: (Bottleneck, (3, 8, 36, 3), "ResNet152_Weights"),
}


class PretrainedWeightsError(RuntimeError):
    """ImageNet weights that are neither cached nor downloadable; the message names the file to place."""


class ResNet(nn.Module):
    """ResNet-``depth`` feature extractor returning the ``layer4`` map ``(B, out_channels, H/s, W/s)``."""

    def __init__(self, depth: int = 50, last_stride: int = 1, stem_relu: bool = True) -> None:
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth {depth} is not supported; choose one of {sorted(DEPTHS)}")
        if last_stride not in (1, 2):
            raise ValueError(f"last_stride must be 1 or 2, got {last_stride}")
        block, layers, _ = DEPTHS[depth]
        # torchvision builds and initialises the layers (kaiming convs, unit BN); we keep all but avgpool/fc.
        net = torchvision.models.resnet.ResNet(block, list(layers))
        self.depth = depth
        self.out_channels = 512 * block.expansion
        self.conv1, self.bn1, self.maxpool = net.conv1, net.bn1, net.maxpool
        self.relu = nn.ReLU(inplace=True) if stem_relu else nn.Identity()
        self.layer1, self.layer2, self.layer3, self.layer4 = net.layer1, net.layer2, net.layer3, net.layer4
        first = self.layer4[0]
        strided_conv = first.conv2 if isinstance(first, Bottleneck) else first.conv1
        strided_conv.stride = (last_stride, last_stride)
        first.downsample[0].stride = (last_stride, last_stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def _imagenet_enum(depth: int):
    return getattr(torchvision.models, DEPTHS[depth][2]).IMAGENET1K_V1


def imagenet_weights_file(depth: int) -> Path:
    """Where torchvision caches the V1 ImageNet weights the reference repositories used (trap: V2 differs)."""
    name = Path(_imagenet_enum(depth).url).name
    return Path(torch.hub.get_dir()) / "checkpoints" / name


def load_pretrained(backbone: ResNet, pretrained: str) -> None:
    """Initialise ``backbone`` from ``none``, ``imagenet`` (torchvision V1 weights) or a state-dict file.

    ImageNet's ``fc.*`` is dropped; every other key must match (a partial load would silently train from a
    half-random network). A file is read with ``weights_only=True``.
    """
    if pretrained == "none":
        return
    if pretrained == "imagenet":
        weights = _imagenet_enum(backbone.depth)
        cached = imagenet_weights_file(backbone.depth)
        if cached.is_file():
            state = read_state_dict(cached)
        else:
            try:
                state = weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
            except (urllib.error.URLError, OSError) as exc:
                raise PretrainedWeightsError(
                    f"ImageNet weights for ResNet-{backbone.depth} (torchvision IMAGENET1K_V1) are not cached and "
                    f"cannot be downloaded ({exc}). Download {weights.url} on a machine with internet and place "
                    f"it at {cached} (keep the file name), or set pretrained to a state-dict file path."
                ) from None
        source = f"torchvision {DEPTHS[backbone.depth][2]}.IMAGENET1K_V1"
    else:
        if not Path(pretrained).is_file():
            raise FileNotFoundError(
                f"pretrained={pretrained!r}: not 'none', 'imagenet' or an existing state-dict file; fix the value"
            )
        state = read_state_dict(pretrained)
        source = str(pretrained)
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    load_strict(backbone, state, source)
