"""Training tasks of the two re-ID baselines for ``personlab.engine``: BoT (stage ``baseline``) and layumi's
``ft_net`` (stage ``teacher``), plus the ``model.json`` metadata every re-ID checkpoint carries.

A task only says *what* to train (modules, optimizers, schedules, batches, one update); the engine runs the
loop, checkpoints and logs. Both read the decoded image store and the batched augmentation of
``personlab.data.loader``; the BoT task uses its PK sampler, the teacher plain shuffled batches.
"""

from __future__ import annotations

import hashlib
import json
import sys
from dataclasses import replace
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F

import personlab
from personlab.data.loader import Batch, EpochBatches, ImageStore, ReidLoader
from personlab.data.openreid import ReidSplit, SplitError, load_reid_split
from personlab.engine import Context, Task, fit
from personlab.io import save_checkpoint
from personlab.losses import CenterLoss, batch_hard_triplet_loss, label_smoothed_cross_entropy
from personlab.models.bot import Baseline, warmup_multistep_factor
from personlab.models.ide import FtNet
from personlab.models.relation import PARTITIONS, RelationNet
from personlab.models.resnet import PretrainedWeightsError, load_pretrained
from personlab.models.state import CheckpointMismatch
from personlab.params import (
    BaselineParams,
    ParamsError,
    ReidInput,
    RelationParams,
    TeacherParams,
    load_section,
    section_digest,
)

__all__ = ["BotTask", "FtNetTask", "reid_meta", "run_stage", "split_digest"]


def split_digest(split: ReidSplit) -> dict[str, str]:
    """A digest of the training records, mixed into the params digest so that a checkpoint of another
    dataset (same params, new data) is never resumed."""
    blob = json.dumps([list(r) for r in split.train], separators=(",", ":"))
    return {"train_records": hashlib.sha256(blob.encode()).hexdigest()[:16]}


def reid_meta(
    arch: str,
    arch_kwargs: dict[str, Any],
    split: ReidSplit,
    cfg: ReidInput,
    embedding_parts: list[int],
    digest: str,
    stage: str,
) -> dict[str, Any]:
    """The ``model.json`` of a re-ID checkpoint (the contract ``personlab.models.load_model`` and the
    evaluator read): how to rebuild the net, its labels, and how its inputs were prepared."""
    return {
        "arch": arch,
        "arch_kwargs": arch_kwargs,
        "num_classes": split.num_classes,
        "pid2label": {str(pid): label for pid, label in sorted(split.pid2label.items())},
        "input_size": list(cfg.size),
        "interpolation": cfg.interpolation,
        "mean": list(cfg.mean),
        "std": list(cfg.std),
        "embedding_parts": embedding_parts,
        "params_digest": digest,
        "personlab_version": personlab.__version__,
        "stage": stage,
    }


class _ReidTask(Task):
    """Shared input path: the training images decoded once, the loader made when the engine knows the device."""

    def __init__(self, split: ReidSplit, cfg: ReidInput) -> None:
        self.split = split
        self.cfg = cfg
        self.store = ImageStore.from_records(split.root, split.train, cfg.size, cfg.interpolation, split.pid2label)
        self.loader: ReidLoader | None = None

    def batches(self, epoch: int, ctx: Context) -> EpochBatches:
        if self.loader is None:
            self.loader = ReidLoader(
                self.store, self.cfg, seed=ctx.seed, device=ctx.device, rank=ctx.rank,
                world_size=ctx.world_size, channels_last=ctx.channels_last,
            )
        return self.loader.epoch(epoch)


