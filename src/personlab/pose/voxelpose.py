"""VoxelPose (Tu et al., ECCV 2020): Cuboid Proposal Network + Pose Regression Network on per-view heatmaps.

Pipeline (spec §1): per-view 2D heatmaps → the whole-space feature volume (:mod:`personlab.pose.volume`,
grid cached per rig) → CPN V2V → root-likelihood volume → 3×3×3 max-pool NMS and top-K proposals → for each
proposal a fixed-size cube centred on it → PRN V2V → soft-argmax (β) over the cube's absolute world
coordinates → joints in mm. The optional 2D backbone (PoseResNet, used on Panoptic) turns images into the
heatmaps; on Campus/Shelf the heatmaps are drawn from 2D detections and passed in directly.

Departures from the original, all for speed and none changing the maths: all valid proposals of a batch go
through the PRN in one call (the original calls it once per top-K slot), and NMS runs on a 5-D tensor (the
original pools over the batch axis by accident, spec §1.7).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from personlab.models.resnet import ResNet
from personlab.pose.v2v import V2VNet
from personlab.pose.volume import (
    Cube,
    ViewRig,
    build_volume,
    build_volume_per_sample,
    voxel_centres,
    voxel_index_to_world,
)

__all__ = [
    "PoseResNet",
    "PoseTargets",
    "VoxelPose",
    "heatmap_loss",
    "match_proposals",
    "nms_topk",
    "pose_l1_loss",
    "root_target",
    "soft_argmax",
]


def nms_topk(volume: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """3×3×3 local-maximum NMS and top-k of (B, X, Y, Z) → (scores (B, k), voxel indices (B, k, 3))."""
    b, nx, ny, nz = volume.shape
    v = volume.unsqueeze(1)
    peaks = torch.where(v == F.max_pool3d(v, 3, stride=1, padding=1), v, torch.zeros_like(v))
    scores, flat = peaks.reshape(b, -1).topk(k, dim=1)
    index = torch.stack([flat // (ny * nz), (flat % (ny * nz)) // nz, flat % nz], dim=-1)
    return scores, index


def _fp32(device: torch.device) -> torch.autocast:
    """Autocast off: world coordinates in mm need float32 (bf16 would round 4000 mm to a 16 mm step)."""
    return torch.autocast(device_type=device.type, enabled=False)


def soft_argmax(volume: torch.Tensor, coords: torch.Tensor, beta: float) -> torch.Tensor:
    """Expected position under softmax(β·volume): (N, J, X, Y, Z) and (N, X·Y·Z, 3) mm → (N, J, 3) mm."""
    n, j = volume.shape[:2]
    with _fp32(volume.device):
        weights = F.softmax(beta * volume.float().reshape(n, j, -1), dim=-1)
        return torch.bmm(weights, coords.float())


def root_target(roots: torch.Tensor, valid: torch.Tensor, cube: Cube, centre: torch.Tensor | tuple,
                sigma: float) -> torch.Tensor:
    """The CPN target (B, X, Y, Z): a 3D Gaussian (σ mm, peak 1) at every valid root, merged by max.

    As the original, each Gaussian is cut to a ±3σ box per axis; ``roots`` (B, P, 3) mm, ``valid`` (B, P).
    """
    points = voxel_centres(cube, centre, device=roots.device)  # (N, 3)
    diff = points[None, None] - roots[:, :, None]  # (B, P, N, 3)
    inside = (diff.abs() <= 3 * sigma).all(-1) & valid[..., None]
    gauss = torch.exp(-(diff**2).sum(-1) / (2 * sigma**2)) * inside
    target = gauss.amax(dim=1) if roots.shape[1] else torch.zeros(roots.shape[0], points.shape[0], device=roots.device)
    return target.clamp(0, 1).reshape(roots.shape[0], *cube.shape)


def match_proposals(centres: torch.Tensor, roots: torch.Tensor, valid: torch.Tensor, max_dist: float) -> torch.Tensor:
    """Index of the nearest valid GT root per proposal (B, K), or -1 beyond ``max_dist`` mm; several proposals
    may share one GT. ``roots`` (B, P, 3) with P ≥ 1 (padding marked invalid)."""
    dist = torch.cdist(centres, roots).masked_fill(~valid[:, None, :], float("inf"))
    best, index = dist.min(dim=-1)
    return torch.where(best <= max_dist, index, torch.full_like(index, -1))


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """``loss_2d`` (spec §1.9): per view, the MSE of heatmaps × weight against targets × weight, averaged over
    the views. ``pred``/``target`` (B, V, J, H, W), ``weight`` (B, V, J): 1 where the joint is annotated and
    inside that view's image for some person (a masked channel contributes zeros, which still count in the mean)."""
    with _fp32(pred.device):
        w = weight.float()[..., None, None]
        per_view = ((pred.float() * w - target.float() * w) ** 2).mean(dim=(0, 2, 3, 4))
        return per_view.mean()


