"""Synthetic multi-view scenes that drive the real Campus test path, and the synthetic training sampler.

Spec §9: procedural skeletons (a 19-joint superset: COCO-17 + neck + head top) with sampled proportions and
walking or free poses by forward kinematics; a Campus-like camera rig written as a VoxelPose calibration
JSON (the first cameras distorted); walking actors written as ``actorsGT.mat``; and a 2D detector emulator
(localisation noise growing with person size, heavy-tailed extremities, Beta scores, misses, occlusion,
left/right swaps, ghosts, truncation) written as the real predictions pickle. The real loaders then read
the result unchanged.

Spec §3.2: :class:`SyntheticTrainSet` places database poses in the space, projects them and draws noisy
Gaussian heatmaps — with the original's missing ``break`` added, the placement box derived from the space,
and one random stream per (seed, epoch, index) so every sample is reproducible.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from personlab.io import write_json
from personlab.params import DetectorNoise, ParamsError, PoseData, PoseRig, PoseSequence, PoseSkeleton
from personlab.pose import datasets, heatmaps, skeleton
from personlab.pose.cameras import Camera, look_at, write_calibration

__all__ = [
    "SyntheticTrainSet",
    "TrainSample",
    "detect_view",
    "forward_kinematics",
    "make_pose_db",
    "make_rig",
    "make_sequence",
    "random_angles",
    "sample_body",
    "walking_angles",
    "write_dataset",
]

# bone lengths as fractions of body height (spec §9.1)
BONES = ("pelvis", "shoulders", "upper_arm", "forearm", "thigh", "shin", "spine", "neck_head")
_FRACTIONS = np.array([0.11, 0.22, 0.17, 0.15, 0.24, 0.24, 0.30, 0.08])
# joint angles in degrees, per side (left, right) where paired
ANGLES = ("hip_flex", "knee", "hip_abd", "shoulder_flex", "shoulder_abd", "elbow")
_ANKLE_HEIGHT = 80.0  # mm, the lower ankle above the floor
_EXTREMITIES = (9, 10, 15, 16)  # COCO wrists and ankles


def sample_body(rng: np.random.Generator, cfg: PoseSkeleton) -> np.ndarray:
    """Height (mm) then the 8 bone lengths of :data:`BONES` (mm): ``[h, pelvis, ..., neck_head]``."""
    lo, hi = cfg.height_range
    height = float(np.clip(rng.normal(cfg.height_mean, cfg.height_std), lo, hi))
    noise = 1 + cfg.proportion_noise * rng.uniform(-1, 1, len(_FRACTIONS))
    return np.concatenate([[height], height * _FRACTIONS * noise])


def random_angles(rng: np.random.Generator) -> dict[str, np.ndarray | float]:
    """Free poses from the spec's ranges (degrees): hips [−30, 60], knees [0, 90], shoulders [−10, 150]..."""
    return {
        "hip_flex": rng.uniform(-30, 60, 2),
        "knee": rng.uniform(0, 90, 2),
        "hip_abd": rng.uniform(-5, 15, 2),
        "shoulder_flex": rng.uniform(-10, 150, 2),
        "shoulder_abd": rng.uniform(0, 45, 2),
        "elbow": rng.uniform(0, 140, 2),
        "lean": rng.uniform(-15, 15),
        "lateral": rng.uniform(-5, 5),
        "twist": rng.uniform(-30, 30),
        "head_pitch": rng.uniform(-15, 20),
    }


