"""The one training loop of personlab: every training stage (BoT, the teacher, RRID, DG-Net, VoxelPose) runs here.

A stage describes *what* to train as a :class:`Task`; :func:`fit` decides *how*: device, mixed precision,
channels_last, DDP under ``torchrun``, SyncBN, resumable checkpoints, per-epoch curves (dvclive), a progress
bar, ``metrics/train/<stage>.json`` and a NaN/inf guard. The engine saves nothing model-specific: after
:func:`fit` the stage writes ``models/<stage>/`` itself (rank 0 only) from ``result.modules``.

Contract (the lifecycle :func:`fit` drives)::

    ctx = Context(...)                          # device, rank, world size, AMP, seed
    raw = task.build_modules(ctx)               # {name: nn.Module}, fresh, seeded from common.seed
    #   engine: .to(device) (+ channels_last on CUDA), SyncBN under DDP if train.sync_bn
    ctx.raw_modules = raw
    ctx.optimizers = task.build_optimizers(ctx) # from ctx.raw_modules' parameters
    ctx.schedulers = task.build_schedulers(ctx) # optional; stepped per task.scheduler_interval
    #   engine: resume from checkpoints/<stage>/last.pt if its digest matches, then DDP-wrap
    ctx.modules = {name: DDP(module) or module}
    for epoch in remaining epochs:              # ctx.epoch is 0-based
        reseed python/numpy/torch from (seed, epoch, rank)
        for batch in task.batches(epoch, ctx):
            zero every optimizer's gradients
            terms = task.train_step(batch, ctx) # {"ce": loss, "tri": loss, ...}; does its own update(s)
            scaler.update(); iteration schedulers step; ctx.iteration += 1
        epoch schedulers step; curves logged; checkpoint every train.checkpoint_every epochs

Inside ``train_step`` a task forwards through ``ctx.modules[name]`` (DDP-wrapped under torchrun; use
``ctx.raw_modules[name]`` for a forward whose gradients must not be all-reduced, e.g. DG-Net's discriminator
inside the generator update), wraps forwards in ``with ctx.autocast():`` and updates with
``ctx.backward(loss)`` then ``ctx.step(optimizer, ...)``. Several updates per iteration are fine (DG-Net: D then
G+E_a): :meth:`Context.step` zeroes the gradients of the optimizers it stepped, so the next update starts
clean. Centre-loss style extra parameters get their own optimizer; rescale their ``.grad`` between
``ctx.backward`` and ``ctx.step`` (valid under a GradScaler too, since unscaling is linear).

Reproducibility: each epoch's randomness is a function of (seed, epoch, rank) only (global RNGs reseeded at
epoch start; ``personlab.data.loader`` seeds its sampler and augmentation the same way), so a run stopped after
epoch k and resumed ends bit-for-bit where an uninterrupted run ends. The checkpoint therefore holds the
modules, optimizers, schedulers, GradScaler, the iteration counter, the task's own state, the curve history
and the params digest; the RNG state needs no blob of its own because it is re-derived from (seed, epoch).
"""

from __future__ import annotations

import abc
import contextlib
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Literal

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from personlab import runtime
from personlab.io import atomic_path, write_json
from personlab.params import Common, TrainLoop

__all__ = ["Context", "Task", "TrainResult", "derive_seed", "fit"]

CHECKPOINT_FORMAT = 1


