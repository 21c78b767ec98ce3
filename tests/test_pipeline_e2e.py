"""End-to-end acceptance test of the whole DVC pipeline (issues 6 and 8).

One module-scoped fixture copies the project into a temporary git repository, shrinks ``params.yaml`` to a tiny
run (a handful of synthetic identities and frames, one epoch of every training stage) and runs ``dvc repro`` on
the full DAG. The tests then check what a researcher relies on: every declared output exists, a second
``dvc repro`` is a no-op, a forced re-run gives byte-identical metrics, and ``dvc exp run -S`` re-runs exactly
the stages that depend on the changed parameter.
"""

from __future__ import annotations

import copy
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
REID_MODELS = ("untrained", "baseline", "teacher", "relation", "dgnet")
TRAINED = ("baseline", "teacher", "relation", "dgnet", "voxelpose")
# keys of metrics/train/<stage>.json that measure the machine, not the model: they differ between two runs
TIMING_KEYS = {"wall_s", "images_per_s", "seconds"}
GIT_ID = ["-c", "user.name=ci", "-c", "user.email=ci@localhost"]


def _set(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``a.b.c`` in a nested mapping, refusing keys that do not exist (a renamed key must fail loudly)."""
    *parents, leaf = dotted.split(".")
    node = tree
    for key in parents:
        node = node[key]
    if leaf not in node:
        raise KeyError(f"params.yaml has no key {dotted!r}; update the tiny override in {__file__}")
    node[leaf] = value


def tiny_params(params: dict[str, Any]) -> dict[str, Any]:
    """The committed params shrunk to a run of seconds per stage, within every section's validation rules."""
    p = copy.deepcopy(params)
    overrides: dict[str, Any] = {
        # one thread per stage: on a loaded 2-core machine two OpenMP threads spin at every barrier and a
        # one-second stage takes minutes
        "common.num_threads": 1,
        # re-ID data: 16 identities (8 train), 2 cameras, 2-3 images per camera
        "data.reid.synthetic.num_identities": 16,
        "data.reid.synthetic.num_train_identities": 8,
        "data.reid.synthetic.num_cameras": 2,
        "data.reid.synthetic.images_per_camera": [2, 3],
        "data.reid.synthetic.height": 64,
        "data.reid.synthetic.width": 32,
        "data.reid.synthetic.num_distractors": 4,
        "data.reid.synthetic.num_junk": 2,
        "data.reid.synthetic.clutter": 1,
        # pose data: a 20-frame sequence of 2 actors, two test stretches inside it, a small pose database
        "data.pose.synthetic.sequence.num_frames": 20,
        "data.pose.synthetic.sequence.num_actors": 2,
        "data.pose.test_frames": [[2, 9], [12, 19]],
        "data.pose.eval_actors": [0, 1],
        "data.pose.skeleton.num_poses": 20,
        "data.pose.train.max_people": 2,
        # VoxelPose: the smallest cubes (multiples of 4) and widths (even), 8 samples of one epoch
        "voxelpose.cpn_shape": [8, 8, 4],
        "voxelpose.prn_shape": [8, 8, 8],
        "voxelpose.cpn_width": 2,
        "voxelpose.prn_width": 2,
        "voxelpose.max_people": 3,
        "voxelpose.train.epochs": 1,
        "voxelpose.train.progress": False,
        "voxelpose.optim.lr_steps": [],
        "voxelpose.optim.samples_per_epoch": 8,
        "voxelpose.optim.gt_root_epochs": 1,
        "voxelpose.eval.picture_frames": 1,
        # evaluation: no re-ranking, short pictures
        "evaluate.batch_size": 64,
        "evaluate.rerank.enabled": False,
        "evaluate.max_rank": 10,
        "evaluate.ranked_queries": 2,
        "evaluate.ranked_top": 3,
        # re-ID trainers: 32x16 inputs, batches of 8 (P=4 identities x K=2), one epoch
        "baseline.input.batch_size": 8,
        "baseline.input.num_instances": 2,
        "teacher.input.batch_size": 8,
        "teacher.model.linear": 32,
        "relation.input.batch_size": 8,
        "relation.input.num_instances": 2,
        "relation.num_val": 2,
        "relation.model.dim": 8,
        "dgnet.input.batch_size": 4,
        "dgnet.pictures": 2,
        "dgnet.generator.dim": 2,
        "dgnet.generator.mlp_dim": 8,
        "dgnet.discriminator.dim": 4,
        "dgnet.discriminator.num_layers": 1,
        "dgnet.discriminator.num_res": 1,
        "dgnet.discriminator.num_scales": 1,
        "dgnet.appearance.bottleneck": 32,  # = teacher.model.linear: E_a is initialised from the teacher
    }
    for section in ("baseline", "teacher", "relation", "dgnet"):
        overrides[f"{section}.input.size"] = [32, 16]
        overrides[f"{section}.train.epochs"] = 1
        overrides[f"{section}.train.checkpoint_every"] = 1
        overrides[f"{section}.train.progress"] = False
    for key, value in overrides.items():
        _set(p, key, value)
    return p


def _env(home: Path, clone: Path) -> dict[str, str]:
    """An isolated environment: empty HOME, no system git config, the venv first on PATH, the clone's sources
    ahead of the editable install (so the pipeline runs the copied code)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DVC_", "GIT_"))}
    env.update(
        HOME=str(home),
        GIT_CONFIG_NOSYSTEM="1",
        DVC_NO_ANALYTICS="1",
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        PYTHONPATH=str(clone / "src"),
        OMP_NUM_THREADS="1",
    )
    return env


class Clone:
    """The temporary repository and a way to run commands in it."""

    def __init__(self, root: Path, env: dict[str, str]) -> None:
        self.root = root
        self.env = env
        self.log: list[tuple[str, float]] = []

    def run(self, *args: str, timeout: float = 300) -> str:
        """Run a command in the clone; fail the test with its output when it fails."""
        start = time.monotonic()
        proc = subprocess.run(
            args, cwd=self.root, env=self.env, capture_output=True, text=True, timeout=timeout
        )
        self.log.append((" ".join(args), time.monotonic() - start))
        if proc.returncode:
            pytest.fail(f"{' '.join(args)} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}")
        return proc.stdout + proc.stderr

    def commit(self, message: str) -> None:
        self.run("git", "add", "-A")
        self.run("git", *GIT_ID, "commit", "-qm", message)

    def read(self, pattern: str) -> dict[str, bytes]:
        return {str(p.relative_to(self.root)): p.read_bytes() for p in sorted(self.root.glob(pattern))}


@pytest.fixture(scope="module")
def clone(tmp_path_factory: pytest.TempPathFactory) -> Clone:
    """The project copied into a fresh git repo with tiny params, after one full ``dvc repro``."""
    root = tmp_path_factory.mktemp("personlab")
    home = tmp_path_factory.mktemp("home")
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.decode().split("\0")
    for name in sorted(n for n in listed if n):
        src = REPO / name
        if src.is_file():  # tracked files deleted in the working tree are listed too
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, root / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    (root / "params.yaml").write_text(yaml.safe_dump(tiny_params(params), sort_keys=False, default_flow_style=False))
    repo = Clone(root, _env(home, root))
    repo.run("git", "init", "-q", "-b", "main")
    repo.commit("init")
    repo.run("dvc", "repro", "-q", timeout=600)
    return repo


def _stages_run(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


def test_every_output_exists(clone: Clone) -> None:
    for model in (*REID_MODELS, "voxelpose"):
        metrics = json.loads((clone.root / f"metrics/eval/{model}.json").read_text())
        assert metrics, f"metrics/eval/{model}.json is empty"
    for model in (*REID_MODELS, "voxelpose"):
        assert json.loads((clone.root / f"metrics/eval/curves/{model}.json").read_text())
        assert any((clone.root / f"eval/{model}").iterdir()), f"eval/{model}/ is empty"
        assert any((clone.root / f"metrics/pictures/eval/{model}").glob("*.png"))
    for stage in TRAINED:
        assert (clone.root / f"models/{stage}/model.pt").stat().st_size > 0
        assert (clone.root / f"models/{stage}/model.json").is_file()
        train = json.loads((clone.root / f"metrics/train/{stage}.json").read_text())
        assert train["epochs"] == 1
    for item in ("reid", "pose"):
        assert (clone.root / f"metrics/data/{item}.json").is_file()
    assert (clone.root / "dvc.lock").is_file()


def test_second_repro_is_a_noop(clone: Clone) -> None:
    out = clone.run("dvc", "repro")
    assert "Data and pipelines are up to date" in out, out
    assert not _stages_run(out)


def _strip_timings(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_timings(v) for k, v in value.items() if k not in TIMING_KEYS}
    return value


def test_forced_repro_is_bit_identical(clone: Clone) -> None:
    eval_before = clone.read("metrics/eval/**/*.json")
    train_before = clone.read("metrics/train/*.json")
    assert len(eval_before) == 2 * (len(REID_MODELS) + 1)  # the score and the curve of every model
    out = clone.run("dvc", "repro", "-f", timeout=600)
    assert len(_stages_run(out)) >= 15, out  # 2 download + 2 splits + 5 trainings + 6 evaluations
    assert clone.read("metrics/eval/**/*.json") == eval_before
    train_after = clone.read("metrics/train/*.json")
    assert train_after.keys() == train_before.keys()
    for name, raw in train_before.items():
        before, after = json.loads(raw), json.loads(train_after[name])
        assert TIMING_KEYS & before.keys(), f"{name}: no timing key left to ignore; update TIMING_KEYS"
        assert _strip_timings(after) == _strip_timings(before), name


def test_experiment_reruns_only_dependents(clone: Clone) -> None:
    clone.commit("results")
    out = clone.run("dvc", "exp", "run", "-S", "dgnet.teacher_w=2", timeout=600)
    assert _stages_run(out) == {"dgnet", "evaluate@dgnet"}, out

    shown = json.loads(clone.run("dvc", "exp", "show", "--json"))
    assert shown[0]["rev"] == "workspace"
    assert shown[0]["data"]["params"]["params.yaml"]["data"]["dgnet"]["teacher_w"] == 2
    base = shown[1]
    assert base["name"] == "main"
    experiments = base["experiments"]
    assert len(experiments) == 1
    exp_data = experiments[0]["revs"][0]["data"]
    assert exp_data["params"]["params.yaml"]["data"]["dgnet"]["teacher_w"] == 2
    assert base["data"]["params"]["params.yaml"]["data"]["dgnet"]["teacher_w"] == 0.0

    params_diff = json.loads(clone.run("dvc", "params", "diff", "--json"))
    change = params_diff["params.yaml"]["dgnet.teacher_w"]
    assert (change["old"], change["new"]) == (0.0, 2)
    metrics_diff = json.loads(clone.run("dvc", "metrics", "diff", "--json", "--all"))
    assert "metrics/eval/dgnet.json" in metrics_diff
    assert "metrics/eval/baseline.json" in metrics_diff
    changed = json.loads(clone.run("dvc", "metrics", "diff", "--json"))
    # only DG-Net's own files may change: the baseline's numbers come from the untouched stages
    assert all("baseline" not in path and "voxelpose" not in path for path in changed), changed


def test_queued_sweep_runs_to_success(clone: Clone) -> None:
    clone.run("git", "checkout", "-q", "--", ".")  # drop the applied experiment from the workspace
    out = clone.run("dvc", "exp", "run", "--queue", "-S", "baseline.optim.lr=0.001,0.002")
    assert len(re.findall(r"Queued experiment", out)) == 2, out
    clone.run("dvc", "queue", "start", "-j", "1")
    deadline = time.monotonic() + 240
    status = ""
    while time.monotonic() < deadline:
        status = clone.run("dvc", "queue", "status")
        if "Queued" not in status and "Running" not in status:
            break
        time.sleep(2)
    states = re.findall(r"\b(Success|Failed|Queued|Running)\b", status)
    assert states == ["Success", "Success"], status
    shown = json.loads(clone.run("dvc", "exp", "show", "--json"))
    lrs = sorted(
        rev["data"]["params"]["params.yaml"]["data"]["baseline"]["optim"]["lr"]
        for exp in shown[1]["experiments"]
        for rev in exp["revs"]
        if rev["data"]["params"]["params.yaml"]["data"]["dgnet"]["teacher_w"] == 0.0
    )
    assert lrs == [0.001, 0.002]
