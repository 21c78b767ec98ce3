"""Multi-view 3D human pose: cameras, synthetic scenes, datasets, VoxelPose and its metrics.

Data side (what the VoxelPose model code consumes), in one picture::

    download@pose  prepare.download(cfg, "data/raw/pose", seed)      native layout (Campus-like when synthetic)
    splits@pose    prepare.make_splits("data/raw/pose", "data/splits/pose", cfg)
    voxelpose      split = datasets.load_pose_split("data/splits/pose")

Everything a model stage needs comes from ``data/splits/pose`` through :func:`datasets.load_pose_split`, so
the model stages depend on that folder, not on the ``data`` params:

- ``split.cameras``: ``list[cameras.Camera]`` (``R``, ``T`` = camera centre in world mm, ``fx fy cx cy``,
  ``k`` (3,), ``p`` (2,)); ``split.image_size`` = original (w, h) of every view;
- ``split.test``: :class:`datasets.TestSet` — per test frame the 14-joint ground truth (mm, z up) and each
  view's 2D detections (COCO-17 ``[x, y, score]`` in original pixels); turn a frame into input heatmaps with
  :func:`heatmaps.detection_heatmaps`;
- training samples: ``synthetic.SyntheticTrainSet(split, space_center, space_size, input_size, heatmap_size,
  sigma, seed, length)``; ``.sample(epoch, index)`` returns per-view input heatmaps (V, 17, H, W), the 3D
  joints (N, 17, 3) mm, their visibility and the roots (N, 3), the same on every call;
- scoring: :func:`metrics.evaluate_campus` (PCP per actor and per part, MPJPE, AP@25..150, recall@500).

Panoptic splits are read with :func:`datasets.load_panoptic_split` (frames, bodies, per-sequence cameras and
image paths); :mod:`panoptic` turns their frames into letterboxed images, 2D targets and per-sequence rigs, and
:mod:`panoptic_synthetic` writes a Panoptic-like tree in the panoptic-toolbox layout for CPU runs and tests. The synthetic scene writes ``scene.json`` beside the raw files with the space that covers it
(``meta["scene"]`` in the split).

Units are millimetres, world z points up with the floor at z = 0 (Panoptic is converted on load).
"""

from personlab.data.datasets import DatasetError

__all__ = ["PoseDataError"]


class PoseDataError(DatasetError):
    """A pose dataset file that is missing a piece or malformed; the message names the file and the fix.

    A :class:`personlab.data.datasets.DatasetError`, so the download and splits stages report it as one line.
    """
