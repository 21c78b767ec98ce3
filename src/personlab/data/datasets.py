"""Parsers for the re-ID datasets in their native layouts: Market-1501 (and the synthetic data, which uses its
layout), DukeMTMC-reID, CUHK03 (new protocol, from the MATLAB files) and MSMT17 (V1 or V2).

Each parser returns a :class:`ReidDataset` whose records hold paths relative to the dataset root
(``data/raw/reid``), original pids and 0-based cameras, sorted by path. The layout is checked first; a
missing piece fails with one :class:`LayoutError` that names it and says how to fix it.
"""

from __future__ import annotations

import re
import shutil
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from personlab.data.archive import fetch
from personlab.data.openreid import Record

__all__ = [
    "IMAGE_SUFFIXES",
    "DatasetError",
    "LayoutError",
    "ReidDataset",
    "extract_cuhk03_images",
    "find_root",
    "load_dataset",
    "prepare_cuhk03",
    "set_stats",
    "verify_images",
]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MARKET_FOLDERS = ("bounding_box_train", "bounding_box_test", "query")
# Market/Duke names: pid (digits or -1), "_c", camera, e.g. 0002_c1s1_000451_03.jpg, 0001_c2_f0046182.jpg
MARKET_NAME = re.compile(r"^(-1|\d+)_c(\d+)")
CUHK03_MAT = "cuhk-03.mat"
CUHK03_PROTOCOL = "cuhk03_new_protocol_config_{}.mat"
CUHK03_KINDS = ("labeled", "detected")
MSMT17_LISTS = ("list_train.txt", "list_val.txt", "list_query.txt", "list_gallery.txt")
MSMT17_FOLDERS = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}
NUM_CAMERAS = {"market1501": 6, "dukemtmc": 8, "cuhk03": 2, "msmt17": 15}
ARCHIVE_HINT = {
    "synthetic": "delete data/raw/reid and run `dvc repro download@reid`",
    "market1501": "set data.reid.archive to the official Market-1501-v15.09.15.zip",
    "dukemtmc": "set data.reid.archive to the official DukeMTMC-reID.zip (top folder DukeMTMC-reID/)",
    "cuhk03": (
        "set data.reid.archive to cuhk03_release.zip and data.reid.cuhk03_protocol to the folder holding "
        "cuhk03_new_protocol_config_{labeled,detected}.mat"
    ),
    "msmt17": "set data.reid.archive to the MSMT17_V1 or MSMT17_V2 archive you received from the authors",
}


class LayoutError(ValueError):
    """The dataset folder does not have the expected layout."""


class DatasetError(ValueError):
    """A file inside a well-formed layout is wrong: an unparsable name or list line, an unreadable image."""


@dataclass(frozen=True)
class ReidDataset:
    """A parsed dataset: records relative to its root, sorted by path."""

    name: str
    num_cameras: int
    train: list[Record]
    query: list[Record]
    gallery: list[Record]


def _rel(path: Path, root: Path) -> str:
    return path.relative_to(root).as_posix()


def _sorted(records: Iterable[Record]) -> list[Record]:
    return sorted(records, key=lambda r: r.path)


def find_root(raw: Path, required: Iterable[str], source: str, what: str) -> Path:
    """The folder holding every ``required`` entry: ``raw`` itself or one folder below it (archives usually
    wrap the dataset in a top folder)."""
    required = tuple(required)
    if not raw.is_dir():
        raise LayoutError(f"{raw}: dataset folder not found; run `dvc repro download@reid` first")
    candidates = [raw] + sorted(p for p in raw.iterdir() if p.is_dir() and not p.name.startswith("."))
    for folder in candidates:
        if all((folder / name).exists() for name in required):
            return folder
    best = max(candidates, key=lambda f: sum((f / n).exists() for n in required))
    missing = ", ".join(n for n in required if not (best / n).exists())
    raise LayoutError(
        f"{raw}: no {what} layout: {best} lacks {missing} (expected {', '.join(required)} in {raw} or in one "
        f"folder below it); {ARCHIVE_HINT[source]}"
    )


# ------------------------------------------------------------------------------------------------------
# Market-1501 / DukeMTMC-reID / synthetic


