"""The pose item of the ``download`` and ``splits`` stages.

``download`` puts the dataset in its native layout under ``data/raw/pose``:

- ``synthetic`` (the committed default): a Campus-like scene generated from the seed, in the exact Campus
  layout the real test path reads — ``calibration_campus.json`` (one camera distorted),
  ``actorsGT.mat`` and ``pred_campus_maskrcnn_hrnet_coco.pkl`` — plus ``pose_db.npz`` (training poses);
- ``campus`` / ``shelf``: the TUM archive (``archive``, checked against ``md5``), VoxelPose's calibration JSON
  (``calibration``) and 2D-detection pickle (``predictions``), plus the procedural ``pose_db.npz`` that stands
  in for the unavailable ``panoptic_training_pose.pkl``;
- ``panoptic``: the needed files of a local panoptic-toolbox ``data`` folder (``archive``), hard-linked when
  the file system allows it.

``make_splits`` turns that into ``data/splits/pose`` — everything the model stages read, through
:func:`personlab.pose.datasets.load_pose_split` — and returns counts for ``metrics/data.json``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from personlab.io import atomic_dir
from personlab.params import PoseData
from personlab.pose import datasets, synthetic

__all__ = ["download", "make_splits"]


def download(cfg: PoseData, out_dir: Path, seed: int) -> None:
    """Write the pose dataset named by ``cfg.source`` into ``out_dir`` (replaced whole, atomically)."""
    out_dir = Path(out_dir)
    with atomic_dir(out_dir) as tmp:
        if cfg.source == "synthetic":
            synthetic.write_dataset(cfg, tmp, seed)
        elif cfg.source in ("campus", "shelf"):
            datasets.fetch_campus_like(cfg, tmp, out_dir.parent.parent / "downloads" / "pose")
            datasets.write_pose_db(tmp / datasets.POSE_DB, *synthetic.make_pose_db(cfg.skeleton, seed))
        else:
            datasets.fetch_panoptic(cfg, tmp)


def make_splits(raw_dir: Path, out_dir: Path, cfg: PoseData) -> dict[str, Any]:
    """Write ``out_dir`` (the train/test frames, the camera rig, the protocol) and return its counts.

    Campus/Shelf/synthetic: ``meta.json`` (protocol and sizes), ``calibration.json`` (the first
    ``num_cameras`` cameras), ``test.npz`` (per test frame: 14-joint GT and each view's detections) and
    ``pose_db.npz`` (the poses the training sampler places). Panoptic: ``meta.json``, ``cameras/<seq>.json``
    and ``train.npz`` / ``test.npz`` frame lists with their bodies.
    """
    raw_dir, out_dir = Path(raw_dir), Path(out_dir)
    if not raw_dir.is_dir():
        raise FileNotFoundError(f"{raw_dir}: the raw pose dataset is missing; run `dvc repro download` first")
    with atomic_dir(out_dir) as tmp:
        if cfg.source == "panoptic":
            counts = datasets.write_panoptic_split(raw_dir, tmp, cfg)
        else:
            counts = datasets.write_campus_split(raw_dir, tmp, cfg)
    return counts