class BotTask(_ReidTask):
    """BoT: ``LS-CE(logits of the post-BN feature) + triplet(pre-BN) + β·center(pre-BN)``, Adam, per-epoch
    warm-up multi-step LR; the centers have their own SGD whose gradient is rescaled by 1/β."""

    scheduler_interval = "epoch"

    def __init__(self, params: BaselineParams, split: ReidSplit) -> None:
        super().__init__(split, params.input)
        self.params = params
        self.find_unused_parameters = params.loss.id_weight == 0  # the classifier then gets no gradient
        m = params.model
        self.arch_kwargs = {
            "num_classes": split.num_classes, "depth": m.depth, "last_stride": m.last_stride,
            "stem_relu": m.stem_relu, "neck": m.neck, "neck_feat": m.neck_feat,
        }

    def build_modules(self, ctx: Context) -> dict[str, nn.Module]:
        model = Baseline(**self.arch_kwargs)
        load_pretrained(model.backbone, self.params.model.pretrained)
        modules: dict[str, nn.Module] = {"model": model}
        if self.params.loss.center_weight > 0:
            modules["center"] = CenterLoss(self.split.num_classes, model.backbone.out_channels)
        return modules

    def build_optimizers(self, ctx: Context) -> dict[str, torch.optim.Optimizer]:
        o = self.params.optim
        trainable = [p for p in ctx.raw_modules["model"].parameters() if p.requires_grad]  # not the frozen BN bias
        optimizers = {"model": torch.optim.Adam(trainable, lr=o.lr, weight_decay=o.weight_decay)}
        if "center" in ctx.raw_modules:
            optimizers["center"] = torch.optim.SGD(ctx.raw_modules["center"].parameters(), lr=self.params.loss.center_lr)
        return optimizers

    def build_schedulers(self, ctx: Context) -> dict[str, Any]:
        o = self.params.optim

        def factor(epoch: int) -> float:
            return warmup_multistep_factor(epoch, o.milestones, o.gamma, o.warmup_factor, o.warmup_epochs)

        return {"model": torch.optim.lr_scheduler.LambdaLR(ctx.optimizers["model"], factor)}

    def train_step(self, batch: Batch, ctx: Context) -> dict[str, torch.Tensor]:
        loss_cfg = self.params.loss
        with ctx.autocast():
            logits, feat = ctx.modules["model"](batch.images)
        terms: dict[str, torch.Tensor] = {}
        total = torch.zeros((), device=ctx.device)
        if loss_cfg.id_weight > 0:
            terms["id"] = label_smoothed_cross_entropy(logits, batch.labels, loss_cfg.label_smoothing)
            total = total + loss_cfg.id_weight * terms["id"]
        if loss_cfg.triplet_weight > 0:
            terms["triplet"] = batch_hard_triplet_loss(feat, batch.labels, loss_cfg.triplet_margin)
            total = total + loss_cfg.triplet_weight * terms["triplet"]
        if "center" in ctx.modules:
            terms["center"] = ctx.modules["center"](feat, batch.labels)
            total = total + loss_cfg.center_weight * terms["center"]
        ctx.backward(total)
        if "center" in ctx.modules:
            ctx.raw_modules["center"].unscale_grad(loss_cfg.center_weight)
        ctx.step(*ctx.optimizers.values())
        terms["total"] = total
        return {name: value.detach() for name, value in terms.items()}

    def meta(self, digest: str) -> dict[str, Any]:
        dim = 2048 if self.params.model.depth >= 50 else 512
        return reid_meta("bot", self.arch_kwargs, self.split, self.cfg, [dim], digest, "baseline")


class FtNetTask(_ReidTask):
    """layumi ``ft_net``: cross-entropy, SGD (Nesterov) with the backbone at ``backbone_lr_mult``× the head's
    rate, StepLR per epoch, and layumi's optional loss warm-up (the loss, not the LR, ramps 0.1 → 1)."""

    scheduler_interval = "epoch"

    def __init__(self, params: TeacherParams, split: ReidSplit) -> None:
        super().__init__(split, params.input)
        self.params = params
        m = params.model
        self.arch_kwargs = {
            "num_classes": split.num_classes, "depth": m.depth, "stride": m.stride, "linear": m.linear,
            "droprate": m.droprate,
        }
        self.steps_per_epoch = 0

    def build_modules(self, ctx: Context) -> dict[str, nn.Module]:
        model = FtNet(**self.arch_kwargs)
        load_pretrained(model.backbone, self.params.model.pretrained)
        return {"model": model}

    def build_optimizers(self, ctx: Context) -> dict[str, torch.optim.Optimizer]:
        o = self.params.optim
        model = ctx.raw_modules["model"]
        head = [*model.add_block.parameters(), *model.classifier.parameters()]
        groups = [
            {"params": list(model.backbone.parameters()), "lr": o.lr * o.backbone_lr_mult},
            {"params": head, "lr": o.lr},
        ]
        return {
            "model": torch.optim.SGD(
                groups, lr=o.lr, momentum=o.momentum, nesterov=o.nesterov, weight_decay=o.weight_decay
            )
        }

    def build_schedulers(self, ctx: Context) -> dict[str, Any]:
        o = self.params.optim
        return {"model": torch.optim.lr_scheduler.StepLR(ctx.optimizers["model"], o.step_size, o.gamma)}

    def batches(self, epoch: int, ctx: Context) -> EpochBatches:
        batches = super().batches(epoch, ctx)
        self.steps_per_epoch = len(batches)
        return batches

    def loss_warmup(self, iteration: int) -> float:
        """layumi's warm-up factor at 0-based ``iteration``: 0.1 + 0.9·(i+1)/(warm_epochs·steps), capped at 1."""
        warm_iterations = self.params.optim.warm_epochs * self.steps_per_epoch
        if warm_iterations == 0:
            return 1.0
        return min(1.0, 0.1 + 0.9 * (iteration + 1) / warm_iterations)

    def train_step(self, batch: Batch, ctx: Context) -> dict[str, torch.Tensor]:
        with ctx.autocast():
            logits = ctx.modules["model"](batch.images)
        ce = F.cross_entropy(logits.float(), batch.labels)
        ctx.backward(ce * self.loss_warmup(ctx.iteration))
        ctx.step(ctx.optimizers["model"])
        return {"ce": ce.detach()}

    def meta(self, digest: str) -> dict[str, Any]:
        return reid_meta("ft_net", self.arch_kwargs, self.split, self.cfg, [self.params.model.linear], digest, "teacher")


