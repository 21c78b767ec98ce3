"""Import checkpoints of the original VoxelPose repository (microsoft/voxelpose-pytorch).

The original saves ``MultiPersonPoseNet.state_dict()`` either bare (``model_best.pth.tar``,
``final_state.pth.tar``) or under ``"state_dict"`` (``checkpoint.pth.tar``), sometimes with DataParallel's
``module.`` prefix. Its three parts map onto ours as

* ``root_net.v2v_net.*`` → ``cpn.*`` and ``pose_net.v2v_net.*`` → ``prn.*`` (V2V layer names below),
* ``backbone.*`` (PoseResNet) → ``backbone.trunk.*`` for the ResNet, ``backbone.deconv_layers.*`` and
  ``backbone.final_layer.*`` unchanged.

The import is strict: every key of the target model must be supplied with the right shape and no source key
may be left over; otherwise one error lists every offending key. Files are read with ``weights_only=True`` by
:func:`personlab.models.state.read_state_dict`, the one reader of every importer.

:func:`import_pose_resnet` loads the 2D backbone alone from a simple-baselines PoseResNet file (the
``backbone_pretrained`` of the Panoptic setup).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Mapping

import torch
import torch.nn as nn

from personlab.models.state import CheckpointMismatch, check_state, mismatch_message, read_state_dict

__all__ = ["import_pose_resnet", "import_voxelpose", "map_original_keys", "original_v2v_key"]

# our V2V module -> the original's (spec §1.6 / original-keys/voxelpose.v2v_*.keys.json)
_V2V_BLOCKS = {
    "stem": "front_layers.0",
    "stem_res": "front_layers.1",
    "skip1": "encoder_decoder.skip_res1",
    "enc1": "encoder_decoder.encoder_res1",
    "skip2": "encoder_decoder.skip_res2",
    "enc2": "encoder_decoder.encoder_res2",
    "mid": "encoder_decoder.mid_res",
    "dec2": "encoder_decoder.decoder_res2",
    "up2": "encoder_decoder.decoder_upsample2",
    "dec1": "encoder_decoder.decoder_res1",
    "up1": "encoder_decoder.decoder_upsample1",
    "head": "output_layer",
}
# our layer inside a block -> the original's
_V2V_LAYERS = {
    "conv": "block.0",
    "bn": "block.1",
    "deconv": "block.0",
    "conv1": "res_branch.0",
    "bn1": "res_branch.1",
    "conv2": "res_branch.3",
    "bn2": "res_branch.4",
    "downsample.0": "skip_con.0",
    "downsample.1": "skip_con.1",
}
_OURS = re.compile(r"^(?P<block>[a-z0-9_]+)\.(?:(?P<layer>conv1|bn1|conv2|bn2|downsample\.[01]|conv|bn|deconv)\.)?(?P<leaf>[a-z_]+)$")


def original_v2v_key(ours: str) -> str:
    """Our V2V parameter name (``enc1.conv1.weight``) → the original's (``encoder_decoder.encoder_res1.res_branch.0.weight``)."""
    m = _OURS.match(ours)
    if m is None or m["block"] not in _V2V_BLOCKS:
        raise KeyError(f"{ours!r} is not a V2VNet parameter")
    parts = [_V2V_BLOCKS[m["block"]]]
    if m["layer"]:
        parts.append(_V2V_LAYERS[m["layer"]])
    parts.append(m["leaf"])
    return ".".join(parts)


def _original_key(ours: str) -> str:
    net, _, rest = ours.partition(".")
    if net == "cpn":
        return "root_net.v2v_net." + original_v2v_key(rest)
    if net == "prn":
        return "pose_net.v2v_net." + original_v2v_key(rest)
    if net == "backbone":
        return "backbone." + rest.removeprefix("trunk.")
    raise KeyError(f"{ours!r} has no counterpart in the original VoxelPose")


def map_original_keys(source: Mapping[str, torch.Tensor], target: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename an original state dict to the keys of ``target`` (our model's state dict), strictly."""
    wanted = {ours: _original_key(ours) for ours in target}
    missing = sorted(orig for orig in wanted.values() if orig not in source)
    unexpected = sorted(set(source) - set(wanted.values()))
    wrong = sorted(
        f"{orig} {tuple(source[orig].shape)} (expected {tuple(target[ours].shape)})"
        for ours, orig in wanted.items()
        if orig in source and tuple(source[orig].shape) != tuple(target[ours].shape)
    )
    if missing or unexpected or wrong:  # named as in the original file, where the user will look them up
        raise CheckpointMismatch(mismatch_message(
            "original VoxelPose checkpoint (check num_joints, the V2V widths and voxelpose.backbone)",
            missing, unexpected, wrong))
    return {ours: source[orig].to(target[ours].dtype) for ours, orig in wanted.items()}


def import_voxelpose(model: torch.nn.Module, source: str | Path | Mapping[str, torch.Tensor]) -> torch.nn.Module:
    """Load an original checkpoint (file or state dict) into ``model`` (a :class:`VoxelPose`), strictly."""
    state = read_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    model.load_state_dict(map_original_keys(state, model.state_dict()), strict=True)
    return model


def _pose_resnet_key(original: str) -> str:
    """simple-baselines key → ours: the ResNet part moves under ``trunk.``; the head keeps its names."""
    return original if original.startswith(("deconv_layers.", "final_layer.")) else "trunk." + original


def import_pose_resnet(backbone: nn.Module, source: str | Path | Mapping[str, torch.Tensor]) -> nn.Module:
    """Load a simple-baselines PoseResNet file (``pose_resnet50_panoptic.pth.tar``) into ``backbone``, strictly.

    The file's ``conv1``, ``bn1``, ``layer1..4`` go to ``trunk.*``; ``deconv_layers.*`` and ``final_layer.*``
    keep their names (a ``module.`` prefix or a ``state_dict`` wrapper is removed on reading). Every key must
    match, except that a final layer with another joint count is handled as the original does (spec §1.2):
    it is re-initialised (Xavier-normal weights, zero bias) and as many filters as fit are copied over.
    """
    state = read_state_dict(source) if isinstance(source, (str, Path)) else dict(source)
    name = str(source) if isinstance(source, (str, Path)) else "PoseResNet state dict"
    mapped = {_pose_resnet_key(k): v for k, v in state.items()}
    target = backbone.state_dict()
    head = ("final_layer.weight", "final_layer.bias")
    if all(k in mapped for k in head) and mapped[head[0]].shape[1:] == target[head[0]].shape[1:]:
        for key in head:
            if mapped[key].shape != target[key].shape:
                fresh = torch.zeros_like(target[key])
                if fresh.dim() > 1:
                    nn.init.xavier_normal_(fresh)
                fit = min(len(fresh), len(mapped[key]))
                fresh[:fit] = mapped[key][:fit]
                mapped[key] = fresh
    check_state({k: v.shape for k, v in target.items()}, mapped, f"{name} (PoseResNet backbone)")
    backbone.load_state_dict({k: v.to(target[k].dtype) for k, v in mapped.items()}, strict=True)
    return backbone
