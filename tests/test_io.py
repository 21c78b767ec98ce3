"""Atomic writes leave either the old file or the new one, and checkpoints round-trip as tensors only."""

from __future__ import annotations

import json

import pytest
import torch

from personlab.io import atomic_dir, atomic_path, load_checkpoint, md5sum, save_checkpoint, write_json


def test_atomic_path_keeps_old_file_on_error(tmp_path):
    target = tmp_path / "a.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt"]


def test_atomic_dir_replaces_whole_folder(tmp_path):
    target = tmp_path / "out"
    target.mkdir()
    (target / "stale.txt").write_text("x")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("y")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            (tmp / "half.txt").write_text("z")
            raise RuntimeError("crash")
    assert sorted(p.name for p in target.iterdir()) == ["new.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_write_json_is_sorted_rounded_and_refuses_nan(tmp_path):
    write_json(tmp_path / "m.json", {"b": 1 / 3, "a": [torch.tensor(2.0)]})
    assert json.loads((tmp_path / "m.json").read_text()) == {"a": [2.0], "b": 0.333333}
    assert (tmp_path / "m.json").read_text().index('"a"') < (tmp_path / "m.json").read_text().index('"b"')
    with pytest.raises(ValueError, match="non-finite"):
        write_json(tmp_path / "n.json", {"x": float("nan")})
    assert not (tmp_path / "n.json").exists()


def test_md5_of_known_bytes(tmp_path):
    (tmp_path / "f").write_bytes(b"abc")
    assert md5sum(tmp_path / "f") == "900150983cd24fb0d6963f7d28e17f72"


def test_checkpoint_round_trip_and_corrupt_file(tmp_path):
    state = {"w": torch.arange(6.0).reshape(2, 3), "n": torch.tensor(3)}
    save_checkpoint(tmp_path / "ck", state, {"arch": "x", "num_classes": 2})
    loaded, meta = load_checkpoint(tmp_path / "ck")
    assert torch.equal(loaded["w"], state["w"]) and meta == {"arch": "x", "num_classes": 2}
    (tmp_path / "ck" / "model.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="model.pt: cannot be read"):
        load_checkpoint(tmp_path / "ck")


def test_artifacts_get_umask_permissions_not_private_ones(tmp_path):
    import os

    old = os.umask(0o022)
    try:
        write_json(tmp_path / "m.json", {"a": 1})
        with atomic_dir(tmp_path / "d") as tmp:
            (tmp / "x").write_text("y")
    finally:
        os.umask(old)
    assert (tmp_path / "m.json").stat().st_mode & 0o777 == 0o644
    assert (tmp_path / "d").stat().st_mode & 0o777 == 0o755
