"""Training VoxelPose on synthetic multi-view heatmaps, as a task of :mod:`personlab.engine`.

Campus/Shelf training (spec §3.2): every sample is a fresh synthetic scene (people from the pose database
placed in the capture space, projected into the dataset's own camera rig, drawn as input heatmaps), so the
data is infinite; here it is seeded per (seed, epoch, index) so runs are reproducible and resumable.

Optimisation: one Adam at a constant rate over CPN and PRN, one step per iteration on ``loss_3d +
loss_cord`` (mmpose's choice, which reproduces the published PCP; the original's 4-step CPN accumulation
trick is not reproduced, spec §1.9). The two losses touch disjoint parameters, so summing them does not mix
their scales under Adam.

Panoptic training (spec §1.2, §4.2) reads images instead: :class:`PanopticTask` feeds every training frame of
the split (letterboxed, normalised) through the PoseResNet backbone to heatmaps, then the same CPN/PRN losses
with the frame's bodies as targets (root = Panoptic joint 2, visibility from the confidences). The backbone
is frozen and out of Adam as published, or trained on ``loss_2d`` with ``voxelpose.train_backbone``; either
way ``loss_2d`` is logged. An epoch is every training frame (``optim.samples_per_epoch`` applies to the
synthetic Campus/Shelf samples only).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from personlab import __version__ as personlab_version
from personlab.engine import Context, Task, derive_seed, fit
from personlab.io import read_json, save_checkpoint
from personlab.params import Common, ParamsError, VoxelPoseParams, section_digest, to_dict
from personlab.pose import panoptic
from personlab.pose.convert import import_pose_resnet, import_voxelpose
from personlab.pose.datasets import PanopticFrames, PoseSplit, load_panoptic_split, load_pose_split
from personlab.pose.synthetic import SyntheticTrainSet, TrainSample
from personlab.pose.volume import ViewRig, rig_for_split
from personlab.pose.voxelpose import PoseTargets, VoxelPose

__all__ = ["PanopticTask", "VoxelPoseTask", "build_model", "model_kwargs", "train_voxelpose"]


def model_kwargs(cfg: VoxelPoseParams) -> dict[str, Any]:
    """The ``arch_kwargs`` that rebuild the network (stored in ``model.json``)."""
    return {
        "num_joints": cfg.num_joints,
        "space_size": list(cfg.space_size),
        "space_center": list(cfg.space_center),
        "cpn_shape": list(cfg.cpn_shape),
        "prn_size": list(cfg.prn_size),
        "prn_shape": list(cfg.prn_shape),
        "cpn_width": cfg.cpn_width,
        "prn_width": cfg.prn_width,
        "max_people": cfg.max_people,
        "threshold": cfg.threshold,
        "beta": cfg.beta,
        "view_aggregation": cfg.view_aggregation,
        "backbone": cfg.backbone,
        "backbone_depth": cfg.backbone_depth,
        "train_backbone": cfg.train_backbone,
    }


def build_model(cfg: VoxelPoseParams) -> VoxelPose:
    """A fresh VoxelPose from the params, with the PoseResNet weights of ``backbone_pretrained``, or one imported
    whole from an original checkpoint (``pretrained``)."""
    model = VoxelPose(**model_kwargs(cfg))
    if cfg.backbone_pretrained:
        import_pose_resnet(model.backbone, Path(cfg.backbone_pretrained))
    if cfg.pretrained:
        import_voxelpose(model, Path(cfg.pretrained))
    return model


def _per_rank(batch_size: int, world_size: int) -> int:
    """Samples per process of a global batch; under DDP every process needs at least one."""
    if batch_size < world_size:
        raise ValueError(f"voxelpose.optim.batch_size {batch_size} is smaller than the {world_size} processes; "
                         "raise it to at least one sample per process")
    return batch_size // world_size


class _EpochSamples(Dataset):
    """The synthetic samples of one epoch that this rank trains on; sample (epoch, i) is always the same."""

    def __init__(self, source: SyntheticTrainSet, epoch: int, indices: list[int]) -> None:
        self.source, self.epoch, self.indices = source, epoch, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> TrainSample:
        return self.source.sample(self.epoch, self.indices[i])


def _collate(samples: list[TrainSample]) -> dict[str, torch.Tensor]:
    """Stack samples, padding the people axis to the batch's largest scene (``valid`` marks real people)."""
    people = max(len(s.roots) for s in samples)
    out: dict[str, list[np.ndarray]] = {"heatmaps": [], "roots": [], "valid": [], "joints": [], "joints_vis": []}
    for s in samples:
        pad = people - len(s.roots)
        out["heatmaps"].append(s.heatmaps)
        out["roots"].append(np.pad(s.roots, ((0, pad), (0, 0))))
        out["valid"].append(np.arange(people) < len(s.roots))
        out["joints"].append(np.pad(s.joints, ((0, pad), (0, 0), (0, 0))))
        out["joints_vis"].append(np.pad(s.vis, ((0, pad), (0, 0))))
    return {key: torch.from_numpy(np.stack(values)) for key, values in out.items()}


