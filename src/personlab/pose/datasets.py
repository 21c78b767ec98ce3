"""Campus, Shelf and CMU Panoptic in their native formats, and the split the model stages read.

Native formats (spec §4): a VoxelPose calibration JSON, ``actorsGT.mat`` (``actor3D``: a (1, A) cell of
(F, 1) cells holding a 14×3 array in metres or an empty array), the 2D-detection pickle (a dict
``"{cam}_{frame}"`` → list of ``{"pred": (17, 3) [x, y, score]}`` in original pixels), and Panoptic's
``hdPose3d_stage1_coco19`` bodies and calibration (cm, y down).

Pickles are read with :class:`SafeUnpickler`: plain ``pickle.load`` runs any callable a file names, so a
predictions file fetched from a third-party mirror could execute code on load. The restricted unpickler
resolves only builtin containers/scalars and numpy's array reconstruction and refuses everything else.

The split folder (``data/splits/pose``) holds the frames in ``.npz`` files read with ``allow_pickle=False``.
"""

from __future__ import annotations

import io
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.io

try:  # numpy >= 2 moved the array reconstruction helpers; pickles name either module
    from numpy._core import multiarray as _multiarray
except ImportError:  # numpy 1.x
    from numpy.core import multiarray as _multiarray

from personlab.io import atomic_path, read_json, write_json
from personlab.params import ParamsError, PoseData, PoseTrainSampler, parse, to_dict
from personlab.pose import PoseDataError, skeleton
from personlab.pose.cameras import Camera, camera_from_panoptic, load_calibration, panoptic_to_world, write_calibration

__all__ = [
    "ACTORS_GT",
    "LAYOUTS",
    "POSE_DB",
    "PanopticFrames",
    "PoseSplit",
    "SafeUnpickler",
    "TestSet",
    "fetch_campus_like",
    "fetch_panoptic",
    "layout_of",
    "load_actors_gt",
    "load_panoptic_bodies",
    "load_panoptic_calibration",
    "load_panoptic_split",
    "load_pickle",
    "load_pose_db",
    "load_pose_split",
    "load_predictions",
    "panoptic_frames",
    "write_actors_gt",
    "write_campus_split",
    "write_panoptic_split",
    "write_pose_db",
    "write_predictions",
]

ACTORS_GT = "actorsGT.mat"
_MAT_HEADER = b"MATLAB 5.0 MAT-file, written by personlab".ljust(116)
POSE_DB = "pose_db.npz"
# native file names per layout; the synthetic dataset uses Campus's
LAYOUTS = {
    "campus": {"calibration": "calibration_campus.json", "predictions": "pred_campus_maskrcnn_hrnet_coco.pkl"},
    "shelf": {"calibration": "calibration_shelf.json", "predictions": "pred_shelf_maskrcnn_hrnet_coco.pkl"},
}


def layout_of(source: str) -> dict[str, str]:
    """Native file names of a source: Shelf's for ``shelf``, Campus's for ``campus`` and ``synthetic``."""
    return LAYOUTS["shelf" if source == "shelf" else "campus"]


# ------------------------------------------------------------------------------------------------ pickles


