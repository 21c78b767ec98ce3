"""``evaluate@voxelpose``: score VoxelPose on the test frames, score a triangulation baseline, draw pictures.

The test path is the original's (spec §3.3, §5.1): each frame's 2D detections are drawn as input heatmaps,
VoxelPose predicts COCO-17 people in mm, the predictions above the CPN threshold are converted to the
14-joint skeleton and scored with PCP, MPJPE, AP@25..150 and recall@500 (:mod:`personlab.pose.metrics`).

The baseline uses the same detections without any learning: people are matched across views by their
reprojection consistency and every joint is triangulated naively (linear DLT on undistorted points, detector
scores ignored). It shows what the detector's raw 2D output gives when lifted to 3D by geometry alone;
VoxelPose should beat it.
Its numbers are stored under ``baseline.*`` beside VoxelPose's.

On a Panoptic split (:func:`evaluate_panoptic`) the model reads the validation frames' images (letterboxed as
in training) and is scored with the Panoptic protocol of spec §5.2: AP@25..150, recall, MPJPE and
recall@500 on the 15 Panoptic joints against each GT's visible joints. PCP and the triangulation baseline
need Campus/Shelf's 14-joint actors and 2D detections, so they are not computed there.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader

from personlab.io import atomic_path, read_json, write_json
from personlab.models import load_model
from personlab.params import VoxelPoseParams
from personlab.pose import panoptic
from personlab.pose.cameras import Camera
from personlab.pose.datasets import PanopticFrames, PoseSplit, load_panoptic_split, load_pose_split
from personlab.pose.heatmaps import detection_heatmaps, heatmap_affine, letterbox_affine, transform_points
from personlab.pose.metrics import THRESHOLDS, ap_mpjpe, evaluate_campus
from personlab.pose.skeleton import CAMPUS_HIPS, CAMPUS_PARTS, coco_to_campus
from personlab.pose.volume import rig_for_split
from personlab.pose.voxelpose import VoxelPose
from personlab.runtime import select_device

__all__ = ["evaluate_panoptic", "evaluate_voxelpose", "predict_panoptic", "predict_test_set", "triangulate_frame",
           "undistort"]


# ------------------------------------------------------------------------------------------ prediction


def _frame_heatmaps(split: PoseSplit, i: int, meta: dict) -> np.ndarray:
    return detection_heatmaps(split.test.detections[i], split.image_size, meta["input_size"], meta["heatmap_size"],
                              meta["sigma"], amplitude=split.amplitude)


@torch.no_grad()
def predict_test_set(model: VoxelPose, split: PoseSplit, meta: dict, batch_size: int,
                     device: torch.device) -> tuple[np.ndarray, list[np.ndarray]]:
    """VoxelPose on every test frame: ``pred`` (F, K, J, 5) and the input heatmaps of each frame (V, J, H, W)."""
    model.eval().to(device)
    rig = rig_for_split(split, meta["input_size"], meta["heatmap_size"], device)
    maps = [_frame_heatmaps(split, i, meta) for i in range(len(split.test))]
    preds = []
    for start in range(0, len(maps), batch_size):
        batch = torch.from_numpy(np.stack(maps[start:start + batch_size])).to(device)
        preds.append(model(batch, rig).cpu().numpy())
    return np.concatenate(preds), maps


# ------------------------------------------------------------------------------------------ baseline


def undistort(camera: Camera, pixels: np.ndarray, iterations: int = 20) -> np.ndarray:
    """(..., 2) distorted pixels → (..., 2) ideal normalised coordinates (fixed-point inverse of §1.3)."""
    ud = (pixels[..., 0] - camera.cx) / camera.fx
    vd = (pixels[..., 1] - camera.cy) / camera.fy
    u, v = ud.copy(), vd.copy()
    k1, k2, k3 = camera.k
    p1, p2 = camera.p
    for _ in range(iterations):
        r2 = u * u + v * v
        scale = 1 + k1 * r2 + k2 * r2**2 + k3 * r2**3 + 2 * (p1 * v + p2 * u)
        u = (ud - p2 * r2) / scale
        v = (vd - p1 * r2) / scale
    return np.stack([u, v], axis=-1)


def _triangulate(cameras: Sequence[Camera], normalised: Sequence[np.ndarray]) -> np.ndarray:
    """Linear DLT per joint from every view's (J, 2) ideal coordinates → (J, 3) world mm."""
    rows = []
    for cam, uv in zip(cameras, normalised):
        proj = np.concatenate([cam.R, -(cam.R @ cam.T)[:, None]], axis=1)  # x_cam = R X - R T
        rows.append(uv[:, 0:1] * proj[2] - proj[0])
        rows.append(uv[:, 1:2] * proj[2] - proj[1])
    a = np.stack(rows, axis=1)  # (J, 2V, 4)
    a = a / np.linalg.norm(a, axis=-1, keepdims=True)
    x = np.linalg.svd(a)[2][:, -1]
    return x[:, :3] / np.where(np.abs(x[:, 3:]) < 1e-12, 1e-12, x[:, 3:])


