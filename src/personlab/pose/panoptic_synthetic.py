"""A Panoptic-like synthetic tree in the exact panoptic-toolbox layout (spec §9.2, §9.3), for CPU runs and tests.

The real Panoptic path (``data.pose.source: panoptic``) reads a panoptic-toolbox ``data`` folder. This module
writes one from a seed, so that path (calibration conversion, body filters, image loading, the letterbox,
the PoseResNet backbone, ``loss_2d`` and the Panoptic AP/MPJPE evaluation) runs without the dataset::

    <out>/<seq>/calibration_<seq>.json                      Panoptic format: cm, y-down world, K, distCoef[5],
                                                            R, t, panel/node ids (plus one VGA camera)
    <out>/<seq>/hdPose3d_stage1_coco19/body3DScene_{f:08d}.json   joints19 [x, y, z, conf] in cm, y down
    <out>/<seq>/hdImgs/00_XX/00_XX_{f:08d}.jpg               stick figures on a textured background

People are the procedural skeletons of :mod:`personlab.pose.synthetic` walking its smooth random walks
(:func:`synthetic.make_sequence`); the cameras are :func:`synthetic.make_rig` on a 3–4 m ring, at heights of
1–2.5 m, with HD panel 0 node ids 12, 6, 23, 13, 3 (the default ``data.pose.panoptic.cameras`` order) and the
intrinsics of a 1920×1080 camera scaled to ``image_size`` (480×270 by default, K scaled by 1/4). Some joints
are written with confidence < 0.1, and now and then a root, so the loaders' filters act. Every limb has its
own colour, left and right differing, and limbs are drawn far to near as capsules whose width follows depth.

Use it from the command line, then point ``data.pose`` at the folder (see docs/pose-data.md)::

    python -m personlab.pose.panoptic_synthetic data/panoptic-like
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import cv2
import numpy as np

from personlab.io import atomic_dir, write_json
from personlab.params import PoseRig, PoseSequence, PoseSkeleton
from personlab.pose import skeleton, synthetic
from personlab.pose.cameras import Camera, camera_to_panoptic, world_to_panoptic
from personlab.pose.panoptic import PANOPTIC_LIMBS

__all__ = ["NODES", "PanopticLike", "main", "render_view", "sequence_scene", "sequence_seed", "to_coco19",
           "write_panoptic_like"]

NODES = (12, 6, 23, 13, 3)  # HD panel 0 cameras, in the order VoxelPose uses them
FULL_SIZE = (1920, 1080)
AREA_CENTER = (0.0, -500.0)  # mm, the floor centre of the published Panoptic space (0, -500, 800)
# eyes and ears of coco19 (15..18) from the superset's COCO part: l-eye, l-ear, r-eye, r-ear
_FACE = (1, 3, 2, 4)
_FACE_BONES = ((1, 15), (15, 16), (1, 17), (17, 18))  # nose-eye-ear, left then right
# BGR colours of PANOPTIC_LIMBS in order: the trunk green-grey, left limbs warm, right limbs cool; then the face
_LIMB_COLOURS = ((60, 200, 200), (90, 160, 90), (0, 120, 255), (0, 60, 230), (40, 40, 170), (0, 210, 255),
                 (30, 160, 230), (60, 110, 200), (255, 140, 0), (230, 60, 0), (170, 30, 60), (255, 220, 0),
                 (220, 180, 60), (200, 120, 120))
_FACE_COLOURS = ((40, 90, 255), (40, 90, 255), (255, 90, 40), (255, 90, 40))


@dataclass(frozen=True)
class PanopticLike:
    """What to generate. ``people`` is the (min, max) number of actors of a sequence; ``low_confidence`` the
    share of joints written with confidence < 0.1; ``hidden_root`` the share of bodies whose root is."""

    train_sequences: tuple[str, ...] = ("synth_train1", "synth_train2")
    val_sequences: tuple[str, ...] = ("synth_val1",)
    num_frames: int = 300
    people: tuple[int, int] = (2, 6)
    image_size: tuple[int, int] = (480, 270)
    num_cameras: int = 5
    low_confidence: float = 0.05
    hidden_root: float = 0.03
    jpeg_quality: int = 90

    def validate(self) -> None:
        """One clear error per bad option (the CLI passes user input here)."""
        if not 1 <= self.num_cameras <= len(NODES):
            raise ValueError(f"num_cameras must be 1..{len(NODES)}, got {self.num_cameras}")
        if not 1 <= self.people[0] <= self.people[1]:
            raise ValueError(f"people must be (min, max) with 1 <= min <= max, got {self.people}")
        if self.num_frames < 1 or min(self.image_size) < 16:
            raise ValueError(f"need at least one frame and images of 16 px or more, got {self.num_frames} frames of "
                             f"{self.image_size}")
        names = list(self.train_sequences) + list(self.val_sequences)
        if len(set(names)) != len(names) or not names:
            raise ValueError(f"sequence names must be distinct and not empty, got {names}")


def to_coco19(joints: np.ndarray) -> np.ndarray:
    """(..., 19, 3) :data:`skeleton.SUPER19` joints → (..., 19, 3) Panoptic coco19 order (same units)."""
    face = np.asarray(joints)[..., list(_FACE), :]
    return np.concatenate([skeleton.super_to_panoptic(joints), face], axis=-2)


def _rig(seed: int, image_size: Sequence[int], num_cameras: int) -> list[Camera]:
    """A ring of cameras around the area (spec §9.2), intrinsics of a 1920×1080 camera scaled to the image."""
    scale = image_size[0] / FULL_SIZE[0]
    rig = PoseRig(num_cameras=max(num_cameras, 2), focal=(1100.0 * scale, 1300.0 * scale), distance=(3000.0, 4000.0),
                  height=(1000.0, 2500.0), azimuth_jitter=15.0, principal_jitter=10.0 * scale, distorted_cameras=1)
    return synthetic.make_rig(rig, image_size, AREA_CENTER, seed)[:num_cameras]


def _background(rng: np.random.Generator, camera: Camera, image_size: Sequence[int]) -> np.ndarray:
    """A camera's backdrop: smooth colour blotches plus the floor's 0.5 m grid seen through that camera."""
    w, h = image_size
    blotches = cv2.resize(rng.uniform(50, 190, (6, 10, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    image = np.clip(blotches, 0, 255).astype(np.uint8)
    ticks = np.arange(-4000.0, 4001.0, 500.0)
    for a in ticks:
        for line in (np.stack([np.full_like(ticks, a) + AREA_CENTER[0], ticks + AREA_CENTER[1]], axis=1),
                     np.stack([ticks + AREA_CENTER[0], np.full_like(ticks, a) + AREA_CENTER[1]], axis=1)):
            points = np.concatenate([line, np.zeros((len(line), 1))], axis=1)
            ahead = camera.depth(points) > 100
            uv = camera.project(points)
            for k in range(len(points) - 1):
                if ahead[k] and ahead[k + 1]:
                    p, q = (np.round(uv[k:k + 2] * 16).astype(np.int64)).tolist()
                    cv2.line(image, tuple(p), tuple(q), (225, 225, 225), 1, cv2.LINE_AA, shift=4)
    return image


def _capsule(image: np.ndarray, camera: Camera, a: np.ndarray, b: np.ndarray, radius: float,
             colour: tuple[int, int, int]) -> None:
    """A limb from world point a to b (mm) as a line with round ends, ``radius`` mm wide at its depth."""
    depth = camera.depth(np.stack([a, b]))
    if depth.min() <= 100:
        return
    uv = camera.project(np.stack([a, b]))
    if not np.isfinite(uv).all() or np.abs(uv).max() > 1e5:
        return
    width = max(1, int(round(2 * radius * camera.fx / depth.mean())))
    p, q = np.round(uv * 16).astype(np.int64).tolist()
    cv2.line(image, tuple(p), tuple(q), colour, width, cv2.LINE_AA, shift=4)


def _disc(image: np.ndarray, camera: Camera, centre: np.ndarray, radius: float, colour: tuple[int, int, int]) -> None:
    """A sphere of ``radius`` mm at world point ``centre``, drawn as a filled disc."""
    depth = float(camera.depth(centre))
    if depth <= 100:
        return
    uv = camera.project(centre)
    if not np.isfinite(uv).all() or np.abs(uv).max() > 1e5:
        return
    size = max(1, int(round(radius * camera.fx / depth * 16)))
    cv2.circle(image, tuple(np.round(uv * 16).astype(np.int64).tolist()), size, colour, -1, cv2.LINE_AA, shift=4)


def render_view(background: np.ndarray, camera: Camera, people: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """One camera's image of ``people`` (P, 19, 3) coco19 mm: capsules far to near, a head disc, sensor noise."""
    image = background.copy()
    order = np.argsort(-camera.depth(people[:, 2]))  # mid-hip depth, farthest first
    for n in order:
        pose = people[n]
        for (i, j), colour in zip(PANOPTIC_LIMBS, _LIMB_COLOURS):
            _capsule(image, camera, pose[i], pose[j], 75.0 if (i, j) == (0, 2) else 40.0, colour)
        _disc(image, camera, (pose[16] + pose[18]) / 2, 95.0, (150, 185, 220))  # the head, between the ears
        for (i, j), colour in zip(_FACE_BONES, _FACE_COLOURS):
            _capsule(image, camera, pose[i], pose[j], 12.0, colour)
    return np.clip(image.astype(np.int16) + noise, 0, 255).astype(np.uint8)


