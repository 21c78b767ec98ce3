"""The README results table is generated from the metrics files, and only between its markers."""

from __future__ import annotations

import pytest

from personlab.io import write_json
from personlab.report import main, render, update_readme


@pytest.fixture
def metrics(tmp_path):
    write_json(tmp_path / "eval" / "baseline.json", {
        "rank1": 43.06, "rank5": 70.0, "rank10": 80.0, "mAP": 36.25, "mINP": 12.0,
        "rerank": {"rank1": 50.0, "mAP": 45.5}, "protocol": {"ap": "stepwise", "distance": "sq", "flip": "off"}})
    write_json(tmp_path / "eval" / "untrained.json", {"rank1": 1.0, "rank5": 3.0, "mAP": 2.5, "mINP": 1.0,
                                                      "protocol": {"ap": "stepwise"}})
    write_json(tmp_path / "train" / "baseline.json", {"wall_s": 51.4})
    write_json(tmp_path / "eval" / "voxelpose.json", {
        "pcp_avg": 74.83, "mpjpe_mm": 101.2, "ap25": 0.0, "ap50": 0.1234, "ap100": 0.5, "recall500": 0.99,
        "baseline.pcp_avg": 59.6, "baseline.mpjpe_mm": 140.0, "baseline.ap25": 0.0, "baseline.ap50": 0.01,
        "baseline.ap100": 0.2, "baseline.recall500": 0.9})
    return tmp_path


def test_table_rows_come_from_the_files_in_a_fixed_order(metrics):
    lines = render(metrics).splitlines()
    rows = [line for line in lines if line.startswith("| ") and not line.startswith("| re-ID") and
            not line.startswith("| pose")]
    assert rows[0] == "| untrained | 1.0 | 3.0 | 2.5 | 1.0 | – | – | – |"
    assert rows[1] == "| baseline | 43.1 | 70.0 | 36.2 | 12.0 | 50.0 | 45.5 | 51 |"
    assert rows[2] == "| voxelpose | 74.8 | 101.2 | 0.000 | 0.123 | 0.500 | 0.990 | – |"
    assert rows[3].startswith("| triangulated detections | 59.6 | 140.0 |")


def test_readme_is_rewritten_only_between_the_markers(metrics, tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\noutro\n")
    assert update_readme(readme, "new table") is True
    assert readme.read_text() == "intro\n<!-- results:start -->\nnew table\n<!-- results:end -->\noutro\n"
    assert update_readme(readme, "new table") is False
    assert main(["--readme", str(readme), "--metrics", str(metrics), "--check"]) == 1
    assert main(["--readme", str(readme), "--metrics", str(metrics)]) == 0
    assert main(["--readme", str(readme), "--metrics", str(metrics), "--check"]) == 0


def test_missing_markers_is_a_clear_error(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text("no markers here\n")
    with pytest.raises(ValueError, match="markers"):
        update_readme(readme, "x")
