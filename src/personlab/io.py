"""Atomic file writes, JSON, checksums and checkpoints.

Every artifact is written to a temporary file in the destination folder and renamed into place, so a crash
never leaves a half-written file where DVC or a later stage would read it. Checkpoints are a state dict
(``model.pt``, loaded with ``weights_only=True``) beside a JSON description (``model.json``); no object is
ever unpickled.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

__all__ = [
    "atomic_dir",
    "atomic_path",
    "load_checkpoint",
    "md5sum",
    "read_json",
    "save_checkpoint",
    "write_json",
]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path``, on error removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; the artifact gets the usual permissions
    try:
        yield tmp_path
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary folder beside ``path``; on success it replaces ``path`` whole, on error it goes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700
    try:
        yield tmp
        if path.exists():
            old = path.with_name(f".{path.name}.old")
            if old.exists():
                shutil.rmtree(old)
            os.replace(path, old)
            os.replace(tmp, path)
            shutil.rmtree(old)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def _clean(obj: Any, ndigits: int | None) -> Any:
    """Round floats (stable diffs in git and ``dvc metrics diff``) and reject NaN/inf, which JSON lacks."""
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"refusing to write a non-finite number ({obj}) to JSON")
        return round(obj, ndigits) if ndigits is not None else obj
    if isinstance(obj, dict):
        return {str(k): _clean(v, ndigits) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v, ndigits) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return _clean(obj.item(), ndigits)
    return obj


def write_json(path: str | Path, obj: Any, ndigits: int | None = 6, indent: int | None = 2) -> None:
    """Write JSON atomically with sorted keys and rounded floats, so equal results give equal bytes."""
    text = json.dumps(_clean(obj, ndigits), indent=indent, sort_keys=True) + "\n"
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_json(path: str | Path) -> Any:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the stage that writes it first (dvc repro)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: not valid JSON ({exc}); delete it and re-run the stage that writes it") from None


def md5sum(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def save_checkpoint(folder: str | Path, state_dict: dict, meta: dict) -> None:
    """Write ``model.pt`` (tensors only) and ``model.json`` (architecture flags, classes, pid map, ...)."""
    import torch

    folder = Path(folder)
    with atomic_path(folder / "model.pt") as tmp:
        torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp)
    write_json(folder / "model.json", meta, ndigits=None)


def load_checkpoint(folder: str | Path, map_location: str = "cpu") -> tuple[dict, dict]:
    """Read a checkpoint written by :func:`save_checkpoint`; refuses anything but tensors."""
    import torch

    folder = Path(folder)
    weights, meta = folder / "model.pt", folder / "model.json"
    for p in (weights, meta):
        if not p.is_file():
            raise FileNotFoundError(f"{p}: checkpoint file missing; re-run the stage that trains it (dvc repro)")
    try:
        state = torch.load(weights, map_location=map_location, weights_only=True)
    except Exception as exc:  # corrupt or foreign file: say which and what to do
        raise ValueError(f"{weights}: cannot be read as a state dict ({exc}); re-run the training stage") from None
    return state, read_json(meta)
