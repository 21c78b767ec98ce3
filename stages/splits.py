"""Stage ``splits@<item>``: turn the raw dataset into the splits every later stage reads.

``reid``: parses ``data/raw/reid`` in its native layout, decodes every image once, and writes
``data/splits/reid/{meta,splits,labels}.json`` (open-reid schema, standard single-query protocol; see
``personlab.data.openreid``) and ``metrics/data/reid.json`` (identities, images and cameras per set). For
synthetic data it also draws ``data/splits/reid/contact_sheet.png`` (test identities across cameras): inside
the stage's cached output, so DVC restores the picture together with the data it shows.
``pose``: the train/test frame split through ``personlab.pose.prepare``, its statistics in
``metrics/data/pose.json``.

Usage: ``python stages/splits.py reid|pose`` from the project root (DVC does this).
"""

from __future__ import annotations

import sys
from pathlib import Path

from personlab.data.datasets import DatasetError, LayoutError, load_dataset, set_stats, verify_images
from personlab.data.openreid import SplitError, write_reid_split
from personlab.io import atomic_dir, write_json
from personlab.params import Data, ParamsError, load_section
from personlab.runtime import run_item


def metrics_path(item: str) -> Path:
    return Path("metrics/data") / f"{item}.json"


def splits_reid(data: Data) -> None:
    cfg, raw = data.reid, Path("data/raw/reid")
    dataset = load_dataset(raw, cfg.source, cfg.cuhk03_images, cfg.msmt17_use_val)
    verify_images(raw, [*dataset.train, *dataset.query, *dataset.gallery])
    with atomic_dir("data/splits/reid") as tmp:
        write_reid_split(tmp, dataset.name, dataset.num_cameras, dataset.train, dataset.query, dataset.gallery)
        if cfg.source == "synthetic":
            from personlab.data.synthetic import contact_sheet

            contact_sheet(raw, tmp / "contact_sheet.png")
    sets = {"train": dataset.train, "query": dataset.query, "gallery": dataset.gallery}
    write_json(metrics_path("reid"), {name: set_stats(records) for name, records in sets.items()})


def splits_pose(data: Data) -> None:
    from personlab.pose.prepare import make_splits

    stats = make_splits(Path("data/raw/pose"), Path("data/splits/pose"), data.pose)  # atomic itself
    write_json(metrics_path("pose"), stats)


def main(argv: list[str]) -> int:
    items = {"reid": lambda: splits_reid(load_section("data")), "pose": lambda: splits_pose(load_section("data"))}
    return run_item("stages/splits.py", argv, items, (ParamsError, LayoutError, DatasetError, SplitError, FileNotFoundError))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
