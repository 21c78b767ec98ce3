"""VoxelPose: volume oracles (spec §9.4), decoding, soft-argmax, the cached grid, the importer, train → evaluate."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from personlab.pose.cameras import Camera, look_at
from personlab.models.state import CheckpointMismatch, read_state_dict
from personlab.pose.convert import import_voxelpose, original_v2v_key
from personlab.pose.heatmaps import draw_heatmaps, heatmap_affine, transform_points
from personlab.pose.v2v import V2VNet
from personlab.pose.volume import Cube, ViewRig, build_volume, voxel_centres
from personlab.pose.voxelpose import VoxelPose, nms_topk, root_target, soft_argmax

KEYS = Path(__file__).parent / "fixtures" / "original-keys"
IMAGE = (360, 288)
INPUT = (800, 640)
HEATMAP = (200, 160)
SPACE = Cube((8000.0, 8000.0, 2000.0), (32, 32, 8))
CENTRE = (0.0, 0.0, 1000.0)


def _cameras(focal: float = 160.0) -> list[Camera]:
    """Three cameras 10 m out around the space, wide enough that each sees all of it; one distorted."""
    cams = []
    for i, angle in enumerate((0.3, 2.4, 4.3)):
        centre = np.array([10000 * math.cos(angle), 10000 * math.sin(angle), 1950.0])
        k, p = ((-0.05, 0.01, 0.0), (0.001, -0.0005)) if i == 0 else ((0.0, 0.0, 0.0), (0.0, 0.0))
        cams.append(Camera(R=look_at(centre, (0, 0, 1000)), T=centre, fx=focal, fy=focal * 1.01, cx=178, cy=146,
                           k=k, p=p))
    return cams


def _rig(cams: list[Camera]) -> ViewRig:
    affine = heatmap_affine(IMAGE, INPUT, HEATMAP)
    return ViewRig.from_cameras(cams, [IMAGE] * len(cams), [affine] * len(cams), HEATMAP)


def _perfect_heatmaps(cams: list[Camera], points: np.ndarray) -> np.ndarray:
    """(V, J, H, W): one Gaussian per point and channel, drawn at its exact projection."""
    affine = heatmap_affine(IMAGE, INPUT, HEATMAP)
    maps = []
    for cam in cams:
        uv = transform_points(cam.project(points), affine)[None]
        maps.append(draw_heatmaps(uv, np.ones(uv.shape[:2], bool), np.ones(uv.shape[:2]), HEATMAP, 3.0,
                                  exact_centre=True))
    return np.stack(maps)


def _world(index: np.ndarray, cube: Cube, centre) -> np.ndarray:
    """Hand-written voxel index → world mm (inclusive linspace), independent of the module's helper."""
    size, shape = np.asarray(cube.size), np.asarray(cube.shape)
    return np.asarray(centre) - size / 2 + np.asarray(index) * size / (shape - 1)


def test_rig_projection_matches_camera_model() -> None:
    cams = _cameras(focal=450.0)
    points = np.random.default_rng(0).uniform([-3000, -3000, 0], [3000, 3000, 2000], (50, 3))
    got = _rig(cams).project(torch.tensor(points, dtype=torch.float32)).numpy()
    want = np.stack([c.project(points) for c in cams])
    np.testing.assert_allclose(got, want, atol=2e-2)


def test_volume_of_perfect_heatmaps_peaks_at_each_root() -> None:
    cams = _cameras()
    rig = _rig(cams)
    roots = np.array([[-2100.0, 1500.0, 900.0], [1730.0, -2420.0, 980.0], [310.0, 260.0, 1000.0]])
    maps = np.stack([_perfect_heatmaps(cams, r[None]) for r in roots])  # one person per sample
    grid, mask = rig.cube_grid(SPACE, CENTRE)
    volume = build_volume(torch.from_numpy(maps), grid, mask).reshape(len(roots), *SPACE.shape)
    spacing = np.asarray(SPACE.spacing)
    for b, root in enumerate(roots):
        index = np.unravel_index(int(volume[b].argmax()), SPACE.shape)
        assert np.all(np.abs(_world(np.array(index), SPACE, CENTRE) - root) <= spacing + 1e-3)


