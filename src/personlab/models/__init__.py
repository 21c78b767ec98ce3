"""Networks: backbones, re-ID heads, DG-Net, the relation network, and importers of original checkpoints.

Every re-ID checkpoint's ``model.json`` names its architecture (``arch``, a key of :data:`REGISTRY`) and the
keyword arguments that rebuild it (``arch_kwargs``), so :func:`load_model` needs no code of the stage that
trained it. In eval mode a re-ID model's ``forward`` returns its raw test embedding ``(B, D)``; the
evaluation normalises each part listed in ``model.json``'s ``embedding_parts`` separately.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch.nn as nn

from personlab.io import load_checkpoint

__all__ = ["REGISTRY", "build", "load_model"]

# arch name -> "module:Class"; imported lazily so one model's module never has to import the others.
REGISTRY: dict[str, str] = {
    "bot": "personlab.models.bot:Baseline",
    "ft_net": "personlab.models.ide:FtNet",
    "relation": "personlab.models.relation:RelationNet",
    "dgnet": "personlab.models.dgnet:AppearanceEncoder",
    "voxelpose": "personlab.pose.voxelpose:VoxelPose",
}


def build(arch: str, arch_kwargs: dict) -> nn.Module:
    """A fresh model of a registered architecture."""
    if arch not in REGISTRY:
        raise KeyError(f"unknown architecture {arch!r}; known: {', '.join(sorted(REGISTRY)) or 'none'}")
    module_name, class_name = REGISTRY[arch].split(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    return cls(**arch_kwargs)


def load_model(folder: str | Path, map_location: str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild a model from ``folder/model.json`` and load ``folder/model.pt`` strictly."""
    state, meta = load_checkpoint(folder, map_location=map_location)
    model = build(meta["arch"], meta.get("arch_kwargs", {}))
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{folder}: checkpoint does not match architecture {meta['arch']!r}; "
            f"missing keys: {sorted(missing)}; unexpected keys: {sorted(unexpected)}"
        )
    return model, meta
