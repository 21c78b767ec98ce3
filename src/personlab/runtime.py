"""Process set-up shared by every stage: seeds, threads, determinism and the device."""

from __future__ import annotations

import contextlib
import os
import random
import sys
from typing import Callable, Iterator, Mapping

import numpy as np

__all__ = ["one_cpu_thread", "run_item", "seed_everything", "select_device", "setup"]


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


@contextlib.contextmanager
def one_cpu_thread(device: "torch.device") -> Iterator[None]:
    """Run a block of cheap, memory-bound CPU ops on one thread, then restore the thread count.

    Batch building and ranking bookkeeping are a few passes over memory; spread over OpenMP threads each op
    pays a barrier, which on a busy machine costs more than the op itself (measured on 2 cores at load 7-9:
    10-50x slower with 2 threads than with 1). CUDA work is unaffected; model steps keep all threads.
    """
    import torch

    if device.type != "cpu":
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def run_item(script: str, argv: list[str], items: Mapping[str, Callable[[], None]],
             user_errors: tuple[type[Exception], ...]) -> int:
    """Entry of a stage that DVC runs once per item (``python stages/download.py reid``): run ``items[argv[0]]``.

    ``user_errors`` (bad params, a missing, corrupt or mis-laid-out dataset) end as one line on stderr and exit
    status 1; anything else is a bug and keeps its traceback.
    """
    if len(argv) != 1 or argv[0] not in items:
        print(f"usage: python {script} {{{'|'.join(items)}}}", file=sys.stderr)
        return 2
    try:
        items[argv[0]]()
    except user_errors as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0
