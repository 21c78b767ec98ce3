"""Pose data: camera model against OpenCV, the Panoptic conversion, real-format loaders on fixture files
written here, the synthetic generator's determinism and detector statistics, heatmaps and the sampler."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import cv2
import numpy as np
import pytest
import scipy.io

from personlab.params import (
    DetectorNoise,
    ParamsError,
    PoseData,
    PoseSequence,
    PoseSkeleton,
    PoseTrainSampler,
    SyntheticPose,
)
from personlab.pose import cameras, datasets, heatmaps, prepare, skeleton, synthetic


def _random_camera(rng: np.random.Generator, distorted: bool = True) -> cameras.Camera:
    # 8–12 m away, as on Campus: the +1e-5 depth guard of spec §1.3 then moves pixels by < 1e-6
    azimuth, radius = rng.uniform(0, 2 * np.pi), rng.uniform(8000, 12000)
    centre = np.array([radius * np.cos(azimuth), radius * np.sin(azimuth), rng.uniform(1000, 3000)])
    return cameras.Camera(
        R=cameras.look_at(centre, [*rng.uniform(-500, 500, 2), 1000.0]), T=centre,
        fx=rng.uniform(400, 1200), fy=rng.uniform(400, 1200), cx=rng.uniform(150, 250), cy=rng.uniform(100, 200),
        k=[-0.08, 0.02, -0.003] if distorted else [0, 0, 0], p=[0.0015, -0.0008] if distorted else [0, 0],
    )


def _cv2_project(points: np.ndarray, R: np.ndarray, t: np.ndarray, K: np.ndarray, dist: np.ndarray) -> np.ndarray:
    rvec, _ = cv2.Rodrigues(R)
    out, _ = cv2.projectPoints(points.reshape(-1, 1, 3), rvec, t.reshape(3, 1), K, dist)
    return out.reshape(-1, 2)


# ---------------------------------------------------------------------------------------------- cameras


def test_projection_matches_opencv_with_distortion():
    rng = np.random.default_rng(0)
    for _ in range(5):
        cam = _random_camera(rng)
        points = rng.uniform([-2000, -2000, 0], [2000, 2000, 2000], (200, 3))
        dist = np.array([cam.k[0], cam.k[1], cam.p[0], cam.p[1], cam.k[2]])
        expected = _cv2_project(points, cam.R, cam.t, cam.K, dist)
        np.testing.assert_allclose(cam.project(points), expected, atol=1e-6, rtol=0)


def test_camera_centre_convention_by_hand():
    # a camera at (0, -5000, 1000) looking along +y: the world point (100, 0, 1000) is 5 m ahead, 0.1 m right
    cam = cameras.Camera(R=cameras.look_at([0, -5000, 1000], [0, 0, 1000]), T=[0, -5000, 1000], fx=500, fy=500,
                         cx=180, cy=144, k=[0, 0, 0], p=[0, 0])
    np.testing.assert_allclose(cam.project(np.array([100.0, 0.0, 1000.0])), [180 + 500 * 100 / 5000, 144], atol=1e-5)
    np.testing.assert_allclose(cam.project(np.array([0.0, 0.0, 1500.0])), [180, 144 - 500 * 500 / 5000], atol=1e-5)


def test_panoptic_conversion_projects_like_the_panoptic_camera_and_round_trips():
    rng = np.random.default_rng(1)
    rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    rot *= np.sign(np.linalg.det(rot))
    entry = {"name": "00_12", "type": "hd", "resolution": [1920, 1080], "panel": 0, "node": 12,
             "K": [[1400.0, 0, 960.0], [0, 1390.0, 540.0], [0, 0, 1]],
             "distCoef": [-0.21, 0.12, 0.0009, -0.0004, -0.02], "R": rot.tolist(), "t": [[12.0], [-30.0], [300.0]]}
    points_cm = rng.uniform(-80, 80, (50, 3)) - rot.T @ np.array([12.0, -30.0, 300.0]) + rot.T @ [0, 0, 800]
    expected = _cv2_project(points_cm, rot, np.array([12.0, -30.0, 300.0]), np.array(entry["K"]),
                            np.array(entry["distCoef"]))
    cam = cameras.camera_from_panoptic(entry)
    np.testing.assert_allclose(cam.project(cameras.panoptic_to_world(points_cm)), expected, atol=1e-6)
    back = cameras.camera_to_panoptic(cam, 0, 12, (1920, 1080))
    for key in ("K", "distCoef", "R", "t"):
        np.testing.assert_allclose(np.asarray(back[key]).ravel(), np.asarray(entry[key]).ravel(), atol=1e-9)
    # y down, cm → z up, mm: (x, y, z) → (x, z, −y)·10
    np.testing.assert_allclose(cameras.panoptic_to_world(np.array([1.0, 2.0, 3.0])), [10.0, 30.0, -20.0])
    np.testing.assert_allclose(cameras.world_to_panoptic(cameras.panoptic_to_world(points_cm)), points_cm)


def test_calibration_json_fixture(tmp_path: Path):
    rig = {str(i): {"R": np.eye(3).tolist(), "T": [[0.0], [0.0], [-1000.0 * (i + 1)]], "fx": 400.0, "fy": 410.0,
                    "cx": 180.0, "cy": 144.0, "k": [[0.0], [0.0], [0.0]], "p": [[0.0], [0.0]]} for i in (10, 2, 0)}
    (tmp_path / "calib.json").write_text(json.dumps(rig))
    cams = cameras.load_calibration(tmp_path / "calib.json")
    assert [c.name for c in cams] == ["0", "2", "10"]
    # identity rotation, centre 3 m behind the origin: (300, 600, 0) → (180 + 400·0.1, 144 + 410·0.2)
    np.testing.assert_allclose(cams[1].project(np.array([300.0, 600.0, 0.0])), [220.0, 226.0], atol=1e-4)
    cameras.write_calibration(tmp_path / "again.json", cams)
    assert json.loads((tmp_path / "again.json").read_text())["2"]["T"] == rig["10"]["T"]
    (tmp_path / "bad.json").write_text(json.dumps({"0": {"R": np.eye(3).tolist()}}))
    with pytest.raises(ValueError, match="lacks T"):
        cameras.load_calibration(tmp_path / "bad.json")


# ---------------------------------------------------------------------------------------------- loaders


def test_actors_gt_fixture_in_the_real_layout(tmp_path: Path):
    rng = np.random.default_rng(2)
    metres = rng.uniform(0, 2, (4, 2, 14, 3))
    cell = np.empty((1, 2), dtype=object)
    for a in range(2):
        frames = np.empty((4, 1), dtype=object)
        for f in range(4):
            frames[f, 0] = np.zeros((1, 0)) if (a, f) == (1, 2) else metres[f, a]
        cell[0, a] = frames
    scipy.io.savemat(tmp_path / "actorsGT.mat", {"actor3D": cell, "actor2D": cell})
    gt, valid = datasets.load_actors_gt(tmp_path / "actorsGT.mat")
    assert gt.shape == (4, 2, 14, 3) and valid.sum() == 7 and not valid[2, 1]
    np.testing.assert_allclose(gt[valid], metres[valid] * 1000.0)
    datasets.write_actors_gt(tmp_path / "ours.mat", gt, valid)
    gt2, valid2 = datasets.load_actors_gt(tmp_path / "ours.mat")
    assert (valid2 == valid).all()
    np.testing.assert_allclose(gt2[valid], gt[valid])


class _Evil:
    def __reduce__(self):
        import os

        return (os.getcwd, ())


def test_predictions_pickle_loads_arrays_and_refuses_code(tmp_path: Path):
    pred = np.arange(51, dtype=np.float64).reshape(17, 3)
    (tmp_path / "pred.pkl").write_bytes(pickle.dumps({"0_350": [{"pred": pred}], "1_350": []}))
    loaded = datasets.load_predictions(tmp_path / "pred.pkl")
    assert sorted(loaded) == ["0_350", "1_350"] and loaded["1_350"] == []
    np.testing.assert_array_equal(loaded["0_350"][0], pred)
    (tmp_path / "evil.pkl").write_bytes(pickle.dumps({"0_1": [{"pred": _Evil()}]}))
    with pytest.raises(ValueError, match="refusing to load posix.getcwd|refusing to load os.getcwd"):
        datasets.load_predictions(tmp_path / "evil.pkl")
    (tmp_path / "short.pkl").write_bytes(pickle.dumps({"0_1": [{"pred": pred[:15]}]}))
    with pytest.raises(ValueError, match="not \\(17, 3\\)"):
        datasets.load_predictions(tmp_path / "short.pkl")


def _panoptic_fixture(root: Path, seq: str, frames: int) -> None:
    rng = np.random.default_rng(len(seq))
    cams = []
    for node in (12, 6, 23, 13, 3, 1):
        rot, _ = np.linalg.qr(rng.normal(size=(3, 3)))
        cams.append({"name": f"00_{node:02d}", "type": "hd", "resolution": [1920, 1080], "panel": 0, "node": node,
                     "K": [[1400, 0, 960], [0, 1400, 540], [0, 0, 1]], "distCoef": [0, 0, 0, 0, 0],
                     "R": (rot * np.sign(np.linalg.det(rot))).tolist(), "t": [[0], [0], [300]]})
    cams.append({"name": "01_01", "type": "vga", "panel": 1, "node": 1, "K": cams[0]["K"], "distCoef": [0] * 5,
                 "R": cams[0]["R"], "t": [[0], [0], [1]]})
    (root / seq / "hdPose3d_stage1_coco19").mkdir(parents=True)
    (root / seq / f"calibration_{seq}.json").write_text(json.dumps({"cameras": cams}))
    for f in range(frames):
        joints = np.concatenate([rng.uniform(-50, 50, (19, 3)), np.ones((19, 1))], axis=1)
        hidden_root = joints.copy()
        hidden_root[2, 3] = 0.05  # root not visible: the body is dropped
        bodies = [{"id": 0, "joints19": joints.ravel().tolist()}, {"id": 1, "joints19": hidden_root.ravel().tolist()}]
        if f == 1:
            bodies = bodies[1:]  # only a dropped body: no entry for this frame
        (root / seq / "hdPose3d_stage1_coco19" / f"body3DScene_{f:08d}.json").write_text(json.dumps({"bodies": bodies}))
    for node in (12, 6):
        (root / seq / "hdImgs" / f"00_{node:02d}").mkdir(parents=True)
        for f in range(frames):
            if (node, f) != (6, 3):  # one missing image: frame 3 cannot be used
                (root / seq / "hdImgs" / f"00_{node:02d}" / f"00_{node:02d}_{f:08d}.jpg").write_bytes(b"")


def test_panoptic_loaders_and_split(tmp_path: Path):
    data = tmp_path / "panoptic-toolbox" / "data"
    _panoptic_fixture(data, "seqA", 7)
    _panoptic_fixture(data, "seqB", 4)
    body = json.loads((data / "seqA/hdPose3d_stage1_coco19/body3DScene_00000000.json").read_text())["bodies"][0]
    cm = np.asarray(body["joints19"]).reshape(19, 4)
    poses, vis = datasets.load_panoptic_bodies(data / "seqA/hdPose3d_stage1_coco19/body3DScene_00000000.json")
    assert poses.shape == (1, 15, 3) and vis.all()
    np.testing.assert_allclose(poses[0, :, 0], cm[:15, 0] * 10)  # x kept
    np.testing.assert_allclose(poses[0, :, 2], -cm[:15, 1] * 10)  # z up = −y down
    cams = datasets.load_panoptic_calibration(data / "seqA/calibration_seqA.json", [(0, 6), (0, 12)])
    assert [c.name for c in cams] == ["00_06", "00_12"]
    cfg = PoseData(source="panoptic", archive=str(data), num_cameras=2, image_size=(1920, 1080),
                   panoptic=dataclasses.replace(PoseData().panoptic, train_sequences=("seqA",),
                                                val_sequences=("seqB",), train_interval=3, val_interval=1))
    prepare.download(cfg, tmp_path / "raw", seed=0)
    counts = prepare.make_splits(tmp_path / "raw", tmp_path / "splits", cfg)
    # seqA files 0..6 every 3rd → 0, 3, 6, minus 3 (no image); seqB 0..3 minus 1 (its only body is dropped)
    # and 3 (no image)
    assert counts == {"pose_cameras": 2, "pose_train_frames": 2, "pose_test_frames": 2,
                      "pose_train_frames_without_images": 1, "pose_test_frames_without_images": 1}
    test = datasets.load_panoptic_split(tmp_path / "splits", "test")
    assert test.frame.tolist() == [0, 2] and test.count.tolist() == [1, 1]
    assert test.image_path(0, 1) == tmp_path / "raw" / "seqB" / "hdImgs" / "00_06" / "00_06_00000000.jpg"
    assert test.cameras["seqB"][0].name == "0"
    with pytest.raises(ParamsError, match="image_size"):
        prepare.make_splits(tmp_path / "raw", tmp_path / "splits", dataclasses.replace(cfg, image_size=(960, 540)))


# ---------------------------------------------------------------------------------------------- synthetic


def _small_cfg(**detector) -> PoseData:
    return PoseData(
        test_frames=((2, 9), (14, 19)),
        skeleton=PoseSkeleton(num_poses=40),
        synthetic=SyntheticPose(sequence=PoseSequence(num_frames=24), detector=DetectorNoise(**detector)),
    )


def test_synthetic_dataset_is_deterministic_and_in_the_real_format(tmp_path: Path):
    cfg = _small_cfg()
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        prepare.download(cfg, tmp_path / name, seed)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert files == ["actorsGT.mat", "calibration_campus.json", "pose_db.npz", "pred_campus_maskrcnn_hrnet_coco.pkl",
                     "scene.json"]
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "actorsGT.mat").read_bytes() != (tmp_path / "c" / "actorsGT.mat").read_bytes()
    cams = cameras.load_calibration(tmp_path / "a" / "calibration_campus.json")
    assert len(cams) == 3 and np.any(cams[0].k != 0) and np.all(cams[2].k == 0)
    # the original-style reader: loadmat, ×1000, presence by emptiness
    actor3d = scipy.io.loadmat(tmp_path / "a" / "actorsGT.mat")["actor3D"][0]
    assert len(actor3d) == 3 and actor3d[0].shape == (24, 1)
    preds = pickle.loads((tmp_path / "a" / "pred_campus_maskrcnn_hrnet_coco.pkl").read_bytes())
    assert set(preds) == {f"{v}_{f}" for v in range(3) for f in [*range(2, 10), *range(14, 20)]}


def test_perfect_detections_are_projections_of_the_ground_truth(tmp_path: Path):
    cfg = _small_cfg(perfect=True)
    prepare.download(cfg, tmp_path / "raw", 0)
    counts = prepare.make_splits(tmp_path / "raw", tmp_path / "splits", cfg)
    split = datasets.load_pose_split(tmp_path / "splits")
    assert counts["pose_test_frames"] == len(split.test) == 14 and split.image_size == (360, 288)
    assert split.test.frames.tolist() == [*range(2, 10), *range(14, 20)]
    body = [16, 14, 12, 11, 13, 15, 10, 8, 6, 5, 7, 9]  # COCO joints of Campus joints 0..11
    matched = 0
    for i in range(len(split.test)):
        people = split.test.gt[i][split.test.gt_valid[i]]
        for v, cam in enumerate(split.cameras):
            for det in split.test.detections[i][v]:
                errors = [np.abs(cam.project(p[:12]) - det[body, :2]).max() for p in people]
                assert min(errors) < 1e-6 and np.all(det[:, 2] == 1.0)
                matched += 1
    assert matched == counts["pose_test_detections"] > 0


def test_detector_noise_grows_with_person_size_and_misses_at_the_set_rate():
    cam = cameras.Camera(R=cameras.look_at([0, -10000, 1000], [0, 0, 1000]), T=[0, -10000, 1000], fx=500, fy=500,
                         cx=180, cy=144, k=[0, 0, 0], p=[0, 0])
    body = np.array([1700.0, *(1700 * np.array([0.11, 0.22, 0.17, 0.15, 0.24, 0.24, 0.30, 0.08]))])
    pose = synthetic.forward_kinematics(body, synthetic.walking_angles(0.0, 0.0))[:17]
    cfg = DetectorNoise(sigma_px=3.0, extremity_df=0.0, miss=0.2, swap=0.0, flip=0.0)
    rng = np.random.default_rng(0)
    result = {}
    for distance in (2000.0, 6000.0):  # 8 m and 4 m from the camera: the near person is twice as tall
        person = pose + np.array([0.0, -distance, 0.0])
        truth = cam.project(person)
        height = truth[:, 1].max() - truth[:, 1].min()
        errors, found = [], 0
        for _ in range(300):
            dets = synthetic.detect_view(rng, cam, (360, 288), person[None], cfg)
            found += len(dets)
            errors += [d[:, :2] - truth for d in dets]
        std = np.std(np.concatenate(errors))
        assert std == pytest.approx(cfg.sigma_px * height / 100, rel=0.1)
        assert 1 - found / 300 == pytest.approx(cfg.miss, abs=0.06)
        result[distance] = (std, height)
    ratio_std = result[6000.0][0] / result[2000.0][0]
    ratio_height = result[6000.0][1] / result[2000.0][1]
    assert ratio_std == pytest.approx(ratio_height, rel=0.15) and ratio_height > 1.7


# ---------------------------------------------------------------------------------------------- heatmaps


def _original_affine(image_size, input_size) -> np.ndarray:
    """The original three-point construction with OpenCV (rotation 0)."""
    w, h = image_size
    w_in, h_in = input_size
    padded_w = h / h_in * w_in if w / w_in < h / h_in else w
    centre = np.array([w / 2, h / 2])
    src = np.stack([centre, centre + [0, -0.5 * padded_w], [0, 0]])
    src[2] = src[1] + np.array([-(src[0] - src[1])[1], (src[0] - src[1])[0]])
    dst = np.stack([[w_in / 2, h_in / 2], [w_in / 2, h_in / 2 - 0.5 * w_in], [0, 0]])
    dst[2] = dst[1] + np.array([-(dst[0] - dst[1])[1], (dst[0] - dst[1])[0]])
    return cv2.getAffineTransform(src.astype(np.float32), dst.astype(np.float32))


@pytest.mark.parametrize("image, network", [((360, 288), (800, 640)), ((1032, 776), (800, 608)),
                                            ((1920, 1080), (960, 512))])
def test_letterbox_affine_matches_the_original_construction(image, network):
    np.testing.assert_allclose(heatmaps.letterbox_affine(image, network), _original_affine(image, network), atol=1e-4)


def test_gaussian_centre_sigma_and_truncation():
    sigma = heatmaps.person_sigma(np.zeros((1, 2)), np.ones(1, bool), 3.0)
    assert sigma == pytest.approx(3 * np.sqrt(2) * 48 / 96)  # a one-joint person has the smallest scale
    maps = heatmaps.draw_heatmaps(np.array([[[10.7, 7.2]]]), np.ones((1, 1), bool), np.full((1, 1), 0.8), (30, 20), 3.0)
    assert np.unravel_index(maps[0].argmax(), maps[0].shape) == (7, 10)  # int() truncation
    assert maps[0, 7, 10] == pytest.approx(0.8)
    assert maps[0, 7, 11] == pytest.approx(0.8 * np.exp(-1 / (2 * sigma**2)), rel=1e-5)
    exact = heatmaps.draw_heatmaps(np.array([[[10.0, 7.0]]]), np.ones((1, 1), bool), np.ones((1, 1)), (30, 20), 3.0,
                                   exact_centre=True)
    assert exact[0, 7, 10] == pytest.approx(1.0)
    nothing = heatmaps.draw_heatmaps(np.array([[[-50.0, 7.0]]]), np.ones((1, 1), bool), np.ones((1, 1)), (30, 20), 3.0)
    assert not nothing.any()


def _brute_force_heatmaps(points, visible, amplitude, size, sigma, exact):
    """Pixel by pixel: each visible joint's Gaussian inside its [floor(m − 3σ), ceil(m + 3σ)] window, max-merged;
    σ from the person's box side L with the original constants scaled to the map width (96 → 96·W/200)."""
    width, height = size
    ref = 96.0 * width / 200.0
    out = np.zeros((points.shape[1], height, width))
    for person, vis, amp in zip(points, visible, amplitude):
        if not vis.any():
            continue
        side = np.max(person[vis].max(axis=0) - person[vis].min(axis=0))
        s = sigma * np.sqrt(2) * min(max(side, ref / 2), 2 * ref) / ref
        for j in np.flatnonzero(vis):
            mx, my = person[j] if exact else (float(int(person[j][0])), float(int(person[j][1])))
            for y in range(height):
                for x in range(width):
                    in_x = np.floor(mx - 3 * s) <= x <= np.ceil(mx + 3 * s)
                    if in_x and np.floor(my - 3 * s) <= y <= np.ceil(my + 3 * s):
                        value = amp[j] * np.exp(-((x - mx) ** 2 + (y - my) ** 2) / (2 * s * s))
                        out[j, y, x] = max(out[j, y, x], value)
    return np.clip(out, 0, 1)