def _reference_volume(cams: list[Camera], maps: np.ndarray, points: np.ndarray, mean_over: str) -> np.ndarray:
    """Spec §1.5 written out in float64 numpy, view by view, with a hand-made bilinear sampler."""
    affine = heatmap_affine(IMAGE, INPUT, HEATMAP)
    w_hm, h_hm = HEATMAP
    total = np.zeros((maps.shape[1], len(points)))
    count = np.zeros(len(points))
    for cam, view in zip(cams, maps):
        xy = cam.project(points)
        inside = (xy[:, 0] >= 0) & (xy[:, 1] >= 0) & (xy[:, 0] < IMAGE[0]) & (xy[:, 1] < IMAGE[1])
        xy = transform_points(np.clip(xy, -1.0, max(IMAGE)), affine)
        g = np.clip(xy / [w_hm - 1, h_hm - 1] * 2 - 1, -1.1, 1.1)
        x, y = (g[:, 0] + 1) / 2 * (w_hm - 1), (g[:, 1] + 1) / 2 * (h_hm - 1)
        x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
        sampled = np.zeros((view.shape[0], len(points)))
        for dx in (0, 1):
            for dy in (0, 1):
                xi, yi = x0 + dx, y0 + dy
                weight = (1 - np.abs(x - xi)) * (1 - np.abs(y - yi))
                ok = (xi >= 0) & (xi < w_hm) & (yi >= 0) & (yi < h_hm)
                sampled[:, ok] += weight[ok] * view[:, yi[ok], xi[ok]]
        total += sampled * inside if mean_over == "visible" else sampled
        count += inside if mean_over == "visible" else 1
    return np.clip(total / (count + 1e-6 * (mean_over == "visible")), 0, 1)


@pytest.mark.parametrize("mean_over", ["visible", "all"])
def test_cached_grid_equals_per_sample_recomputation(mean_over: str) -> None:
    cams = _cameras(focal=450.0)  # narrower views: many voxels outside some images, so the mask matters
    rig = _rig(cams)
    rng = np.random.default_rng(1)
    maps = rng.random((2, 3, 4, HEATMAP[1], HEATMAP[0])).astype(np.float32)
    grid, mask = rig.cube_grid(SPACE, CENTRE)
    assert rig.cube_grid(SPACE, CENTRE)[0] is grid  # computed once per rig and cube
    got = build_volume(torch.from_numpy(maps), grid, mask, mean_over).numpy()
    points = voxel_centres(SPACE, CENTRE).double().numpy()
    for b in range(2):
        np.testing.assert_allclose(got[b], _reference_volume(cams, maps[b], points, mean_over), atol=2e-4)


def test_cached_model_equals_original_style_recomputation() -> None:
    torch.manual_seed(0)
    cams = _cameras(focal=300.0)
    rig = _rig(cams)
    model = VoxelPose(num_joints=4, space_size=SPACE.size, space_center=CENTRE, cpn_shape=(16, 16, 4),
                      prn_shape=(8, 8, 8), cpn_width=4, prn_width=4, max_people=3, threshold=-1e9).eval()
    for m in model.modules():  # non-trivial weights, so the outputs depend on every voxel
        if isinstance(m, (torch.nn.Conv3d, torch.nn.ConvTranspose3d)):
            torch.nn.init.normal_(m.weight, std=0.2)
    maps = torch.rand(2, 3, 4, HEATMAP[1], HEATMAP[0])
    with torch.no_grad():
        fast = model(maps, rig)
        model.cache_grids = False
        slow = model(maps, rig)
    torch.testing.assert_close(fast, slow, atol=1e-3, rtol=1e-4)