class SafeUnpickler(pickle.Unpickler):
    """Unpickles builtin containers and numpy arrays only; any other global is refused (see module doc)."""

    _NUMPY = {
        ("numpy.core.multiarray", "_reconstruct"): _multiarray._reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _multiarray._reconstruct,
        ("numpy.core.multiarray", "scalar"): _multiarray.scalar,
        ("numpy._core.multiarray", "scalar"): _multiarray.scalar,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }
    _BUILTINS = {"dict", "list", "tuple", "set", "frozenset", "int", "float", "complex", "str", "bytes", "bool"}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._NUMPY:
            return self._NUMPY[(module, name)]
        if module == "builtins" and name in self._BUILTINS:
            return getattr(__import__("builtins"), name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only builtin containers and numpy arrays")


def load_pickle(path: str | Path) -> Any:
    """Load a pickle of builtin containers and numpy arrays with :class:`SafeUnpickler`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: not found; run the download stage (dvc repro download)")
    try:
        return SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as exc:
        raise PoseDataError(f"{path}: not a safe pickle of lists, dicts and numpy arrays ({exc}); "
                            "replace the file") from None


def load_predictions(path: str | Path, num_joints: int = 17) -> dict[str, list[np.ndarray]]:
    """The 2D-detection file: ``"{cam}_{frame}"`` → list of (J, 3) ``[x, y, score]`` arrays (original px)."""
    data = load_pickle(path)
    if not isinstance(data, dict):
        raise PoseDataError(f"{path}: expected a dict keyed by '<cam>_<frame>', got {type(data).__name__}")
    out: dict[str, list[np.ndarray]] = {}
    for key, people in data.items():
        if not isinstance(key, str) or not isinstance(people, (list, tuple)):
            raise PoseDataError(f"{path}: entry {key!r} must map a '<cam>_<frame>' string to a list of detections")
        poses = []
        for person in people:
            pred = np.asarray(person["pred"] if isinstance(person, dict) else person, dtype=np.float64)
            if pred.shape != (num_joints, 3):
                raise PoseDataError(f"{path}: entry {key!r} holds a detection of shape {pred.shape}, "
                                    f"not ({num_joints}, 3)")
            poses.append(pred)
        out[key] = poses
    return out


def write_predictions(path: str | Path, predictions: dict[str, list[np.ndarray]]) -> None:
    """Write detections in the original pickle layout (list of ``{"pred": array}`` per key), atomically."""
    data = {key: [{"pred": np.asarray(p, dtype=np.float64)} for p in people] for key, people in predictions.items()}
    with atomic_path(path) as tmp:
        tmp.write_bytes(pickle.dumps(data, protocol=4))


# ------------------------------------------------------------------------------------------ actorsGT.mat


def load_actors_gt(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """``actorsGT.mat`` → ``gt`` (F, A, 14, 3) mm (NaN where absent) and ``valid`` (F, A) bool.

    Read as the original does: ``actor3D`` flattened to A per-frame cells, a frame entry present iff it is
    non-empty, metres ×1000. The frame index is the 0-based row, the same number as in image names and
    prediction keys (spec §4.1).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: actorsGT.mat not found; run the download stage (dvc repro download)")
    mat = scipy.io.loadmat(str(path))
    if "actor3D" not in mat:
        raise PoseDataError(f"{path}: no 'actor3D' variable; is this the dataset's actorsGT.mat?")
    actors = [np.asarray(cell).reshape(-1) for cell in np.asarray(mat["actor3D"]).reshape(-1)]
    num_frames = max(len(a) for a in actors)
    gt = np.full((num_frames, len(actors), 14, 3), np.nan)
    valid = np.zeros((num_frames, len(actors)), dtype=bool)
    for a, frames in enumerate(actors):
        for f, entry in enumerate(frames):
            entry = np.asarray(entry)
            if entry.size == 0:
                continue
            if entry.shape != (14, 3):
                raise PoseDataError(f"{path}: actor {a} frame {f} has shape {entry.shape}, expected 14×3 (metres)")
            gt[f, a] = entry * 1000.0
            valid[f, a] = True
    return gt, valid


def write_actors_gt(path: str | Path, gt_mm: np.ndarray, valid: np.ndarray) -> None:
    """Write ``actor3D`` as the real file: a (1, A) cell of (F, 1) cells of 14×3 metres or empty arrays."""
    num_frames, num_actors = valid.shape
    actor3d = np.empty((1, num_actors), dtype=object)
    for a in range(num_actors):
        frames = np.empty((num_frames, 1), dtype=object)
        for f in range(num_frames):
            frames[f, 0] = gt_mm[f, a] / 1000.0 if valid[f, a] else np.zeros((1, 0))
        actor3d[0, a] = frames
    buffer = io.BytesIO()
    scipy.io.savemat(buffer, {"actor3D": actor3d})
    blob = bytearray(buffer.getvalue())
    blob[:116] = _MAT_HEADER  # scipy stamps the current time here; a fixed text keeps the file reproducible
    with atomic_path(path) as tmp:
        tmp.write_bytes(bytes(blob))


# ------------------------------------------------------------------------------------------- pose database


def write_pose_db(path: str | Path, poses: np.ndarray, vis: np.ndarray) -> None:
    """Write the training pose database: (N, 17, 3) COCO joints in mm (z up) and (N, 17) visibility."""
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, poses=np.asarray(poses, np.float32), vis=np.asarray(vis, bool))