@pytest.mark.parametrize("exact", [False, True])
def test_heatmaps_equal_a_pixel_by_pixel_drawing(exact):
    rng = np.random.default_rng(4)
    points = rng.uniform(-25, 70, (3, 5, 2)) * [1.0, 0.8]  # some joints off the map, some windows cut
    points[1] = points[1] * 0.2 + 20  # a small person (smallest σ) overlapping the others
    visible = rng.random((3, 5)) < 0.8
    amplitude = rng.uniform(0.2, 1.2, (3, 5))  # > 1 exercises the clip
    expected = _brute_force_heatmaps(points, visible, amplitude, (48, 36), 2.5, exact)
    got = heatmaps.draw_heatmaps(points, visible, amplitude, (48, 36), 2.5, exact_centre=exact)
    assert got.dtype == np.float32 and expected.any()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-7)
    # at the original's 200-px-wide maps the constants are the original's: σ = sigma·√2·clip(L, 48, 192)/96
    wide = heatmaps.draw_heatmaps(np.array([[[50.0, 50.0], [50.0, 150.0]]]), np.ones((1, 2), bool), np.ones((1, 2)),
                                  (200, 160), 3.0, exact_centre=True)
    assert wide[0, 50, 51] == pytest.approx(np.exp(-1 / (2 * (3 * np.sqrt(2) * 100 / 96) ** 2)), rel=1e-6)


