"""The evaluate stage end to end on a tiny Market-layout dataset: a saved model, the untrained floor, outputs."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
import torch.nn as nn
import yaml
from PIL import Image

from personlab.data.openreid import Record, write_reid_split
from personlab.io import save_checkpoint
from personlab.models import REGISTRY

ROOT = Path(__file__).resolve().parents[1]


class StripeColour(nn.Module):
    """A registered stand-in for a trained net: mean colour of the upper and lower half (two 3-d parts)."""

    def __init__(self) -> None:
        super().__init__()
        self.mix = nn.Conv2d(3, 3, 1, bias=False)
        nn.init.eye_(self.mix.weight.view(3, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        halves = nn.functional.adaptive_avg_pool2d(self.mix(x), (2, 1))  # (B, 3, 2, 1)
        return halves.permute(0, 2, 1, 3).flatten(1)  # upper colour, lower colour


def _colour(pid: int, cam: int, k: int) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    rng = np.random.default_rng(pid)
    top, bottom = rng.integers(30, 226, 3), rng.integers(30, 226, 3)
    shift = 6 * cam + 2 * k  # a small camera cast and per-image variation
    return tuple(int(v) for v in top + shift), tuple(int(v) for v in bottom - shift)


def _write(root: Path, folder: str, pid: int, cam: int, k: int) -> Record:
    name = f"{folder}/{pid:04d}_c{cam + 1}s1_{k:06d}_01.png" if pid >= 0 else f"{folder}/-1_c{cam + 1}s1_{k:06d}_01.png"
    top, bottom = _colour(max(pid, 0) + (1000 + k if pid <= 0 else 0), cam, k)
    img = Image.new("RGB", (16, 32), top)
    img.paste(Image.new("RGB", (16, 16), bottom), (0, 16))
    (root / folder).mkdir(parents=True, exist_ok=True)
    img.save(root / name)
    return Record(name, pid, cam)


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    raw = tmp_path / "data/raw/reid"
    train = [_write(raw, "bounding_box_train", pid, cam, 0) for pid in (1, 2, 3) for cam in (0, 1)]
    query, gallery = [], []
    for pid in range(10, 22):
        query.append(_write(raw, "query", pid, 0, 0))
        gallery += [_write(raw, "bounding_box_test", pid, cam, 1 + cam) for cam in (0, 1, 2)]
    gallery += [_write(raw, "bounding_box_test", 0, 1, 50 + i) for i in range(4)]  # distractors
    gallery += [_write(raw, "bounding_box_test", -1, 2, 60 + i) for i in range(3)]  # junk
    write_reid_split(tmp_path / "data/splits/reid", "market1501", 3, sorted(train), sorted(query), sorted(gallery))
    params = {
        "common": {"seed": 3, "device": "cpu"},
        "baseline": {"model": {"depth": 18, "pretrained": "none"}, "input": {"size": [32, 16]}},
        "evaluate": {"batch_size": 16, "flip": True, "fine_weight": 0.5, "ranked_queries": 3, "ranked_top": 5,
                     "rerank": {"enabled": True, "k1": 6, "k2": 3, "lambda_value": 0.3}},
    }
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setitem(REGISTRY, "stripe_colour", f"{__name__}:StripeColour")
    model = StripeColour()
    save_checkpoint(tmp_path / "models/tiny", model.state_dict(), {
        "arch": "stripe_colour", "arch_kwargs": {}, "num_classes": 3, "pid2label": {"1": 0, "2": 1, "3": 2},
        "input_size": [32, 16], "interpolation": "bilinear", "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
        "embedding_parts": [3, 3], "stage": "tiny"})
    return tmp_path


def _stage():
    spec = importlib.util.spec_from_file_location("evaluate_stage", ROOT / "stages/evaluate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _brute_map(qf, gf, q_pids, g_pids, q_cams, g_cams) -> tuple[float, float]:
    """Step-wise mAP and rank-1 by the protocol's definition, one query at a time."""
    d = ((qf[:, None, :] - gf[None, :, :]) ** 2).sum(-1)
    aps, r1 = [], []
    for i in range(len(qf)):
        order = sorted(range(len(gf)), key=lambda j: (d[i, j], j))
        kept = [j for j in order if g_pids[j] != -1 and not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        hits = [r + 1 for r, j in enumerate(kept) if g_pids[j] == q_pids[i]]
        aps.append(np.mean([(k + 1) / r for k, r in enumerate(hits)]))
        r1.append(hits[0] == 1)
    return 100 * float(np.mean(aps)), 100 * float(np.mean(r1))


def test_trained_model_outputs(project: Path) -> None:
    stage = _stage()
    assert stage.main(["tiny"]) == 0
    metrics = json.loads((project / "metrics/eval/tiny.json").read_text())
    with h5py.File(project / "eval/tiny/features.h5") as f:
        qf, gf = f["query/features"][:], f["gallery/features"][:]
        q_pids, g_pids = f["query/pids"][:], f["gallery/pids"][:]
        q_cams, g_cams = f["query/camids"][:], f["gallery/camids"][:]
        paths = [p.decode() for p in f["gallery/paths"][:]]
    assert paths == sorted(paths) and all(p.startswith("bounding_box_test/") for p in paths)
    assert len(qf) == 12 and len(gf) == 12 * 3 + 7 and qf.shape[1] == 6
    # per-part unit norm, the 2nd part scaled by sqrt(fine_weight)
    np.testing.assert_allclose(np.linalg.norm(gf[:, :3], axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(gf[:, 3:], axis=1), np.sqrt(0.5), rtol=1e-5)
    # the written numbers are the protocol applied to the written features
    m, r1 = _brute_map(qf.astype(np.float64), gf.astype(np.float64), q_pids, g_pids, q_cams, g_cams)
    assert metrics["mAP"] == pytest.approx(m, abs=1e-4) and metrics["rank1"] == pytest.approx(r1, abs=1e-4)
    assert metrics["rank1"] == 100.0  # colour-coded identities: the stand-in net ranks its own kind first
    assert metrics["num_valid_queries"] == 12 and set(metrics["rerank"]) == {"rank1", "rank5", "rank10", "mAP", "mINP"}
    assert metrics["protocol"]["ap"].startswith("stepwise") and "mirrored" in metrics["protocol"]["flip"]
    cmc = json.loads((project / "metrics/eval/curves/tiny.json").read_text())
    assert [row["rank"] for row in cmc] == list(range(1, 51)) and cmc[0]["cmc"] == metrics["rank1"]
    assert cmc[4]["cmc_rerank"] == metrics["rerank"]["rank5"]
    with Image.open(project / "metrics/pictures/eval/tiny/ranked.png") as img:
        assert img.size[1] > 3 * 32 and img.size[0] > 6 * 16  # three query rows of 1 + 5 tiles


def test_untrained_floor(project: Path) -> None:
    assert _stage().main(["untrained"]) == 0
    metrics = json.loads((project / "metrics/eval/untrained.json").read_text())
    for key in ("rank1", "rank5", "rank10", "mAP", "mINP"):
        assert 0.0 <= metrics[key] <= 100.0
    assert "bot test embedding, parts [512]" in metrics["protocol"]["feature"]  # ResNet-18 from params.yaml
    with h5py.File(project / "eval/untrained/features.h5") as f:
        assert f["query/features"].shape == (12, 512)


def test_same_params_same_bytes(project: Path) -> None:
    stage = _stage()
    outputs = ["metrics/eval/tiny.json", "metrics/eval/curves/tiny.json", "metrics/pictures/eval/tiny/ranked.png",
               "eval/tiny/features.h5"]
    assert stage.main(["tiny"]) == 0
    first = [(project / p).read_bytes() for p in outputs]
    assert stage.main(["tiny"]) == 0
    assert [(project / p).read_bytes() for p in outputs] == first


def test_missing_model_fails_clearly(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _stage().main(["nothere"]) == 1
    assert "models/nothere/model.json not found" in capsys.readouterr().err
    assert not (project / "metrics/eval/nothere.json").exists()


def test_voxelpose_is_handed_to_the_pose_evaluator(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import personlab.pose.evaluate as pose_evaluate

    calls = []
    monkeypatch.setattr(pose_evaluate, "evaluate_voxelpose", lambda *args: calls.append(args) or {})
    assert _stage().main(["voxelpose"]) == 0
    model_dir, splits_dir, out_dir, out_json, curve, pictures, cfg = calls[0]
    assert (model_dir, splits_dir, out_dir, out_json, curve, pictures) == (
        Path("models/voxelpose"), Path("data/splits/pose"), Path("eval/voxelpose"),
        Path("metrics/eval/voxelpose.json"), Path("metrics/eval/curves/voxelpose.json"),
        Path("metrics/pictures/eval/voxelpose"))
    assert type(cfg).__name__ == "VoxelPoseParams"