def _market_folder(root: Path, folder: Path, source: str, num_cameras: int) -> list[Record]:
    records = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue  # Market ships Thumbs.db files beside the images
        match = MARKET_NAME.match(path.name)
        if match is None:
            raise DatasetError(
                f"{path}: name does not follow the Market-1501 convention PPPP_cC..., e.g. 0002_c1s1_000451_03.jpg; "
                f"remove the file or {ARCHIVE_HINT[source]}"
            )
        pid, cam = int(match.group(1)), int(match.group(2))
        if not 1 <= cam <= num_cameras:
            raise DatasetError(f"{path}: camera c{cam} is outside c1..c{num_cameras} for {source}")
        records.append(Record(_rel(path, root), pid, cam - 1))
    return records


def parse_market_layout(raw: Path, source: str) -> ReidDataset:
    """Market-1501 layout (``bounding_box_train/``, ``bounding_box_test/``, ``query/``), as used by Market,
    DukeMTMC-reID and the synthetic data; junk (-1) never enters the training set."""
    what = {"dukemtmc": "DukeMTMC-reID"}.get(source, "Market-1501")
    folder = find_root(raw, MARKET_FOLDERS, source, what)
    if source == "dukemtmc" and folder != raw and folder.name != "DukeMTMC-reID":
        raise LayoutError(f"{folder}: expected the archive's top folder DukeMTMC-reID/; {ARCHIVE_HINT[source]}")
    limit = NUM_CAMERAS.get(source, 9)
    train, gallery, query = (_market_folder(raw, folder / name, source, limit) for name in MARKET_FOLDERS)
    train = [r for r in train if r.pid >= 0]
    num_cameras = NUM_CAMERAS.get(source) or 1 + max(r.camid for r in (*train, *query, *gallery))
    return ReidDataset(source, num_cameras, train, _sorted(query), gallery)


# ------------------------------------------------------------------------------------------------------
# CUHK03


def _write_png(array: np.ndarray, path: Path) -> None:
    Image.fromarray(np.ascontiguousarray(array)).save(path, format="PNG")


def extract_cuhk03_images(mat_path: Path, out_root: Path) -> dict[str, int]:
    """Write the images of ``cuhk-03.mat`` as ``images_{labeled,detected}/{pair}_{pid:03d}_{view}_{img:02d}.png``
    (all 1-based; columns 1-5 are view 1, 6-10 view 2) and return how many of each were written.

    The file is MATLAB v7.3, i.e. HDF5: every cell holds an object reference and every array is stored
    transposed (an HxWx3 image reads as 3xWxH). Empty cells are missing images and are skipped, not taken
    as the end of the identity.
    """
    import h5py

    counts = {}
    try:
        mat = h5py.File(mat_path, "r")
    except OSError as exc:
        raise DatasetError(
            f"{mat_path}: not a MATLAB v7.3 (HDF5) file ({exc}); re-extract cuhk03_release.zip"
        ) from None
    with mat:
        for kind in CUHK03_KINDS:
            if kind not in mat:
                raise DatasetError(f"{mat_path}: no '{kind}' field; is this the cuhk-03.mat of cuhk03_release.zip?")
            folder = out_root / f"images_{kind}"
            folder.mkdir(parents=True, exist_ok=True)
            written = 0
            for pair, pair_ref in enumerate(mat[kind][()].ravel(), start=1):
                cells = mat[pair_ref][()].T  # (num_ids, 10) after undoing MATLAB's column-major layout
                for person, row in enumerate(cells, start=1):
                    for column, image_ref in enumerate(row, start=1):
                        image = mat[image_ref][()]
                        if image.size == 0 or image.ndim < 3:
                            continue
                        view = 1 if column <= 5 else 2
                        _write_png(image.T, folder / f"{pair}_{person:03d}_{view}_{column:02d}.png")
                        written += 1
            counts[kind] = written
    return counts