def walking_angles(phase: float, amplitude: float,
                   rng: np.random.Generator | None = None) -> dict[str, np.ndarray | float]:
    """A gait at ``phase`` (radians): legs in counter-phase, arms swinging against the legs, knees bending
    in the swing. ``amplitude`` 0 stands still; ``rng`` adds a few degrees of per-joint variation."""
    legs = np.array([phase, phase + np.pi])
    angles = {
        "hip_flex": 8 + 25 * amplitude * np.sin(legs),
        "knee": 5 + 50 * amplitude * np.clip(np.cos(legs), 0, None),
        "hip_abd": np.array([3.0, 3.0]),
        "shoulder_flex": -20 * amplitude * np.sin(legs),
        "shoulder_abd": np.array([8.0, 8.0]),
        "elbow": 15 + 20 * amplitude * (0.5 + 0.5 * np.sin(legs + np.pi)),
        "lean": 4.0 * amplitude,
        "lateral": 0.0,
        "twist": -8 * amplitude * np.sin(phase),
        "head_pitch": 5.0,
    }
    if rng is not None:
        for key, value in angles.items():
            angles[key] = value + rng.normal(0, 3, np.shape(value))
    return angles


def _rx(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def _ry(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])


def _rz(deg: float) -> np.ndarray:
    c, s = np.cos(np.radians(deg)), np.sin(np.radians(deg))
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def _limb(flex: float, abduction: float, side: float) -> np.ndarray:
    """Unit direction of a limb hanging down, swung forward by ``flex`` and outward by ``abduction``."""
    f, a = np.radians(flex), np.radians(abduction)
    return np.array([side * np.sin(a), np.sin(f) * np.cos(a), -np.cos(f) * np.cos(a)])


def forward_kinematics(body: np.ndarray, angles: dict, heading: float = 0.0,
                       position: Sequence[float] = (0, 0)) -> np.ndarray:
    """(19, 3) :data:`skeleton.SUPER19` joints in mm: the body faces ``heading`` (degrees from +y, turning
    towards −x), its mid-hip above floor point ``position``, the lower ankle 80 mm above the floor."""
    h, pelvis, shoulders, upper_arm, forearm, thigh, shin, spine, neck_head = body
    k = h / 1700.0
    j = np.zeros((19, 3))
    trunk = _rz(angles["twist"]) @ _rx(angles["lean"]) @ _ry(angles["lateral"])
    neck = trunk @ np.array([0.0, 0.0, spine])
    head = trunk @ _rx(angles["head_pitch"])
    head_c = neck + head @ np.array([0.0, 0.0, neck_head])
    j[17], j[18] = neck, head_c + head @ np.array([0.0, 0.0, 110 * k])
    j[0] = head_c + head @ np.array([0.0, 95 * k, -20 * k])
    for i, side in enumerate((-1.0, 1.0)):  # left is −x when facing +y
        j[1 + i] = head_c + head @ np.array([side * 32 * k, 70 * k, 15 * k])
        j[3 + i] = head_c + head @ np.array([side * 75 * k, -5 * k, 0.0])
        shoulder = neck + trunk @ np.array([side * shoulders / 2, 0.0, -0.02 * h])
        elbow = shoulder + upper_arm * (trunk @ _limb(angles["shoulder_flex"][i], angles["shoulder_abd"][i], side))
        wrist = elbow + forearm * (trunk @ _limb(angles["shoulder_flex"][i] + angles["elbow"][i],
                                                 angles["shoulder_abd"][i], side))
        hip = np.array([side * pelvis / 2, 0.0, 0.0])
        knee = hip + thigh * _limb(angles["hip_flex"][i], angles["hip_abd"][i], side)
        ankle = knee + shin * _limb(angles["hip_flex"][i] - angles["knee"][i], angles["hip_abd"][i], side)
        j[5 + i], j[7 + i], j[9 + i], j[11 + i], j[13 + i], j[15 + i] = shoulder, elbow, wrist, hip, knee, ankle
    j[:, 2] += _ANKLE_HEIGHT - min(j[15, 2], j[16, 2])
    j = j @ _rz(heading).T
    j[:, :2] += np.asarray(position, dtype=np.float64)
    return j


