"""The presets in configs/ must be complete drop-in replacements for params.yaml: the same keys (a preset that
lacks a key silently falls back to a dataclass default; one with an extra key is refused by DVC's `-S`) and
values that pass the typed validation. Spot checks pin the published numbers each preset exists to carry."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from personlab.params import load_params

ROOT = Path(__file__).resolve().parents[1]
PRESETS = [
    "market1501",
    "dukemtmc",
    "cuhk03_labeled",
    "cuhk03_detected",
    "msmt17",
    "campus",
    "shelf",
    "panoptic",
]
REID = PRESETS[:5]
POSE = PRESETS[5:]


def key_differences(reference: Any, other: Any, path: str = "") -> list[str]:
    """Dotted paths of keys present in one mapping tree but not the other (mapping vs leaf counts too)."""
    if not isinstance(reference, dict) or not isinstance(other, dict):
        if isinstance(reference, dict) != isinstance(other, dict):
            return [f"{path}: a mapping in one file, a value in the other"]
        return []
    found = [f"{path}{k}: missing from the preset" for k in sorted(set(reference) - set(other))]
    found += [f"{path}{k}: not in params.yaml" for k in sorted(set(other) - set(reference))]
    for k in sorted(set(reference) & set(other)):
        found += key_differences(reference[k], other[k], f"{path}{k}.")
    return found


def read(name: str) -> dict[str, Any]:
    return yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())


def test_key_differences_reports_dotted_paths() -> None:
    reference = {"a": {"b": 1, "c": {"d": 2}}, "e": 3}
    other = {"a": {"b": 1, "c": {"x": 2}}, "e": {"f": 1}}
    assert key_differences(reference, other) == [
        "a.c.d: missing from the preset",
        "a.c.x: not in params.yaml",
        "e.: a mapping in one file, a value in the other",
    ]
    assert key_differences(reference, reference) == []


def test_every_preset_file_is_listed() -> None:
    assert sorted(p.stem for p in (ROOT / "configs").glob("*.yaml")) == sorted(PRESETS)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_has_exactly_the_keys_of_params_yaml(name: str) -> None:
    reference = yaml.safe_load((ROOT / "params.yaml").read_text())
    differences = key_differences(reference, read(name))
    assert not differences, f"configs/{name}.yaml: " + "; ".join(differences)


@pytest.mark.parametrize("name", PRESETS)
def test_preset_passes_typed_validation(name: str) -> None:
    load_params(ROOT / "configs" / f"{name}.yaml")


@pytest.mark.parametrize("name", REID)
def test_reid_presets_carry_the_published_recipes(name: str) -> None:
    p = load_params(ROOT / "configs" / f"{name}.yaml")
    expected_source = "cuhk03" if name.startswith("cuhk03") else name
    assert p["data"].reid.source == expected_source
    assert p["data"].reid.archive.startswith("/")
    assert p["data"].pose.source == "synthetic"  # no pose dataset needed for a re-ID run
    # BoT (spec §2.3): R50, 256x128, PK 16x4, Adam 3.5e-4, warm-up 10, steps 40/70, 120 epochs
    assert (p["baseline"].model.depth, tuple(p["baseline"].input.size)) == (50, (256, 128))
    assert (p["baseline"].input.batch_size, p["baseline"].input.num_instances) == (64, 4)
    assert p["baseline"].optim.lr == 3.5e-4 and tuple(p["baseline"].optim.milestones) == (40, 70)
    assert p["baseline"].train.epochs == 120
    # layumi ft_net (spec §3.2): lr 0.05, backbone x0.1, step 40, 60 epochs
    assert (p["teacher"].optim.lr, p["teacher"].optim.step_size, p["teacher"].train.epochs) == (0.05, 40, 60)
    # RRID (spec §5.3): 384x128, 80 epochs, steps 40/60
    assert tuple(p["relation"].input.size) == (384, 128) and p["relation"].train.epochs == 80
    # BoT's test protocol (docs/evaluation.md)
    assert (p["evaluate"].flip, p["evaluate"].distance, p["evaluate"].ap) == (False, "euclidean", "stepwise")


@pytest.mark.parametrize(
    ("name", "train_images", "max_iter"),
    [
        ("market1501", 12936, 100_000),
        ("dukemtmc", 16522, 100_000),
        ("cuhk03_labeled", 7368, 100_000),
        ("cuhk03_detected", 7365, 100_000),
        ("msmt17", 30248, 150_000),
    ],
)
def test_dgnet_epochs_cover_the_published_iterations(name: str, train_images: int, max_iter: int) -> None:
    """DG-Net counts iterations (max_iter); our epoch is floor(N / 8) of them, so the preset's epochs must just
    reach max_iter: enough passes, and not a whole pass more."""
    dgnet = load_params(ROOT / "configs" / f"{name}.yaml")["dgnet"]
    per_epoch = train_images // dgnet.input.batch_size
    assert dgnet.input.batch_size == 8
    assert dgnet.train.epochs * per_epoch >= max_iter > (dgnet.train.epochs - 1) * per_epoch


def test_cuhk03_presets_pick_their_image_set() -> None:
    assert read("cuhk03_labeled")["data"]["reid"]["cuhk03_images"] == "labeled"
    assert read("cuhk03_detected")["data"]["reid"]["cuhk03_images"] == "detected"


@pytest.mark.parametrize(
    ("name", "joints", "input_size", "space_size", "space_center", "threshold", "backbone", "epochs"),
    [
        ("campus", 17, (800, 640), (12000.0, 12000.0, 2000.0), (3000.0, 4500.0, 1000.0), 0.1, "none", 30),
        ("shelf", 17, (800, 608), (8000.0, 8000.0, 2000.0), (450.0, -320.0, 800.0), 0.1, "none", 30),
        ("panoptic", 15, (960, 512), (8000.0, 8000.0, 2000.0), (0.0, -500.0, 800.0), 0.3, "pose_resnet50", 10),
    ],
)
def test_pose_presets_carry_the_published_voxelpose(
    name: str,
    joints: int,
    input_size: tuple[int, int],
    space_size: tuple[float, float, float],
    space_center: tuple[float, float, float],
    threshold: float,
    backbone: str,
    epochs: int,
) -> None:
    p = load_params(ROOT / "configs" / f"{name}.yaml")
    vp = p["voxelpose"]
    assert p["data"].pose.source == name
    assert p["data"].reid.source == "synthetic"  # no re-ID dataset needed for a pose run
    assert (vp.num_joints, tuple(vp.input_size)) == (joints, input_size)
    # heatmaps are a quarter of the network input (HRNet / PoseResNet stride 4)
    assert tuple(vp.heatmap_size) == (input_size[0] // 4, input_size[1] // 4)
    assert (tuple(vp.space_size), tuple(vp.space_center)) == (space_size, space_center)
    assert (tuple(vp.cpn_shape), tuple(vp.prn_shape)) == ((80, 80, 20), (64, 64, 64))
    assert (vp.cpn_width, vp.prn_width, vp.max_people) == (32, 32, 10)
    assert (vp.threshold, vp.backbone, vp.train.epochs) == (threshold, backbone, epochs)
    assert vp.optim.lr == 1e-4 and vp.optim.samples_per_epoch == 3000