def test_detection_heatmaps_use_scores_only_when_asked():
    det = np.zeros((1, 17, 3))
    det[0, :, :2] = np.linspace(40, 300, 17)[:, None] * [1.0, 0.8]
    det[0, :, 2] = 0.5
    one = heatmaps.detection_heatmaps([det, np.zeros((0, 17, 3))], (360, 288), (360, 288), (90, 72), 2.0, "one")
    score = heatmaps.detection_heatmaps([det], (360, 288), (360, 288), (90, 72), 2.0, "score")
    assert one.shape == (2, 17, 72, 90) and one[0].max() == 1.0 and not one[1].any()
    assert score.max() == pytest.approx(0.5)


# ---------------------------------------------------------------------------------------------- sampler


def _split(tmp_path: Path, train: PoseTrainSampler) -> datasets.PoseSplit:
    cfg = dataclasses.replace(_small_cfg(), train=train)
    prepare.download(cfg, tmp_path / "raw", 0)
    prepare.make_splits(tmp_path / "raw", tmp_path / "splits", cfg)
    return datasets.load_pose_split(tmp_path / "splits")


def test_training_samples_are_reproducible_and_inside_the_space(tmp_path: Path):
    split = _split(tmp_path, PoseTrainSampler(max_people=4))
    data = synthetic.SyntheticTrainSet(split, (0, 0, 1000), (7000, 7000, 2000), (360, 288), (90, 72), 2.0, seed=5)
    a, b, c = data.sample(1, 3), data.sample(1, 3), data.sample(1, 4)
    assert all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("heatmaps", "joints", "vis", "roots"))
    assert not np.array_equal(a.heatmaps, c.heatmaps)
    for i in range(6):
        s = data.sample(0, i)
        assert 1 <= len(s.joints) <= 4 and s.heatmaps.shape == (3, 17, 72, 90)
        assert np.all(np.abs(s.joints[..., :2]) <= 3500)
        np.testing.assert_allclose(s.roots, s.joints[:, [11, 12]].mean(axis=1), atol=1e-3)
    # heatmaps light up where the joints project (amplitude noise dims a few to ×0.2–0.5)
    lit, total = 0, 0
    for i in range(4):
        s = data.sample(2, i)
        for v, cam in enumerate(split.cameras):
            uv = heatmaps.transform_points(cam.project(s.joints), data.heatmap_affine).astype(int)
            inside = (uv[..., 0] >= 0) & (uv[..., 0] < 90) & (uv[..., 1] >= 0) & (uv[..., 1] < 72)
            for n, j in zip(*np.nonzero(inside)):
                total += 1
                lit += s.heatmaps[v, j, uv[n, j, 1], uv[n, j, 0]] > 0.15
    assert total > 100 and lit / total > 0.9


