"""2D Gaussian heatmaps and the original → input → heatmap coordinate chain (spec §1.2, §1.4).

One drawing routine serves training (GT projections with amplitude noise) and testing (detector keypoints),
so the synthetic generator and the test path share every convention: the letterbox affine (image centred,
aspect kept, scale = padded size / 200), the person-size-dependent σ, the 3σ window, max-merging and
clipping to [0, 1]. Centres are truncated ``int(x / stride)`` as in the original unless ``exact_centre``;
the volume sampler must use the same choice (spec §8 trap 6).
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

__all__ = [
    "detection_heatmaps",
    "draw_heatmaps",
    "heatmap_affine",
    "letterbox_affine",
    "person_sigma",
    "transform_points",
]


def letterbox_affine(image_size: Sequence[int], input_size: Sequence[int]) -> np.ndarray:
    """(2, 3) affine from original pixels to network-input pixels: pad to the input aspect, scale, centre.

    Equals the original's ``get_affine_transform(center=(w/2, h/2), scale=padded/200, rot=0, input_size)``,
    a uniform scaling about the image centre.
    """
    w, h = (float(v) for v in image_size)
    w_in, h_in = (float(v) for v in input_size)
    padded_w = h / h_in * w_in if w / w_in < h / h_in else w
    a = w_in / padded_w
    return np.array([[a, 0.0, w_in / 2 - a * w / 2], [0.0, a, h_in / 2 - a * h / 2]])


def heatmap_affine(image_size: Sequence[int], input_size: Sequence[int], heatmap_size: Sequence[int]) -> np.ndarray:
    """(2, 3) affine from original pixels to heatmap pixels (the letterbox, then ÷ the feature stride)."""
    stride = np.asarray(input_size, dtype=np.float64) / np.asarray(heatmap_size, dtype=np.float64)
    return letterbox_affine(image_size, input_size) / stride[:, None]


def transform_points(points: np.ndarray, affine: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (..., 2) points."""
    points = np.asarray(points, dtype=np.float64)
    return points @ affine[:, :2].T + affine[:, 2]


def person_sigma(points: np.ndarray, visible: np.ndarray, sigma: float, reference: float = 96.0) -> float:
    """Gaussian σ (heatmap px) for one person: ``sigma·√2·clip(L, ref/2, 2·ref)/ref``, L = bbox side (spec §1.2).

    ``reference`` is 96 heatmap px in the original (200-px-wide heatmaps); see :func:`draw_heatmaps`.
    """
    pts = np.asarray(points, dtype=np.float64)[np.asarray(visible, dtype=bool)]
    if len(pts) == 0:
        return sigma * np.sqrt(2.0) * 0.5
    side = float(np.max(pts.max(axis=0) - pts.min(axis=0)))
    return sigma * np.sqrt(2.0) * float(np.clip(side, reference / 2, 2 * reference)) / reference


