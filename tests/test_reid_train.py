"""The baseline and teacher stages end to end on a tiny synthetic split, and their tasks' optimisation set-up."""

import json
from pathlib import Path

import pytest
import torch
import yaml

from personlab.data.datasets import load_dataset
from personlab.data.openreid import load_reid_split, write_reid_split
from personlab.data.synthetic import generate_market_like
from personlab.engine import Context
from personlab.models import load_model
from personlab.params import BaselineParams, SyntheticReid, TeacherParams, parse
from personlab.reid_train import BotTask, FtNetTask, run_stage

SMALL_INPUT = {"size": [32, 16], "batch_size": 8, "num_instances": 2, "pad": 2}
TRAIN = {"epochs": 4, "checkpoint_every": 4, "progress": False, "log_every": 5}
PARAMS = {
    "common": {"seed": 0, "device": "cpu", "deterministic": True, "num_threads": 1, "launcher": "python"},
    "baseline": {
        "model": {"depth": 18, "pretrained": "none"},
        "optim": {"lr": 1e-3, "warmup_epochs": 1, "milestones": [3]},
        "input": SMALL_INPUT,
        "train": TRAIN,
    },
    "teacher": {
        "model": {"depth": 18, "linear": 16, "pretrained": "none"},
        "optim": {"backbone_lr_mult": 1.0, "step_size": 3, "warm_epochs": 1},
        "input": {**SMALL_INPUT, "sampler": "shuffle"},
        "train": TRAIN,
    },
}


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """A project folder with a tiny synthetic Market-style dataset, its split and a params.yaml."""
    root = tmp_path_factory.mktemp("project")
    raw = root / "data" / "raw" / "reid"
    cfg = SyntheticReid(num_identities=10, num_train_identities=6, num_cameras=2, images_per_camera=(3, 4),
                        camera_presence=1.0, height=32, width=16, num_distractors=2, num_junk=1, clutter=1)
    generate_market_like(raw, cfg, seed=0)
    ds = load_dataset(raw, "synthetic")
    write_reid_split(root / "data" / "splits" / "reid", ds.name, ds.num_cameras, ds.train, ds.query, ds.gallery)
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    return root


@pytest.fixture
def in_project(project, monkeypatch):
    monkeypatch.chdir(project)
    return project


@pytest.mark.parametrize("stage, arch, dim", [("baseline", "bot", 512), ("teacher", "ft_net", 16)])
def test_stage_trains_and_writes_a_loadable_model(in_project, stage, arch, dim):
    assert run_stage(stage) == 0
    model, meta = load_model(Path("models") / stage)
    split = load_reid_split()
    assert meta["arch"] == arch and meta["stage"] == stage
    assert meta["embedding_parts"] == [dim] and meta["input_size"] == [32, 16]
    assert meta["num_classes"] == 6 and {int(k): v for k, v in meta["pid2label"].items()} == split.pid2label
    with torch.no_grad():
        assert model.eval()(torch.zeros(3, 3, 32, 16)).shape == (3, dim)
    summary = json.loads(Path(f"metrics/train/{stage}.json").read_text())
    assert summary["epochs"] == 4
    terms = {"baseline": {"center", "id", "total", "triplet"}, "teacher": {"ce"}}[stage]
    assert set(summary["loss"]) == terms
    main_term = {"baseline": "total", "teacher": "ce"}[stage]
    rows = Path(f"dvclive/{stage}/plots/metrics/loss/{main_term}.tsv").read_text().splitlines()[1:]
    curve = [float(row.split("\t")[-1]) for row in rows]
    assert len(curve) == 4 and curve[-1] < curve[0]  # it learns, even in 4 tiny epochs


def test_stage_reports_bad_params_in_one_line(in_project, capsys):
    bad = {**PARAMS, "baseline": {**PARAMS["baseline"], "model": {"depth": 19}}}
    Path("params.yaml").write_text(yaml.safe_dump(bad))
    try:
        assert run_stage("baseline") == 1
        assert "baseline.model.depth" in capsys.readouterr().err
    finally:
        Path("params.yaml").write_text(yaml.safe_dump(PARAMS))


def _context(task, modules) -> Context:
    ctx = Context(stage="t", device=torch.device("cpu"), seed=0)
    ctx.raw_modules = ctx.modules = modules
    ctx.optimizers = task.build_optimizers(ctx)
    ctx.schedulers = task.build_schedulers(ctx)
    return ctx


def test_bot_optimizers_keep_centers_and_frozen_bias_apart(project):
    split = load_reid_split(project / "data/splits/reid", project / "data/raw/reid")
    params = parse(BaselineParams, PARAMS["baseline"], "baseline")
    task = BotTask(params, split)
    ctx = _context(task, task.build_modules(None))
    model_params = {id(p) for g in ctx.optimizers["model"].param_groups for p in g["params"]}
    center_params = {id(p) for g in ctx.optimizers["center"].param_groups for p in g["params"]}
    assert center_params == {id(ctx.raw_modules["center"].centers)}
    assert id(ctx.raw_modules["model"].bottleneck.bias) not in model_params
    assert model_params.isdisjoint(center_params)
    assert len(model_params) == sum(1 for p in ctx.raw_modules["model"].parameters()) - 1
    assert ctx.optimizers["center"].param_groups[0]["lr"] == 0.5
    # epoch 0 runs at lr * warmup_factor (1e-3 * 0.01); warm-up over 1 epoch, decay at epoch 3
    lrs = []
    for _ in range(4):
        lrs.append(ctx.optimizers["model"].param_groups[0]["lr"])
        ctx.optimizers["model"].step()  # no gradients: a no-op that keeps the scheduler's call order
        ctx.schedulers["model"].step()
    assert lrs == pytest.approx([1e-5, 1e-3, 1e-3, 1e-4])


def test_teacher_optimizer_groups_and_loss_warmup(project):
    split = load_reid_split(project / "data/splits/reid", project / "data/raw/reid")
    params = parse(TeacherParams, {**PARAMS["teacher"], "optim": {"warm_epochs": 2}}, "teacher")
    task = FtNetTask(params, split)
    ctx = _context(task, task.build_modules(None))
    backbone, head = ctx.optimizers["model"].param_groups
    model = ctx.raw_modules["model"]
    assert backbone["lr"] == pytest.approx(0.005) and head["lr"] == pytest.approx(0.05)
    assert {id(p) for p in head["params"]} == {id(p) for p in [*model.add_block.parameters(), *model.classifier.parameters()]}
    assert head["nesterov"] and head["momentum"] == 0.9 and head["weight_decay"] == 5e-4
    task.steps_per_epoch = 5  # 2 warm epochs x 5 steps: 0.1 + 0.9 (i + 1) / 10
    assert [task.loss_warmup(i) for i in (0, 4, 9, 30)] == pytest.approx([0.19, 0.55, 1.0, 1.0])
