"""The training engine: bit-exact resume, DDP equals one process, NaN guard, params-digest checks, outputs."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F

from personlab import runtime
from personlab.data.loader import ImageStore, ReidLoader
from personlab.engine import Context, Task, fit
from personlab.params import Common, Erasing, ReidInput, TrainLoop

NUM_IDS, PER_ID, SIZE = 6, 4, (16, 8)
CFG = ReidInput(size=SIZE, batch_size=8, num_instances=2, pad=2, erasing=Erasing(p=0.5))
COMMON = Common(seed=3, device="cpu", deterministic=True)


def make_store() -> ImageStore:
    g = torch.Generator().manual_seed(123)
    labels = torch.arange(NUM_IDS).repeat_interleave(PER_ID)
    # each identity gets a colour so the task is learnable; noise on top
    base = torch.randint(0, 256, (NUM_IDS, 3, 1, 1), generator=g)[labels]
    noise = torch.randint(-20, 21, (len(labels), 3, *SIZE), generator=g)
    images = (base + noise).clamp(0, 255).to(torch.uint8)
    return ImageStore(images=images, labels=labels, camids=torch.zeros_like(labels))


class TinyNet(nn.Module):
    def __init__(self, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 8, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(8, 16, 3, stride=2, padding=1)
        self.drop = nn.Dropout(dropout)
        self.fc = nn.Linear(16, num_classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feat = F.relu(self.conv2(F.relu(self.conv1(x)))).mean(dim=(2, 3))
        return self.fc(self.drop(feat)), feat


class Centers(nn.Module):
    def __init__(self, num_classes: int, dim: int) -> None:
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, dim))

    def forward(self, feat: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return ((feat - self.centers[labels]) ** 2).sum(dim=1).mean()


class TinyTask(Task):
    """CE + a centre loss with its own optimizer and 1/beta gradient rescale, an epoch scheduler, dropout."""

    beta = 0.01

    def __init__(self, dropout=0.2, crash_at_epoch=None, nan_at=None, max_steps=None) -> None:
        self.store = make_store()
        self.dropout = dropout
        self.crash_at_epoch = crash_at_epoch
        self.nan_at = nan_at  # (epoch, step), both 0-based
        self.max_steps = max_steps
        self.steps_run = 0
        self.iterations_seen: list[int] = []

    def build_modules(self, ctx):
        return {"net": TinyNet(NUM_IDS, self.dropout), "centers": Centers(NUM_IDS, 16)}

    def build_optimizers(self, ctx):
        return {
            "net": torch.optim.SGD(ctx.raw_modules["net"].parameters(), lr=0.1, momentum=0.9),
            "centers": torch.optim.SGD(ctx.raw_modules["centers"].parameters(), lr=0.5),
        }

    def build_schedulers(self, ctx):
        return {"net": torch.optim.lr_scheduler.StepLR(ctx.optimizers["net"], step_size=2, gamma=0.5)}

    def batches(self, epoch, ctx):
        if epoch == self.crash_at_epoch:
            raise KeyboardInterrupt("simulated interruption")
        loader = ReidLoader(self.store, CFG, seed=ctx.seed, device=ctx.device, rank=ctx.rank, world_size=ctx.world_size)
        batches = list(loader.epoch(epoch))
        return batches[: self.max_steps] if self.max_steps else batches

    def train_step(self, batch, ctx: Context):
        self.steps_run += 1
        self.iterations_seen.append(ctx.iteration)
        with ctx.autocast():
            logits, feat = ctx.modules["net"](batch.images)
        ce = F.cross_entropy(logits, batch.labels)
        center = ctx.modules["centers"](feat, batch.labels)
        if self.nan_at == (ctx.epoch, ctx.step_in_epoch):
            ce = ce * float("nan")
        ctx.backward(ce + self.beta * center)
        ctx.raw_modules["centers"].centers.grad.mul_(1 / self.beta)
        ctx.step(ctx.optimizers["net"], ctx.optimizers["centers"])
        return {"ce": ce, "center": center}


def run(tmp: Path, task: Task, epochs: int = 3, digest: str = "d1", **loop) -> dict:
    result = fit(task, stage="tiny", common=COMMON, loop=TrainLoop(epochs=epochs, **loop), digest=digest, root=tmp)
    return {f"{name}.{k}": v.clone() for name, m in result.modules.items() for k, v in m.state_dict().items()}


def test_resume_is_bit_exact(tmp_path, capsys):
    whole = run(tmp_path / "a", TinyTask(), epochs=3)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "b", TinyTask(crash_at_epoch=2), epochs=3)
    assert (tmp_path / "b/checkpoints/tiny/last.pt").is_file()
    resumed_task = TinyTask()
    resumed = run(tmp_path / "b", resumed_task, epochs=3)
    assert "resuming after epoch 2" in capsys.readouterr().err
    assert whole.keys() == resumed.keys()
    for key in whole:
        assert torch.equal(whole[key], resumed[key]), key
    metrics_a = json.loads((tmp_path / "a/metrics/train/tiny.json").read_text())
    metrics_b = json.loads((tmp_path / "b/metrics/train/tiny.json").read_text())
    assert metrics_a["loss"] == metrics_b["loss"] and metrics_a["epochs"] == metrics_b["epochs"] == 3
    assert metrics_a["iterations"] == metrics_b["iterations"] > 0
    # the resumed run's curve is whole: 3 epochs of every term, lr and images/s
    for root in (tmp_path / "a", tmp_path / "b"):
        rows = (root / "dvclive/tiny/plots/metrics/loss/ce.tsv").read_text().strip().splitlines()
        assert [r.split("\t")[0] for r in rows[1:]] == ["0", "1", "2"]
        lr_rows = (root / "dvclive/tiny/plots/metrics/lr/net.tsv").read_text().strip().splitlines()[1:]
        assert [float(r.split("\t")[1]) for r in lr_rows] == pytest.approx([0.1, 0.1, 0.05])
    assert (tmp_path / "b/dvclive/tiny/plots/metrics/images_per_s.tsv").is_file()


def test_resume_trains_only_the_remaining_epochs(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, TinyTask(crash_at_epoch=2), epochs=3)
    full, resumed = TinyTask(), TinyTask()
    run(tmp_path / "fresh", full, epochs=3)
    run(tmp_path, resumed, epochs=3)
    assert 0 < resumed.steps_run < full.steps_run
    # the iteration counter continues where the interrupted run stopped
    assert full.iterations_seen == list(range(full.steps_run))
    assert resumed.iterations_seen == full.iterations_seen[-resumed.steps_run :]


class PerIterationSchedule(TinyTask):
    scheduler_interval = "iteration"

    def build_schedulers(self, ctx):
        return {"net": torch.optim.lr_scheduler.StepLR(ctx.optimizers["net"], step_size=1, gamma=0.5)}


def test_iteration_schedulers_step_every_iteration(tmp_path):
    task = PerIterationSchedule(max_steps=2)
    result = fit(task, stage="tiny", common=COMMON, loop=TrainLoop(epochs=2), digest="x", root=tmp_path)
    assert task.steps_run == 4
    assert [row["lr/net"] for row in result.history] == pytest.approx([0.1, 0.1 * 0.5**2])  # lr at epoch start
    assert result.history[-1]["steps"] == 2


def test_checkpoint_from_other_params_is_ignored(tmp_path, capsys):
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path, TinyTask(crash_at_epoch=2), epochs=3, digest="old")
    fresh, other = TinyTask(), TinyTask()
    reference = run(tmp_path / "ref", fresh, epochs=3, digest="new")
    capsys.readouterr()
    state = run(tmp_path, other, epochs=3, digest="new")
    err = capsys.readouterr().err
    assert "params digest old, now new" in err and "training from scratch" in err
    assert other.steps_run == fresh.steps_run  # all three epochs trained again
    assert all(torch.equal(reference[k], state[k]) for k in reference)


def test_checkpoint_is_written_atomically_with_digest(tmp_path):
    run(tmp_path, TinyTask(), epochs=2, checkpoint_every=5)
    saved = torch.load(tmp_path / "checkpoints/tiny/last.pt", weights_only=True)
    assert saved["params_digest"] == "d1" and saved["epoch"] == 2  # the last epoch is always checkpointed
    assert set(saved["optimizers"]) == {"net", "centers"} and set(saved["schedulers"]) == {"net"}
    assert [p.name for p in (tmp_path / "checkpoints/tiny").iterdir()] == ["last.pt"]  # no temp files left


def test_nan_guard_names_epoch_step_and_terms(tmp_path):
    with pytest.raises(FloatingPointError) as info:
        run(tmp_path, TinyTask(nan_at=(1, 2)), epochs=3, log_every=2)
    message = str(info.value)
    assert "epoch 2, step 3" in message and "ce=nan" in message and "center=" in message
    assert not (tmp_path / "metrics/train/tiny.json").exists()


def test_metrics_summary(tmp_path):
    task = TinyTask()
    run(tmp_path, task, epochs=2)
    metrics = json.loads((tmp_path / "metrics/train/tiny.json").read_text())
    assert set(metrics) == {"epochs", "iterations", "world_size", "loss", "images_per_s", "wall_s"}
    assert set(metrics["loss"]) == {"ce", "center"}
    assert metrics["iterations"] == task.steps_run and metrics["world_size"] == 1
    assert metrics["images_per_s"] > 0 and metrics["wall_s"] > 0


# ---------------------------------------------------------------------------------------------- DDP


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, root: str) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    state = run(Path(root), TinyTask(dropout=0.0, max_steps=1), epochs=1)
    torch.save(state, Path(root) / f"state{rank}.pt")


def test_ddp_two_processes_match_one_process(tmp_path):
    single = run(tmp_path / "single", TinyTask(dropout=0.0, max_steps=1), epochs=1)
    mp.spawn(_ddp_worker, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    for rank in (0, 1):
        ddp = torch.load(tmp_path / f"state{rank}.pt", weights_only=True)
        for key, value in single.items():
            torch.testing.assert_close(ddp[key], value, rtol=0, atol=1e-5, msg=key)
    runtime.seed_everything(COMMON.seed)  # what fit does before build_modules: the initial weights
    initial = TinyNet(NUM_IDS, 0.0).fc.weight
    assert (single["net.fc.weight"] - initial).abs().max() > 1e-3  # the step did change the weights
    metrics = json.loads((tmp_path / "metrics/train/tiny.json").read_text())
    assert metrics["world_size"] == 2


def test_context_step_clips_then_zeroes_gradients():
    ctx = Context(stage="t", device=torch.device("cpu"), seed=0)
    w = nn.Parameter(torch.zeros(4))
    opt = torch.optim.SGD([w], lr=1.0)
    ctx.backward((w * torch.tensor([3.0, 4.0, 0.0, 0.0])).sum())  # gradient (3, 4, 0, 0), norm 5
    ctx.step(opt, clip_grad_norm=1.0)
    torch.testing.assert_close(w.detach(), torch.tensor([-0.6, -0.8, 0.0, 0.0]))  # clipped to norm 1
    assert w.grad is None
