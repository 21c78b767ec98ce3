"""Stage ``download@<item>``: put a dataset in ``data/raw/<item>`` in its native layout.

``reid``: the synthetic pedestrians (default) or a real archive named by ``data.reid.archive`` (local path or
http(s) URL; resumable download, md5 checked before extraction, safe extraction). CUHK03's MATLAB file is
converted to PNGs here. The layout is checked before the folder lands, so a wrong archive never leaves a
half-usable ``data/raw/reid``.
``pose``: the multi-view pose data, through ``personlab.pose.prepare``.

Usage: ``python stages/download.py reid|pose`` from the project root (DVC does this).
"""

from __future__ import annotations

import sys
from pathlib import Path

from personlab.data.archive import ArchiveError, expected_md5, extract, fetch
from personlab.data.datasets import DatasetError, LayoutError, load_dataset, prepare_cuhk03
from personlab.io import atomic_dir
from personlab.params import Data, ParamsError, load_section
from personlab.runtime import run_item

DOWNLOADS = Path("data/downloads")  # fetched archives and .part files; outside the stage's outputs on purpose


def download_reid(data: Data) -> None:
    cfg, raw = data.reid, Path("data/raw/reid")
    if cfg.source == "synthetic":
        from personlab.data.synthetic import generate_market_like

        with atomic_dir(raw) as tmp:
            generate_market_like(tmp, cfg.synthetic, data.seed)
            load_dataset(tmp, "synthetic")
        return
    archive = fetch(cfg.archive, DOWNLOADS, md5=expected_md5(cfg.source, cfg.md5))
    with atomic_dir(raw) as tmp:
        extract(archive, tmp)
        if cfg.source == "cuhk03":
            prepare_cuhk03(tmp, cfg.cuhk03_protocol, DOWNLOADS)
        load_dataset(tmp, cfg.source, cfg.cuhk03_images, cfg.msmt17_use_val)


def download_pose(data: Data) -> None:
    from personlab.pose.prepare import download

    download(data.pose, Path("data/raw/pose"), data.seed)  # replaces the folder atomically itself


def main(argv: list[str]) -> int:
    items = {"reid": lambda: download_reid(load_section("data")), "pose": lambda: download_pose(load_section("data"))}
    return run_item("stages/download.py", argv, items,
                    (ParamsError, ArchiveError, LayoutError, DatasetError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