def _bodies(rng: np.random.Generator, joints19: np.ndarray, present: np.ndarray, opts: PanopticLike) -> list[dict]:
    """The ``bodies`` of one frame: coco19 in cm (y down) with confidences, some below the 0.1 filter."""
    bodies = []
    for a in np.flatnonzero(present):
        cm = world_to_panoptic(joints19[a])
        conf = np.where(rng.random(19) < opts.low_confidence, rng.uniform(0.0, 0.09, 19), 1.0)
        conf[skeleton.PANOPTIC_ROOT] = rng.uniform(0.0, 0.09) if rng.random() < opts.hidden_root else 1.0
        bodies.append({"id": int(a), "joints19": np.concatenate([cm, conf[:, None]], axis=1).ravel().tolist()})
    return bodies


def sequence_seed(seed: int, index: int) -> int:
    """The seed of sequence ``index`` (train sequences first, then validation) of a tree made with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def sequence_scene(seed: int, opts: PanopticLike) -> tuple[list[Camera], np.ndarray, np.ndarray]:
    """The truth of one sequence: its cameras (mm, z up), coco19 joints (F, A, 19, 3) in world mm and the
    actors' presence (F, A). :func:`write_panoptic_like` writes exactly this, in Panoptic's units and axes."""
    actors = int(np.random.default_rng([seed, 0]).integers(opts.people[0], opts.people[1] + 1))
    motion = PoseSequence(num_frames=opts.num_frames, num_actors=actors, fps=30.0, speed=900.0, pause=0.3,
                          absence=0.1, area_center=AREA_CENTER, area_size=(3500.0, 3500.0))
    joints, present = synthetic.make_sequence(motion, PoseSkeleton(), seed)
    return _rig(seed, opts.image_size, opts.num_cameras), to_coco19(joints), present


def _write_sequence(out: Path, name: str, seed: int, opts: PanopticLike) -> dict[str, int]:
    rng = np.random.default_rng([seed, 1])
    cameras, coco19, present = sequence_scene(seed, opts)
    names = [f"00_{node:02d}" for node in NODES[: opts.num_cameras]]
    entries = [camera_to_panoptic(cam, 0, node, opts.image_size) for cam, node in zip(cameras, NODES)]
    vga = dict(entries[0], name="01_01", type="vga", panel=1, node=1, resolution=[640, 480])
    write_json(out / f"calibration_{name}.json", {"calibDataSource": "personlab synthetic", "cameras": entries + [vga]},
               ndigits=None)
    backgrounds = [_background(rng, cam, opts.image_size) for cam in cameras]
    (out / "hdPose3d_stage1_coco19").mkdir(parents=True)
    for cam in names:
        (out / "hdImgs" / cam).mkdir(parents=True)
    w, h = opts.image_size
    bodies = 0
    for f in range(opts.num_frames):
        frame_bodies = _bodies(rng, coco19[f], present[f], opts)
        bodies += len(frame_bodies)
        write_json(out / "hdPose3d_stage1_coco19" / f"body3DScene_{f:08d}.json",
                   {"version": 0.7, "univTime": f, "fpsType": "hd_29_97", "bodies": frame_bodies}, ndigits=None,
                   indent=None)
        people = coco19[f][present[f]]
        for cam, camera, background in zip(names, cameras, backgrounds):
            image = render_view(background, camera, people, rng.normal(0, 3, (h, w, 3)).round().astype(np.int16))
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, opts.jpeg_quality])
            if not ok:
                raise RuntimeError(f"OpenCV could not encode {name} frame {f} of camera {cam} as JPEG")
            (out / "hdImgs" / cam / f"{cam}_{f:08d}.jpg").write_bytes(data.tobytes())
    return {"actors": int(present.shape[1]), "frames": opts.num_frames, "bodies": bodies}


def write_panoptic_like(out_dir: str | Path, seed: int = 0, opts: PanopticLike = PanopticLike()) -> dict[str, Any]:
    """Write the whole tree into ``out_dir`` (replaced atomically); return per-sequence counts.

    Sequence k (train ones first) draws everything from ``(seed, k)``: its own rig, actors, poses and noise, so
    the same arguments give byte-identical files.
    """
    opts.validate()
    summary = {}
    with atomic_dir(Path(out_dir)) as tmp:
        for k, name in enumerate(list(opts.train_sequences) + list(opts.val_sequences)):
            summary[name] = _write_sequence(tmp / name, name, sequence_seed(seed, k), opts)
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m personlab.pose.panoptic_synthetic OUT_DIR [--seed S] [--frames F] [--size W H] ...``"""
    parser = argparse.ArgumentParser(prog="python -m personlab.pose.panoptic_synthetic", description=__doc__.split(
        "\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out_dir", type=Path, help="folder to write (replaced whole)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--frames", type=int, default=PanopticLike.num_frames, help="annotated frames per sequence")
    parser.add_argument("--size", type=int, nargs=2, default=PanopticLike.image_size, metavar=("W", "H"))
    parser.add_argument("--people", type=int, nargs=2, default=PanopticLike.people, metavar=("MIN", "MAX"))
    parser.add_argument("--cameras", type=int, default=PanopticLike.num_cameras)
    parser.add_argument("--train", nargs="+", default=list(PanopticLike.train_sequences), help="training sequences")
    parser.add_argument("--val", nargs="+", default=list(PanopticLike.val_sequences), help="validation sequences")
    args = parser.parse_args(argv)
    opts = PanopticLike(train_sequences=tuple(args.train), val_sequences=tuple(args.val), num_frames=args.frames,
                        people=tuple(args.people), image_size=tuple(args.size), num_cameras=args.cameras)
    try:
        summary = write_panoptic_like(args.out_dir, args.seed, opts)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for name, counts in summary.items():
        print(f"{name}: {counts['frames']} frames, {counts['actors']} actors, {counts['bodies']} bodies")
    cams = ", ".join(f"[0, {node}]" for node in NODES[: opts.num_cameras])
    print(f"""
Point data.pose at it (params.yaml, or dvc exp run -S ...):
  data.pose.source: panoptic
  data.pose.archive: {args.out_dir.resolve()}
  data.pose.image_size: [{opts.image_size[0]}, {opts.image_size[1]}]
  data.pose.num_cameras: {opts.num_cameras}
  data.pose.panoptic.cameras: [{cams}]
  data.pose.panoptic.train_sequences: {list(opts.train_sequences)}
  data.pose.panoptic.val_sequences: {list(opts.val_sequences)}
and voxelpose at the backbone mode (see docs/voxelpose.md, "Panoptic on a CPU").""")
    return 0


if __name__ == "__main__":
    sys.exit(main())