def _reprojection_error(cam: Camera, points: np.ndarray, detection: np.ndarray) -> float:
    """Mean pixel error of a 3D pose in one view, relative to the detection's height."""
    err = np.linalg.norm(cam.project(points) - detection[:, :2], axis=-1)
    return float(err.mean() / max(np.ptp(detection[:, 1]), 1.0))


def triangulate_frame(cameras: Sequence[Camera], detections: Sequence[np.ndarray], max_error: float) -> np.ndarray:
    """People (N, 17, 3) mm naively triangulated from one frame's per-view (P, 17, 3) detections.

    Naive on purpose (the raw 2D output lifted by geometry alone): detector scores are ignored, every
    joint of every matched detection counts, and nothing is learnt about bodies. Greedy: the two-view pairing with the lowest reprojection error is accepted first, detections of the
    remaining views that fit it within ``max_error`` (fraction of the person's 2D height) join it, the joints
    are re-triangulated from all of them, and those detections are used up; repeat until no pair fits.
    """
    ideal = [[undistort(cam, det[:, :2]) for det in view] for cam, view in zip(cameras, detections)]
    candidates = []
    for v1, v2 in itertools.combinations(range(len(cameras)), 2):
        for a, b in itertools.product(range(len(detections[v1])), range(len(detections[v2]))):
            da, db = detections[v1][a], detections[v2][b]
            pts = _triangulate([cameras[v1], cameras[v2]], [ideal[v1][a], ideal[v2][b]])
            err = max(_reprojection_error(cameras[v1], pts, da), _reprojection_error(cameras[v2], pts, db))
            if err <= max_error:
                candidates.append((err, v1, a, v2, b))
    used: set[tuple[int, int]] = set()
    people = []
    for _, v1, a, v2, b in sorted(candidates):
        if (v1, a) in used or (v2, b) in used:
            continue
        members = [(v1, a), (v2, b)]
        pts = _triangulate([cameras[v1], cameras[v2]], [ideal[v1][a], ideal[v2][b]])
        for v in range(len(cameras)):
            if v in (v1, v2):
                continue
            fits = [(_reprojection_error(cameras[v], pts, det), d) for d, det in enumerate(detections[v])
                    if (v, d) not in used]
            fits = [f for f in fits if f[0] <= max_error]
            if fits:
                members.append((v, min(fits)[1]))
        pts = _triangulate([cameras[v] for v, _ in members], [ideal[v][d] for v, d in members])
        used.update(members)
        people.append(pts)
    return np.asarray(people, dtype=np.float64).reshape(-1, 17, 3)


# ------------------------------------------------------------------------------------------ pictures