def test_nms_topk_recovers_every_root_of_a_target_volume() -> None:
    roots = torch.tensor([[[-2100.0, 1500.0, 900.0], [1730.0, -2420.0, 980.0], [310.0, 260.0, 1000.0]]])
    target = root_target(roots, torch.ones(1, 3, dtype=torch.bool), SPACE, CENTRE, sigma=200.0)
    scores, index = nms_topk(target, k=5)
    found = _world(index[0, :3].numpy(), SPACE, CENTRE)
    spacing = np.asarray(SPACE.spacing)
    for root in roots[0].numpy():
        assert np.any(np.all(np.abs(found - root) <= spacing, axis=1)), root
    assert scores[0, :3].min() > 0.3
    assert scores[0, 3:].max() == 0  # nothing else is a local maximum


def test_root_target_is_a_gaussian_cut_at_three_sigma() -> None:
    cube = Cube((1000.0, 1000.0, 1000.0), (5, 5, 5))  # voxel centres at -500, -250, 0, 250, 500
    target = root_target(torch.tensor([[[0.0, 0.0, 0.0]]]), torch.ones(1, 1, dtype=torch.bool), cube, (0, 0, 0), 100.0)
    assert target[0, 2, 2, 2] == pytest.approx(1.0)
    assert target[0, 3, 2, 2] == pytest.approx(math.exp(-(250.0**2) / (2 * 100.0**2)), rel=1e-5)
    assert target[0, 4, 2, 2] == 0  # 500 mm > 3σ
    empty = root_target(torch.zeros(1, 1, 3), torch.zeros(1, 1, dtype=torch.bool), cube, (0, 0, 0), 100.0)
    assert empty.abs().sum() == 0


def test_soft_argmax_of_one_hot_volumes_returns_voxel_centres() -> None:
    cube = Cube((2000.0, 2000.0, 2000.0), (8, 8, 8))
    centre = (150.0, -40.0, 900.0)
    hits = np.array([[0, 0, 0], [7, 3, 5], [2, 6, 1]])
    volume = torch.zeros(1, len(hits), *cube.shape)
    for j, (x, y, z) in enumerate(hits):
        volume[0, j, x, y, z] = 1.0
    got = soft_argmax(volume, voxel_centres(cube, centre)[None], beta=100.0)[0].numpy()
    np.testing.assert_allclose(got, _world(hits, cube, centre), atol=1e-3)


def test_v2v_matches_the_original_parameter_count() -> None:
    # spec §1.6: 3,328,897 parameters for 17 → 1 and 3,329,425 for 17 → 17
    assert sum(p.numel() for p in V2VNet(17, 1).parameters()) == 3_328_897
    assert sum(p.numel() for p in V2VNet(17, 17).parameters()) == 3_329_425
    with pytest.raises(ValueError, match="divisible by 4"):
        V2VNet(2, 1, width=4)(torch.zeros(1, 2, 8, 8, 6))


def _original_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """A state dict in the original MultiPersonPoseNet layout, from the recorded key lists."""
    gen = torch.Generator().manual_seed(seed)
    state = {}
    for net, file in (("root_net", "voxelpose.v2v_root.keys.json"), ("pose_net", "voxelpose.v2v_pose.keys.json")):
        for key, shape, dtype in json.loads((KEYS / file).read_text()):
            if dtype == "torch.int64":
                state[f"{net}.v2v_net.{key}"] = torch.randint(0, 1000, shape, generator=gen)
            else:
                state[f"{net}.v2v_net.{key}"] = torch.randn(shape, generator=gen)
    return state


def _original_model() -> VoxelPose:
    return VoxelPose(num_joints=15, cpn_shape=(8, 8, 4), prn_shape=(8, 8, 8))