def make_pose_db(cfg: PoseSkeleton, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The training pose database (replaces ``panoptic_training_pose.pkl``): (N, 17, 3) COCO mm centred on
    the floor origin, facing +y, with all joints visible ((N, 17) ones)."""
    rng = np.random.default_rng([seed, 1])
    poses = np.empty((cfg.num_poses, 17, 3))
    for n in range(cfg.num_poses):
        body = sample_body(rng, cfg)
        if rng.random() < cfg.walking_fraction:
            angles = walking_angles(rng.uniform(0, 2 * np.pi), rng.uniform(0.3, 1.2), rng)
        else:
            angles = random_angles(rng)
        poses[n] = forward_kinematics(body, angles)[:17]
    return poses, np.ones((cfg.num_poses, 17), dtype=bool)


def make_rig(cfg: PoseRig, image_size: Sequence[int], area_center: Sequence[float], seed: int) -> list[Camera]:
    """Cameras evenly spread around the area (± jitter), looking at its centre 1 m above the floor."""
    rng = np.random.default_rng([seed, 2])
    start = rng.uniform(0, 360)
    cameras = []
    for i in range(cfg.num_cameras):
        azimuth = np.radians(start + 360 * i / cfg.num_cameras + rng.uniform(-cfg.azimuth_jitter, cfg.azimuth_jitter))
        distance, height = rng.uniform(*cfg.distance), rng.uniform(*cfg.height)
        centre = np.array([area_center[0] + distance * np.cos(azimuth), area_center[1] + distance * np.sin(azimuth),
                           height])
        focal = rng.uniform(*cfg.focal)
        cx, cy = (np.asarray(image_size, dtype=np.float64) / 2 + rng.uniform(-1, 1, 2) * cfg.principal_jitter)
        distorted = i < cfg.distorted_cameras
        cameras.append(Camera(
            R=look_at(centre, [area_center[0], area_center[1], 1000.0]), T=centre, fx=focal, fy=focal, cx=cx, cy=cy,
            k=cfg.k if distorted else (0.0, 0.0, 0.0), p=cfg.p if distorted else (0.0, 0.0), name=str(i),
        ))
    return cameras


def _stretch(rng: np.random.Generator, num_frames: int, probability: float, length: tuple[float, float]) -> np.ndarray:
    """A boolean mask with, with ``probability``, one random stretch of ``length`` (fractions) set."""
    mask = np.zeros(num_frames, dtype=bool)
    if rng.random() < probability:
        size = max(1, int(rng.uniform(*length) * num_frames))
        start = int(rng.integers(0, max(1, num_frames - size + 1)))
        mask[start : start + size] = True
    return mask


def make_sequence(cfg: PoseSequence, skel: PoseSkeleton, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Actors walking smooth random walks in the area: (F, A, 19, 3) joints (mm) and (F, A) presence.

    Heading drifts with ``turn_rate``, actors steer back inside the area and away from each other (1 m),
    may stand still for a stretch (the gait amplitude eases to 0), and each is absent for one stretch of
    about ``absence`` of the frames (empty GT entries).
    """
    rng = np.random.default_rng([seed, 3])
    dt = 1.0 / cfg.fps
    centre, half = np.asarray(cfg.area_center, float), np.asarray(cfg.area_size, float) / 2
    num_actors, num_frames = cfg.num_actors, cfg.num_frames
    bodies = [sample_body(rng, skel) for _ in range(num_actors)]
    position = centre + rng.uniform(-0.8, 0.8, (num_actors, 2)) * (half - 500)
    heading = rng.uniform(-180, 180, num_actors)  # degrees from +y towards −x
    phase = rng.uniform(0, 2 * np.pi, num_actors)
    speed = cfg.speed * rng.uniform(0.8, 1.2, num_actors)
    amplitude = np.ones(num_actors)
    pauses = [_stretch(rng, num_frames, cfg.pause, (0.1, 0.25)) for _ in range(num_actors)]
    absent = (0.5 * cfg.absence, 1.5 * cfg.absence)
    present = np.stack([~_stretch(rng, num_frames, float(cfg.absence > 0), absent) for _ in range(num_actors)], axis=1)
    joints = np.empty((num_frames, num_actors, 19, 3))
    for f in range(num_frames):
        for a in range(num_actors):
            direction = np.array([-np.sin(np.radians(heading[a])), np.cos(np.radians(heading[a]))])
            steer = np.zeros(2)
            offset = position[a] - centre
            outside = np.abs(offset) > half - 1000
            steer[outside] -= np.sign(offset[outside])
            for b in range(num_actors):
                gap = position[a] - position[b]
                if b != a and np.linalg.norm(gap) < 1000:
                    steer += gap / (np.linalg.norm(gap) + 1e-6)
            if steer.any():  # turn towards the steering direction, at most 180°/s
                wanted = np.degrees(np.arctan2(-steer[0], steer[1]))
                turn = (wanted - heading[a] + 180) % 360 - 180
                heading[a] += np.clip(turn, -180 * dt, 180 * dt)
            heading[a] += rng.normal(0, cfg.turn_rate * np.sqrt(dt))
            target = 0.0 if pauses[a][f] else 1.0
            amplitude[a] += np.clip(target - amplitude[a], -2 * dt, 2 * dt)  # ease in/out over 0.5 s
            step = speed[a] * amplitude[a] * dt
            position[a] += step * direction
            phase[a] += 2 * np.pi * step / (1400.0 * bodies[a][0] / 1700.0)  # a gait cycle is ~1.4 m
            angles = walking_angles(phase[a], amplitude[a], None)
            joints[f, a] = forward_kinematics(bodies[a], angles, heading[a], position[a])
    return joints, present


def _bbox(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    inter = np.clip(np.minimum(a[2:], b[2:]) - np.maximum(a[:2], b[:2]), 0, None).prod()
    union = (a[2:] - a[:2]).prod() + (b[2:] - b[:2]).prod() - inter
    return float(inter / union) if union > 0 else 0.0


def detect_view(
    rng: np.random.Generator,
    camera: Camera,
    image_size: Sequence[int],
    people: np.ndarray,
    cfg: DetectorNoise,
    ghost: np.ndarray | None = None,
) -> list[np.ndarray]:
    """Emulated top-down 2D detections of one view: a list of (17, 3) ``[x, y, score]`` in original pixels.

    ``people`` (P, 17, 3) world COCO joints; ``ghost`` an optional extra pose projected as a false positive
    (already drawn with probability ``cfg.false_positive`` by the caller). People behind the camera or wholly
    outside the image are not detected. See :class:`personlab.params.DetectorNoise` for the knobs.
    """
    w, h = image_size
    found = []
    projected = [camera.project(p) for p in people]
    depth = [float(camera.depth(skeleton.coco_roots(p))) for p in people]
    boxes = [_bbox(q) for q in projected]
    in_view = [d > 0 and b[0] < w and b[2] > 0 and b[1] < h and b[3] > 0 for d, b in zip(depth, boxes)]
    for n, (uv, box) in enumerate(zip(projected, boxes)):
        if not in_view[n]:
            continue
        if cfg.perfect:
            found.append(np.concatenate([uv, np.ones((17, 1))], axis=1))
            continue
        nearer = [boxes[m] for m in range(len(people)) if m != n and in_view[m] and depth[m] < depth[n]]
        occluded_person = any(_iou(box, other) > cfg.occlusion_iou for other in nearer)
        if rng.random() < cfg.miss or (occluded_person and rng.random() < cfg.occluded_miss):
            continue
        inside = (uv[:, 0] >= 0) & (uv[:, 0] <= w - 1) & (uv[:, 1] >= 0) & (uv[:, 1] <= h - 1)
        hidden = np.zeros(17, dtype=bool)
        for other in nearer:
            hidden |= (uv[:, 0] >= other[0]) & (uv[:, 0] <= other[2]) & (uv[:, 1] >= other[1]) & (uv[:, 1] <= other[3])
        std = cfg.sigma_px * (box[3] - box[1]) / 100.0
        noise = rng.normal(0, 1, (17, 2))
        if cfg.extremity_df > 0:
            noise[list(_EXTREMITIES)] = rng.standard_t(cfg.extremity_df, (len(_EXTREMITIES), 2))
        pred = uv + std * noise
        for left, right in skeleton.COCO_FLIP_PAIRS:
            if rng.random() < cfg.swap:
                pred[[left, right]] = pred[[right, left]]
        if rng.random() < cfg.flip:
            for left, right in skeleton.COCO_FLIP_PAIRS:
                pred[[left, right]] = pred[[right, left]]
        low = hidden | ~inside  # occluded or truncated joints keep a position but a low score
        score = np.where(low, rng.beta(*cfg.score_occluded, 17), rng.beta(*cfg.score_visible, 17))
        found.append(np.concatenate([pred, score[:, None]], axis=1))
    if ghost is not None and not cfg.perfect and camera.depth(skeleton.coco_roots(ghost)) > 0:
        uv = camera.project(ghost)
        box = _bbox(uv)
        if box[0] < w and box[2] > 0 and box[1] < h and box[3] > 0:
            found.append(np.concatenate([uv, rng.beta(*cfg.score_occluded, (17, 1))], axis=1))
    order = rng.permutation(len(found))
    return [found[i] for i in order]


def write_dataset(cfg: PoseData, out_dir: Path, seed: int) -> None:
    """Write the synthetic Campus-layout dataset: calibration, ``actorsGT.mat``, predictions, pose DB, scene."""
    out_dir = Path(out_dir)
    syn = cfg.synthetic
    if syn.rig.num_cameras < cfg.num_cameras:
        raise ParamsError(f"data.pose.num_cameras ({cfg.num_cameras}) exceeds data.pose.synthetic.rig.num_cameras "
                          f"({syn.rig.num_cameras}); raise the rig's camera count")
    if max(last for _, last in cfg.test_frames) >= syn.sequence.num_frames:
        raise ParamsError(f"data.pose.test_frames: reach past the {syn.sequence.num_frames} frames of "
                          "data.pose.synthetic.sequence.num_frames; lengthen the sequence or shorten the ranges")
    layout = datasets.layout_of("campus")
    cameras = make_rig(syn.rig, cfg.image_size, syn.sequence.area_center, seed)
    write_calibration(out_dir / layout["calibration"], cameras)
    joints, present = make_sequence(syn.sequence, cfg.skeleton, seed)
    coco = joints[..., :17, :]
    gt = skeleton.coco_to_campus(coco, cfg.head)
    gt[..., 12:, 2] += cfg.skeleton.head_offset
    datasets.write_actors_gt(out_dir / datasets.ACTORS_GT, gt, present)
    rng = np.random.default_rng([seed, 4])
    ghost_rng = np.random.default_rng([seed, 5])
    predictions = {}
    frames = sorted({f for first, last in cfg.test_frames for f in range(first, last + 1)})
    for frame in frames:
        people = coco[frame][present[frame]]
        for v, camera in enumerate(cameras):
            ghost = None
            if rng.random() < syn.detector.false_positive:
                spot = np.asarray(syn.sequence.area_center) + ghost_rng.uniform(-0.7, 0.7, 2) * syn.sequence.area_size
                ghost = forward_kinematics(sample_body(ghost_rng, cfg.skeleton), random_angles(ghost_rng),
                                           ghost_rng.uniform(-180, 180), spot)[:17]
            predictions[f"{v}_{frame}"] = detect_view(rng, camera, cfg.image_size, people, syn.detector, ghost)
    datasets.write_predictions(out_dir / layout["predictions"], predictions)
    datasets.write_pose_db(out_dir / datasets.POSE_DB, *make_pose_db(cfg.skeleton, seed))
    area_c, area_s = syn.sequence.area_center, syn.sequence.area_size
    write_json(out_dir / "scene.json", {
        "area_center": list(area_c),
        "area_size": list(area_s),
        # the capture area plus 0.5 m each side, 2 m tall from the floor (spec §9.2)
        "suggested_space_center": [area_c[0], area_c[1], 1000.0],
        "suggested_space_size": [area_s[0] + 1000.0, area_s[1] + 1000.0, 2000.0],
    })


# ------------------------------------------------------------------------------------ training sampler


@dataclass(frozen=True)
class TrainSample:
    """One synthetic training sample: ``heatmaps`` (V, 17, H, W) float32 inputs, ``joints`` (N, 17, 3) mm,
    ``vis`` (N, 17) bool, ``roots`` (N, 3) mm (mid-hip, COCO 11/12), N ≥ 1 people."""

    heatmaps: np.ndarray
    joints: np.ndarray
    vis: np.ndarray
    roots: np.ndarray


# amplitude-noise profiles (spec §3.2): (joints, factor, probability); others get ×0.5 with 5 %
_NOISE_PROFILES = {
    "campus": (((7, 8), 0.5, 0.1), ((9, 10), 0.2, 0.1)),
    "shelf": (((7, 8, 13, 14), 0.5, 0.1), ((9, 10, 15, 16), 0.2, 0.1)),
}


class SyntheticTrainSet:
    """Infinite synthetic Campus/Shelf training data (spec §3.2), reproducible per (epoch, index).

    ``split`` is a :class:`personlab.pose.datasets.PoseSplit` (cameras, image size, pose database, sampler
    settings ``split.train``); ``space_center``/``space_size`` (mm) the model's capture space: people are
    placed in ``train.placement_box`` or else ``train.space_margin`` inside the space's border, with their
    footprint wholly inside the space.
    ``input_size``/``heatmap_size`` are (w, h); ``sigma``/``reference``/``exact_centre`` as in
    :func:`personlab.pose.heatmaps.draw_heatmaps`. ``length`` is the number of samples per epoch.
    """

    def __init__(self, split, space_center: Sequence[float], space_size: Sequence[float], input_size: Sequence[int],
                 heatmap_size: Sequence[int], sigma: float, seed: int, length: int = 3000,
                 reference: float | None = None, exact_centre: bool = False) -> None:
        self.cameras = list(split.cameras)
        self.image_size = tuple(split.image_size)
        self.poses, self.vis = split.pose_db
        self.cfg = split.train
        self.input_size, self.heatmap_size = tuple(input_size), tuple(heatmap_size)
        self.sigma, self.reference, self.exact_centre = sigma, reference, exact_centre
        self.seed, self.length = seed, length
        centre, size = np.asarray(space_center, float)[:2], np.asarray(space_size, float)[:2]
        self.space_lo, self.space_hi = centre - size / 2, centre + size / 2
        if self.cfg.placement_box:
            x0, x1, y0, y1 = self.cfg.placement_box
            self.box_lo, self.box_hi = np.array([x0, y0]), np.array([x1, y1])
        else:
            self.box_lo, self.box_hi = self.space_lo + self.cfg.space_margin, self.space_hi - self.cfg.space_margin
        if np.any(self.box_lo >= self.box_hi):
            raise ParamsError(f"the space {tuple(size)} mm is smaller than twice data.pose.train.space_margin "
                              f"({self.cfg.space_margin} mm); enlarge the space or lower the margin")
        if np.any(self.box_lo < self.space_lo) or np.any(self.box_hi > self.space_hi):
            raise ParamsError(f"data.pose.train.placement_box {list(self.cfg.placement_box)} leaves the space "
                              f"{self.space_lo.tolist()}..{self.space_hi.tolist()} mm; shrink the box or grow "
                              "the space")
        self.input_affine = heatmaps.letterbox_affine(self.image_size, self.input_size)
        self.heatmap_affine = heatmaps.heatmap_affine(self.image_size, self.input_size, self.heatmap_size)

    def __len__(self) -> int:
        return self.length

    def _seen_by(self, point: np.ndarray) -> int:
        w, h = self.image_size
        m = self.cfg.view_margin
        count = 0
        for cam in self.cameras:
            x, y = cam.project(point)
            count += int(cam.depth(point) > 0 and m <= x <= w - 1 - m and m <= y <= h - 1 - m)
        return count

    def _place(self, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        cfg = self.cfg
        people, vis, boxes, centres = [], [], [], []
        for _ in range(int(rng.integers(cfg.min_people, cfg.max_people + 1))):
            index = int(rng.integers(len(self.poses)))
            pose, pose_vis = self.poses[index].astype(np.float64), self.vis[index]
            root = pose[list(skeleton.COCO_HIPS), :2].mean(axis=0)
            theta = rng.uniform(-np.pi, np.pi)
            rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
            pose[:, :2] = (pose[:, :2] - root) @ rot.T
            placed = False
            for _ in range(cfg.max_tries):
                if not centres or rng.random() >= cfg.neighbour:
                    centre = rng.uniform(self.box_lo, self.box_hi)
                else:
                    other = centres[int(rng.integers(len(centres)))]
                    centre = other + rng.normal(*cfg.neighbour_offset, 2) * rng.choice([-1.0, 1.0], 2)
                footprint = _bbox(pose[pose_vis, :2] + centre)
                if np.any(footprint[:2] < self.space_lo) or np.any(footprint[2:] > self.space_hi):
                    continue
                if cfg.min_views and self._seen_by(np.array([centre[0], centre[1], 1000.0])) < cfg.min_views:
                    continue
                if any(_iou(footprint, other) >= 0.01 for other in boxes):
                    continue
                placed = True
                break
            if not placed:
                break  # the original forgets this break and crashes on the next person (spec §3.2)
            candidate = pose.copy()
            candidate[:, :2] += centre
            people.append(candidate)
            vis.append(pose_vis)
            boxes.append(footprint)
            centres.append(centre)
        if not people:
            raise ParamsError(f"no placement inside the space is seen by {cfg.min_views} cameras in {cfg.max_tries} "
                              "tries; check voxelpose's space against the camera rig, or lower "
                              "data.pose.train.min_views")
        return np.stack(people), np.stack(vis)

    def _amplitudes(self, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
        amp = np.where(rng.random(shape) < 0.6, 0.9 + rng.normal(0, 0.03, shape), 1.0)
        if self.cfg.amplitude_noise == "none":
            return amp
        special = np.zeros(17, dtype=bool)
        for joints, factor, probability in _NOISE_PROFILES[self.cfg.amplitude_noise]:
            cols = list(joints)
            special[cols] = True
            amp[:, cols] *= np.where(rng.random((shape[0], len(cols))) < probability, factor, 1.0)
        others = np.flatnonzero(~special)
        amp[:, others] *= np.where(rng.random((shape[0], len(others))) < 0.05, 0.5, 1.0)
        return amp

    def sample(self, epoch: int, index: int) -> TrainSample:
        """The sample of (epoch, index): the same numbers on every call and machine."""
        rng = np.random.default_rng([self.seed, epoch, index])
        joints, vis = self._place(rng)
        w, h = self.image_size
        w_in, h_in = self.input_size
        maps = []
        for cam in self.cameras:
            uv = cam.project(joints)
            visible = vis & (uv[..., 0] >= 0) & (uv[..., 0] <= w - 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= h - 1)
            visible &= cam.depth(joints) > 0
            uv_in = heatmaps.transform_points(uv, self.input_affine)
            visible &= (uv_in[..., 0] >= 0) & (uv_in[..., 0] < w_in) & (uv_in[..., 1] >= 0) & (uv_in[..., 1] < h_in)
            amp = self._amplitudes(rng, visible.shape)
            if self.cfg.person_drop:
                visible &= (rng.random(len(joints)) >= self.cfg.person_drop)[:, None]
            maps.append(heatmaps.draw_heatmaps(heatmaps.transform_points(uv, self.heatmap_affine), visible, amp,
                                               self.heatmap_size, self.sigma, self.reference, self.exact_centre))
        return TrainSample(np.stack(maps), joints.astype(np.float32), vis.copy(),
                           skeleton.coco_roots(joints).astype(np.float32))