def pose_l1_loss(pred: torch.Tensor, target: torch.Tensor, vis: torch.Tensor) -> torch.Tensor:
    """Masked L1 of the original: both sides times visibility, mean over all N·J·3 entries."""
    m = vis[..., None].to(pred.dtype)
    return (pred * m - target * m).abs().mean()


@dataclass
class PoseTargets:
    """Ground truth of a training batch: P (padded) people per sample.

    ``roots`` (B, P, 3) mm, ``valid`` (B, P) bool, ``joints`` (B, P, J, 3) mm, ``joints_vis`` (B, P, J);
    ``gt_roots`` centres the PRN on jittered GT roots (std ``jitter`` mm) instead of CPN proposals;
    ``max_cubes`` caps the PRN's micro-batch (a CPU-budget departure; the original trains on every match).
    With a 2D backbone, ``heatmaps`` (B, V, J, H, W) Gaussian targets of the GT projections and
    ``heatmap_weight`` (B, V, J) give ``loss_2d``.
    """

    roots: torch.Tensor
    valid: torch.Tensor
    joints: torch.Tensor
    joints_vis: torch.Tensor
    root_sigma: float = 200.0
    match_distance: float = 500.0
    gt_roots: bool = False
    jitter: float = 0.0
    max_cubes: int = 0  # > 0: at most this many PRN cubes per step, drawn at random (0 = every match)
    heatmaps: torch.Tensor | None = None
    heatmap_weight: torch.Tensor | None = None


class PoseResNet(nn.Module):
    """The "simple baselines" 2D pose network: ResNet trunk, three 4×4 deconvolutions, 1×1 joint head.

    Output stride 4, no sigmoid (spec §1.2). Turns images into heatmaps on Panoptic (frozen in the original).
    ``depth`` picks the ResNet (50 published; a smaller one trains on a CPU).
    """

    def __init__(self, num_joints: int, depth: int = 50, deconv_channels: int = 256) -> None:
        super().__init__()
        self.trunk = ResNet(depth, last_stride=2)
        layers: list[nn.Module] = []
        channels = self.trunk.out_channels
        for _ in range(3):
            layers += [
                nn.ConvTranspose2d(channels, deconv_channels, 4, stride=2, padding=1, bias=False),
                nn.BatchNorm2d(deconv_channels),
                nn.ReLU(inplace=True),
            ]
            channels = deconv_channels
        self.deconv_layers = nn.Sequential(*layers)
        self.final_layer = nn.Conv2d(channels, num_joints, 1)
        for module in (*self.deconv_layers, self.final_layer):  # simple-baselines' head initialisation
            if isinstance(module, (nn.ConvTranspose2d, nn.Conv2d)):
                nn.init.normal_(module.weight, std=0.001)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.final_layer(self.deconv_layers(self.trunk(images)))