def test_failed_placement_truncates_the_sample_instead_of_crashing(tmp_path: Path):
    # a 2.2 m space with a 0.5 m margin fits one footprint, not nine: the original raised IndexError here
    split = _split(tmp_path, PoseTrainSampler(min_people=9, max_people=9, min_views=0, max_tries=20))
    data = synthetic.SyntheticTrainSet(split, (0, 0, 1000), (2200, 2200, 2000), (360, 288), (90, 72), 2.0, seed=0)
    counts = [len(data.sample(0, i).joints) for i in range(5)]
    assert all(1 <= n < 9 for n in counts)
    with pytest.raises(ValueError, match="space"):
        synthetic.SyntheticTrainSet(split, (0, 0, 1000), (800, 800, 2000), (360, 288), (90, 72), 2.0, seed=0)


def test_pose_database_has_realistic_proportions():
    poses, vis = synthetic.make_pose_db(PoseSkeleton(num_poses=200), seed=0)
    assert poses.shape == (200, 17, 3) and vis.all()
    ankles = poses[:, [15, 16], 2].min(axis=1)
    np.testing.assert_allclose(ankles, 80.0, atol=1e-6)  # feet on the floor
    thigh = np.linalg.norm(poses[:, 11] - poses[:, 13], axis=1)
    assert np.all((thigh > 0.24 * 1450 * 0.94) & (thigh < 0.24 * 1950 * 1.06))
    hips = np.linalg.norm(poses[:, 11] - poses[:, 12], axis=1)
    shoulders = np.linalg.norm(poses[:, 5] - poses[:, 6], axis=1)
    assert np.all(shoulders > hips)  # shoulder width 0.22h vs pelvis 0.11h
    assert np.all(poses[:, 0, 2] > poses[:, 11, 2])  # nose above the hips: upright people
    # left joints of a person facing +y lie at −x (COCO l/r convention seen from behind)
    facing = synthetic.forward_kinematics(synthetic.sample_body(np.random.default_rng(0), PoseSkeleton()),
                                          synthetic.walking_angles(0.0, 0.0))
    assert facing[skeleton.COCO17.index("l_hip"), 0] < 0 < facing[skeleton.COCO17.index("r_hip"), 0]