def relation_loss(
    features: list[torch.Tensor],
    logits: list[torch.Tensor],
    labels: torch.Tensor,
    margin: float,
    triplet_weight: float = 1.0,
    ce_weight: float = 2.0,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """RRID's objective: batch-hard triplet on each final feature plus cross-entropy on each head, summed."""
    triplet = torch.stack([batch_hard_triplet_loss(f, labels, margin) for f in features]).sum()
    ce = torch.stack([F.cross_entropy(z.float(), labels) for z in logits]).sum()
    return triplet_weight * triplet + ce_weight * ce, {"triplet": triplet, "ce": ce}


def held_out_ids(split: ReidSplit, num_val: int) -> set[int]:
    """RRID's ``train`` subset leaves out the last ``num_val`` training identities in sorted order."""
    pids = sorted(split.pid2label)
    if num_val >= len(pids):
        raise ValueError(f"relation.num_val: {num_val} would hold out all {len(pids)} training identities")
    return set(pids[len(pids) - num_val:]) if num_val else set()


class RelationTask(_ReidTask):
    """RRID: triplet on the 15 final features + weighted CE on the 45 heads, SGD with the backbone and the new
    layers at their own rates, multi-step decay per epoch, RRID's anchor sampler. With ``train_set: train`` the
    last ``num_val`` identities are not trained on, but the classifiers keep one output per training identity,
    as in the original."""

    scheduler_interval = "epoch"

    def __init__(self, params: RelationParams, split: ReidSplit) -> None:
        if params.train_set == "train":
            dropped = held_out_ids(split, params.num_val)
            split = replace(split, train=[r for r in split.train if r.pid not in dropped])
        super().__init__(split, params.input)
        self.params = params
        m = params.model
        self.arch_kwargs = {"num_classes": split.num_classes, "depth": m.depth, "last_stride": m.last_stride,
                            "dim": m.dim}

    def build_modules(self, ctx: Context) -> dict[str, nn.Module]:
        model = RelationNet(**self.arch_kwargs)
        load_pretrained(model.backbone, self.params.model.pretrained)
        return {"model": model}

    def build_optimizers(self, ctx: Context) -> dict[str, torch.optim.Optimizer]:
        o = self.params.optim
        model = ctx.raw_modules["model"]
        groups = [
            {"params": list(model.backbone.parameters()), "lr": o.backbone_lr},
            {"params": list(model.branches.parameters()), "lr": o.lr},
        ]
        return {"model": torch.optim.SGD(groups, lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)}

    def build_schedulers(self, ctx: Context) -> dict[str, Any]:
        o = self.params.optim
        return {"model": torch.optim.lr_scheduler.MultiStepLR(ctx.optimizers["model"], list(o.milestones), o.gamma)}

    def train_step(self, batch: Batch, ctx: Context) -> dict[str, torch.Tensor]:
        loss_cfg = self.params.loss
        with ctx.autocast():
            features, logits = ctx.modules["model"](batch.images)
        total, terms = relation_loss(features, logits, batch.labels, loss_cfg.triplet_margin,
                                     loss_cfg.triplet_weight, loss_cfg.ce_weight)
        ctx.backward(total)
        ctx.step(ctx.optimizers["model"])
        return {"total": total.detach(), **{name: value.detach() for name, value in terms.items()}}

    def meta(self, digest: str) -> dict[str, Any]:
        dim = self.params.model.dim * (sum(PARTITIONS) + len(PARTITIONS))  # 12 relation + 3 global features
        return reid_meta("relation", self.arch_kwargs, self.split, self.cfg, [dim], digest, "relation")


STAGES: dict[str, type[_ReidTask]] = {"baseline": BotTask, "teacher": FtNetTask, "relation": RelationTask}


def run_stage(stage: str) -> int:
    """Stage script body: read ``common`` + the stage's section, train through the engine, write
    ``models/<stage>/`` (rank 0). Bad input ends with one ``error:`` line and exit status 1."""
    try:
        common, params = load_section("common"), load_section(stage)
        split = load_reid_split()
        task = STAGES[stage](params, split)
        digest = section_digest(common, params, split_digest(split))
        result = fit(task, stage=stage, common=common, loop=params.train, digest=digest)
    except (ParamsError, SplitError, CheckpointMismatch, PretrainedWeightsError, FileNotFoundError,
            FloatingPointError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if result.is_main:
        save_checkpoint(f"models/{stage}", result.modules["model"].state_dict(), task.meta(digest))
    return 0
