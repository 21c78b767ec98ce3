"""Process set-up shared by every stage: seeds, threads, determinism and the device."""

from __future__ import annotations

import os
import random

import numpy as np

__all__ = ["seed_everything", "select_device", "setup"]


def seed_everything(seed: int) -> None:
    """Seed Python, numpy and torch (all devices) so the same params give the same numbers."""
    import torch

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def select_device(name: str) -> "torch.device":
    """``auto`` picks CUDA when present; under torchrun each rank takes its ``LOCAL_RANK`` GPU."""
    import torch

    if name == "cpu" or (name == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError("common.device is 'cuda' but no CUDA device is visible; set common.device: auto or cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))


def setup(common) -> "torch.device":
    """Apply ``common`` (a :class:`personlab.params.Common`): threads, determinism, seed; return the device."""
    import torch

    if common.num_threads:
        torch.set_num_threads(common.num_threads)
    if common.deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    else:
        torch.backends.cudnn.benchmark = True
    seed_everything(common.seed)
    return select_device(common.device)