class VoxelPoseTask(Task):
    """CPN + PRN trained jointly on synthetic samples of the split's camera rig."""

    find_unused_parameters = True  # the PRN gets no gradient in steps without a matched proposal

    def __init__(self, cfg: VoxelPoseParams, split: PoseSplit, seed: int) -> None:
        self.cfg = cfg
        self.source = SyntheticTrainSet(split, cfg.space_center, cfg.space_size, cfg.input_size, cfg.heatmap_size,
                                        cfg.sigma, seed, length=cfg.optim.samples_per_epoch)
        self.split = split
        self.rig: ViewRig | None = None

    def build_modules(self, ctx: Context) -> dict[str, nn.Module]:
        self.rig = rig_for_split(self.split, self.cfg.input_size, self.cfg.heatmap_size, ctx.device)
        return {"voxelpose": build_model(self.cfg)}

    def build_optimizers(self, ctx: Context) -> dict[str, torch.optim.Optimizer]:
        params = [p for p in ctx.raw_modules["voxelpose"].parameters() if p.requires_grad]
        return {"adam": torch.optim.Adam(params, lr=self.cfg.optim.lr)}

    def build_schedulers(self, ctx: Context) -> dict[str, Any]:
        """Step decay after ``optim.lr_steps`` epochs (mmpose's schedule); none by default, as the original."""
        if not self.cfg.optim.lr_steps:
            return {}
        return {"steps": torch.optim.lr_scheduler.MultiStepLR(ctx.optimizers["adam"], list(self.cfg.optim.lr_steps),
                                                              gamma=self.cfg.optim.lr_gamma)}

    def batches(self, epoch: int, ctx: Context) -> Iterable[dict[str, torch.Tensor]]:
        optim = self.cfg.optim
        per_rank = _per_rank(optim.batch_size, ctx.world_size)
        indices = list(range(ctx.rank, optim.samples_per_epoch, ctx.world_size))
        return DataLoader(
            _EpochSamples(self.source, epoch, indices), batch_size=per_rank, shuffle=False,
            drop_last=True, collate_fn=_collate, num_workers=optim.num_workers,
        )

    def _update(self, inputs: torch.Tensor, rig: ViewRig, batch: dict[str, torch.Tensor], ctx: Context,
                **extra: torch.Tensor) -> dict[str, torch.Tensor]:
        """One Adam step on the losses of ``inputs`` (heatmaps or images) against the batch's people."""
        cfg = self.cfg
        targets = PoseTargets(
            roots=batch["roots"].float(), valid=batch["valid"], joints=batch["joints"].float(),
            joints_vis=batch["joints_vis"].float(), root_sigma=cfg.root_sigma, match_distance=cfg.match_distance,
            gt_roots=ctx.epoch < cfg.optim.gt_root_epochs, jitter=cfg.optim.gt_root_jitter,
            max_cubes=cfg.optim.max_prn_cubes, **extra,
        )
        with ctx.autocast():
            terms = ctx.modules["voxelpose"](inputs, rig, targets)
        ctx.backward(terms["loss"])
        ctx.step(ctx.optimizers["adam"])
        return {name: value.detach() for name, value in terms.items()}

    def train_step(self, batch: dict[str, torch.Tensor], ctx: Context) -> dict[str, torch.Tensor]:
        batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
        return self._update(batch["heatmaps"].float(), self.rig, batch, ctx)

    def num_images(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["heatmaps"].shape[0])


