"""Joint sets (COCO-17, Campus/Shelf-14, Panoptic-15, the synthetic 19-joint superset) and their mappings.

The network works in COCO-17 on Campus/Shelf and in Panoptic-15 on Panoptic; ground truth and PCP use the
14-joint Campus/Shelf skeleton. The COCO → 14 conversion (spec §4.1) is part of the evaluation protocol:
its head heuristics differ between Campus and Shelf and the Head PCP depends on them.
"""

from __future__ import annotations

from typing import Literal

import numpy as np

__all__ = [
    "CAMPUS14",
    "CAMPUS_HIPS",
    "CAMPUS_PARTS",
    "COCO17",
    "COCO_FLIP_PAIRS",
    "COCO_HIPS",
    "PANOPTIC15",
    "PANOPTIC_ROOT",
    "PANOPTIC_TO_COCO",
    "PART_GROUPS",
    "SUPER19",
    "coco_to_campus",
    "coco_roots",
    "super_to_panoptic",
]

COCO17 = (
    "nose", "l_eye", "r_eye", "l_ear", "r_ear", "l_shoulder", "r_shoulder", "l_elbow", "r_elbow",
    "l_wrist", "r_wrist", "l_hip", "r_hip", "l_knee", "r_knee", "l_ankle", "r_ankle",
)
COCO_HIPS = (11, 12)
COCO_FLIP_PAIRS = ((1, 2), (3, 4), (5, 6), (7, 8), (9, 10), (11, 12), (13, 14), (15, 16))

CAMPUS14 = (
    "r_ankle", "r_knee", "r_hip", "l_hip", "l_knee", "l_ankle", "r_wrist", "r_elbow", "r_shoulder",
    "l_shoulder", "l_elbow", "l_wrist", "bottom_head", "top_head",
)
CAMPUS_HIPS = (2, 3)
# COCO index of each of the 12 body joints of the 14-joint skeleton (the two head joints are derived)
_COCO_FOR_CAMPUS_BODY = (16, 14, 12, 11, 13, 15, 10, 8, 6, 5, 7, 9)

# the 10 PCP parts: 9 limb segments of the 14-joint skeleton, then the torso (mid-hip → bottom head)
CAMPUS_PARTS = ((0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (12, 13))
PART_GROUPS = {
    "head": (8,),
    "torso": (9,),
    "upper_arms": (5, 6),
    "lower_arms": (4, 7),
    "upper_legs": (1, 2),
    "lower_legs": (0, 3),
}

PANOPTIC15 = (
    "neck", "nose", "mid_hip", "l_shoulder", "l_elbow", "l_wrist", "l_hip", "l_knee", "l_ankle",
    "r_shoulder", "r_elbow", "r_wrist", "r_hip", "r_knee", "r_ankle",
)
PANOPTIC_ROOT = 2
# COCO index → Panoptic-15 index; Panoptic has no eyes or ears among its first 15 joints
PANOPTIC_TO_COCO = {0: 1, 5: 3, 6: 9, 7: 4, 8: 10, 9: 5, 10: 11, 11: 6, 12: 12, 13: 7, 14: 13, 15: 8, 16: 14}

# The synthetic superset: COCO-17 plus an anatomical neck and the top of the head.
SUPER19 = COCO17 + ("neck", "head_top")


def coco_roots(poses: np.ndarray) -> np.ndarray:
    """Mid-hip (mean of COCO hips 11 and 12) of (..., 17, 3) poses: the root the CPN localises."""
    return poses[..., COCO_HIPS, :].mean(axis=-2)


def _campus_head(coco: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mid_shoulder = coco[..., [5, 6], :].mean(axis=-2)
    head_centre = coco[..., [3, 4], :].mean(axis=-2)
    bottom = (mid_shoulder + head_centre) / 2
    top = 2 * head_centre - bottom
    return bottom, top


def coco_to_campus(coco: np.ndarray, head: Literal["campus", "shelf"] = "campus") -> np.ndarray:
    """(..., 17, D) COCO joints → (..., 14, D) Campus/Shelf joints, with the dataset's head heuristic.

    Campus: bottom-head = midpoint of mid-shoulder and mid-ear, top-head = its mirror through mid-ear.
    Shelf: a 3:1 blend of a nose-based estimate and the Campus one (spec §4.1). D is 3 (world) or 2 (image).
    """
    coco = np.asarray(coco, dtype=np.float64)
    if coco.shape[-2] != 17:
        raise ValueError(f"coco_to_campus: expected 17 COCO joints on axis -2, got shape {coco.shape}")
    out = np.empty(coco.shape[:-2] + (14, coco.shape[-1]), dtype=np.float64)
    out[..., :12, :] = coco[..., _COCO_FOR_CAMPUS_BODY, :]
    bottom, top = _campus_head(coco)
    if head == "shelf":
        mid_shoulder = coco[..., [5, 6], :].mean(axis=-2)
        up = coco[..., 0, :] - mid_shoulder
        stretch = np.array([0.75, 0.75, 1.5][: coco.shape[-1]])
        top = 0.75 * (mid_shoulder + up * stretch) + 0.25 * top
        bottom = 0.75 * (mid_shoulder + 0.5 * up) + 0.25 * bottom
    elif head != "campus":
        raise ValueError(f"coco_to_campus: head must be 'campus' or 'shelf', got {head!r}")
    out[..., 12, :] = bottom
    out[..., 13, :] = top
    return out


def super_to_panoptic(poses: np.ndarray) -> np.ndarray:
    """(..., 19, 3) superset → (..., 15, 3) Panoptic-15 (neck from the superset, mid-hip = mean of hips)."""
    poses = np.asarray(poses, dtype=np.float64)
    out = np.empty(poses.shape[:-2] + (15, 3), dtype=np.float64)
    for coco_index, pan_index in PANOPTIC_TO_COCO.items():
        out[..., pan_index, :] = poses[..., coco_index, :]
    out[..., 0, :] = poses[..., 17, :]
    out[..., 2, :] = coco_roots(poses[..., :17, :])
    return out