def test_importer_round_trips_the_original_layout(tmp_path: Path) -> None:
    state = _original_state()
    path = tmp_path / "checkpoint.pth.tar"  # the original's resumable file: nested, DataParallel prefix
    torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    model = import_voxelpose(_original_model(), path)
    ours = model.state_dict()
    assert len(ours) == len(state)
    for key, value in ours.items():
        net, _, rest = key.partition(".")
        original = ("root_net" if net == "cpn" else "pose_net") + ".v2v_net." + original_v2v_key(rest)
        assert torch.equal(value, state[original]), key
    assert original_v2v_key("enc1.downsample.1.running_var") == "encoder_decoder.encoder_res1.skip_con.1.running_var"
    assert original_v2v_key("up2.deconv.weight") == "encoder_decoder.decoder_upsample2.block.0.weight"


def test_importer_names_missing_and_wrong_keys() -> None:
    state = _original_state()
    del state["pose_net.v2v_net.encoder_decoder.mid_res.res_branch.3.weight"]
    state["root_net.v2v_net.extra.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatch) as err:
        import_voxelpose(_original_model(), state)
    message = str(err.value)
    assert "pose_net.v2v_net.encoder_decoder.mid_res.res_branch.3.weight" in message
    assert "root_net.v2v_net.extra.weight" in message
    with pytest.raises(CheckpointMismatch, match=r"shape mismatches \(\d+\)"):
        import_voxelpose(VoxelPose(num_joints=17, cpn_shape=(8, 8, 4), prn_shape=(8, 8, 8)), _original_state())


def test_importer_maps_the_pose_resnet_backbone(tmp_path: Path) -> None:
    import torchvision

    trunk = torchvision.models.resnet50().state_dict()
    state = {f"backbone.{k}": v for k, v in trunk.items() if not k.startswith("fc.")}
    channels = 2048
    for i in range(3):  # ConvTranspose2d(no bias), BN, ReLU per deconvolution layer
        state[f"backbone.deconv_layers.{3 * i}.weight"] = torch.randn(channels, 256, 4, 4)
        for leaf, shape in (("weight", [256]), ("bias", [256]), ("running_mean", [256]), ("running_var", [256])):
            state[f"backbone.deconv_layers.{3 * i + 1}.{leaf}"] = torch.rand(shape)
        state[f"backbone.deconv_layers.{3 * i + 1}.num_batches_tracked"] = torch.tensor(5)
        channels = 256
    state["backbone.final_layer.weight"] = torch.randn(15, 256, 1, 1)
    state["backbone.final_layer.bias"] = torch.randn(15)
    state.update(_original_state())
    path = tmp_path / "model_best.pth.tar"
    torch.save(state, path)
    model = VoxelPose(num_joints=15, cpn_shape=(8, 8, 4), prn_shape=(8, 8, 8), backbone="pose_resnet50")
    import_voxelpose(model, read_state_dict(path))
    ours = model.state_dict()
    assert torch.equal(ours["backbone.trunk.layer3.5.bn2.running_var"], state["backbone.layer3.5.bn2.running_var"])
    assert torch.equal(ours["backbone.deconv_layers.6.weight"], state["backbone.deconv_layers.6.weight"])
    assert torch.equal(ours["backbone.final_layer.bias"], state["backbone.final_layer.bias"])
    model.train()
    assert not model.backbone.training and not any(p.requires_grad for p in model.backbone.parameters())
    maps = model.heatmaps_from_images(torch.zeros(1, 2, 3, 64, 96))
    assert maps.shape == (1, 2, 15, 16, 24)  # output stride 4


def test_undistort_inverts_the_camera_model_and_triangulation_recovers_points() -> None:
    from personlab.pose.evaluate import triangulate_frame, undistort

    cams = _cameras(focal=450.0)
    rng = np.random.default_rng(2)
    people = rng.uniform([-2500, -2500, 100], [2500, 2500, 1800], (2, 17, 3))
    people[1, :, :2] += 1500  # two people apart
    cam = cams[0]
    ideal = (people[0] - cam.T) @ cam.R.T
    np.testing.assert_allclose(undistort(cam, cam.project(people[0])), ideal[:, :2] / ideal[:, 2:], atol=1e-9)
    detections = [np.concatenate([c.project(people), np.ones((2, 17, 1))], axis=-1)[::-1] for c in cams]
    found = triangulate_frame(cams, detections, max_error=0.05)
    assert found.shape == (2, 17, 3)
    order = np.argsort(found[:, 0, 0])
    np.testing.assert_allclose(found[order], people[np.argsort(people[:, 0, 0])], atol=1e-3)


def test_train_then_evaluate_writes_metrics_and_pictures(tmp_path: Path) -> None:
    from personlab.io import read_json
    from personlab.models import load_model
    from personlab.params import Common, PoseData, PoseSequence, PoseSkeleton, SyntheticPose, VoxelPoseParams, parse
    from personlab.pose import prepare
    from personlab.pose.evaluate import evaluate_voxelpose
    from personlab.pose.train import train_voxelpose

    data = PoseData(test_frames=((0, 11),), skeleton=PoseSkeleton(num_poses=40),
                    synthetic=SyntheticPose(sequence=PoseSequence(num_frames=12, absence=0.0)))
    prepare.download(data, tmp_path / "raw", 0)
    prepare.make_splits(tmp_path / "raw", tmp_path / "splits", data)
    cfg = parse(VoxelPoseParams, {
        "input_size": [400, 320], "heatmap_size": [100, 80], "sigma": 2.0,
        "space_size": [7000, 7000, 2000], "space_center": [0, 0, 1000], "cpn_shape": [8, 8, 4],
        "prn_shape": [8, 8, 8], "cpn_width": 4, "prn_width": 4, "root_sigma": 600.0, "threshold": -1.0e9,
        "max_people": 3,
        "train": {"epochs": 2, "channels_last": False, "progress": False},
        "optim": {"lr": 0.001, "samples_per_epoch": 3, "gt_root_epochs": 1, "gt_root_jitter": 100.0, "max_prn_cubes": 2},
        "eval": {"picture_frames": 2},
    }, "voxelpose")
    common = Common(device="cpu")
    train = train_voxelpose(cfg, common, tmp_path / "splits", tmp_path / "models" / "voxelpose", root=tmp_path)
    assert train["epochs"] == 2 and np.isfinite(train["loss"]["loss"])
    assert (tmp_path / "metrics" / "train" / "voxelpose.json").is_file()
    model, meta = load_model(tmp_path / "models" / "voxelpose")
    assert meta["arch"] == "voxelpose" and meta["heatmap_size"] == [100, 80]
    out = tmp_path / "metrics" / "eval" / "voxelpose.json"
    curve = tmp_path / "metrics" / "eval" / "curves" / "voxelpose.json"
    metrics = evaluate_voxelpose(tmp_path / "models" / "voxelpose", tmp_path / "splits", tmp_path / "eval", out,
                                 curve, tmp_path / "pictures", cfg)
    written = read_json(out)
    for key in ("pcp_avg", "pcp_actor1", "pcp_head", "mpjpe_mm", "ap25", "ap150", "recall500", "baseline.pcp_avg"):
        assert key in written, key
    assert written["empty_frame"] == "miss" and written["frames"] == 12
    assert 0 <= metrics["pcp_avg"] <= 100 and 0 <= metrics["recall500"] <= 1
    assert metrics["baseline.pcp_avg"] > 50  # clean synthetic detections triangulate well
    rows = read_json(curve)
    assert [r["threshold_mm"] for r in rows] == [25, 50, 75, 100, 125, 150]
    assert [r["ap"] for r in rows] == [written[f"ap{t}"] for t in (25, 50, 75, 100, 125, 150)]
    saved = np.load(tmp_path / "eval" / "predictions.npz")
    assert saved["pred"].shape[0] == len(saved["frames"]) == 12
    for name in ("voxelpose_3d.png", "voxelpose_views.png"):
        assert (tmp_path / "pictures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
