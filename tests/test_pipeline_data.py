"""The download and splits stages: their outputs on hand-built trees, one clear error per bad input with nothing
left behind, and `dvc repro splits` end to end in a temporary clone of the repository."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from personlab.data.openreid import load_reid_split

REPO = Path(__file__).resolve().parents[1]
MARKET = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c3s1_000551_01.jpg", "0007_c2s1_000100_01.jpg"],
    "bounding_box_test": [
        "-1_c2s1_000002_00.jpg", "0000_c1s1_000001_00.jpg", "0003_c4s2_000300_02.jpg", "0005_c6s1_001000_01.jpg",
    ],
    "query": ["0003_c1s1_000310_00.jpg", "0005_c5s1_000900_00.jpg"],
}


def stage(name: str):
    """The stage script as a module (stages/ is not a package: DVC runs the files)."""
    spec = importlib.util.spec_from_file_location(f"stage_{name}", REPO / "stages" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write_params(root: Path, **reid) -> None:
    (root / "params.yaml").write_text(yaml.safe_dump({"data": {"reid": reid}}))


def run(name: str, item: str, capsys) -> tuple[int, str]:
    code = stage(name).main([item])
    return code, capsys.readouterr().err


def zip_tree(src: Path, archive: Path) -> Path:
    with zipfile.ZipFile(archive, "w") as zf:
        for path in sorted(src.rglob("*")):
            zf.write(path, path.relative_to(src).as_posix())
    return archive


def md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes()).hexdigest()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """An empty project folder as the working directory, as DVC runs stages from the project root."""
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    return root


def test_market_archive_to_splits_and_metrics(project, make_market, capsys):
    make_market(project / "src_tree" / "Market-1501-v15.09.15", MARKET)
    archive = zip_tree(project / "src_tree", project / "Market-1501-v15.09.15.zip")
    write_params(project, source="market1501", archive=str(archive), md5=md5(archive))
    assert run("download", "reid", capsys) == (0, "")
    assert sorted(p.name for p in (project / "data/raw/reid/Market-1501-v15.09.15/query").iterdir()) == MARKET["query"]
    assert run("splits", "reid", capsys) == (0, "")
    metrics = json.loads((project / "metrics/data/reid.json").read_text())
    assert metrics == {  # counted by hand from MARKET: junk (-1) apart, the distractor (0) is an identity
        "train": {"ids": 2, "images": 3, "cameras": 3, "junk": 0},
        "query": {"ids": 2, "images": 2, "cameras": 2, "junk": 0},
        "gallery": {"ids": 3, "images": 3, "cameras": 3, "junk": 1},
    }
    split = load_reid_split()
    assert split.name == "market1501" and split.pid2label == {2: 0, 7: 1}
    assert split.query[0].path == "Market-1501-v15.09.15/query/0003_c1s1_000310_00.jpg"
    assert (split.root / split.query[0].path).is_file()
    assert not (project / "data/splits/reid/contact_sheet.png").exists()  # drawn for synthetic data only


@pytest.mark.parametrize("protocol_in_archive", [True, False])
def test_cuhk03_archive_is_converted_to_pngs(project, cuhk03_mat, cuhk03_protocol, capsys, protocol_in_archive):
    rng = np.random.default_rng(0)

    def cells(columns: set[int]) -> list[np.ndarray | None]:  # a person's 10 cells, images in ``columns``
        return [rng.integers(0, 256, (6, 3, 3), dtype=np.uint8) if c in columns else None for c in range(1, 11)]

    release = project / "src_tree" / "cuhk03_release"
    release.mkdir(parents=True)
    persons = [[cells({1, 6}), cells({2, 7}), cells({1, 6})]]
    cuhk03_mat(release / "cuhk-03.mat", {"labeled": persons, "detected": persons})
    names = ["1_001_1_01.png", "1_001_2_06.png", "1_002_1_02.png", "1_002_2_07.png", "1_003_1_01.png", "1_003_2_06.png"]
    protocol = project / ("src_tree" if protocol_in_archive else "protocol")  # beside the release, or apart
    protocol.mkdir(exist_ok=True)
    for kind in ("labeled", "detected"):
        cuhk03_protocol(protocol / f"cuhk03_new_protocol_config_{kind}.mat", names, [1, 1, 2, 2, 3, 3],
                        [1, 2, 1, 2, 1, 2], train=[1, 2], query=[3, 5], gallery=[4, 6])
    archive = zip_tree(project / "src_tree", project / "cuhk03.zip")
    write_params(project, source="cuhk03", archive=str(archive), md5=md5(archive), cuhk03_images="detected",
                 cuhk03_protocol="" if protocol_in_archive else str(protocol))
    assert run("download", "reid", capsys) == (0, "")
    raw = project / "data/raw/reid"
    assert sorted(p.name for p in (raw / "images_detected").iterdir()) == sorted(names)
    assert not (raw / "cuhk03_release" / "cuhk-03.mat").exists()
    assert run("splits", "reid", capsys) == (0, "")
    metrics = json.loads((project / "metrics/data/reid.json").read_text())
    assert metrics["train"] == {"ids": 1, "images": 2, "cameras": 2, "junk": 0}
    assert metrics["query"] == {"ids": 2, "images": 2, "cameras": 1, "junk": 0}
    assert load_reid_split().gallery[0].path == "images_detected/1_002_2_07.png"


@pytest.mark.parametrize(
    "case, message",
    [
        ("missing", "nope.zip: file not found"),
        ("md5", "md5 is"),
        ("truncated", "truncated or corrupt"),
        ("hostile", "refusing entry '../escape.jpg'"),
        ("layout", "lacks query"),
        ("unknown_source", "data.reid.source: 'viper' is not one of"),
        ("typo", "data.reid.sourse: unknown key"),
        ("msmt17_md5", "data.reid.md5: msmt17 has no published checksum"),
    ],
)
def test_bad_input_gives_one_error_and_no_output(project, make_market, capsys, case, message):
    make_market(project / "src_tree" / "Market-1501-v15.09.15", MARKET)
    archive = zip_tree(project / "src_tree", project / "m.zip")
    reid = {"source": "market1501", "archive": str(archive), "md5": md5(archive)}
    if case == "missing":
        reid["archive"] = str(project / "nope.zip")
    elif case == "md5":
        reid["md5"] = "0" * 32
    elif case == "truncated":
        archive.write_bytes(archive.read_bytes()[:-200])
        reid["md5"] = md5(archive)  # a wrong checksum in params must not be what saves us here
    elif case == "hostile":
        with zipfile.ZipFile(archive, "a") as zf:
            zf.writestr("../escape.jpg", b"x")
        reid["md5"] = md5(archive)
    elif case == "layout":
        shutil.rmtree(project / "src_tree" / "Market-1501-v15.09.15" / "query")
        archive = zip_tree(project / "src_tree", project / "m2.zip")
        reid.update(archive=str(archive), md5=md5(archive))
    elif case == "unknown_source":
        reid["source"] = "viper"
    elif case == "typo":
        reid["sourse"] = reid.pop("source")
    elif case == "msmt17_md5":
        reid.update(source="msmt17", md5="")
    write_params(project, **reid)
    code, err = run("download", "reid", capsys)
    assert code == 1 and err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert not (project / "data" / "raw").exists() or list((project / "data" / "raw").iterdir()) == []
    assert not (project / "escape.jpg").exists() and not (project / "data" / "escape.jpg").exists()


def test_unreadable_image_stops_splits_before_any_output(project, make_market, capsys):
    make_market(project / "data/raw/reid", MARKET)
    (project / "data/raw/reid/query/0005_c5s1_000900_00.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    write_params(project, source="synthetic")
    code, err = run("splits", "reid", capsys)
    assert code == 1 and "data/raw/reid/query/0005_c5s1_000900_00.jpg: unreadable image" in err
    assert not (project / "data/splits").exists() and not (project / "metrics").exists()


# ----------------------------------------------------------------------------------------------------
# end to end: dvc repro splits in a temporary clone

TINY_REID = {
    "num_identities": 10, "num_train_identities": 5, "num_cameras": 3, "images_per_camera": [1, 2],
    "height": 64, "width": 32, "num_distractors": 4, "num_junk": 3, "clutter": 2,
}


def clone(dest: Path) -> None:
    """Copy the project as git would see it: tracked files plus new files that are not ignored."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO, check=True, capture_output=True,
    ).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def test_dvc_repro_splits_end_to_end(tmp_path):
    work, home = tmp_path / "clone", tmp_path / "home"
    work.mkdir()
    home.mkdir()
    clone(work)
    params = yaml.safe_load((work / "params.yaml").read_text())
    params["data"]["reid"]["synthetic"].update(TINY_REID)
    (work / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    venv_bin = str(Path(sys.executable).parent)
    env = {
        **os.environ, "HOME": str(home), "GIT_CONFIG_NOSYSTEM": "1", "DVC_NO_ANALYTICS": "1",
        "PATH": venv_bin + os.pathsep + os.environ.get("PATH", ""), "PYTHONPATH": str(work / "src"),
    }

    def sh(*cmd: str) -> str:
        done = subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True)
        assert done.returncode == 0, f"{' '.join(cmd)} failed:\n{done.stdout}\n{done.stderr}"
        return done.stdout

    sh("git", "init", "-q", "-b", "main")
    sh("git", "add", "-A")
    sh("git", "-c", "user.name=ci", "-c", "user.email=ci@localhost", "commit", "-qm", "clone")
    sh("dvc", "config", "--local", "core.site_cache_dir", str(tmp_path / "dvc-site"))  # not /var/tmp/dvc
    start = time.perf_counter()
    sh("dvc", "repro", "splits")
    elapsed = time.perf_counter() - start
    print(f"dvc repro splits (tiny params): {elapsed:.1f} s")

    for path in ("data/raw/reid/query", "data/raw/pose", "data/splits/pose", "metrics/data/pose.json"):
        assert (work / path).exists(), path
    with Image.open(work / "data/splits/reid/contact_sheet.png") as sheet:
        assert sheet.format == "PNG" and sheet.width > TINY_REID["num_cameras"] * TINY_REID["width"]
    metrics = json.loads((work / "metrics/data/reid.json").read_text())
    assert metrics["train"]["ids"] == TINY_REID["num_train_identities"]
    assert metrics["gallery"]["junk"] == TINY_REID["num_junk"]
    split = load_reid_split(work / "data/splits/reid", work / "data/raw/reid")
    assert split.num_classes == TINY_REID["num_train_identities"] and split.num_cameras == TINY_REID["num_cameras"]
    assert metrics["query"]["images"] == len(split.query) and metrics["train"]["images"] == len(split.train)
    lock = yaml.safe_load((work / "dvc.lock").read_text())["stages"]
    assert set(lock) >= {"download@reid", "download@pose", "splits@reid", "splits@pose"}
    assert lock["splits@reid"]["params"]["params.yaml"]["data.reid"]["synthetic"]["num_identities"] == 10

    again = sh("dvc", "repro", "splits")
    assert "didn't change, skipping" in again and "Running stage" not in again, again
    # only the data stages ran; a committed dvc.lock may still list the later stages as not run yet
    assert json.loads(sh("dvc", "status", "splits", "--json")) == {}


def test_item_stages_refuse_an_unknown_item_and_keep_tracebacks_of_bugs(capsys):
    from personlab.runtime import run_item

    for name in ("download", "splits"):
        assert stage(name).main(["market"]) == 2
        assert capsys.readouterr().err == f"usage: python stages/{name}.py {{reid|pose}}\n"

    def bug() -> None:
        raise KeyError("not a user error")

    with pytest.raises(KeyError):
        run_item("stages/x.py", ["a"], {"a": bug}, (ValueError,))
