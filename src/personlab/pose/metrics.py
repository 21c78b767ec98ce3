"""Multi-person 3D pose metrics: Campus/Shelf PCP (spec §5.1) and Panoptic-style AP@K, MPJPE, recall (§5.2).

Both follow the original's matching rules, which are lenient on purpose of comparability:

- PCP: each annotated actor takes the prediction with the smallest MPJPE over all 14 joints — greedy per
  actor, not one-to-one, no distance cap — and a part is correct when the mean distance of its two end
  joints is at most ``alpha`` times the part's GT length (α = 0.5).
- AP: predictions sorted by score; each is a true positive when its *nearest* GT (MPJPE over that GT's
  visible joints) is under the threshold and not yet taken; VOC-style area under the monotone precision.

A frame without any prediction crashes the original PCP; here ``empty_frame`` says what it means:
``"miss"`` (strict: every annotated actor in it is missed, all its parts wrong) or ``"skip"`` (as Faster
VoxelPose and mmpose: the frame's GT is not counted at all). The same policy applies to AP and recall.
"""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np

from personlab.pose.skeleton import CAMPUS_HIPS, CAMPUS_PARTS, PART_GROUPS, coco_to_campus

__all__ = ["THRESHOLDS", "ap_mpjpe", "evaluate_campus", "pcp"]

THRESHOLDS = (25, 50, 75, 100, 125, 150)
EmptyFrame = Literal["miss", "skip"]


def _check_policy(empty_frame: str) -> None:
    if empty_frame not in ("miss", "skip"):
        raise ValueError(f"empty_frame must be 'miss' or 'skip', got {empty_frame!r}")