def derive_seed(seed: int, *parts: int) -> int:
    """A 63-bit seed from ``seed`` and integers (epoch, rank, stream...): independent streams, no collisions."""
    state = np.random.SeedSequence([seed, *parts]).generate_state(2, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1


@dataclass
class Context:
    """What a task sees: where it runs, which epoch/iteration it is, and the update helpers."""

    stage: str
    device: torch.device
    seed: int
    rank: int = 0
    world_size: int = 1
    amp_dtype: torch.dtype | None = None  # None: fp32 (always on CPU)
    channels_last: bool = False  # True only on CUDA with train.channels_last
    epoch: int = 0  # 0-based epoch being trained
    step_in_epoch: int = 0  # 0-based step within the epoch
    iteration: int = 0  # completed iterations before this step, over all epochs (survives resume)
    modules: dict[str, nn.Module] = field(default_factory=dict)  # for forwards (DDP-wrapped under torchrun)
    raw_modules: dict[str, nn.Module] = field(default_factory=dict)  # unwrapped: parameters, state dicts
    optimizers: dict[str, torch.optim.Optimizer] = field(default_factory=dict)
    schedulers: dict[str, Any] = field(default_factory=dict)
    scaler: torch.amp.GradScaler | None = None  # only with train.amp = fp16 on CUDA

    @property
    def is_main(self) -> bool:
        """Rank 0: the only process that writes files."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> contextlib.AbstractContextManager:
        """Mixed precision for a forward pass (bf16/fp16 on CUDA per train.amp); a no-op in fp32."""
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.amp_dtype)

    def backward(self, loss: torch.Tensor) -> None:
        """Backward pass, scaled by the GradScaler when training in fp16."""
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def step(self, *optimizers: torch.optim.Optimizer, clip_grad_norm: float | None = None) -> None:
        """Step each optimizer (through the GradScaler in fp16), optionally clipping, then zero its gradients."""
        for opt in optimizers:
            if clip_grad_norm is not None:
                if self.scaler is not None:
                    self.scaler.unscale_(opt)
                params = [p for group in opt.param_groups for p in group["params"] if p.grad is not None]
                torch.nn.utils.clip_grad_norm_(params, clip_grad_norm)
            if self.scaler is not None:
                self.scaler.step(opt)
            else:
                opt.step()
            opt.zero_grad(set_to_none=True)


class Task(abc.ABC):
    """Base class of a training task. Override the ``build_*`` methods, ``batches`` and ``train_step``.

    ``scheduler_interval`` says when the engine steps ``ctx.schedulers``: after every epoch (BoT's warm-up
    multi-step schedule) or after every iteration (DG-Net).
    """

    scheduler_interval: Literal["epoch", "iteration"] = "epoch"
    find_unused_parameters: bool = False  # passed to DDP for modules some steps do not use

    @abc.abstractmethod
    def build_modules(self, ctx: Context) -> dict[str, nn.Module]:
        """Fresh trainable modules by name (on CPU is fine; the engine moves them to ``ctx.device``)."""

    @abc.abstractmethod
    def build_optimizers(self, ctx: Context) -> dict[str, torch.optim.Optimizer]:
        """Optimizers by name over ``ctx.raw_modules``' parameters (already on the device)."""

    def build_schedulers(self, ctx: Context) -> dict[str, Any]:
        """LR schedulers by name over ``ctx.optimizers``; none by default."""
        return {}

    @abc.abstractmethod
    def batches(self, epoch: int, ctx: Context) -> Iterable[Any]:
        """This rank's batches of ``epoch``; must depend only on (seed, epoch, rank) for bit-exact resume."""

    @abc.abstractmethod
    def train_step(self, batch: Any, ctx: Context) -> dict[str, torch.Tensor]:
        """One iteration including its update(s); returns the loss terms to log (scalars, by name)."""

    def num_images(self, batch: Any) -> int:
        """Images this rank processed in ``batch`` (for images/s); ``len(batch)`` by default."""
        return len(batch)

    def state_dict(self) -> dict[str, Any]:
        """Extra task state to checkpoint (tensors, numbers, strings, lists, dicts); none by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`state_dict` returned."""


@dataclass
class TrainResult:
    """What :func:`fit` hands back: the trained (unwrapped) modules and the summary it wrote."""

    modules: dict[str, nn.Module]
    metrics: dict[str, Any]
    history: list[dict[str, float]]
    is_main: bool


def _say(ctx: Context, message: str) -> None:
    if ctx.is_main:
        print(f"[personlab.engine] {ctx.stage}: {message}", file=sys.stderr, flush=True)


def _init_distributed(device_name: str) -> tuple[int, int]:
    """Join the process group torchrun describes (env RANK/WORLD_SIZE); (0, 1) when not under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        use_nccl = device_name != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        dist.init_process_group(backend="nccl" if use_nccl else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _amp_dtype(loop: TrainLoop, device: torch.device) -> torch.dtype | None:
    if device.type != "cuda" or loop.amp == "off":
        return None
    return torch.bfloat16 if loop.amp == "bf16" else torch.float16


def _prepare_modules(raw: dict[str, nn.Module], ctx: Context, loop: TrainLoop) -> dict[str, nn.Module]:
    if not raw:
        raise ValueError(f"{ctx.stage}: build_modules returned no modules; a task must train something")
    out = {}
    for name, module in raw.items():
        if not isinstance(module, nn.Module):
            raise TypeError(f"{ctx.stage}: build_modules()[{name!r}] is {type(module).__name__}, not an nn.Module")
        if loop.sync_bn and ctx.distributed:
            module = nn.SyncBatchNorm.convert_sync_batchnorm(module)
        module = module.to(ctx.device)
        if ctx.channels_last:
            module = module.to(memory_format=torch.channels_last)
        out[name] = module
    return out


def _wrap_ddp(ctx: Context, find_unused: bool) -> dict[str, nn.Module]:
    if not ctx.distributed:
        return dict(ctx.raw_modules)
    wrapped = {}
    for name, module in ctx.raw_modules.items():
        if any(p.requires_grad for p in module.parameters()):
            ids = [ctx.device.index] if ctx.device.type == "cuda" else None
            wrapped[name] = nn.parallel.DistributedDataParallel(
                module, device_ids=ids, find_unused_parameters=find_unused
            )
        else:
            wrapped[name] = module
    return wrapped


# ---------------------------------------------------------------------------------------------- checkpoints


def checkpoint_path(root: Path, stage: str) -> Path:
    return root / "checkpoints" / stage / "last.pt"


def _checkpoint_state(ctx: Context, task: Task, digest: str, epochs_done: int, history: list) -> dict:
    return {
        "format": CHECKPOINT_FORMAT,
        "stage": ctx.stage,
        "params_digest": digest,
        "epoch": epochs_done,
        "iteration": ctx.iteration,
        "world_size": ctx.world_size,
        "modules": {n: m.state_dict() for n, m in ctx.raw_modules.items()},
        "optimizers": {n: o.state_dict() for n, o in ctx.optimizers.items()},
        "schedulers": {n: s.state_dict() for n, s in ctx.schedulers.items()},
        "scaler": ctx.scaler.state_dict() if ctx.scaler is not None else {},
        "task": task.state_dict(),
        "history": history,
    }


def _read_checkpoint(path: Path, ctx: Context, digest: str, epochs: int) -> dict | None:
    """The checkpoint at ``path`` if it belongs to this run (same params, unfinished), else None with a message."""
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a torn or foreign file must not block training: say so and start over
        _say(ctx, f"ignoring unreadable checkpoint {path} ({exc}); training from scratch")
        return None
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        _say(ctx, f"ignoring {path}: not a personlab engine checkpoint; training from scratch")
        return None
    if state.get("params_digest") != digest:
        _say(
            ctx,
            f"ignoring {path}: written with params digest {state.get('params_digest')}, now {digest} "
            "(params changed); training from scratch",
        )
        return None
    if state["epoch"] >= epochs:
        _say(ctx, f"ignoring {path}: it is from a finished run ({state['epoch']} epochs); training from scratch")
        return None
    if state.get("world_size") != ctx.world_size:
        _say(
            ctx,
            f"ignoring {path}: written by {state.get('world_size')} processes, now {ctx.world_size} "
            "(the per-rank data order would differ); training from scratch",
        )
        return None
    return state


def _mismatch(state: dict, ctx: Context) -> str | None:
    """Why ``state`` cannot be loaded into the task's modules/optimizers (code changed), or None."""
    for kind, current in (("modules", ctx.raw_modules), ("optimizers", ctx.optimizers), ("schedulers", ctx.schedulers)):
        if sorted(state[kind]) != sorted(current):
            return f"{kind} {sorted(state[kind])} != {sorted(current)}"
    for name, module in ctx.raw_modules.items():
        mine = {k: tuple(v.shape) for k, v in module.state_dict().items()}
        saved = {k: tuple(v.shape) for k, v in state["modules"][name].items()}
        if mine != saved:
            diff = sorted(set(mine.items()) ^ set(saved.items()))[:3]
            return f"module {name!r} differs ({diff} ...)"
    for name, opt in ctx.optimizers.items():
        saved_groups = state["optimizers"][name]["param_groups"]
        if [len(g["params"]) for g in saved_groups] != [len(g["params"]) for g in opt.param_groups]:
            return f"optimizer {name!r} has different parameter groups"
    return None


def _load_checkpoint(state: dict, ctx: Context, task: Task) -> None:
    for name, module in ctx.raw_modules.items():
        module.load_state_dict(state["modules"][name])
    for name, opt in ctx.optimizers.items():
        opt.load_state_dict(state["optimizers"][name])
    for name, sched in ctx.schedulers.items():
        sched.load_state_dict(state["schedulers"][name])
    if ctx.scaler is not None and state["scaler"]:
        ctx.scaler.load_state_dict(state["scaler"])
    task.load_state_dict(state["task"])
    ctx.iteration = int(state["iteration"])


def _broadcast(obj: Any, ctx: Context) -> Any:
    """Rank 0's ``obj`` on every rank (only rank 0 touches the checkpoint folder)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


# ---------------------------------------------------------------------------------------------- the loop


def _terms_to_tensor(terms: dict[str, torch.Tensor], names: list[str], ctx: Context) -> torch.Tensor:
    if sorted(terms) != sorted(names):
        raise ValueError(
            f"{ctx.stage}: train_step returned loss terms {sorted(terms)} at epoch {ctx.epoch + 1}, step "
            f"{ctx.step_in_epoch + 1}, but {sorted(names)} before; return the same terms every step"
        )
    return torch.stack([torch.as_tensor(terms[n], device=ctx.device).detach().float().reshape(()) for n in names])


def _nonfinite_error(ctx: Context, names: list[str], rows: torch.Tensor, first_step: int) -> FloatingPointError:
    bad = (~torch.isfinite(rows)).any(dim=1).nonzero()
    if len(bad) == 0:
        return FloatingPointError(
            f"{ctx.stage}: a non-finite loss on another rank near epoch {ctx.epoch + 1}, step "
            f"{first_step + 1}; see that rank's message"
        )
    i = int(bad[0])
    values = ", ".join(f"{n}={v:.6g}" for n, v in zip(names, rows[i].tolist()))
    return FloatingPointError(
        f"{ctx.stage}: non-finite loss at epoch {ctx.epoch + 1}, step {first_step + i + 1} "
        f"(iteration {ctx.iteration - len(rows) + i + 1}): {values}. Training stopped; lower the learning rate, "
        "use train.amp: bf16 or off, or check the input data"
    )


def _check_finite(buffer: list[torch.Tensor], names: list[str], first_step: int, ctx: Context) -> None:
    """Read back the buffered loss rows (one sync) and stop every rank if any is NaN/inf."""
    rows = torch.stack(buffer).cpu()
    flag = torch.tensor([0.0 if bool(torch.isfinite(rows).all()) else 1.0], device=ctx.device)
    if ctx.distributed:
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() > 0:
        raise _nonfinite_error(ctx, names, rows, first_step)


def _learning_rates(ctx: Context) -> dict[str, float]:
    out = {}
    for name, opt in ctx.optimizers.items():
        lrs = [float(g["lr"]) for g in opt.param_groups]
        if len(set(lrs)) == 1:
            out[f"lr/{name}"] = lrs[0]
        else:
            out.update({f"lr/{name}.{i}": lr for i, lr in enumerate(lrs)})
    return out


def _run_epoch(task: Task, ctx: Context, loop: TrainLoop, epochs: int) -> dict[str, float]:
    """Train one epoch; return its curve row (mean loss terms, learning rates, images/s, seconds)."""
    from tqdm import tqdm

    runtime.seed_everything(derive_seed(ctx.seed, ctx.epoch, ctx.rank))
    for module in ctx.raw_modules.values():
        module.train()
    lrs = _learning_rates(ctx)
    batches = task.batches(ctx.epoch, ctx)
    total = len(batches) if hasattr(batches, "__len__") else None
    bar = tqdm(
        total=total, desc=f"{ctx.stage} {ctx.epoch + 1}/{epochs}", disable=not (ctx.is_main and loop.progress),
        leave=False, dynamic_ncols=True, file=sys.stderr,
    )
    names: list[str] = []
    sums: torch.Tensor | None = None
    buffer: list[torch.Tensor] = []
    buffer_start = 0
    images = 0
    steps = 0
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    start = time.perf_counter()
    for step, batch in enumerate(batches):
        ctx.step_in_epoch = step
        for opt in ctx.optimizers.values():
            opt.zero_grad(set_to_none=True)
        terms = task.train_step(batch, ctx)
        if not names:
            if not terms:
                raise ValueError(f"{ctx.stage}: train_step returned no loss terms; return at least the total loss")
            names = sorted(terms)
        row = _terms_to_tensor(terms, names, ctx)
        sums = row if sums is None else sums + row
        buffer.append(row)
        if ctx.scaler is not None:
            ctx.scaler.update()
        if task.scheduler_interval == "iteration":
            for sched in ctx.schedulers.values():
                sched.step()
        ctx.iteration += 1
        images += task.num_images(batch)
        steps += 1
        if len(buffer) >= loop.log_every:
            _check_finite(buffer, names, buffer_start, ctx)
            bar.set_postfix({n: f"{v:.4g}" for n, v in zip(names, buffer[-1].tolist())}, refresh=False)
            buffer, buffer_start = [], step + 1
        bar.update(1)
    if buffer:
        _check_finite(buffer, names, buffer_start, ctx)
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    seconds = time.perf_counter() - start
    bar.close()
    if steps == 0:
        raise ValueError(
            f"{ctx.stage}: epoch {ctx.epoch + 1} produced no batches; the training set is smaller than one batch "
            "(lower the batch size or add identities)"
        )
    counts = torch.tensor([float(steps), float(images), seconds], device=ctx.device, dtype=torch.float64)
    sums = sums.to(torch.float64)
    if ctx.distributed:
        dist.all_reduce(sums)
        dist.all_reduce(counts)
    if task.scheduler_interval == "epoch":
        for sched in ctx.schedulers.values():
            sched.step()
    steps_all, images_all, seconds_all = counts.tolist()
    row = {f"loss/{n}": v / steps_all for n, v in zip(names, sums.tolist())}
    row.update(lrs)
    wall = seconds_all / ctx.world_size
    row.update(
        {"images_per_s": images_all / wall, "seconds": wall, "images": images_all, "steps": steps_all / ctx.world_size}
    )
    return row


def _log_row(live: Any, epoch: int, row: dict[str, float]) -> None:
    live.step = epoch
    for key, value in row.items():
        if key not in ("seconds", "images", "steps"):
            live.log_metric(key, value)
    live.next_step()


def _summary(history: list[dict[str, float]], ctx: Context) -> dict[str, Any]:
    last = history[-1]
    images = sum(r["images"] for r in history)
    wall = sum(r["seconds"] for r in history)
    return {
        "epochs": len(history),
        "iterations": ctx.iteration,
        "world_size": ctx.world_size,
        "loss": {k.split("/", 1)[1]: v for k, v in last.items() if k.startswith("loss/")},
        "images_per_s": images / wall if wall > 0 else 0.0,
        "wall_s": wall,
    }


def fit(
    task: Task,
    *,
    stage: str,
    common: Common,
    loop: TrainLoop,
    digest: str,
    root: str | Path = ".",
) -> TrainResult:
    """Train ``task`` for ``loop.epochs`` epochs, resuming from ``checkpoints/<stage>/`` when it matches ``digest``.

    ``digest`` ties checkpoints to their params (use ``personlab.params.section_digest`` of every section the
    stage reads). Writes, on rank 0 and under ``root``: ``checkpoints/<stage>/last.pt``, ``dvclive/<stage>/``
    and ``metrics/train/<stage>.json``. Raises ``FloatingPointError`` naming epoch, step and loss terms when a
    loss becomes NaN/inf.
    """
    root = Path(root)
    rank, world = _init_distributed(common.device)
    try:
        device = runtime.setup(common)
        ctx = Context(
            stage=stage,
            device=device,
            seed=common.seed,
            rank=rank,
            world_size=world,
            amp_dtype=_amp_dtype(loop, device),
            channels_last=loop.channels_last and device.type == "cuda",
        )
        if ctx.amp_dtype == torch.float16:
            ctx.scaler = torch.amp.GradScaler("cuda")
        ctx.raw_modules = _prepare_modules(task.build_modules(ctx), ctx, loop)
        ctx.optimizers = dict(task.build_optimizers(ctx))
        ctx.schedulers = dict(task.build_schedulers(ctx))

        history: list[dict[str, float]] = []
        state = _read_checkpoint(checkpoint_path(root, stage), ctx, digest, loop.epochs) if ctx.is_main else None
        if state is not None:
            reason = _mismatch(state, ctx)
            if reason:
                where = checkpoint_path(root, stage)
                _say(ctx, f"ignoring {where}: it does not fit this model ({reason}); training from scratch")
                state = None
        state = _broadcast(state, ctx)
        if state is not None:
            _load_checkpoint(state, ctx, task)
            history = list(state["history"])
            _say(ctx, f"resuming after epoch {state['epoch']} from {checkpoint_path(root, stage)}")
        del state
        ctx.modules = _wrap_ddp(ctx, task.find_unused_parameters)

        live = None
        if ctx.is_main:
            from dvclive import Live

            live = Live(str(root / "dvclive" / stage), dvcyaml=False, save_dvc_exp=False, report=None)
            for epoch, row in enumerate(history):  # the curve so far, so a resumed run's plots are whole
                _log_row(live, epoch, row)

        for epoch in range(len(history), loop.epochs):
            ctx.epoch = epoch
            row = _run_epoch(task, ctx, loop, loop.epochs)
            history.append(row)
            if live is not None:
                _log_row(live, epoch, row)
            done = epoch + 1
            if ctx.is_main and (done % loop.checkpoint_every == 0 or done == loop.epochs):
                path = checkpoint_path(root, stage)
                with atomic_path(path) as tmp:
                    torch.save(_checkpoint_state(ctx, task, digest, done, history), tmp)
            losses = ", ".join(f"{k[5:]} {v:.4f}" for k, v in row.items() if k.startswith("loss/"))
            _say(ctx, f"epoch {done}/{loop.epochs}: {losses}; {row['images_per_s']:.1f} images/s")

        metrics = _summary(history, ctx)
        if ctx.is_main:
            live.end()
            write_json(root / "metrics" / "train" / f"{stage}.json", metrics)
        if ctx.distributed:
            dist.barrier()
        return TrainResult(modules=ctx.raw_modules, metrics=metrics, history=history, is_main=ctx.is_main)
    finally:
        if world > 1 and dist.is_initialized():
            dist.destroy_process_group()