def prepare_cuhk03(root: Path, protocol: str, downloads: Path) -> dict[str, int]:
    """Turn an extracted ``cuhk03_release`` under ``root`` into ``images_{labeled,detected}/`` beside the two
    new-protocol files, and return the image counts.

    ``protocol`` (``data.reid.cuhk03_protocol``) is a folder or URL prefix holding the protocol files; empty
    means they came in the archive. The MATLAB file is deleted afterwards: the PNGs are all the splits use.
    """
    mat = find_root(root, [CUHK03_MAT], "cuhk03", "cuhk03_release") / CUHK03_MAT
    for kind in CUHK03_KINDS:
        name = CUHK03_PROTOCOL.format(kind)
        if protocol:
            if urllib.parse.urlparse(protocol).scheme in ("http", "https"):
                source = protocol.rstrip("/") + "/" + name
            else:
                source = str(Path(protocol) / name)
            shutil.copyfile(fetch(source, downloads, md5=None, param="data.reid.cuhk03_protocol"), root / name)
        else:
            found = find_root(root, [name], "cuhk03", "CUHK03 new-protocol") / name
            if found.parent != root:
                found.replace(root / name)
    counts = extract_cuhk03_images(mat, root)
    mat.unlink()
    return counts


def _mat_vector(config: dict, key: str, path: Path) -> np.ndarray:
    if key not in config:
        raise DatasetError(f"{path}: field '{key}' missing; use the files from zhunzhong07/person-re-ranking")
    return np.asarray(config[key]).ravel()


def parse_cuhk03(raw: Path, images: str) -> ReidDataset:
    """CUHK03-NP (Zhong et al. 2017): 767 train / 700 test identities, query and gallery from the new-protocol
    file of the chosen image kind (``labeled`` or ``detected``); camera = view index."""
    from scipy.io import loadmat

    protocol = CUHK03_PROTOCOL.format(images)
    folder = find_root(raw, (f"images_{images}", protocol), "cuhk03", "CUHK03")
    config_path = folder / protocol
    try:
        config = loadmat(config_path)
    except Exception as exc:  # scipy raises several unrelated types for a foreign or damaged file
        raise DatasetError(f"{config_path}: not a readable MATLAB file ({exc}); download it again") from None
    names = [str(np.asarray(e).ravel()[0]) for e in _mat_vector(config, "filelist", config_path)]
    labels = _mat_vector(config, "labels", config_path).astype(int)
    cams = _mat_vector(config, "camId", config_path).astype(int)
    if not len(names) == len(labels) == len(cams):
        raise DatasetError(f"{config_path}: filelist, labels and camId differ in length")

    def subset(key: str) -> list[Record]:
        records = []
        for index in _mat_vector(config, key, config_path).astype(int):
            if not 1 <= index <= len(names):
                raise DatasetError(f"{config_path}: {key} index {index} is outside 1..{len(names)}")
            i = index - 1
            path = folder / f"images_{images}" / names[i]
            if not path.is_file():
                raise LayoutError(
                    f"{path}: listed in {protocol} but missing; the images come from cuhk-03.mat: delete "
                    "data/raw/reid and run `dvc repro download@reid`"
                )
            records.append(Record(_rel(path, raw), int(labels[i]), int(cams[i]) - 1))
        return _sorted(records)

    return ReidDataset("cuhk03", NUM_CAMERAS["cuhk03"], subset("train_idx"), subset("query_idx"), subset("gallery_idx"))


# ------------------------------------------------------------------------------------------------------
# MSMT17