def draw_heatmaps(
    points: np.ndarray,
    visible: np.ndarray,
    amplitude: np.ndarray,
    heatmap_size: Sequence[int],
    sigma: float,
    reference: float | None = None,
    exact_centre: bool = False,
) -> np.ndarray:
    """(J, H, W) float32 heatmaps of P people from (P, J, 2) keypoints in heatmap pixels.

    ``reference`` defaults to ``96 · W / 200``: the original's 96 px at its 200-px-wide maps, scaled with the
    map, so that with ``sigma`` also scaled by ``W / 200`` the Gaussians keep the original's width relative to
    each person at any heatmap size (at W = 200 this is exactly the original recipe).

    ``visible`` (P, J) picks the joints that are drawn and that size the person's σ; ``amplitude`` (P, J)
    scales each Gaussian peak. Gaussians are max-merged across people and clipped to [0, 1]; windows that
    fall wholly outside the map draw nothing.
    """
    points = np.asarray(points, dtype=np.float64).reshape(-1, np.shape(points)[-2], 2)
    num_people, num_joints = points.shape[:2]
    visible = np.asarray(visible, dtype=bool).reshape(num_people, num_joints) & np.isfinite(points).all(axis=-1)
    amplitude = np.asarray(amplitude, dtype=np.float64).reshape(num_people, num_joints)
    width, height = int(heatmap_size[0]), int(heatmap_size[1])
    reference = 96.0 * width / 200.0 if reference is None else reference
    # Every window fits in K pixels; a canvas padded by K takes whole windows, so each person's joints are
    # pasted at once by fancy indexing (one joint per channel: no index repeats within a person).
    pad = int(np.ceil(6 * 2 * np.sqrt(2.0) * sigma)) + 2
    canvas = np.zeros((num_joints, height + 2 * pad, width + 2 * pad), dtype=np.float32)
    for n in range(num_people):
        if not visible[n].any():
            continue
        s = person_sigma(points[n], visible[n], sigma, reference)
        radius = 3 * s
        centre = points[n] if exact_centre else np.trunc(points[n])  # int(x): truncation towards zero
        lo = np.floor(centre - radius).astype(np.int64)
        hi = np.ceil(centre + radius).astype(np.int64)
        drawn = visible[n] & (lo[:, 0] <= width - 1) & (hi[:, 0] >= 0) & (lo[:, 1] <= height - 1) & (hi[:, 1] >= 0)
        joints = np.flatnonzero(drawn)
        if len(joints) == 0:
            continue
        steps = np.arange(int(np.ceil(2 * radius)) + 2)
        xs = lo[joints, 0, None] + steps
        ys = lo[joints, 1, None] + steps
        gx = np.exp(-((xs - centre[joints, 0, None]) ** 2) / (2 * s * s))
        gy = np.exp(-((ys - centre[joints, 1, None]) ** 2) / (2 * s * s))
        gx *= (xs <= hi[joints, 0, None]) & (xs >= 0) & (xs < width)
        gy *= (ys <= hi[joints, 1, None]) & (ys >= 0) & (ys < height)
        patches = (amplitude[n, joints, None, None] * (gy[:, :, None] * gx[:, None, :])).astype(np.float32)
        index = (joints[:, None, None], ys[:, :, None] + pad, xs[:, None, :] + pad)
        canvas[index] = np.maximum(canvas[index], patches)
    out = np.ascontiguousarray(canvas[:, pad : pad + height, pad : pad + width])
    np.clip(out, 0.0, 1.0, out=out)
    return out


def detection_heatmaps(
    detections: Sequence[np.ndarray],
    image_size: Sequence[int],
    input_size: Sequence[int],
    heatmap_size: Sequence[int],
    sigma: float,
    amplitude: Literal["one", "score"] = "one",
    reference: float | None = None,
    exact_centre: bool = False,
) -> np.ndarray:
    """(V, J, H, W) test-time input heatmaps from each view's (P, J, 3) ``[x, y, score]`` detections.

    As the original test path (spec §3.3): every keypoint goes through the letterbox affine and is drawn,
    with no visibility filter; the amplitude is 1 (Campus) or the keypoint score (Shelf). A view with no
    detection gives zero maps.
    """
    if amplitude not in ("one", "score"):
        raise ValueError(f"detection_heatmaps: amplitude must be 'one' or 'score', got {amplitude!r}")
    affine = heatmap_affine(image_size, input_size, heatmap_size)
    maps = []
    for view in detections:
        view = np.asarray(view, dtype=np.float64)
        if view.ndim != 3 or view.shape[-1] != 3:
            raise ValueError(f"detection_heatmaps: each view needs (P, J, 3) detections, got shape {view.shape}")
        pts = transform_points(view[..., :2], affine)
        amp = np.ones(view.shape[:2]) if amplitude == "one" else view[..., 2]
        visible = np.ones(view.shape[:2], bool)
        maps.append(draw_heatmaps(pts, visible, amp, heatmap_size, sigma, reference, exact_centre))
    return np.stack(maps)