def _parts(pose: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(..., 10, 3) start and end points of the 9 limbs and the torso (mid-hip → bottom head)."""
    starts = [pose[..., a, :] for a, _ in CAMPUS_PARTS] + [pose[..., list(CAMPUS_HIPS), :].mean(axis=-2)]
    ends = [pose[..., b, :] for _, b in CAMPUS_PARTS] + [pose[..., 12, :]]
    return np.stack(starts, axis=-2), np.stack(ends, axis=-2)


def pcp(
    pred: Sequence[np.ndarray],
    gt: np.ndarray,
    gt_valid: np.ndarray,
    actors: Sequence[int] = (0, 1, 2),
    empty_frame: EmptyFrame = "miss",
    alpha: float = 0.5,
    recall_threshold: float = 500.0,
) -> dict[str, float]:
    """Actor-wise PCP in percent.

    ``pred[i]`` (P, 14, 3) mm predictions of frame i (P may be 0); ``gt`` (F, A, 14, 3) with ``gt_valid``
    (F, A). Returns ``pcp_actor<k>`` (k 1-based, every actor annotated at least once), ``pcp_avg`` (mean over
    ``actors``), ``pcp_<group>`` per part group (mean over ``actors``) and ``pcp_recall500`` (share of
    annotated actors, all of them, whose matched prediction is within ``recall_threshold`` mm MPJPE).
    """
    _check_policy(empty_frame)
    gt = np.asarray(gt, dtype=np.float64)
    gt_valid = np.asarray(gt_valid, dtype=bool)
    if len(pred) != len(gt):
        raise ValueError(f"pcp: {len(pred)} prediction frames for {len(gt)} GT frames; they must align")
    num_actors = gt.shape[1]
    correct = np.zeros((num_actors, 10))
    total = np.zeros(num_actors)
    matched = 0
    for poses, frame_gt, valid in zip(pred, gt, gt_valid):
        poses = np.asarray(poses, dtype=np.float64).reshape(-1, 14, 3)
        if len(poses) == 0 and empty_frame == "skip":
            continue
        for a in np.flatnonzero(valid):
            total[a] += 1
            if len(poses) == 0:
                continue
            errors = np.linalg.norm(poses - frame_gt[a], axis=-1).mean(axis=-1)
            best = poses[int(np.argmin(errors))]
            matched += int(errors.min() < recall_threshold)
            p_start, p_end = _parts(best)
            g_start, g_end = _parts(frame_gt[a])
            error = (np.linalg.norm(p_start - g_start, axis=-1) + np.linalg.norm(p_end - g_end, axis=-1)) / 2
            correct[a] += error <= alpha * np.linalg.norm(g_start - g_end, axis=-1)
    missing = [a for a in actors if total[a] == 0]
    if missing:
        raise ValueError(f"pcp: actor {missing[0]} is never annotated in the evaluated frames; drop it from the "
                         "evaluated actors (data.pose.eval_actors)")
    out: dict[str, float] = {}
    per_part = np.zeros_like(correct)
    seen = total > 0
    per_part[seen] = 100.0 * correct[seen] / total[seen, None]
    for a in np.flatnonzero(seen):
        out[f"pcp_actor{a + 1}"] = float(per_part[a].mean())
    chosen = list(actors)
    out["pcp_avg"] = float(per_part[chosen].mean(axis=1).mean())
    for name, parts in PART_GROUPS.items():
        out[f"pcp_{name}"] = float(per_part[chosen][:, list(parts)].mean())
    out["pcp_recall500"] = float(matched / total.sum()) if total.sum() else 0.0
    return out


def _voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    steps = np.flatnonzero(mrec[1:] != mrec[:-1])
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def ap_mpjpe(
    pred: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    gt: Sequence[np.ndarray],
    gt_vis: Sequence[np.ndarray] | None = None,
    thresholds: Sequence[float] = THRESHOLDS,
    empty_frame: EmptyFrame = "miss",
) -> dict[str, float | None]:
    """AP and recall at each MPJPE threshold (mm), MPJPE of the matches under 500 mm, and recall@500.

    ``pred[i]`` (P, J, 3) mm with ``scores[i]`` (P,) of frame i; ``gt[i]`` (G, J, 3) with optional
    ``gt_vis[i]`` (G, J). Returns ``ap<t>``, ``recall<t>`` (fractions), ``map`` (mean AP), ``mpjpe_mm``
    (None when no prediction matches within 500 mm) and ``recall500`` (share of GT people with some
    prediction under 500 mm).
    """
    _check_policy(empty_frame)
    if not (len(pred) == len(scores) == len(gt)):
        raise ValueError(f"ap_mpjpe: {len(pred)} prediction, {len(scores)} score and {len(gt)} GT frames must align")
    errors, owners, all_scores = [], [], []
    total_gt = 0
    for i, (poses, conf, people) in enumerate(zip(pred, scores, gt)):
        people = np.asarray(people, dtype=np.float64)
        poses = np.asarray(poses, dtype=np.float64)
        people = people.reshape(0, 0, 3) if people.size == 0 else people
        poses = poses.reshape(0, 0, 3) if poses.size == 0 else poses
        if len(poses) == 0 and empty_frame == "skip":
            continue
        vis = np.ones(people.shape[:2], bool) if gt_vis is None else np.asarray(gt_vis[i], dtype=bool)
        first_id = total_gt
        total_gt += len(people)
        for p, score in zip(poses, np.asarray(conf, dtype=np.float64).reshape(-1)):
            if len(people) == 0:
                errors.append(np.inf)
                owners.append(-1)
            else:
                dist = np.linalg.norm(people - p, axis=-1)
                counts = vis.sum(axis=1)
                per_gt = np.where(counts > 0, (dist * vis).sum(axis=1) / np.maximum(counts, 1), np.inf)
                nearest = int(np.argmin(per_gt))
                errors.append(per_gt[nearest])
                owners.append(first_id + nearest)
            all_scores.append(score)
    if total_gt == 0:
        raise ValueError("ap_mpjpe: no ground-truth person in the evaluated frames; AP is undefined")
    order = np.argsort(-np.asarray(all_scores), kind="stable")
    errors_sorted = np.asarray(errors, dtype=np.float64)[order]
    owners_sorted = np.asarray(owners, dtype=np.int64)[order]

    def greedy(threshold: float) -> np.ndarray:
        taken: set[int] = set()
        tp = np.zeros(len(order), dtype=bool)
        for k, (err, owner) in enumerate(zip(errors_sorted, owners_sorted)):
            if err < threshold and owner not in taken:
                tp[k] = True
                taken.add(int(owner))
        return tp

    out: dict[str, float | None] = {}
    aps = []
    for t in thresholds:
        tp = greedy(t)
        cum_tp = np.cumsum(tp)
        recall = cum_tp / total_gt
        precision = cum_tp / np.arange(1, len(tp) + 1)
        aps.append(_voc_ap(recall, precision))
        out[f"ap{t:g}"] = aps[-1]
        out[f"recall{t:g}"] = float(recall[-1]) if len(recall) else 0.0
    out["map"] = float(np.mean(aps))
    tp500 = greedy(500.0)
    out["mpjpe_mm"] = float(errors_sorted[tp500].mean()) if tp500.any() else None
    close = {int(o) for e, o in zip(errors, owners) if e < 500.0}
    out["recall500"] = len(close) / total_gt
    return out


def evaluate_campus(
    pred_coco: Sequence[np.ndarray],
    scores: Sequence[np.ndarray],
    gt: np.ndarray,
    gt_valid: np.ndarray,
    actors: Sequence[int] = (0, 1, 2),
    head: Literal["campus", "shelf"] = "campus",
    empty_frame: EmptyFrame = "miss",
) -> dict[str, float | None]:
    """Every Campus/Shelf metric from COCO-17 predictions: PCP (spec §5.1) and AP/MPJPE/recall on 14 joints.

    ``pred_coco[i]`` (P, 17, 3) mm predictions of test frame i that passed the detection threshold,
    ``scores[i]`` (P,) their root scores; ``gt``/``gt_valid`` as in :class:`datasets.TestSet`.
    """
    pred14 = [coco_to_campus(np.asarray(p, dtype=np.float64).reshape(-1, 17, 3), head) for p in pred_coco]
    out: dict[str, float | None] = dict(pcp(pred14, gt, gt_valid, actors, empty_frame))
    people = [frame_gt[valid] for frame_gt, valid in zip(np.asarray(gt), np.asarray(gt_valid, bool))]
    out.update(ap_mpjpe(pred14, scores, people, None, THRESHOLDS, empty_frame))
    return out