def _msmt17_list(list_path: Path, image_dir: Path, raw: Path, pid_offset: int) -> list[Record]:
    records = []
    for line_no, line in enumerate(list_path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        where = f"{list_path}:{line_no}"
        parts = line.split()
        fields = Path(parts[0]).name.split("_") if parts else []
        if len(parts) != 2 or not parts[1].isdigit() or len(fields) < 3 or not fields[2].isdigit():
            raise DatasetError(f"{where}: expected '<folder>/<pid>_<index>_<camera>_... <pid>', got {line!r}")
        pid, cam = int(parts[1]), int(fields[2])  # the camera field has two digits, 01..15
        if fields[0] != parts[0].split("/")[0] or int(fields[0]) != pid:
            raise DatasetError(f"{where}: pid {pid} disagrees with the file name {parts[0]}")
        if not 1 <= cam <= NUM_CAMERAS["msmt17"]:
            raise DatasetError(f"{where}: camera {cam} is outside 01..15")
        path = image_dir / parts[0]
        if not path.is_file():
            raise LayoutError(f"{path}: listed in {list_path.name} but missing; {ARCHIVE_HINT['msmt17']}")
        records.append(Record(_rel(path, raw), pid + pid_offset, cam - 1))
    return records


def parse_msmt17(raw: Path, use_val: bool) -> ReidDataset:
    """MSMT17 V1 (``train/``, ``test/``) or V2 (``mask_train_v2/``, ``mask_test_v2/``) from its list files.

    Test pids restart at 0 and so overlap training pids numerically; they are shifted up by (largest training
    pid + 1) so train and test identities stay distinct. ``use_val`` adds ``list_val.txt`` to training.
    """
    folder = find_root(raw, MSMT17_LISTS, "msmt17", "MSMT17")
    version = folder.name if folder.name in MSMT17_FOLDERS else None
    if version is None:  # lists at the top of raw: tell V1 and V2 apart by their image folders
        version = next((v for v, dirs in MSMT17_FOLDERS.items() if all((folder / d).is_dir() for d in dirs)), None)
    if version is None or not all((folder / d).is_dir() for d in MSMT17_FOLDERS[version]):
        raise LayoutError(
            f"{folder}: MSMT17 image folders missing: expected train/ and test/ (MSMT17_V1) or mask_train_v2/ and "
            f"mask_test_v2/ (MSMT17_V2) beside the list files; {ARCHIVE_HINT['msmt17']}"
        )
    train_dir, test_dir = (folder / d for d in MSMT17_FOLDERS[version])
    train = _msmt17_list(folder / "list_train.txt", train_dir, raw, 0)
    val = _msmt17_list(folder / "list_val.txt", train_dir, raw, 0)
    offset = 1 + max(r.pid for r in (*train, *val))
    query = _msmt17_list(folder / "list_query.txt", test_dir, raw, offset)
    gallery = _msmt17_list(folder / "list_gallery.txt", test_dir, raw, offset)
    if use_val:
        train = train + val
    return ReidDataset("msmt17", NUM_CAMERAS["msmt17"], _sorted(train), _sorted(query), _sorted(gallery))


# ------------------------------------------------------------------------------------------------------


def load_dataset(
    raw: str | Path, source: str, cuhk03_images: str = "labeled", msmt17_use_val: bool = False
) -> ReidDataset:
    """Parse the dataset of ``source`` found under ``raw`` (``data/raw/reid``)."""
    raw = Path(raw)
    if source in ("synthetic", "market1501", "dukemtmc"):
        return parse_market_layout(raw, source)
    if source == "cuhk03":
        return parse_cuhk03(raw, cuhk03_images)
    if source == "msmt17":
        return parse_msmt17(raw, msmt17_use_val)
    raise LayoutError(
        f"data.reid.source: unknown source {source!r}; use synthetic, market1501, dukemtmc, cuhk03 or msmt17"
    )


def verify_images(root: Path, records: Iterable[Record]) -> None:
    """Decode every image once (JPEGs at reduced scale, which still reads all their data) so a truncated or
    foreign file fails here, naming the file, rather than hours into training."""
    for r in records:
        path = root / r.path
        try:
            with Image.open(path) as image:
                if image.format == "JPEG":
                    image.draft("RGB", (image.width // 8 or 1, image.height // 8 or 1))
                image.load()
        except (OSError, SyntaxError, ValueError) as exc:
            raise DatasetError(
                f"{path}: unreadable image ({exc}); delete data/raw/reid and run `dvc repro download@reid` to "
                "restore it from the archive"
            ) from None


def set_stats(records: Iterable[Record]) -> dict[str, int]:
    """Identities, images and cameras of one set, junk (pid -1) excluded and counted apart; distractors (pid 0)
    count as an identity."""
    records = list(records)
    kept = [r for r in records if r.pid >= 0]
    return {
        "ids": len({r.pid for r in kept}),
        "images": len(kept),
        "cameras": len({r.camid for r in kept}),
        "junk": len(records) - len(kept),
    }
