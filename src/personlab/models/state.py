"""Reading and strictly loading state dicts: the shared helpers of the importers and of pretrained backbones.

Kept apart from ``convert.py`` (the per-repository importers) so that a training stage that only loads
ImageNet weights does not depend on, and re-run with, every importer added there.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Mapping, Sequence

import torch
import torch.nn as nn

__all__ = ["PICKLED_MODULE_HELP", "CheckpointMismatch", "check_state", "load_strict", "mismatch_message",
           "read_state_dict"]

PICKLED_MODULE_HELP = (
    "It looks like a pickled whole module (reid-strong-baseline/ignite and RRID save those), which personlab "
    "never unpickles. Extract its state dict once, from a checkout of the original repository (so its classes "
    "import), in an environment you trust:\n"
    "    python -c \"import torch; m = torch.load('{src}', map_location='cpu', weights_only=False); "
    "torch.save(m.state_dict(), '{dst}')\"\n"
    "then convert {dst}."
)


class CheckpointMismatch(ValueError):
    """A state dict whose keys or shapes do not match the target model; the message lists them."""


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from ``path`` (``weights_only=True``), with a ``module.`` prefix (DataParallel) removed.

    A training checkpoint that holds the weights under ``"state_dict"`` beside other entries (epoch, optimizer;
    the layout of VoxelPose's and simple-baselines' ``*.pth.tar`` files) is unwrapped to that state dict.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: checkpoint file not found")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        help_text = PICKLED_MODULE_HELP.format(src=path, dst=path.with_name(f"{path.stem}_state.pth"))
        raise ValueError(f"{path}: not a plain state dict. {help_text}") from None
    except (RuntimeError, EOFError) as exc:
        raise ValueError(f"{path}: not a readable PyTorch file ({exc}); is it complete and the right file?") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__
        keys = sorted(map(str, obj))[:8] if isinstance(obj, dict) else []
        raise ValueError(
            f"{path}: holds a {kind} (keys {keys}), not a flat state dict of tensors (nor one under "
            f"'state_dict'); an optimizer file or a training checkpoint wrapping the weights under another key? "
            f"Save the model's state_dict() alone and convert that."
        )
    if all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def mismatch_message(source: str, missing: Sequence[str], unexpected: Sequence[str], shapes: Sequence[str]) -> str:
    """One message listing every missing key, unexpected key and shape mismatch."""
    parts = [f"{source}: state dict does not match the model"]
    if missing:
        parts.append(f"missing keys ({len(missing)}): {', '.join(missing)}")
    if unexpected:
        parts.append(f"unexpected keys ({len(unexpected)}): {', '.join(unexpected)}")
    if shapes:
        parts.append(f"shape mismatches ({len(shapes)}): {', '.join(shapes)}")
    return "; ".join(parts)


def check_state(expected: Mapping[str, torch.Size], state: Mapping[str, torch.Tensor], source: str) -> None:
    """Raise :class:`CheckpointMismatch` unless ``state`` has exactly the keys and shapes of ``expected``."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = sorted(
        f"{k} {tuple(state[k].shape)} vs {tuple(expected[k])}"
        for k in set(expected) & set(state)
        if state[k].shape != expected[k]
    )
    if missing or unexpected or shapes:
        raise CheckpointMismatch(mismatch_message(source, missing, unexpected, shapes))


def load_strict(module: nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load ``state`` into ``module``; any missing/unexpected key or wrong shape raises, listing them all."""
    check_state({k: v.shape for k, v in module.state_dict().items()}, state, source)
    module.load_state_dict(state, strict=True)
