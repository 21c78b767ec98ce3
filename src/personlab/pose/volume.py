"""Feature volumes: project voxel centres into every view and sample the 2D heatmaps there (spec §1.5).

The original rebuilds the sampling grid for every sample, view and proposal with Python loops, although the
grid of the whole-space cube (CPN) depends only on the camera rig and the cube. Here a :class:`ViewRig`
holds the cameras of one rig as stacked tensors and caches the CPN grid per cube; proposal cubes (PRN), which
move with each proposal, are projected for all proposals and views in one vectorised call. Sampling is one
``grid_sample`` for all views.

Conventions (spec §8 traps 4–8): voxel centres come from an inclusive ``linspace`` per axis (spacing
``size / (n - 1)``), flattened x-major (``meshgrid`` with ``indexing="ij"``); the in-image mask is taken in
original pixels before clamping; the sampling coordinates are normalised for ``align_corners=True``; the
volume is the mean over the views that see the voxel, clamped to [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from personlab.pose.heatmaps import heatmap_affine

if TYPE_CHECKING:
    from personlab.pose.datasets import PoseSplit

__all__ = [
    "Cube",
    "ViewRig",
    "rig_for_split",
    "aggregate_views",
    "build_volume",
    "build_volume_per_sample",
    "voxel_centres",
    "voxel_index_to_world",
]


@dataclass(frozen=True)
class Cube:
    """A box of ``size`` mm (x, y, z) split into ``shape`` voxel centres along each axis (ends included)."""

    size: tuple[float, float, float]
    shape: tuple[int, int, int]

    @property
    def num_voxels(self) -> int:
        return self.shape[0] * self.shape[1] * self.shape[2]

    @property
    def spacing(self) -> tuple[float, float, float]:
        return tuple(s / (n - 1) for s, n in zip(self.size, self.shape))  # type: ignore[return-value]


def voxel_centres(cube: Cube, centre: Sequence[float] | torch.Tensor = (0.0, 0.0, 0.0),
                  device: torch.device | str = "cpu") -> torch.Tensor:
    """(X·Y·Z, 3) world coordinates of the voxel centres, flat index ``ix·(Y·Z) + iy·Z + iz``."""
    axes = [torch.linspace(-s / 2, s / 2, n, device=device, dtype=torch.float32) for s, n in zip(cube.size, cube.shape)]
    grid = torch.stack(torch.meshgrid(*axes, indexing="ij"), dim=-1).reshape(-1, 3)
    return grid + torch.as_tensor(centre, dtype=torch.float32, device=device)


def voxel_index_to_world(index: torch.Tensor, cube: Cube, centre: Sequence[float] | torch.Tensor) -> torch.Tensor:
    """Voxel indices (..., 3) to world mm: ``idx / (n - 1) · size + centre - size / 2``."""
    size = torch.tensor(cube.size, dtype=torch.float32, device=index.device)
    n = torch.tensor(cube.shape, dtype=torch.float32, device=index.device)
    centre = torch.as_tensor(centre, dtype=torch.float32, device=index.device)
    return index.float() / (n - 1) * size + centre - size / 2


class ViewRig:
    """The V cameras of one rig as stacked tensors, plus where each image lands on its heatmap.

    ``R`` (V, 3, 3) world→camera rotation, ``T`` (V, 3) camera centre in world mm (not OpenCV's t),
    ``f``/``c`` (V, 2) focal length and principal point in pixels, ``k`` (V, 3) radial and ``p`` (V, 2)
    tangential distortion, ``image_size`` (V, 2) original (w, h), ``affine`` (V, 2, 3) original pixels →
    heatmap pixels (the letterbox affine of spec §1.4 followed by the input→heatmap scaling), and
    ``heatmap_size`` (w, h). Grids of fixed cubes are cached per (cube, centre). A plain class, not a
    dataclass, so that DDP passes it to ``forward`` as it is instead of rebuilding it (and its cache).
    """

    def __init__(self, R: torch.Tensor, T: torch.Tensor, f: torch.Tensor, c: torch.Tensor, k: torch.Tensor,
                 p: torch.Tensor, image_size: torch.Tensor, affine: torch.Tensor, heatmap_size: tuple[int, int]) -> None:
        self.R, self.T, self.f, self.c, self.k, self.p = R, T, f, c, k, p
        self.image_size, self.affine = image_size, affine
        self.heatmap_size = (int(heatmap_size[0]), int(heatmap_size[1]))
        self._cache: dict = {}

    @classmethod
    def from_cameras(cls, cameras: Sequence, image_sizes: Sequence[Sequence[float]], affines: Sequence,
                     heatmap_size: Sequence[int], device: torch.device | str = "cpu") -> "ViewRig":
        """Stack :class:`personlab.pose.cameras.Camera` objects, their original (w, h) and 2×3 affines."""
        if not (len(cameras) == len(image_sizes) == len(affines)) or not cameras:
            raise ValueError(f"ViewRig needs one image size and affine per camera; got {len(cameras)} cameras, "
                             f"{len(image_sizes)} sizes and {len(affines)} affines")

        def stack(values: list) -> torch.Tensor:
            return torch.tensor(np.stack([np.asarray(v, dtype=np.float64) for v in values]), dtype=torch.float32,
                                device=device)

        return cls(
            R=stack([c.R for c in cameras]), T=stack([c.T for c in cameras]),
            f=stack([[c.fx, c.fy] for c in cameras]), c=stack([[c.cx, c.cy] for c in cameras]),
            k=stack([c.k for c in cameras]), p=stack([c.p for c in cameras]),
            image_size=stack(list(image_sizes)), affine=stack(list(affines)),
            heatmap_size=(int(heatmap_size[0]), int(heatmap_size[1])),
        )

    @property
    def num_views(self) -> int:
        return self.R.shape[0]

    def to(self, device: torch.device | str) -> "ViewRig":
        """The same rig on another device (its cache starts empty there)."""
        moved = {name: getattr(self, name).to(device) for name in ("R", "T", "f", "c", "k", "p", "image_size", "affine")}
        return ViewRig(heatmap_size=self.heatmap_size, **moved)

    def project(self, points: torch.Tensor) -> torch.Tensor:
        """World points (..., N, 3) → pixels (..., V, N, 2) in every original image (spec §1.3).

        Leading dims of ``points`` broadcast; the view axis is inserted just before N. Distortion is the
        Human3.6M form, identical to OpenCV's with p = [p1, p2]; like the original there is no depth test.
        """
        pts = points.unsqueeze(-3)  # (..., 1, N, 3)
        cam = torch.einsum("vij,...vnj->...vni", self.R, pts - self.T[:, None, :])
        z = cam[..., 2:3] + 1e-5
        uv = cam[..., :2] / z
        r2 = (uv * uv).sum(-1, keepdim=True)
        k = self.k[:, None, :]
        p = self.p[:, None, :]
        radial = 1 + k[..., 0:1] * r2 + k[..., 1:2] * r2**2 + k[..., 2:3] * r2**3
        tan = p[..., 0:1] * uv[..., 1:2] + p[..., 1:2] * uv[..., 0:1]
        distorted = uv * (radial + 2 * tan) + p.flip(-1) * r2
        return distorted * self.f[:, None, :] + self.c[:, None, :]

    def sampling_grid(self, points: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """World points (..., N, 3) → (grid (..., V, N, 2) in grid_sample units, in-image mask (..., V, N))."""
        xy = self.project(points)
        w, h = self.image_size[:, None, 0], self.image_size[:, None, 1]
        mask = (xy[..., 0] >= 0) & (xy[..., 1] >= 0) & (xy[..., 0] < w) & (xy[..., 1] < h)
        bound = self.image_size.max(dim=1).values[:, None, None]
        xy = torch.minimum(torch.clamp(xy, min=-1.0), bound)
        hm = torch.einsum("vij,...vnj->...vni", self.affine[..., :2], xy) + self.affine[:, None, :, 2]
        scale = torch.tensor([self.heatmap_size[0] - 1, self.heatmap_size[1] - 1], dtype=xy.dtype, device=xy.device)
        grid = torch.clamp(hm / scale * 2 - 1, -1.1, 1.1)
        return grid, mask.to(xy.dtype)

    def cube_grid(self, cube: Cube, centre: Sequence[float]) -> tuple[torch.Tensor, torch.Tensor]:
        """The cached (grid (V, N, 2), mask (V, N)) of a fixed cube; computed once per rig, cube and centre."""
        key = (cube, tuple(float(x) for x in centre))
        if key not in self._cache:
            self._cache[key] = self.sampling_grid(voxel_centres(cube, centre, device=self.R.device))
        return self._cache[key]


def rig_for_split(split: "PoseSplit", input_size: Sequence[int], heatmap_size: Sequence[int],
                  device: torch.device | str = "cpu") -> ViewRig:
    """The rig of a pose split (``split.cameras``, ``split.image_size``) with the letterbox onto the heatmaps."""
    affine = heatmap_affine(split.image_size, input_size, heatmap_size)
    views = len(split.cameras)
    return ViewRig.from_cameras(split.cameras, [split.image_size] * views, [affine] * views, heatmap_size, device)


def aggregate_views(samples: torch.Tensor, mask: torch.Tensor, mean_over: str = "visible") -> torch.Tensor:
    """Combine per-view samples (V, ..., J, N) with masks (V, ..., N) into (..., J, N) in [0, 1].

    ``visible``: the mean over the views whose image contains the voxel (the original); ``all``: a plain
    mean over every view (Faster VoxelPose).
    """
    if mean_over == "visible":
        m = mask.unsqueeze(-2)
        volume = (samples * m).sum(0) / (m.sum(0) + 1e-6)
    elif mean_over == "all":
        volume = samples.mean(0)
    else:
        raise ValueError(f"unknown view aggregation {mean_over!r}; use 'visible' or 'all'")
    return torch.nan_to_num(volume, nan=0.0).clamp(0.0, 1.0)


def _mean_over_views(total: torch.Tensor, mask: torch.Tensor, views: int, mean_over: str) -> torch.Tensor:
    """Divide a sum over views (..., J, N) by the number of views averaged, (..., N) counted from ``mask``."""
    if mean_over == "visible":
        total = total / (mask.sum(0).unsqueeze(-2) + 1e-6)
    elif mean_over == "all":
        total = total / views
    else:
        raise ValueError(f"unknown view aggregation {mean_over!r}; use 'visible' or 'all'")
    return torch.nan_to_num_(total, nan=0.0).clamp_(0.0, 1.0)


def build_volume(heatmaps: torch.Tensor, grid: torch.Tensor, mask: torch.Tensor, mean_over: str = "visible") -> torch.Tensor:
    """Sample heatmaps (B, V, J, H, W) at grids and aggregate over views, in one ``grid_sample`` call.

    ``grid`` (V, N, 2) / ``mask`` (V, N) is one grid shared by the batch (the CPN cube); ``grid``
    (B, V, P, N, 2) / ``mask`` (B, V, P, N) is P cubes per batch item (the PRN proposals). Returns
    (B, J, N) or (B, P, J, N) respectively. The same numbers as :func:`aggregate_views`, cheaper: a voxel
    outside a view's image is sent off that view's heatmap, where ``grid_sample`` returns exactly 0, instead
    of multiplying every (view, joint, voxel) sample by the mask afterwards.
    """
    b, v, j, h, w = heatmaps.shape
    if mean_over == "visible":
        grid = torch.where(mask.unsqueeze(-1) > 0, grid, -2.0)
    if grid.dim() == 3:  # shared grid: fold the batch into channels, one grid per view
        maps = heatmaps.transpose(0, 1).reshape(v, b * j, h, w)
        out = F.grid_sample(maps, grid[:, None], mode="bilinear", padding_mode="zeros", align_corners=True)
        total = out.sum(0).reshape(b, j, -1)  # (B, J, N)
        return _mean_over_views(total, mask[:, None, :], v, mean_over)
    _, _, p, n, _ = grid.shape
    maps = heatmaps.reshape(b * v, j, h, w)
    out = F.grid_sample(maps, grid.reshape(b * v, p, n, 2), mode="bilinear", padding_mode="zeros", align_corners=True)
    total = out.reshape(b, v, j, p, n).sum(1).transpose(1, 2)  # (B, P, J, N)
    return _mean_over_views(total, mask.transpose(0, 1), v, mean_over)


def build_volume_per_sample(heatmaps: torch.Tensor, rig: ViewRig, cube: Cube, centres: torch.Tensor,
                            mean_over: str = "visible") -> torch.Tensor:
    """The original's way: for every sample and view, rebuild the grid, project and sample on its own.

    ``centres`` (B, 3): one cube centre per batch item. Returns (B, J, N). Kept as the reference the cached
    path is tested against and as the "recompute every frame" side of ``benchmarks/voxelpose_speed.py``.
    """
    b, v, j = heatmaps.shape[:3]
    volumes = []
    for i in range(b):
        points = voxel_centres(cube, centres[i], device=heatmaps.device)
        samples, masks = [], []
        for view in range(v):
            single = ViewRig(
                R=rig.R[view:view + 1], T=rig.T[view:view + 1], f=rig.f[view:view + 1], c=rig.c[view:view + 1],
                k=rig.k[view:view + 1], p=rig.p[view:view + 1], image_size=rig.image_size[view:view + 1],
                affine=rig.affine[view:view + 1], heatmap_size=rig.heatmap_size,
            )
            grid, mask = single.sampling_grid(points)
            out = F.grid_sample(heatmaps[i:i + 1, view], grid[None], mode="bilinear", padding_mode="zeros",
                                align_corners=True)
            samples.append(out.reshape(j, -1))
            masks.append(mask[0])
        volumes.append(aggregate_views(torch.stack(samples), torch.stack(masks), mean_over))
    return torch.stack(volumes)