def test_real_campus_download_and_split_from_fixture_files(tmp_path: Path):
    import zipfile

    # the TUM archive layout (CampusSeq1/actorsGT.mat + camera folders), VoxelPose's calibration and detections
    gt = np.zeros((5, 3, 14, 3))
    gt[..., 2] = np.linspace(0.1, 1.7, 14)  # metres
    valid = np.ones((5, 3), bool)
    valid[4, 2] = False
    datasets.write_actors_gt(tmp_path / "actorsGT.mat", gt * 1000, valid)
    with zipfile.ZipFile(tmp_path / "CampusSeq1.zip", "w") as zf:
        zf.write(tmp_path / "actorsGT.mat", "CampusSeq1/actorsGT.mat")
        zf.writestr("CampusSeq1/Camera0/campus4-c0-00000.png", b"")
    rng = np.random.default_rng(0)
    cameras.write_calibration(tmp_path / "calibration_campus.json", [_random_camera(rng, False) for _ in range(3)])
    det = np.ones((17, 3))
    (tmp_path / "pred.pkl").write_bytes(pickle.dumps({"0_3": [{"pred": det}], "2_4": [{"pred": det}, {"pred": det}]}))
    cfg = PoseData(source="campus", archive=str(tmp_path / "CampusSeq1.zip"), md5=_md5(tmp_path / "CampusSeq1.zip"),
                   calibration=str(tmp_path / "calibration_campus.json"), predictions=str(tmp_path / "pred.pkl"),
                   test_frames=((3, 4),), skeleton=PoseSkeleton(num_poses=10))
    prepare.download(cfg, tmp_path / "raw", seed=0)
    assert (tmp_path / "raw" / "Camera0").is_dir()
    assert (tmp_path / "raw" / "pred_campus_maskrcnn_hrnet_coco.pkl").is_file()
    counts = prepare.make_splits(tmp_path / "raw", tmp_path / "splits", cfg)
    assert counts["pose_test_frames"] == 2 and counts["pose_test_people"] == 5 and counts["pose_test_detections"] == 3
    split = datasets.load_pose_split(tmp_path / "splits")
    assert [[len(v) for v in frame] for frame in split.test.detections] == [[1, 0, 0], [0, 0, 2]]
    np.testing.assert_allclose(split.test.gt[0, 0, :, 2], np.linspace(100, 1700, 14))
    bad = dataclasses.replace(cfg, md5="0" * 32)
    with pytest.raises(ValueError, match="md5"):
        prepare.download(bad, tmp_path / "raw", seed=0)
    assert (tmp_path / "raw" / "Camera0").is_dir()  # a failed download leaves the previous folder intact


def _md5(path: Path) -> str:
    import hashlib

    return hashlib.md5(path.read_bytes()).hexdigest()