def load_pose_db(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read :func:`write_pose_db`'s file: ``(poses (N, 17, 3) float32 mm, vis (N, 17) bool)``."""
    with np.load(path, allow_pickle=False) as data:
        return data["poses"], data["vis"]


# ------------------------------------------------------------------------------------------- the split


@dataclass(frozen=True)
class TestSet:
    """The Campus/Shelf test frames, aligned: index i is ``frames[i]`` everywhere (spec §8 trap 19).

    ``gt`` (F, A, 14, 3) mm with ``gt_valid`` (F, A); ``detections[i][v]`` is the (P, 17, 3) ``[x, y, score]``
    array of view v (P may be 0).
    """

    frames: np.ndarray
    gt: np.ndarray
    gt_valid: np.ndarray
    detections: list[list[np.ndarray]]

    def __len__(self) -> int:
        return len(self.frames)


@dataclass(frozen=True)
class PoseSplit:
    """Everything the Campus/Shelf model stages need (see :func:`load_pose_split`)."""

    dataset: str
    cameras: list[Camera]
    image_size: tuple[int, int]
    test: TestSet
    pose_db: tuple[np.ndarray, np.ndarray]
    train: PoseTrainSampler
    eval_actors: tuple[int, ...]
    head: str
    amplitude: str
    empty_frame: str
    meta: dict[str, Any]


def _ranges_to_frames(ranges: Sequence[Sequence[int]]) -> np.ndarray:
    frames = sorted({f for first, last in ranges for f in range(first, last + 1)})
    return np.asarray(frames, dtype=np.int64)


def write_campus_split(raw_dir: Path, out_dir: Path, cfg: PoseData) -> dict[str, Any]:
    """Build the Campus/Shelf (or synthetic) split from the raw folder; see :func:`load_pose_split`."""
    layout = layout_of(cfg.source)
    cameras = load_calibration(raw_dir / layout["calibration"])
    if len(cameras) < cfg.num_cameras:
        raise ParamsError(f"{raw_dir / layout['calibration']}: {len(cameras)} cameras, but data.pose.num_cameras is "
                          f"{cfg.num_cameras}; lower num_cameras")
    cameras = cameras[: cfg.num_cameras]
    gt_all, valid_all = load_actors_gt(raw_dir / ACTORS_GT)
    frames = _ranges_to_frames(cfg.test_frames)
    if frames[-1] >= len(gt_all):
        raise ParamsError(f"data.pose.test_frames: frame {frames[-1]} is past the {len(gt_all)} frames of "
                          f"{raw_dir / ACTORS_GT}; shorten the ranges")
    bad_actor = [a for a in cfg.eval_actors if a >= gt_all.shape[1]]
    if bad_actor:
        raise ParamsError(f"data.pose.eval_actors: actor {bad_actor[0]} does not exist ({gt_all.shape[1]} actors)")
    predictions = load_predictions(raw_dir / layout["predictions"])
    det, det_frame, det_view = [], [], []
    for i, frame in enumerate(frames):
        for v in range(len(cameras)):
            for pose in predictions.get(f"{v}_{frame}", []):
                det.append(pose)
                det_frame.append(i)
                det_view.append(v)
    write_calibration(out_dir / "calibration.json", cameras)
    with open(out_dir / "test.npz", "wb") as fh:
        np.savez(
            fh,
            frames=frames,
            gt=gt_all[frames],
            gt_valid=valid_all[frames],
            det=np.asarray(det, np.float64).reshape(-1, 17, 3),
            det_frame=np.asarray(det_frame, np.int64),
            det_view=np.asarray(det_view, np.int64),
        )
    poses, vis = load_pose_db(raw_dir / POSE_DB)
    shutil.copyfile(raw_dir / POSE_DB, out_dir / POSE_DB)
    extra = {}
    area_file = raw_dir / "scene.json"
    if area_file.is_file():  # written by the synthetic generator: the capture area it placed people in
        extra["scene"] = read_json(area_file)
    counts = {
        "pose_cameras": len(cameras),
        "pose_test_frames": int(len(frames)),
        "pose_test_people": int(valid_all[frames].sum()),
        "pose_test_detections": len(det),
        "pose_train_poses": int(len(poses)),
    }
    meta = {
        "dataset": "shelf" if cfg.source == "shelf" else "campus",
        "source": cfg.source,
        "image_size": list(cfg.image_size),
        "num_cameras": len(cameras),
        "test_frames": [list(r) for r in cfg.test_frames],
        "eval_actors": list(cfg.eval_actors),
        "head": cfg.head,
        "amplitude": cfg.amplitude,
        "empty_frame": cfg.empty_frame,
        "train": to_dict(cfg.train),
        "counts": counts,
        **extra,
    }
    write_json(out_dir / "meta.json", meta, ndigits=None)
    return counts


def load_pose_split(splits_dir: str | Path = "data/splits/pose") -> PoseSplit:
    """The Campus/Shelf split: cameras, image size, test frames, pose database, sampler and protocol.

    - ``split.cameras`` / ``split.image_size``: the rig (list of :class:`Camera`) and original (w, h);
    - ``split.test``: a :class:`TestSet`; heatmaps of frame i come from
      ``heatmaps.detection_heatmaps(split.test.detections[i], split.image_size, ..., amplitude=split.amplitude)``;
    - training samples: ``synthetic.SyntheticTrainSet(split, space_center, space_size, input_size,
      heatmap_size, sigma, seed)``;
    - scoring: ``metrics.evaluate_campus(pred_coco, scores, split.test.gt, split.test.gt_valid,
      split.eval_actors, split.head, split.empty_frame)`` with ``pred_coco[i]`` the (P, 17, 3) mm poses the
      model keeps for test frame i (flag ≥ 0) and ``scores[i]`` (P,) their root scores.
    """
    splits_dir = Path(splits_dir)
    meta = read_json(splits_dir / "meta.json")
    if meta.get("dataset") == "panoptic":
        raise PoseDataError(f"{splits_dir}: a Panoptic split; read it with load_panoptic_split")
    cameras = load_calibration(splits_dir / "calibration.json")
    with np.load(splits_dir / "test.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    num_frames, num_views = len(arrays["frames"]), len(cameras)
    detections: list[list[list[np.ndarray]]] = [[[] for _ in range(num_views)] for _ in range(num_frames)]
    for pose, i, v in zip(arrays["det"], arrays["det_frame"], arrays["det_view"]):
        detections[i][v].append(pose)
    stacked = [[np.asarray(view, np.float64).reshape(-1, 17, 3) for view in frame] for frame in detections]
    test = TestSet(arrays["frames"], arrays["gt"], arrays["gt_valid"], stacked)
    return PoseSplit(
        dataset=meta["dataset"],
        cameras=cameras,
        image_size=tuple(meta["image_size"]),
        test=test,
        pose_db=load_pose_db(splits_dir / POSE_DB),
        train=parse(PoseTrainSampler, meta["train"], "train"),
        eval_actors=tuple(meta["eval_actors"]),
        head=meta["head"],
        amplitude=meta["amplitude"],
        empty_frame=meta["empty_frame"],
        meta=meta,
    )


# ---------------------------------------------------------------------------------------------- fetching


def _fetch(value: str, key: str, downloads: Path, md5: str | None = None) -> Path:
    """A local path or downloaded copy of the file that ``data.pose.<key>`` names (md5-checked if given)."""
    from personlab.data import archive

    return archive.fetch(value, downloads, md5=md5, param=f"data.pose.{key}")


def _find_one(root: Path, name: str) -> Path:
    hits = sorted(root.rglob(name))
    if len(hits) != 1:
        where = "nowhere" if not hits else ", ".join(str(h.relative_to(root)) for h in hits)
        raise PoseDataError(f"data.pose.archive: expected exactly one {name} in the archive, found {where}")
    return hits[0]


def fetch_campus_like(cfg: PoseData, out_dir: Path, downloads: Path) -> None:
    """Extract the Campus/Shelf archive into ``out_dir`` (its top folder flattened) and add the VoxelPose files."""
    from personlab.data import archive

    src = _fetch(cfg.archive, "archive", downloads, cfg.md5 or None)
    extracted = out_dir / "extracted"
    archive.extract(src, extracted)
    root = _find_one(extracted, ACTORS_GT).parent
    for entry in sorted(root.iterdir()):
        os.replace(entry, out_dir / entry.name)
    shutil.rmtree(extracted)
    layout = layout_of(cfg.source)
    for key, name in (("calibration", layout["calibration"]), ("predictions", layout["predictions"])):
        shutil.copyfile(_fetch(getattr(cfg, key), key, downloads), out_dir / name)
    load_calibration(out_dir / layout["calibration"])  # fail now, not in the splits stage
    load_predictions(out_dir / layout["predictions"])


def _link_or_copy(src: str, dst: str) -> None:
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def fetch_panoptic(cfg: PoseData, out_dir: Path) -> None:
    """Copy (hard-link where possible) the used sequences of a panoptic-toolbox ``data`` folder.

    Per sequence: ``calibration_<seq>.json``, ``hdPose3d_stage1_coco19/`` and the ``hdImgs/`` folders of the
    configured cameras.
    """
    root = Path(cfg.archive).expanduser()
    if not cfg.archive or not root.is_dir():
        raise FileNotFoundError(f"data.pose.archive: {cfg.archive!r} is not a folder; point it at the panoptic-toolbox "
                                "data folder holding the sequences (see docs/pose-data.md)")
    sequences = sorted(set(cfg.panoptic.train_sequences) | set(cfg.panoptic.val_sequences))
    for seq in sequences:
        src = root / seq
        for needed in (src / f"calibration_{seq}.json", src / "hdPose3d_stage1_coco19"):
            if not needed.exists():
                raise FileNotFoundError(f"{needed}: missing; fetch sequence {seq} with the panoptic-toolbox scripts "
                                        "(getData.sh, then extract hdImgs)")
        (out_dir / seq).mkdir(parents=True)
        shutil.copy2(src / f"calibration_{seq}.json", out_dir / seq / f"calibration_{seq}.json")
        shutil.copytree(src / "hdPose3d_stage1_coco19", out_dir / seq / "hdPose3d_stage1_coco19",
                        copy_function=_link_or_copy)
        for panel, node in cfg.panoptic.cameras[: cfg.num_cameras]:
            cam = f"{panel:02d}_{node:02d}"
            images = src / "hdImgs" / cam
            if not images.is_dir():
                raise FileNotFoundError(f"{images}: missing; extract the HD frames of camera {cam} (panoptic-toolbox "
                                        "scripts/extractAll.sh) before running download")
            shutil.copytree(images, out_dir / seq / "hdImgs" / cam, copy_function=_link_or_copy)


# ---------------------------------------------------------------------------------------------- Panoptic


def load_panoptic_calibration(path: str | Path, cameras: Sequence[tuple[int, int]]) -> list[Camera]:
    """The listed (panel, node) HD cameras of a ``calibration_<seq>.json``, converted to mm and z up."""
    path = Path(path)
    data = read_json(path)
    by_id = {(int(c["panel"]), int(c["node"])): c for c in data.get("cameras", []) if c.get("type", "hd") == "hd"}
    missing = [pn for pn in cameras if tuple(pn) not in by_id]
    if missing:
        raise PoseDataError(f"{path}: no HD camera {missing[0][0]:02d}_{missing[0][1]:02d}; "
                            "check data.pose.panoptic.cameras")
    return [camera_from_panoptic(by_id[tuple(pn)]) for pn in cameras]


def _check_resolution(path: Path, cameras: Sequence[tuple[int, int]], image_size: Sequence[int]) -> None:
    """The cameras' recorded resolution must be ``data.pose.image_size``: the model's affine is built from it."""
    for cam in read_json(path).get("cameras", []):
        if (int(cam["panel"]), int(cam["node"])) in {tuple(c) for c in cameras} and "resolution" in cam:
            if list(cam["resolution"]) != list(image_size):
                raise ParamsError(f"data.pose.image_size: {list(image_size)}, but {path} records camera "
                                  f"{cam['name']} at {cam['resolution']}; set image_size to the images' size")


def load_panoptic_bodies(path: str | Path, conf_threshold: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """One ``body3DScene_XXXXXXXX.json`` → ``poses`` (P, 15, 3) mm z-up and ``vis`` (P, 15) bool.

    A joint is visible when its confidence exceeds ``conf_threshold``; a body whose root (mid-hip, joint 2)
    is not visible is dropped, as in the original.
    """
    data = read_json(path)
    poses, vis = [], []
    for body in data.get("bodies", []):
        joints = np.asarray(body["joints19"], dtype=np.float64).reshape(-1, 4)[:15]
        visible = joints[:, 3] > conf_threshold
        if not visible[skeleton.PANOPTIC_ROOT]:
            continue
        poses.append(panoptic_to_world(joints[:, :3]))
        vis.append(visible)
    return np.asarray(poses, np.float64).reshape(-1, 15, 3), np.asarray(vis, bool).reshape(-1, 15)


def panoptic_frames(seq_dir: str | Path, interval: int) -> list[int]:
    """Frame numbers of every ``interval``-th annotation file of a sequence, in file-name order."""
    names = sorted(Path(seq_dir, "hdPose3d_stage1_coco19").glob("body3DScene_*.json"))
    return [int(p.stem.split("_")[-1]) for p in names[::interval]]


@dataclass(frozen=True)
class PanopticFrames:
    """Panoptic frames of one split: ``sequence[i]``, ``frame[i]``, bodies ``poses`` (N, P, 15, 3) mm with
    ``vis`` (N, P, 15) and ``count`` (N,) people; images at ``image_path(i, v)``; cameras per sequence."""

    root: Path
    sequences: tuple[str, ...]
    sequence: np.ndarray
    frame: np.ndarray
    poses: np.ndarray
    vis: np.ndarray
    count: np.ndarray
    cameras: dict[str, list[Camera]]
    camera_ids: tuple[tuple[int, int], ...]

    def __len__(self) -> int:
        return len(self.frame)

    def image_path(self, i: int, view: int) -> Path:
        seq = self.sequences[self.sequence[i]]
        panel, node = self.camera_ids[view]
        cam = f"{panel:02d}_{node:02d}"
        return self.root / seq / "hdImgs" / cam / f"{cam}_{int(self.frame[i]):08d}.jpg"


def _panoptic_part(raw_dir: Path, sequences: Sequence[str], interval: int, cameras: Sequence[tuple[int, int]],
                   out: Path) -> tuple[int, int]:
    """Write one part's frames; return (frames kept, frames dropped for a missing camera image)."""
    names = [f"{panel:02d}_{node:02d}" for panel, node in cameras]
    seq_index, frames, poses, vis = [], [], [], []
    no_image = 0
    for s, seq in enumerate(sequences):
        for frame in panoptic_frames(raw_dir / seq, interval):
            p, v = load_panoptic_bodies(raw_dir / seq / "hdPose3d_stage1_coco19" / f"body3DScene_{frame:08d}.json")
            if len(p) == 0:  # the original makes an entry only when a body survives
                continue
            if not all((raw_dir / seq / "hdImgs" / cam / f"{cam}_{frame:08d}.jpg").is_file() for cam in names):
                no_image += 1  # dropped and counted here; the original fails later (voxelpose issue #31)
                continue
            seq_index.append(s)
            frames.append(frame)
            poses.append(p)
            vis.append(v)
    most = max([len(p) for p in poses], default=0)
    pad_p = np.zeros((len(poses), most, 15, 3))
    pad_v = np.zeros((len(poses), most, 15), bool)
    for i, (p, v) in enumerate(zip(poses, vis)):
        pad_p[i, : len(p)], pad_v[i, : len(v)] = p, v
    with open(out, "wb") as fh:
        np.savez(fh, sequences=np.asarray(list(sequences), dtype=str), sequence=np.asarray(seq_index, np.int64),
                 frame=np.asarray(frames, np.int64), poses=pad_p, vis=pad_v,
                 count=np.asarray([len(p) for p in poses], np.int64))
    return len(frames), no_image


def write_panoptic_split(raw_dir: Path, out_dir: Path, cfg: PoseData) -> dict[str, Any]:
    """Panoptic frame lists (every 3rd train / 12th validation annotation) and per-sequence cameras.

    Frames whose image is missing in a used camera are dropped and counted (``*_frames_without_images``).
    """
    pan = cfg.panoptic
    cams = pan.cameras[: cfg.num_cameras]
    (out_dir / "cameras").mkdir()
    for seq in sorted(set(pan.train_sequences) | set(pan.val_sequences)):
        calibration = raw_dir / seq / f"calibration_{seq}.json"
        _check_resolution(calibration, cams, cfg.image_size)
        write_calibration(out_dir / "cameras" / f"{seq}.json", load_panoptic_calibration(calibration, cams))
    train = _panoptic_part(raw_dir, pan.train_sequences, pan.train_interval, cams, out_dir / "train.npz")
    test = _panoptic_part(raw_dir, pan.val_sequences, pan.val_interval, cams, out_dir / "test.npz")
    counts = {
        "pose_cameras": len(cams),
        "pose_train_frames": train[0],
        "pose_test_frames": test[0],
        "pose_train_frames_without_images": train[1],
        "pose_test_frames_without_images": test[1],
    }
    meta = {"dataset": "panoptic", "source": cfg.source, "image_size": list(cfg.image_size),
            "num_cameras": len(cams), "cameras": [list(c) for c in cams], "raw_dir": str(raw_dir),
            "empty_frame": cfg.empty_frame, "counts": counts}
    write_json(out_dir / "meta.json", meta, ndigits=None)
    return counts


def load_panoptic_split(splits_dir: str | Path = "data/splits/pose", part: str = "train") -> PanopticFrames:
    """The ``train`` or ``test`` (validation) frames of a Panoptic split, with cameras and image paths."""
    splits_dir = Path(splits_dir)
    meta = read_json(splits_dir / "meta.json")
    if meta.get("dataset") != "panoptic":
        raise PoseDataError(f"{splits_dir}: not a Panoptic split (dataset {meta.get('dataset')!r}); "
                            "use load_pose_split")
    with np.load(splits_dir / f"{part}.npz", allow_pickle=False) as data:
        arrays = {key: data[key] for key in data.files}
    sequences = tuple(str(s) for s in arrays["sequences"])
    cameras = {seq: load_calibration(splits_dir / "cameras" / f"{seq}.json") for seq in sequences}
    return PanopticFrames(Path(meta["raw_dir"]), sequences, arrays["sequence"], arrays["frame"], arrays["poses"],
                          arrays["vis"], arrays["count"], cameras, tuple(tuple(c) for c in meta["cameras"]))