def _limbs(pose14: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    mid_hip = pose14[list(CAMPUS_HIPS)].mean(axis=0)
    return [(pose14[a], pose14[b]) for a, b in CAMPUS_PARTS] + [(mid_hip, pose14[12])]


def _picture_frames(split: PoseSplit, count: int) -> list[int]:
    """``count`` test frames spread over the sequence, preferring frames with the most annotated actors."""
    annotated = split.test.gt_valid.sum(axis=1)
    best = np.flatnonzero(annotated == annotated.max())
    picks = np.linspace(0, len(best) - 1, min(count, len(best))).round().astype(int)
    return [int(best[p]) for p in picks]


Limbs = Callable[[np.ndarray], list[tuple[np.ndarray, np.ndarray]]]


def _draw_3d(path: Path, titles: list[str], truths: list[np.ndarray], preds: list[np.ndarray], limbs: Limbs) -> None:
    """Predicted (red) and true (black) skeletons in 3D, one panel per frame; ``limbs(pose)`` gives segments.

    Joints that are NaN (unannotated) are left out of their segments and of the axis ranges.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig = plt.figure(figsize=(4.5 * len(titles), 4.5))
    for col, (title, truth, pred) in enumerate(zip(titles, truths, preds)):
        ax = fig.add_subplot(1, len(titles), col + 1, projection="3d")
        for pose in truth:
            for s, e in limbs(pose):
                ax.plot(*zip(s, e), color="black", linewidth=2.5)
        for pose in pred:
            for s, e in limbs(pose):
                ax.plot(*zip(s, e), color="tab:red", linewidth=1.2)
        shown = np.concatenate([truth.reshape(-1, 3), pred.reshape(-1, 3)])
        shown = shown[np.isfinite(shown).all(axis=1)]
        if len(shown):  # true proportions: equal mm per unit on every axis
            ax.set_box_aspect(np.maximum(np.ptp(shown, axis=0), 1.0))
        ax.set_title(f"{title}: truth (black), VoxelPose (red)", fontsize=8)
        ax.set_xlabel("x mm", fontsize=7)
        ax.set_ylabel("y mm", fontsize=7)
        ax.set_zlabel("z mm", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


def _draw_views(path: Path, titles: list[str], truths: list[np.ndarray], preds: list[np.ndarray],
                cameras: list[Sequence[Camera]], backgrounds: list[list[np.ndarray]], affine: np.ndarray,
                size: Sequence[int], limbs: Limbs, suptitle: str, **imshow: Any) -> None:
    """Every view of each frame: ``backgrounds[row][v]`` with truth (yellow) and predictions (red) projected
    through the camera and ``affine`` (original pixels → the background's pixels, ``size`` (w, h))."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    views = max(len(c) for c in cameras)
    fig, axes = plt.subplots(len(titles), views, figsize=(3.2 * views, 2.7 * len(titles)), squeeze=False)
    for row, title in enumerate(titles):
        for v, cam in enumerate(cameras[row]):
            ax = axes[row][v]
            ax.imshow(backgrounds[row][v], **imshow)
            for poses, colour, width in ((truths[row], "yellow", 2.0), (preds[row], "red", 1.0)):
                for pose in poses:
                    for s, e in limbs(pose):
                        xy = transform_points(cam.project(np.stack([s, e])), affine)
                        ax.plot(xy[:, 0], xy[:, 1], color=colour, linewidth=width)
            ax.set_xlim(0, size[0] - 1)
            ax.set_ylim(size[1] - 1, 0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{title}, view {v}", fontsize=8)
    fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


# ------------------------------------------------------------------------------------------ the driver


def evaluate_voxelpose(model_dir: Path, splits_dir: Path, out_dir: Path, out_json: Path, curve_json: Path,
                       pictures_dir: Path, cfg: VoxelPoseParams) -> dict[str, Any]:
    """Score ``model_dir`` on the test frames of ``splits_dir`` and write the evaluate stage's four outputs.

    ``out_dir/predictions.npz``: the test frame indices and every frame's predictions (F, K, J, 5: x, y, z in
    mm, the validity flag, the proposal score); ``out_json``: the metrics; ``curve_json``: AP against the MPJPE
    threshold, beside the triangulation baseline's (DVC plot data); ``pictures_dir/voxelpose_3d.png`` and
    ``voxelpose_views.png``. ``cfg`` supplies the evaluation options (``cfg.eval``); the network and its
    heatmap geometry come from ``model_dir/model.json``. Returns the metrics written. A Panoptic split is
    handed to :func:`evaluate_panoptic`, which writes the same outputs.
    """
    if read_json(Path(splits_dir) / "meta.json").get("dataset") == "panoptic":
        return evaluate_panoptic(model_dir, splits_dir, out_dir, out_json, curve_json, pictures_dir, cfg)
    split = load_pose_split(splits_dir)
    model, meta = load_model(model_dir)
    if meta.get("arch") != "voxelpose":
        raise ValueError(f"{model_dir}: holds a {meta.get('arch')!r} model, not VoxelPose; point evaluate@voxelpose "
                         "at models/voxelpose")
    if len(split.cameras) != len(split.test.detections[0]):
        raise ValueError(f"{splits_dir}: the test detections have {len(split.test.detections[0])} views but the "
                         f"calibration {len(split.cameras)}; re-run `dvc repro splits`")
    device = select_device("auto")
    pred, maps = predict_test_set(model, split, meta, cfg.eval.batch_size, device)
    valid = pred[..., 0, 3] >= 0
    pred_coco = [p[v, :, :3] for p, v in zip(pred, valid)]
    scores = [p[v, 0, 4] for p, v in zip(pred, valid)]
    protocol = dict(actors=split.eval_actors, head=split.head, empty_frame=split.empty_frame)
    metrics: dict[str, Any] = dict(evaluate_campus(pred_coco, scores, split.test.gt, split.test.gt_valid, **protocol))

    tri = [triangulate_frame(split.cameras, dets, cfg.eval.baseline_max_error) for dets in split.test.detections]
    tri_scores = [np.ones(len(t)) for t in tri]
    baseline = evaluate_campus(tri, tri_scores, split.test.gt, split.test.gt_valid, **protocol)
    metrics.update({f"baseline.{k}": v for k, v in baseline.items()})
    metrics.update({
        "baseline": "naive triangulation of the 2D detections (greedy reprojection matching, unweighted DLT)",
        "empty_frame": split.empty_frame,
        "head": split.head,
        "dataset": split.dataset,
        "frames": int(len(split.test)),
        "threshold": float(model.threshold),
        "pcp_gain_over_baseline": metrics["pcp_avg"] - baseline["pcp_avg"],
    })
    write_json(out_json, metrics)
    write_json(curve_json, [{"threshold_mm": t, "ap": metrics[f"ap{t:g}"], "ap_baseline": metrics[f"baseline.ap{t:g}"]}
                            for t in THRESHOLDS])
    with atomic_path(Path(out_dir) / "predictions.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, frames=np.asarray(split.test.frames), pred=pred.astype(np.float32))

    frames = _picture_frames(split, cfg.eval.picture_frames)
    pred14 = [coco_to_campus(p, split.head) for p in pred_coco]
    pictures_dir = Path(pictures_dir)
    titles = [f"frame {int(split.test.frames[i])}" for i in frames]
    truths = [split.test.gt[i][split.test.gt_valid[i]] for i in frames]
    chosen = [pred14[i] for i in frames]
    _draw_3d(pictures_dir / "voxelpose_3d.png", titles, truths, chosen, _limbs)
    _draw_views(pictures_dir / "voxelpose_views.png", titles, truths, chosen, [split.cameras] * len(frames),
                [[m.max(axis=0) for m in maps[i]] for i in frames],
                heatmap_affine(split.image_size, meta["input_size"], meta["heatmap_size"]), meta["heatmap_size"],
                _limbs, "input heatmaps with truth (yellow) and VoxelPose (red) projected", cmap="gray", vmin=0, vmax=1)
    return metrics


# ------------------------------------------------------------------------------------------ Panoptic


def _panoptic_limbs(pose: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    return [(pose[a], pose[b]) for a, b in panoptic.PANOPTIC_LIMBS]


@torch.no_grad()
def predict_panoptic(model: VoxelPose, frames: PanopticFrames, image_size: Sequence[int], meta: dict,
                     batch_size: int, device: torch.device) -> np.ndarray:
    """VoxelPose on every frame's images: ``pred`` (F, K, J, 5), row i for ``frames`` entry i."""
    model.eval().to(device)
    samples = panoptic.PanopticSamples(frames, image_size, meta["input_size"], meta["heatmap_size"], meta["sigma"])
    rigs = panoptic.rigs_for_frames(frames, image_size, meta["input_size"], meta["heatmap_size"], device)
    loader = DataLoader(samples, batch_sampler=panoptic.sequence_batches(frames, batch_size),
                        collate_fn=panoptic.collate_frames)
    pred = np.zeros((len(frames), model.max_people, model.num_joints, 5), dtype=np.float32)
    for batch in loader:
        out = model(panoptic.normalise(batch["images"].to(device)), rigs[int(batch["sequence"][0])])
        pred[batch["index"].numpy()] = out.float().cpu().numpy()
    return pred


def evaluate_panoptic(model_dir: Path, splits_dir: Path, out_dir: Path, out_json: Path, curve_json: Path,
                      pictures_dir: Path, cfg: VoxelPoseParams) -> dict[str, Any]:
    """Score ``model_dir`` on the validation frames of a Panoptic split; the outputs of :func:`evaluate_voxelpose`.

    Metrics (spec §5.2): ``ap25`` … ``ap150``, ``recall25`` … ``recall150``, ``map`` (their mean AP),
    ``mpjpe_mm``, ``recall500``, with the matching rules, joint set and empty-frame policy as strings.
    """
    splits_dir = Path(splits_dir)
    split_meta = read_json(splits_dir / "meta.json")
    frames = load_panoptic_split(splits_dir, "test")
    model, meta = load_model(model_dir)
    if meta.get("arch") != "voxelpose" or meta.get("dataset") != "panoptic":
        raise ValueError(f"{model_dir}: holds a {meta.get('arch')!r} model trained on {meta.get('dataset')!r}, not a "
                         "VoxelPose trained on Panoptic; re-run `dvc repro voxelpose` on the Panoptic split")
    if len(frames) == 0:
        raise ValueError(f"{splits_dir}: the Panoptic validation part has no frames; check "
                         "data.pose.panoptic.val_sequences and that their hdImgs exist")
    image_size = tuple(split_meta["image_size"])
    pred = predict_panoptic(model, frames, image_size, meta, cfg.eval.batch_size, select_device("auto"))
    valid = pred[..., 0, 3] >= 0
    poses = [p[v, :, :3] for p, v in zip(pred, valid)]
    scores = [p[v, 0, 4] for p, v in zip(pred, valid)]
    truth = [frames.poses[i, : frames.count[i]] for i in range(len(frames))]
    truth_vis = [frames.vis[i, : frames.count[i]] for i in range(len(frames))]
    metrics: dict[str, Any] = dict(ap_mpjpe(poses, scores, truth, truth_vis, THRESHOLDS, split_meta["empty_frame"]))
    metrics.update({
        "dataset": "panoptic",
        "joints": "Panoptic-15 (coco19 joints 0-14), GT joints visible when their confidence > 0.1",
        "matching": "predictions by descending CPN root score; each is matched to its nearest GT by MPJPE over "
                    "that GT's visible joints and is a true positive when under the threshold and that GT is "
                    "not yet taken (no re-assignment); AP is the VOC area under the monotone precision",
        "mpjpe": "mean MPJPE (visible GT joints) of the greedy matches under 500 mm",
        "recall": "recall<t>: true positives at threshold t / GT people; recall500: share of GT people with some "
                  "prediction under 500 mm MPJPE",
        "empty_frame": split_meta["empty_frame"],
        "frames": int(len(frames)),
        "threshold": float(model.threshold),
    })
    write_json(out_json, metrics)
    # no triangulation baseline on Panoptic: its curve field is null, so the shared "Pose AP" plot still renders
    write_json(curve_json, [{"threshold_mm": t, "ap": metrics[f"ap{t:g}"], "ap_baseline": None} for t in THRESHOLDS])
    with atomic_path(Path(out_dir) / "predictions.npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, sequences=np.asarray(frames.sequences, dtype=str), sequence=frames.sequence, frames=frames.frame,
                 pred=pred)

    crowded = np.flatnonzero(frames.count == frames.count.max())
    picks = [int(crowded[k]) for k in np.linspace(0, len(crowded) - 1, min(cfg.eval.picture_frames, len(crowded)))
             .round().astype(int)]
    titles = [f"{frames.sequences[frames.sequence[i]]} frame {int(frames.frame[i])}" for i in picks]
    truths = [np.where(truth_vis[i][..., None], truth[i], np.nan) for i in picks]
    chosen = [poses[i] for i in picks]
    cameras = [frames.cameras[frames.sequences[frames.sequence[i]]] for i in picks]
    images = [[panoptic.read_view(frames.image_path(i, v), image_size, meta["input_size"]).transpose(1, 2, 0)
               for v in range(len(frames.camera_ids))] for i in picks]
    pictures_dir = Path(pictures_dir)
    _draw_3d(pictures_dir / "voxelpose_3d.png", titles, truths, chosen, _panoptic_limbs)
    _draw_views(pictures_dir / "voxelpose_views.png", titles, truths, chosen, cameras, images,
                letterbox_affine(image_size, meta["input_size"]), meta["input_size"], _panoptic_limbs,
                "network input images with truth (yellow) and VoxelPose (red) projected")
    return metrics