class VoxelPose(nn.Module):
    """CPN + PRN (+ optional 2D backbone). All sizes in mm; cube shapes must be divisible by 4.

    ``forward(inputs, rig)`` → ``pred`` (B, K, J, 5): xyz mm, flag (0 = person, -1 = empty slot) and the CPN
    root score, like the original's output. ``inputs`` are heatmaps (B, V, J, H, W) without a backbone
    (Campus/Shelf), or normalised letterboxed images (B, V, 3, H_in, W_in) with ``backbone="pose_resnet50"``
    (Panoptic), which the PoseResNet of ``backbone_depth`` turns into heatmaps. The backbone is frozen (eval
    mode, no gradient, so out of the optimizer) unless ``train_backbone``.
    """

    def __init__(
        self,
        num_joints: int = 17,
        space_size: tuple[float, float, float] = (12000.0, 12000.0, 2000.0),
        space_center: tuple[float, float, float] = (3000.0, 4500.0, 1000.0),
        cpn_shape: tuple[int, int, int] = (80, 80, 20),
        prn_size: tuple[float, float, float] = (2000.0, 2000.0, 2000.0),
        prn_shape: tuple[int, int, int] = (64, 64, 64),
        cpn_width: int = 32,
        prn_width: int = 32,
        max_people: int = 10,
        threshold: float = 0.1,
        beta: float = 100.0,
        view_aggregation: str = "visible",
        backbone: str = "none",
        backbone_depth: int = 50,
        train_backbone: bool = False,
    ) -> None:
        super().__init__()
        for name, shape in (("cpn_shape", cpn_shape), ("prn_shape", prn_shape)):
            if any(s < 4 or s % 4 for s in shape):
                raise ValueError(f"voxelpose.{name} {tuple(shape)}: every size must be a multiple of 4 (V2V pools twice)")
        if backbone not in ("none", "pose_resnet50"):
            raise ValueError(f"unknown VoxelPose backbone {backbone!r}; use 'none' or 'pose_resnet50'")
        self.num_joints = num_joints
        self.space = Cube(tuple(float(s) for s in space_size), tuple(cpn_shape))
        self.space_centre = tuple(float(c) for c in space_center)
        self.proposal_cube = Cube(tuple(float(s) for s in prn_size), tuple(prn_shape))
        self.max_people = max_people
        self.threshold = threshold
        self.beta = beta
        self.view_aggregation = view_aggregation
        self.backbone = PoseResNet(num_joints, backbone_depth) if backbone == "pose_resnet50" else None
        self.train_backbone = train_backbone and self.backbone is not None
        if self.backbone is not None and not self.train_backbone:
            self.backbone.requires_grad_(False)
        self.cpn = V2VNet(num_joints, 1, cpn_width)
        self.prn = V2VNet(num_joints, num_joints, prn_width)
        # Offsets of the proposal cube's voxels from its centre; the PRN cube is this plus the proposal.
        self.register_buffer("prn_offsets", voxel_centres(self.proposal_cube), persistent=False)
        # Set False to rebuild every grid per sample and view as the original does (benchmark reference).
        self.cache_grids = True

    def train(self, mode: bool = True) -> "VoxelPose":
        """A frozen backbone stays in eval mode, as in the original's 3D training (spec trap 26)."""
        super().train(mode)
        if self.backbone is not None and not self.train_backbone:
            self.backbone.eval()
        return self

    def heatmaps_from_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, V, 3, H, W) normalised images → (B, V, J, H/4, W/4) heatmaps; gradient only when trained."""
        if self.backbone is None:
            raise ValueError("this VoxelPose has no 2D backbone (backbone: none); pass heatmaps instead")
        b, v = images.shape[:2]
        with torch.set_grad_enabled(self.train_backbone and torch.is_grad_enabled()):
            maps = self.backbone(images.flatten(0, 1))
        return maps.reshape(b, v, *maps.shape[1:])

    def space_volume(self, heatmaps: torch.Tensor, rig: ViewRig) -> torch.Tensor:
        """The whole-space feature volume (B, J, X, Y, Z) the CPN reads; its grid is cached per rig."""
        with _fp32(heatmaps.device):
            return self._space_volume(heatmaps.float(), rig)

    def _space_volume(self, heatmaps: torch.Tensor, rig: ViewRig) -> torch.Tensor:
        if self.cache_grids:
            grid, mask = rig.cube_grid(self.space, self.space_centre)
            volume = build_volume(heatmaps, grid, mask, self.view_aggregation)
        else:
            centres = torch.tensor(self.space_centre, device=heatmaps.device).expand(heatmaps.shape[0], 3)
            volume = build_volume_per_sample(heatmaps, rig, self.space, centres, self.view_aggregation)
        return volume.reshape(heatmaps.shape[0], self.num_joints, *self.space.shape)

    def root_volume(self, heatmaps: torch.Tensor, rig: ViewRig) -> torch.Tensor:
        """The CPN's raw root-likelihood volume (B, X, Y, Z) for the whole space."""
        return self.cpn(self.space_volume(heatmaps, rig)).squeeze(1)

    def propose(self, roots: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Top-K proposals of a root volume: (scores (B, K), centres (B, K, 3) in world mm)."""
        scores, index = nms_topk(roots.detach(), self.max_people)
        return scores, voxel_index_to_world(index, self.space, self.space_centre)

    def proposal_volumes(self, heatmaps: torch.Tensor, rig: ViewRig, centres: torch.Tensor,
                         valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Feature volumes (M, J, X, Y, Z) of the M valid proposals (``valid`` (B, K) bool) and their voxel
        centres (M, N, 3) mm. The cached path projects every proposal and view in one call."""
        with _fp32(heatmaps.device):
            return self._proposal_volumes(heatmaps.float(), rig, centres.float(), valid)

    def _proposal_volumes(self, heatmaps: torch.Tensor, rig: ViewRig, centres: torch.Tensor,
                          valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        item, slot = valid.nonzero(as_tuple=True)
        chosen = centres[item, slot]  # (M, 3)
        points = chosen[:, None, :] + self.prn_offsets[None]  # (M, N, 3)
        if item.numel() == 0:
            return heatmaps.new_zeros(0, self.num_joints, *self.proposal_cube.shape), points
        if self.cache_grids:
            # Pad the proposals of each batch item to a common count so one grid_sample serves the batch.
            b = heatmaps.shape[0]
            counts = torch.bincount(item, minlength=b)
            p = int(counts.max())
            rank = torch.arange(item.numel(), device=item.device) - torch.cumsum(counts, 0)[item] + counts[item]
            padded = points.new_zeros(b, p, *points.shape[1:])
            padded[item, rank] = points
            grid, mask = rig.sampling_grid(padded)  # (B, P, V, N, 2), (B, P, V, N)
            volume = build_volume(heatmaps, grid.transpose(1, 2), mask.transpose(1, 2), self.view_aggregation)
            volume = volume[item, rank]  # (M, J, N)
        else:
            volume = build_volume_per_sample(heatmaps[item], rig, self.proposal_cube, chosen, self.view_aggregation)
        return volume.reshape(-1, self.num_joints, *self.proposal_cube.shape), points

    def regress(self, heatmaps: torch.Tensor, rig: ViewRig, centres: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """Joints (M, J, 3) mm for the M valid proposals, all in one PRN call."""
        volume, points = self.proposal_volumes(heatmaps, rig, centres, valid)
        if volume.shape[0] == 0:
            return heatmaps.new_zeros(0, self.num_joints, 3)
        return soft_argmax(self.prn(volume), points, self.beta)

    def forward(self, inputs: torch.Tensor, rig: ViewRig, targets: PoseTargets | None = None):
        """Predictions (B, K, J, 5); with ``targets``, the training losses instead (see :meth:`losses`)."""
        heatmaps = inputs if self.backbone is None else self.heatmaps_from_images(inputs)
        if targets is not None:
            return self.losses(heatmaps, rig, targets)
        b = heatmaps.shape[0]
        scores, centres = self.propose(self.root_volume(heatmaps, rig))
        valid = scores > self.threshold
        pred = heatmaps.new_zeros(b, self.max_people, self.num_joints, 5)
        pred[..., 3] = valid.to(pred.dtype)[..., None] - 1
        pred[..., 4] = scores[..., None]
        pred[valid, :, :3] = self.regress(heatmaps, rig, centres, valid).to(pred.dtype)
        return pred

    def losses(self, heatmaps: torch.Tensor, rig: ViewRig, targets: PoseTargets) -> dict[str, torch.Tensor]:
        """``loss_3d`` (CPN MSE), ``loss_cord`` (PRN masked L1), their sum ``loss`` (spec §1.7–1.9), and
        ``prn_cubes``, the number of cubes the PRN trained on (0 while no proposal is near a person).

        The PRN cubes are centred on CPN proposals matched to a GT root within ``match_distance``, or, with
        ``targets.gt_roots``, on every GT root plus Gaussian jitter (the warm-up departure of spec trap 12).
        Proposals come from the detached root volume, so the CPN never gets gradient from the PRN loss.
        Averaging the L1 over all matched (sample, proposal) pairs equals the original's running mean.
        With a backbone, ``loss_2d`` (:func:`heatmap_loss`) joins the terms and the sum; it carries gradient
        only into a trained backbone (frozen, it is logged as the original does). The 3D losses read the
        heatmaps detached: a trained backbone learns from its 2D targets alone, so the millimetre-scale
        ``loss_cord`` cannot swamp them through the volume (a departure; frozen, nothing changes).
        """
        maps_2d = heatmaps
        if self.backbone is not None:
            heatmaps = heatmaps.detach()
        roots = self.root_volume(heatmaps, rig)
        target = root_target(targets.roots, targets.valid, self.space, self.space_centre, targets.root_sigma)
        loss_3d = F.mse_loss(roots, target)
        if targets.gt_roots:
            centres = targets.roots + targets.jitter * torch.randn_like(targets.roots)
            match = torch.where(targets.valid, torch.arange(targets.roots.shape[1], device=roots.device), -1)
        else:
            _, centres = self.propose(roots)
            match = match_proposals(centres, targets.roots, targets.valid, targets.match_distance)
        chosen = match >= 0
        if 0 < targets.max_cubes < int(chosen.sum()):  # train the PRN on a random subset of the matches
            keep = chosen.flatten().nonzero().squeeze(1)
            keep = keep[torch.randperm(len(keep), device=keep.device)[: targets.max_cubes]]
            chosen = torch.zeros_like(chosen).flatten().index_fill_(0, keep, True).reshape(chosen.shape)
        if chosen.any():
            joints = self.regress(heatmaps, rig, centres, chosen)
            item = chosen.nonzero(as_tuple=True)[0]
            person = match[chosen]
            loss_cord = pose_l1_loss(joints, targets.joints[item, person], targets.joints_vis[item, person])
        else:
            loss_cord = roots.new_zeros(())
        terms = {
            "loss": loss_3d + loss_cord,
            "loss_3d": loss_3d,
            "loss_cord": loss_cord,
            "prn_cubes": chosen.sum().to(roots.dtype),  # logged: how many cubes the PRN trained on
        }
        if self.backbone is not None and targets.heatmaps is not None:
            terms["loss_2d"] = heatmap_loss(maps_2d, targets.heatmaps, targets.heatmap_weight)
            terms["loss"] = terms["loss"] + terms["loss_2d"]
        return terms