class PanopticTask(VoxelPoseTask):
    """CPN + PRN (+ the PoseResNet when trained) on the images of every Panoptic training frame."""

    def __init__(self, cfg: VoxelPoseParams, frames: PanopticFrames, image_size: tuple[int, int], seed: int) -> None:
        self.cfg, self.frames, self.image_size, self.seed = cfg, frames, tuple(image_size), seed
        self.samples = panoptic.PanopticSamples(frames, image_size, cfg.input_size, cfg.heatmap_size, cfg.sigma)
        self.rigs: dict[int, ViewRig] = {}

    def build_modules(self, ctx: Context) -> dict[str, nn.Module]:
        self.rigs = panoptic.rigs_for_frames(self.frames, self.image_size, self.cfg.input_size,
                                             self.cfg.heatmap_size, ctx.device)
        return {"voxelpose": build_model(self.cfg)}

    def batches(self, epoch: int, ctx: Context) -> Iterable[dict[str, torch.Tensor]]:
        optim = self.cfg.optim
        per_rank = _per_rank(optim.batch_size, ctx.world_size)
        order = panoptic.sequence_batches(self.frames, per_rank, seed=derive_seed(self.seed, epoch), rank=ctx.rank,
                                          world_size=ctx.world_size)
        return DataLoader(self.samples, batch_sampler=order, collate_fn=panoptic.collate_frames,
                          num_workers=optim.num_workers)

    def train_step(self, batch: dict[str, torch.Tensor], ctx: Context) -> dict[str, torch.Tensor]:
        rig = self.rigs[int(batch["sequence"][0])]
        batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
        return self._update(panoptic.normalise(batch["images"]), rig, batch, ctx,
                            heatmaps=batch["target_heatmaps"].float(), heatmap_weight=batch["target_weight"].float())

    def num_images(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["images"].shape[0])


def _check_mode(cfg: VoxelPoseParams, dataset: str) -> None:
    """Panoptic trains from images with 15 joints; Campus/Shelf from drawn heatmaps with 17 (spec §2)."""
    if dataset == "panoptic":
        if cfg.backbone == "none":
            raise ParamsError("voxelpose.backbone: a Panoptic split trains from images; set backbone: pose_resnet50 "
                              "(see configs/panoptic.yaml)")
        if cfg.num_joints != 15:
            raise ParamsError(f"voxelpose.num_joints: {cfg.num_joints}, but Panoptic bodies have 15 joints; set 15")
    elif cfg.backbone != "none":
        raise ParamsError(f"voxelpose.backbone: {cfg.backbone!r} needs images, but the {dataset} split trains on "
                          "heatmaps drawn from 2D poses; set backbone: none")


def train_voxelpose(cfg: VoxelPoseParams, common: Common, splits_dir: Path, out_dir: Path,
                    root: Path = Path(".")) -> dict[str, Any]:
    """Train on the split in ``splits_dir`` and write ``out_dir/model.pt`` + ``model.json``; return the metrics.

    A Panoptic split (``meta.json`` dataset ``panoptic``) trains from its images (:class:`PanopticTask`);
    Campus/Shelf/synthetic splits from synthetic heatmaps (:class:`VoxelPoseTask`).
    """
    split_meta = read_json(Path(splits_dir) / "meta.json")
    dataset = split_meta.get("dataset")
    _check_mode(cfg, dataset)
    task: VoxelPoseTask
    if dataset == "panoptic":
        image_size = tuple(split_meta["image_size"])
        task = PanopticTask(cfg, load_panoptic_split(splits_dir, "train"), image_size, common.seed)
        extra = {"mean": list(panoptic.IMAGENET_MEAN), "std": list(panoptic.IMAGENET_STD)}
    else:
        split = load_pose_split(splits_dir)
        split_meta, image_size = split.meta, tuple(split.image_size)
        task = VoxelPoseTask(cfg, split, common.seed)
        extra = {}
    digest = section_digest(cfg, common, split_meta)  # the split too: new data must not resume old weights
    result = fit(task, stage="voxelpose", common=common, loop=cfg.train, digest=digest, root=root)
    if result.is_main:
        meta = {
            "arch": "voxelpose",
            "arch_kwargs": model_kwargs(cfg),
            "input_size": list(cfg.input_size),
            "heatmap_size": list(cfg.heatmap_size),
            "sigma": cfg.sigma,
            "dataset": dataset,
            "image_size": list(image_size),
            "params": to_dict(cfg),
            "params_digest": digest,
            "personlab_version": personlab_version,
            "stage": "voxelpose",
            **extra,
        }
        save_checkpoint(out_dir, result.modules["voxelpose"].state_dict(), meta)
    return result.metrics
