"""CMU Panoptic frames as VoxelPose inputs: images through the letterbox, 2D targets, per-sequence camera rigs.

On Panoptic the network reads images (spec §1.2, §1.4): every view of a frame is warped by the letterbox
affine of :func:`personlab.pose.heatmaps.letterbox_affine` (image centred, aspect kept) to ``input_size``
and normalised with the ImageNet mean and std; the PoseResNet turns it into heatmaps at ``input_size / 4``.
The *same* affine, followed by the input → heatmap scaling, places the GT joints on the 2D targets
(:func:`target_heatmaps`) and the voxel centres on the heatmaps (:func:`rigs_for_frames`, spec trap 7), so
images, targets and the volume agree pixel for pixel.

The cameras differ between sequences, so every batch holds frames of one sequence
(:func:`sequence_batches`) and uses that sequence's :class:`personlab.pose.volume.ViewRig`, whose whole-space
grid is cached. Images are decoded in the DataLoader's workers; batches come in a seeded order.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from personlab.pose import PoseDataError, skeleton
from personlab.pose.cameras import Camera
from personlab.pose.datasets import PanopticFrames
from personlab.pose.heatmaps import draw_heatmaps, heatmap_affine, letterbox_affine, transform_points
from personlab.pose.volume import ViewRig

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "PANOPTIC_LIMBS",
    "PanopticSamples",
    "collate_frames",
    "normalise",
    "read_view",
    "rigs_for_frames",
    "sequence_batches",
    "target_heatmaps",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# bones of the Panoptic-15 skeleton (neck 0, nose 1, mid-hip 2, left arm 3-5, left leg 6-8, right arm 9-11,
# right leg 12-14), for pictures and the synthetic renderer
PANOPTIC_LIMBS = ((0, 1), (0, 2), (0, 3), (3, 4), (4, 5), (2, 6), (6, 7), (7, 8), (0, 9), (9, 10), (10, 11),
                  (2, 12), (12, 13), (13, 14))


def read_view(path: Path, image_size: Sequence[int], input_size: Sequence[int]) -> np.ndarray:
    """One view: the JPEG at ``path`` (original ``image_size`` (w, h)) letterboxed to (3, H_in, W_in) RGB uint8."""
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise PoseDataError(f"{path}: missing or not a readable image; re-extract the sequence's hdImgs")
    h, w = image.shape[:2]
    if (w, h) != tuple(image_size):
        raise PoseDataError(f"{path}: image is {w}×{h}, but data.pose.image_size is {list(image_size)}; set it to "
                            "the images' size and re-run the splits stage")
    warped = cv2.warpAffine(image, letterbox_affine(image_size, input_size), (int(input_size[0]), int(input_size[1])),
                            flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0))
    return np.ascontiguousarray(warped[:, :, ::-1].transpose(2, 0, 1))


def normalise(images: torch.Tensor) -> torch.Tensor:
    """uint8 RGB images (..., 3, H, W) → float32, ImageNet mean/std normalised (the PoseResNet's input)."""
    mean = torch.tensor(IMAGENET_MEAN, device=images.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=images.device).view(3, 1, 1)
    return (images.float() / 255.0 - mean) / std


def target_heatmaps(cameras: Sequence[Camera], poses: np.ndarray, vis: np.ndarray, image_size: Sequence[int],
                    input_size: Sequence[int], heatmap_size: Sequence[int],
                    sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """2D targets of one frame: (V, J, H, W) Gaussians at the GT projections, and (V, J) weights.

    ``poses`` (P, J, 3) mm with ``vis`` (P, J). A joint is drawn in a view when it is annotated, in front of
    the camera and inside the original image; its weight is 1 when some person's joint is drawn there.
    """
    w, h = image_size
    affine = heatmap_affine(image_size, input_size, heatmap_size)
    maps, weights = [], []
    for cam in cameras:
        uv = cam.project(poses)
        seen = (np.asarray(vis, bool) & (cam.depth(poses) > 0) & (uv[..., 0] >= 0) & (uv[..., 0] <= w - 1)
                & (uv[..., 1] >= 0) & (uv[..., 1] <= h - 1))
        maps.append(draw_heatmaps(transform_points(uv, affine), seen, np.ones(seen.shape), heatmap_size, sigma))
        weights.append(seen.any(axis=0))
    return np.stack(maps), np.stack(weights).astype(np.float32)


class PanopticSamples(Dataset):
    """Frame i of a :class:`PanopticFrames` as a training/evaluation item (a dict of numpy arrays).

    ``images`` (V, 3, H_in, W_in) uint8, ``target_heatmaps`` (V, J, H, W), ``target_weight`` (V, J),
    ``joints`` (P, J, 3) mm, ``joints_vis`` (P, J), ``roots`` (P, 3) mm (Panoptic joint 2, the mid-hip) and
    ``sequence`` (the sequence index; a batch holds one sequence).
    """

    def __init__(self, frames: PanopticFrames, image_size: Sequence[int], input_size: Sequence[int],
                 heatmap_size: Sequence[int], sigma: float) -> None:
        self.frames = frames
        self.image_size, self.input_size = tuple(image_size), tuple(input_size)
        self.heatmap_size, self.sigma = tuple(heatmap_size), sigma

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, i: int) -> dict[str, np.ndarray]:
        f = self.frames
        count = int(f.count[i])
        poses, vis = f.poses[i, :count], f.vis[i, :count]
        cameras = f.cameras[f.sequences[f.sequence[i]]]
        images = np.stack([read_view(f.image_path(i, v), self.image_size, self.input_size)
                           for v in range(len(f.camera_ids))])
        maps, weight = target_heatmaps(cameras, poses, vis, self.image_size, self.input_size, self.heatmap_size,
                                       self.sigma)
        return {
            "images": images,
            "target_heatmaps": maps,
            "target_weight": weight,
            "joints": poses.astype(np.float32),
            "joints_vis": vis.copy(),
            "roots": poses[:, skeleton.PANOPTIC_ROOT].astype(np.float32),
            "sequence": np.int64(f.sequence[i]),
            "index": np.int64(i),
        }


def collate_frames(items: list[dict[str, np.ndarray]]) -> dict[str, torch.Tensor]:
    """Stack frames, padding the people axis to the batch's most crowded frame (``valid`` marks real people)."""
    people = max(len(item["roots"]) for item in items)
    out: dict[str, list[np.ndarray]] = {key: [] for key in (*items[0], "valid")}
    for item in items:
        pad = people - len(item["roots"])
        for key, value in item.items():
            if key in ("joints", "joints_vis", "roots"):
                value = np.pad(value, [(0, pad)] + [(0, 0)] * (value.ndim - 1))
            out[key].append(value)
        out["valid"].append(np.arange(people) < len(item["roots"]))
    return {key: torch.from_numpy(np.stack(values)) for key, values in out.items()}


def sequence_batches(frames: PanopticFrames, batch_size: int, seed: int | None = None, rank: int = 0,
                     world_size: int = 1) -> list[list[int]]:
    """Batches of frame indices, each from one sequence, in frame order within a sequence.

    ``seed`` None keeps the batches in order (evaluation); otherwise they are shuffled by ``seed`` (training:
    pass one per epoch). Under DDP every rank takes every ``world_size``-th batch of the same list, cut to a
    multiple of ``world_size`` so all ranks run the same number of steps.
    """
    batches = []
    for s in range(len(frames.sequences)):
        indices = np.flatnonzero(frames.sequence == s).tolist()
        batches += [indices[k:k + batch_size] for k in range(0, len(indices), batch_size)]
    if seed is not None:
        order = np.random.default_rng(seed).permutation(len(batches))
        batches = [batches[k] for k in order]
    batches = batches[: len(batches) - len(batches) % world_size]
    return batches[rank::world_size]


def rigs_for_frames(frames: PanopticFrames, image_size: Sequence[int], input_size: Sequence[int],
                    heatmap_size: Sequence[int], device: torch.device | str = "cpu") -> dict[int, ViewRig]:
    """One :class:`ViewRig` per sequence index, with the letterbox onto the heatmaps (the images' own affine)."""
    affine = heatmap_affine(image_size, input_size, heatmap_size)
    rigs = {}
    for s, seq in enumerate(frames.sequences):
        cams = frames.cameras[seq]
        rigs[s] = ViewRig.from_cameras(cams, [image_size] * len(cams), [affine] * len(cams), heatmap_size, device)
    return rigs
