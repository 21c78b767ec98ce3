"""A training stage launched by ``torchrun`` with two CPU processes (gloo), as ``common.launcher`` does on GPUs.

The numerical equivalence of one and two processes is unit-tested in tests/test_engine.py; this test checks the
launch itself: the stage runs to the end under torchrun, only rank 0 writes, and the result loads.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import torch
import yaml

from personlab.models import load_model
from test_pipeline_e2e import tiny_params

REPO = Path(__file__).resolve().parents[1]


def _run(args: list[str], cwd: Path, timeout: float) -> None:
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == 0, f"{' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}"


def test_baseline_under_torchrun_two_cpu_processes(tmp_path: Path) -> None:
    params = tiny_params(yaml.safe_load((REPO / "params.yaml").read_text()))
    params["common"]["device"] = "cpu"
    # P = 8 / 2 = 4 identities per global batch: each of the two ranks gets 2 whole identities
    params["baseline"]["input"]["batch_size"] = 8
    params["baseline"]["input"]["num_instances"] = 2
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    python = sys.executable
    _run([python, str(REPO / "stages/download.py"), "reid"], tmp_path, 120)
    _run([python, str(REPO / "stages/splits.py"), "reid"], tmp_path, 120)

    _run([python, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
          str(REPO / "stages/baseline.py")], tmp_path, 240)

    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("model.pt")) == [
        "models/baseline/model.pt"
    ]
    assert sorted(p.name for p in (tmp_path / "metrics/train").iterdir()) == ["baseline.json"]
    metrics = json.loads((tmp_path / "metrics/train/baseline.json").read_text())
    assert metrics["world_size"] == 2
    assert metrics["epochs"] == 1

    model, meta = load_model(tmp_path / "models/baseline")
    model.eval()
    height, width = params["baseline"]["input"]["size"]
    with torch.no_grad():
        embedding = model(torch.zeros(2, 3, height, width))
    assert embedding.shape == (2, sum(meta["embedding_parts"]))
    assert torch.isfinite(embedding).all()
