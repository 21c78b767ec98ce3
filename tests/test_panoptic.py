"""The CMU Panoptic path of VoxelPose on the Panoptic-like synthetic tree: real loaders, the letterbox chain,
frozen and trained backbones, loss_2d, the PoseResNet importer, and train → evaluate from images."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

from personlab.engine import Context
from personlab.io import read_json
from personlab.models.state import CheckpointMismatch
from personlab.params import Common, PoseData, VoxelPoseParams, parse
from personlab.pose import datasets, panoptic, prepare
from personlab.pose.cameras import Camera
from personlab.pose.convert import import_pose_resnet
from personlab.pose.heatmaps import heatmap_affine
from personlab.pose.panoptic_synthetic import PanopticLike, sequence_scene, sequence_seed, write_panoptic_like
from personlab.pose.volume import ViewRig
from personlab.pose.voxelpose import PoseResNet, heatmap_loss

SIZE = (192, 108)  # 1920×1080 scaled by 1/10
OPTS = PanopticLike(train_sequences=("seq_a",), val_sequences=("seq_b",), num_frames=4, people=(2, 3),
                    image_size=SIZE, num_cameras=3, low_confidence=0.1, hidden_root=0.15)
CAMS = ((0, 12), (0, 6), (0, 23))


def _data_cfg(tree: Path) -> PoseData:
    pan = dataclasses.replace(PoseData().panoptic, train_sequences=("seq_a",), val_sequences=("seq_b",),
                              train_interval=1, val_interval=1, cameras=CAMS)
    return PoseData(source="panoptic", archive=str(tree), num_cameras=3, image_size=SIZE, panoptic=pan)


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> Path:
    """The tiny tree through download@pose and splits@pose: the folder of the Panoptic split."""
    root = tmp_path_factory.mktemp("panoptic")
    write_panoptic_like(root / "tree", seed=3, opts=OPTS)
    cfg = _data_cfg(root / "tree")
    prepare.download(cfg, root / "raw", seed=0)
    prepare.make_splits(root / "raw", root / "splits", cfg)
    return root / "splits"


def _voxelpose_cfg(**changes) -> VoxelPoseParams:
    values = {
        "num_joints": 15, "input_size": [96, 64], "heatmap_size": [24, 16], "sigma": 1.0,
        "space_size": [8000, 8000, 2000], "space_center": [0, -500, 800], "cpn_shape": [8, 8, 4],
        "prn_shape": [8, 8, 8], "cpn_width": 4, "prn_width": 4, "root_sigma": 600.0, "threshold": -1.0e9,
        "max_people": 3, "backbone": "pose_resnet50", "backbone_depth": 18,
        "train": {"epochs": 1, "channels_last": False, "progress": False},
        "optim": {"lr": 0.001, "gt_root_epochs": 1, "gt_root_jitter": 100.0, "max_prn_cubes": 2},
        "eval": {"picture_frames": 2},
    }
    values.update(changes)
    return parse(VoxelPoseParams, values, "voxelpose")


def test_synthetic_tree_is_read_back_by_the_real_loaders(tmp_path: Path, split: Path) -> None:
    write_panoptic_like(tmp_path / "tree", seed=3, opts=OPTS)
    seq = tmp_path / "tree" / "seq_b"
    cameras, truth, present = sequence_scene(sequence_seed(3, 1), OPTS)  # seq_b is sequence 1
    loaded = datasets.load_panoptic_calibration(seq / "calibration_seq_b.json", list(CAMS))
    points = np.random.default_rng(0).uniform([-2000, -2500, 0], [2000, 1500, 2000], (20, 3))
    for ours, theirs in zip(loaded, cameras):  # cm, y-down JSON → mm, z-up cameras that project the same
        np.testing.assert_allclose(ours.project(points), theirs.project(points), atol=1e-6)
    for f in range(OPTS.num_frames):
        path = seq / "hdPose3d_stage1_coco19" / f"body3DScene_{f:08d}.json"
        bodies = json.loads(path.read_text())["bodies"]
        conf = np.array([b["joints19"] for b in bodies]).reshape(-1, 19, 4)[:, :, 3]
        kept = [b["id"] for b, c in zip(bodies, conf) if c[2] > 0.1]  # the root filter, by hand
        poses, vis = datasets.load_panoptic_bodies(path)
        assert sorted(b["id"] for b in bodies) == np.flatnonzero(present[f]).tolist()
        np.testing.assert_allclose(poses, truth[f, kept, :15], atol=1e-6)
        np.testing.assert_array_equal(vis, conf[conf[:, 2] > 0.1, :15] > 0.1)
    every_conf = np.concatenate([np.array([b["joints19"] for b in json.loads(p.read_text())["bodies"]]).reshape(
        -1, 19, 4)[:, :, 3].ravel() for p in sorted(seq.glob("hdPose3d_stage1_coco19/*.json"))])
    assert 0 < (every_conf < 0.1).mean() < 0.5
    image = cv2.imread(str(seq / "hdImgs" / "00_23" / "00_23_00000002.jpg"))
    assert image.shape == (SIZE[1], SIZE[0], 3) and image.std() > 10
    again = tmp_path / "again"
    write_panoptic_like(again, seed=3, opts=OPTS)
    digest = [hashlib.md5(p.read_bytes()).hexdigest() for p in sorted((tmp_path / "tree").rglob("*.*"))]
    assert digest == [hashlib.md5(p.read_bytes()).hexdigest() for p in sorted(again.rglob("*.*"))]
    frames = datasets.load_panoptic_split(split, "test")
    assert len(frames) == sum(int(bool(len(datasets.load_panoptic_bodies(p)[0])))
                              for p in sorted(seq.glob("hdPose3d_stage1_coco19/*.json")))
    assert frames.image_path(0, 2).is_file() and frames.cameras["seq_b"][0].name == "0"


def test_letterbox_chain_puts_image_target_and_volume_on_the_same_pixel(tmp_path: Path) -> None:
    # Panoptic 1920×1080 → 960×512: the width is padded to 1080·960/512 = 2025 (scale 2025/200), factor 960/2025
    camera = Camera(R=np.eye(3), T=np.zeros(3), fx=1000, fy=1000, cx=960, cy=540, k=(0, 0, 0), p=(0, 0))
    pixel = np.array([1234.5, 777.25])
    point = np.array([(pixel[0] - 960) * 5.0, (pixel[1] - 540) * 5.0, 5000.0])  # projects to `pixel`
    x_in, y_in = 480 + (1234.5 - 960) * 960 / 2025, 256 + (777.25 - 540) * 960 / 2025  # 610.13, 368.47
    maps, weight = panoptic.target_heatmaps([camera], point[None, None], np.ones((1, 1), bool), (1920, 1080),
                                            (960, 512), (240, 128), 2.0)
    assert maps.shape == (1, 1, 128, 240) and weight.tolist() == [[1.0]]
    peak = np.unravel_index(int(maps[0, 0].argmax()), maps.shape[2:])
    assert peak == (int(y_in / 4), int(x_in / 4)) == (92, 152)  # the original's truncated centre
    rig = ViewRig.from_cameras([camera], [(1920, 1080)], [heatmap_affine((1920, 1080), (960, 512), (240, 128))],
                               (240, 128))
    grid, mask = rig.sampling_grid(torch.tensor(point[None], dtype=torch.float32))
    sampled = (grid[0, 0].numpy() + 1) / 2 * np.array([239, 127])  # align_corners=True
    np.testing.assert_allclose(sampled, [x_in / 4, y_in / 4], atol=1e-3)
    assert mask.item() == 1
    image = np.zeros((1080, 1920, 3), np.uint8)
    cv2.circle(image, (1234, 777), 6, (255, 255, 255), -1)
    cv2.imwrite(str(tmp_path / "dot.jpg"), image)
    warped = panoptic.read_view(tmp_path / "dot.jpg", (1920, 1080), (960, 512))
    assert warped.shape == (3, 512, 960)
    ys, xs = np.nonzero(warped[0] > 128)
    assert abs(xs.mean() - x_in) < 1.0 and abs(ys.mean() - y_in) < 1.0
    with pytest.raises(Exception, match="image_size"):
        panoptic.read_view(tmp_path / "dot.jpg", (960, 540), (960, 512))


def test_loss_2d_is_the_masked_mean_over_views() -> None:
    pred = torch.tensor([[[[[1.0, 2.0], [3.0, 4.0]]], [[[0.5, 0.5], [0.5, 0.5]]]]])  # (1, 2 views, 1, 2, 2)
    target = torch.tensor([[[[[0.0, 2.0], [1.0, 1.0]]], [[[9.0, 9.0], [9.0, 9.0]]]]])
    weight = torch.tensor([[[1.0], [0.0]]])  # the second view's joint is masked
    # view 0: squared errors 1, 0, 4, 9 → mean 3.5; view 1: everything masked → 0; mean over views 1.75
    assert heatmap_loss(pred, target, weight).item() == pytest.approx(1.75)
    assert heatmap_loss(pred, target, torch.ones(1, 2, 1)).item() == pytest.approx((3.5 + 8.5 ** 2) / 2)


def _task(split: Path, cfg: VoxelPoseParams):
    from personlab.pose.train import PanopticTask

    frames = datasets.load_panoptic_split(split, "train")
    task = PanopticTask(cfg, frames, SIZE, seed=0)
    ctx = Context(stage="voxelpose", device=torch.device("cpu"), seed=0)
    torch.manual_seed(0)
    ctx.raw_modules = task.build_modules(ctx)
    ctx.modules = dict(ctx.raw_modules)
    ctx.optimizers = task.build_optimizers(ctx)
    return task, ctx


def test_frozen_backbone_is_out_of_adam_and_unchanged_by_a_step(split: Path) -> None:
    task, ctx = _task(split, _voxelpose_cfg())
    model = ctx.raw_modules["voxelpose"]
    in_adam = {id(p) for group in ctx.optimizers["adam"].param_groups for p in group["params"]}
    assert not in_adam & {id(p) for p in model.backbone.parameters()}
    assert {id(p) for p in model.cpn.parameters()} <= in_adam
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.train()
    assert not model.backbone.training and model.cpn.training
    terms = task.train_step(next(iter(task.batches(0, ctx))), ctx)
    assert terms["loss_2d"] > 0
    after = model.state_dict()
    for key, value in before.items():  # weights and BN running statistics alike
        if key.startswith("backbone."):
            assert torch.equal(value, after[key]), key
    assert not torch.equal(before["cpn.head.weight"], after["cpn.head.weight"])


def test_trained_backbone_lowers_loss_2d_on_one_frame(split: Path) -> None:
    task, ctx = _task(split, _voxelpose_cfg(train_backbone=True, optim={"lr": 0.0001}))
    model = ctx.raw_modules["voxelpose"]
    in_adam = {id(p) for group in ctx.optimizers["adam"].param_groups for p in group["params"]}
    assert {id(p) for p in model.backbone.parameters()} <= in_adam
    model.train()
    assert model.backbone.training
    batch = next(iter(task.batches(0, ctx)))
    losses = [float(task.train_step(batch, ctx)["loss_2d"]) for _ in range(6)]
    assert losses[-1] < 0.5 * losses[0], losses


def _simple_baselines_state(joints: int) -> dict[str, torch.Tensor]:
    """A PoseResNet-18 state dict in the simple-baselines layout: conv1, bn1, layer1..4, deconv_layers, final_layer."""
    gen = torch.Generator().manual_seed(1)
    state = {k: torch.randn(v.shape, generator=gen) if v.is_floating_point() else v
             for k, v in torchvision.models.resnet18().state_dict().items() if not k.startswith("fc.")}
    channels = 512
    for i in range(3):
        state[f"deconv_layers.{3 * i}.weight"] = torch.randn(channels, 256, 4, 4, generator=gen)
        for leaf in ("weight", "bias", "running_mean", "running_var"):
            state[f"deconv_layers.{3 * i + 1}.{leaf}"] = torch.rand(256, generator=gen)
        state[f"deconv_layers.{3 * i + 1}.num_batches_tracked"] = torch.tensor(7)
        channels = 256
    state["final_layer.weight"] = torch.randn(joints, 256, 1, 1, generator=gen)
    state["final_layer.bias"] = torch.randn(joints, generator=gen)
    return state


def test_pose_resnet_importer_is_strict_and_adapts_the_final_layer(tmp_path: Path) -> None:
    state = _simple_baselines_state(15)
    path = tmp_path / "pose_resnet50_panoptic.pth.tar"  # wrapped and DataParallel-prefixed, as training saves it
    torch.save({"epoch": 140, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    net = import_pose_resnet(PoseResNet(15, depth=18), path)
    ours = net.state_dict()
    assert torch.equal(ours["trunk.layer4.1.bn2.running_var"], state["layer4.1.bn2.running_var"])
    assert torch.equal(ours["deconv_layers.6.weight"], state["deconv_layers.6.weight"])
    assert torch.equal(ours["final_layer.bias"], state["final_layer.bias"])

    broken = dict(state)
    del broken["layer2.0.conv1.weight"]
    broken["layer9.weight"] = torch.zeros(1)
    with pytest.raises(CheckpointMismatch) as err:
        import_pose_resnet(PoseResNet(15, depth=18), broken)
    assert "trunk.layer2.0.conv1.weight" in str(err.value) and "trunk.layer9.weight" in str(err.value)

    coco = _simple_baselines_state(17)  # more filters than joints: the first 15 are kept
    fewer = import_pose_resnet(PoseResNet(15, depth=18), coco).state_dict()
    assert torch.equal(fewer["final_layer.weight"], coco["final_layer.weight"][:15])
    torch.manual_seed(0)
    more = import_pose_resnet(PoseResNet(20, depth=18), coco).state_dict()  # fewer filters: 17 copied, 3 fresh
    assert torch.equal(more["final_layer.weight"][:17], coco["final_layer.weight"])
    assert torch.equal(more["final_layer.bias"][17:], torch.zeros(3))
    fresh = more["final_layer.weight"][17:]
    assert fresh.abs().sum() > 0 and fresh.std().item() == pytest.approx((2 / (256 + 20)) ** 0.5, rel=0.3)


def test_train_then_evaluate_from_images_writes_panoptic_metrics(tmp_path: Path, split: Path) -> None:
    from personlab.models import load_model
    from personlab.pose.evaluate import evaluate_voxelpose
    from personlab.pose.train import train_voxelpose

    cfg = _voxelpose_cfg()
    result = train_voxelpose(cfg, Common(device="cpu"), split, tmp_path / "model", root=tmp_path)
    assert set(result["loss"]) >= {"loss", "loss_2d", "loss_3d", "loss_cord"} and np.isfinite(result["loss"]["loss"])
    _, meta = load_model(tmp_path / "model")
    assert meta["dataset"] == "panoptic" and meta["arch_kwargs"]["backbone_depth"] == 18
    out, curve = tmp_path / "eval.json", tmp_path / "curve.json"
    metrics = evaluate_voxelpose(tmp_path / "model", split, tmp_path / "eval", out, curve, tmp_path / "pictures", cfg)
    written = read_json(out)
    assert written == json.loads(json.dumps(written)) and written["dataset"] == "panoptic"
    for t in (25, 50, 75, 100, 125, 150):
        assert 0 <= written[f"ap{t}"] <= 1 and 0 <= written[f"recall{t}"] <= 1
    assert 0 <= written["recall500"] <= 1 and (written["mpjpe_mm"] is None or written["mpjpe_mm"] >= 0)
    assert "pcp_avg" not in written and "nearest GT" in written["matching"]
    frames = datasets.load_panoptic_split(split, "test")
    assert written["frames"] == len(frames) and metrics["map"] == pytest.approx(written["map"], abs=1e-6)
    saved = np.load(tmp_path / "eval" / "predictions.npz")
    assert saved["pred"].shape == (len(frames), 3, 15, 5) and saved["frames"].tolist() == frames.frame.tolist()
    rows = read_json(curve)  # the fields of the shared "Pose AP" plot; no triangulation baseline on Panoptic
    assert [r["threshold_mm"] for r in rows] == [25, 50, 75, 100, 125, 150]
    assert [r["ap"] for r in rows] == [written[f"ap{t}"] for t in (25, 50, 75, 100, 125, 150)]
    assert all(r["ap_baseline"] is None for r in rows)
    for name in ("voxelpose_3d.png", "voxelpose_views.png"):
        assert (tmp_path / "pictures" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_command_line_writes_the_tree_and_prints_the_params(tmp_path: Path, capsys) -> None:
    from personlab.pose.panoptic_synthetic import main

    assert main([str(tmp_path / "tree"), "--frames", "2", "--size", "96", "54", "--cameras", "2", "--people", "1",
                 "1", "--train", "a", "--val", "b"]) == 0
    printed = capsys.readouterr().out
    assert "data.pose.source: panoptic" in printed and "data.pose.image_size: [96, 54]" in printed
    assert sorted(p.name for p in (tmp_path / "tree" / "a" / "hdImgs").iterdir()) == ["00_06", "00_12"]
    assert len(list((tmp_path / "tree" / "b" / "hdPose3d_stage1_coco19").glob("body3DScene_*.json"))) == 2
    assert main([str(tmp_path / "bad"), "--cameras", "9"]) == 2
    assert "num_cameras must be 1..5" in capsys.readouterr().err and not (tmp_path / "bad").exists()


def test_backbone_settings_are_checked_before_training(tmp_path: Path, split: Path) -> None:
    from personlab.params import ParamsError
    from personlab.pose.train import train_voxelpose

    with pytest.raises(ParamsError, match="divisible by 32"):
        _voxelpose_cfg(input_size=[100, 64], heatmap_size=[25, 16])
    with pytest.raises(ParamsError, match="need backbone: pose_resnet50"):
        _voxelpose_cfg(backbone="none", train_backbone=True)
    with pytest.raises(ParamsError, match="both set"):
        _voxelpose_cfg(pretrained="a.pth.tar", backbone_pretrained="b.pth.tar")
    with pytest.raises(ParamsError, match="trains from images"):
        train_voxelpose(_voxelpose_cfg(backbone="none"), Common(device="cpu"), split, tmp_path / "m", root=tmp_path)
    with pytest.raises(ParamsError, match="15 joints"):
        train_voxelpose(_voxelpose_cfg(num_joints=17), Common(device="cpu"), split, tmp_path / "m", root=tmp_path)
    assert not (tmp_path / "m").exists()


def test_stage_reports_a_mismatched_backbone_in_one_line(tmp_path: Path, split: Path, monkeypatch, capsys) -> None:
    import importlib.util
    import shutil

    import yaml

    shutil.copytree(split, tmp_path / "data" / "splits" / "pose")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"voxelpose": {"backbone": "none", "num_joints": 15}}))
    monkeypatch.chdir(tmp_path)
    script = Path(__file__).resolve().parents[1] / "stages" / "voxelpose.py"
    spec = importlib.util.spec_from_file_location("stage_voxelpose", script)
    stage = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(stage)
    assert stage.main() == 1
    err = capsys.readouterr().err
    assert err.startswith("error: voxelpose.backbone:") and "pose_resnet50" in err and err.count("\n") == 1, err
    assert not (tmp_path / "models").exists()
