"""Training VoxelPose on synthetic multi-view heatmaps, as a task of :mod:`personlab.engine`.

Campus/Shelf training (spec §3.2): every sample is a fresh synthetic scene (people from the pose database
placed in the capture space, projected into the dataset's own camera rig, drawn as input heatmaps), so the
data is infinite; here it is seeded per (seed, epoch, index) so runs are reproducible and resumable.

Optimisation: one Adam at a constant rate over CPN and PRN, one step per iteration on ``loss_3d +
loss_cord`` (mmpose's choice, which reproduces the published PCP; the original's 4-step CPN accumulation
trick is not reproduced, spec §1.9). The two losses touch disjoint parameters, so summing them does not mix
their scales under Adam.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch
import torch.nn as nn
from torch.utils.data import DataLoader, Dataset

from personlab import __version__ as personlab_version
from personlab.engine import Context, Task, fit
from personlab.io import save_checkpoint
from personlab.params import Common, VoxelPoseParams, section_digest, to_dict
from personlab.pose.convert import import_voxelpose
from personlab.pose.datasets import PoseSplit, load_pose_split
from personlab.pose.synthetic import SyntheticTrainSet, TrainSample
from personlab.pose.volume import ViewRig, rig_for_split
from personlab.pose.voxelpose import PoseTargets, VoxelPose

__all__ = ["VoxelPoseTask", "build_model", "model_kwargs", "train_voxelpose"]


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
    }


def build_model(cfg: VoxelPoseParams) -> VoxelPose:
    """A fresh VoxelPose from the params, or one imported from an original checkpoint (``pretrained``)."""
    model = VoxelPose(**model_kwargs(cfg))
    if cfg.pretrained:
        import_voxelpose(model, Path(cfg.pretrained))
    return model


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
        per_rank = optim.batch_size // ctx.world_size
        if per_rank < 1:
            raise ValueError(f"voxelpose.optim.batch_size {optim.batch_size} is smaller than the {ctx.world_size} "
                             "processes; raise it to at least one sample per process")
        indices = list(range(ctx.rank, optim.samples_per_epoch, ctx.world_size))
        return DataLoader(
            _EpochSamples(self.source, epoch, indices), batch_size=per_rank, shuffle=False,
            drop_last=True, collate_fn=_collate, num_workers=optim.num_workers,
        )

    def train_step(self, batch: dict[str, torch.Tensor], ctx: Context) -> dict[str, torch.Tensor]:
        cfg = self.cfg
        batch = {k: v.to(ctx.device, non_blocking=True) for k, v in batch.items()}
        targets = PoseTargets(
            roots=batch["roots"].float(), valid=batch["valid"], joints=batch["joints"].float(),
            joints_vis=batch["joints_vis"].float(), root_sigma=cfg.root_sigma, match_distance=cfg.match_distance,
            gt_roots=ctx.epoch < cfg.optim.gt_root_epochs, jitter=cfg.optim.gt_root_jitter,
            max_cubes=cfg.optim.max_prn_cubes,
        )
        with ctx.autocast():
            terms = ctx.modules["voxelpose"](batch["heatmaps"].float(), self.rig, targets)
        ctx.backward(terms["loss"])
        ctx.step(ctx.optimizers["adam"])
        return {name: value.detach() for name, value in terms.items()}

    def num_images(self, batch: dict[str, torch.Tensor]) -> int:
        return int(batch["heatmaps"].shape[0])


def train_voxelpose(cfg: VoxelPoseParams, common: Common, splits_dir: Path, out_dir: Path,
                    root: Path = Path(".")) -> dict[str, Any]:
    """Train on the split in ``splits_dir`` and write ``out_dir/model.pt`` + ``model.json``; return the metrics."""
    split = load_pose_split(splits_dir)
    task = VoxelPoseTask(cfg, split, common.seed)
    digest = section_digest(cfg, common, split.meta)  # the split too: new data must not resume old weights
    result = fit(task, stage="voxelpose", common=common, loop=cfg.train, digest=digest, root=root)
    if result.is_main:
        meta = {
            "arch": "voxelpose",
            "arch_kwargs": model_kwargs(cfg),
            "input_size": list(cfg.input_size),
            "heatmap_size": list(cfg.heatmap_size),
            "sigma": cfg.sigma,
            "dataset": split.dataset,
            "image_size": list(split.image_size),
            "params": to_dict(cfg),
            "params_digest": digest,
            "personlab_version": personlab_version,
            "stage": "voxelpose",
        }
        save_checkpoint(out_dir, result.modules["voxelpose"].state_dict(), meta)
    return result.metrics
