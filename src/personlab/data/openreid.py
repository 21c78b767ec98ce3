"""Re-ID splits in the open-reid schema, and the one reader every training and evaluation stage uses.

``data/splits/reid/`` holds three JSON files written by the ``splits@reid`` stage:

``meta.json``
    ``{"name", "shot": "multiple", "num_cameras", "identities"}`` as in open-reid: ``identities[pid][cam]`` is
    the sorted list of image paths of identity ``pid`` seen by camera ``cam`` (0-based). Unlike open-reid, no
    renamed copies are made: paths are relative to ``data/raw/reid`` and point at the dataset's own files.
    Junk images (pid -1) belong to no identity and appear only in the gallery records below.
``splits.json``
    A one-element list (open-reid keeps a list of splits): ``trainval``, ``query`` and ``gallery`` hold the
    sorted pids of each set, as in open-reid. Because open-reid's own query set (every image of a query
    identity) is not the standard protocol, the entry also stores the explicit ``query_images`` and
    ``gallery_images`` records ``[path, pid, camid]`` of the official single-query protocol (the idea of
    RRID's ``test.json``), junk included in the gallery.
``labels.json``
    ``{pid: label}``: the training pids in increasing order mapped to ``0..N-1``, the classifier's rows.

Train records are not stored twice: they are every image of the ``trainval`` identities in ``identities``
(train and test identities are disjoint in every supported dataset; the writer checks it).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, NamedTuple

from personlab.io import read_json, write_json

__all__ = ["Record", "ReidSplit", "SplitError", "load_reid_split", "pid_labels", "write_reid_split"]

META, SPLITS, LABELS = "meta.json", "splits.json", "labels.json"


class SplitError(ValueError):
    """Split files that are missing, inconsistent with each other, or describe an impossible split."""


class Record(NamedTuple):
    """One re-ID image: ``path`` relative to the dataset root, original ``pid`` (-1 junk, 0 a Market/Duke
    distractor in the gallery), ``camid`` 0-based."""

    path: str
    pid: int
    camid: int


@dataclass(frozen=True)
class ReidSplit:
    """A re-ID dataset ready for training and evaluation.

    ``train`` carries the original pids (the classifier label is ``pid2label[pid]``); ``query`` and
    ``gallery`` follow the dataset's standard single-query protocol. All lists are sorted by path, so the
    same files always give the same order on every machine.
    """

    name: str
    root: Path
    train: list[Record]
    query: list[Record]
    gallery: list[Record]
    pid2label: dict[int, int]
    num_cameras: int

    @property
    def num_classes(self) -> int:
        """Number of training identities (rows of an identity classifier)."""
        return len(self.pid2label)


def pid_labels(pids: Iterable[int]) -> dict[int, int]:
    """Sorted distinct pids -> 0..N-1, so a label never depends on file or set iteration order."""
    return {pid: label for label, pid in enumerate(sorted(set(pids)))}


def _by_path(records: Iterable[Record]) -> list[Record]:
    return sorted(records, key=lambda r: r.path)


def write_reid_split(
    out_dir: str | Path,
    name: str,
    num_cameras: int,
    train: list[Record],
    query: list[Record],
    gallery: list[Record],
) -> None:
    """Write ``meta.json``, ``splits.json`` and ``labels.json`` for one dataset into ``out_dir``.

    Raises :class:`SplitError` when the records cannot form a valid split (junk in train or query, a camera
    outside ``0..num_cameras-1``, a training identity that also appears in the test sets, an empty set).
    """
    for set_name, records in (("train", train), ("query", query), ("gallery", gallery)):
        if not records:
            raise SplitError(f"{name}: the {set_name} set is empty; check the dataset's layout and lists")
        bad_cam = next((r for r in records if not 0 <= r.camid < num_cameras), None)
        if bad_cam is not None:
            raise SplitError(f"{name}: {bad_cam.path} has camera {bad_cam.camid}, outside 0..{num_cameras - 1}")
    for set_name, records in (("train", train), ("query", query)):
        junk = next((r for r in records if r.pid < 0), None)
        if junk is not None:
            raise SplitError(f"{name}: junk image {junk.path} (pid {junk.pid}) in the {set_name} set")
    train_pids = {r.pid for r in train}
    test_pids = {r.pid for r in query} | {r.pid for r in gallery if r.pid >= 0}
    shared = sorted(train_pids & test_pids)
    if shared:
        raise SplitError(
            f"{name}: {len(shared)} identities (e.g. pid {shared[0]}) are in both the train and test sets; "
            "train and test identities must be disjoint"
        )

    registered = [r for r in (*train, *query, *gallery) if r.pid >= 0]
    max_pid = max(r.pid for r in registered)
    identities: list[list[list[str]]] = [[[] for _ in range(num_cameras)] for _ in range(max_pid + 1)]
    seen: set[str] = set()
    for r in registered:
        if r.path in seen:
            raise SplitError(f"{name}: {r.path} is listed twice; each image belongs to exactly one set")
        seen.add(r.path)
        identities[r.pid][r.camid].append(r.path)
    for per_cam in identities:
        for files in per_cam:
            files.sort()

    def rows(records: list[Record]) -> list[list]:
        return [[r.path, r.pid, r.camid] for r in _by_path(records)]

    out_dir = Path(out_dir)
    meta = {"name": name, "shot": "multiple", "num_cameras": num_cameras, "identities": identities}
    split = {
        "trainval": sorted(train_pids),
        "query": sorted({r.pid for r in query}),
        "gallery": sorted({r.pid for r in gallery if r.pid >= 0}),
        "query_images": rows(query),
        "gallery_images": rows(gallery),
    }
    write_json(out_dir / META, meta, indent=None)
    write_json(out_dir / SPLITS, [split], indent=None)
    write_json(out_dir / LABELS, pid_labels(train_pids))


def load_reid_split(splits_dir: str | Path = "data/splits/reid", raw_dir: str | Path = "data/raw/reid") -> ReidSplit:
    """Read the split written by the ``splits@reid`` stage.

    ``raw_dir`` becomes ``ReidSplit.root``; every ``Record.path`` is relative to it. Raises
    :class:`SplitError` (or ``FileNotFoundError`` naming the file) when the files are missing or disagree.
    """
    splits_dir, root = Path(splits_dir), Path(raw_dir)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: dataset folder not found; run `dvc repro download` first")
    meta = read_json(splits_dir / META)
    split_list = read_json(splits_dir / SPLITS)
    labels = read_json(splits_dir / LABELS)
    try:
        split = split_list[0]
        num_cameras = int(meta["num_cameras"])
        identities = meta["identities"]
        train = [
            Record(path, pid, cam)
            for pid in split["trainval"]
            for cam, files in enumerate(identities[pid])
            for path in files
        ]
        query = [Record(p, int(pid), int(cam)) for p, pid, cam in split["query_images"]]
        gallery = [Record(p, int(pid), int(cam)) for p, pid, cam in split["gallery_images"]]
        pid2label = dict(sorted((int(pid), int(label)) for pid, label in labels.items()))
        name = str(meta["name"])
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise SplitError(
            f"{splits_dir}: split files do not follow the open-reid schema ({exc!r}); "
            "delete the folder and run `dvc repro splits`"
        ) from None
    if pid2label != pid_labels(r.pid for r in train):
        raise SplitError(
            f"{splits_dir / LABELS}: labels do not match the training identities in {SPLITS}; "
            "delete the folder and run `dvc repro splits`"
        )
    return ReidSplit(
        name=name,
        root=root,
        train=_by_path(train),
        query=_by_path(query),
        gallery=_by_path(gallery),
        pid2label=pid2label,
        num_cameras=num_cameras,
    )
