"""Fixture builders that write small datasets in the REAL layouts of the re-ID datasets (names, folders,
MATLAB v7.3 HDF5 files, list files), so the parsers are tested against the formats they will meet."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import pytest
from PIL import Image


ORIGINAL_KEYS = Path(__file__).parent / "fixtures" / "original-keys"


@pytest.fixture(scope="session")
def original_state() -> Callable[..., dict]:
    """``original_state(name, seed=0)``: random tensors with exactly the keys, shapes and dtypes of an original
    module's ``state_dict()``, read from ``fixtures/original-keys/<name>.keys.json`` (copies of the spec's
    listings, so the importers are tested against the real layouts without ../shared)."""
    import json

    import torch

    def build(name: str, seed: int = 0) -> dict[str, torch.Tensor]:
        g = torch.Generator().manual_seed(seed)
        state = {}
        for key, shape, dtype in json.loads((ORIGINAL_KEYS / f"{name}.keys.json").read_text()):
            if dtype == "torch.int64":
                state[key] = torch.randint(0, 1000, shape, generator=g, dtype=torch.int64)
            else:
                state[key] = torch.randn(shape, generator=g, dtype=getattr(torch, dtype.split(".")[1]))
        return state

    return build


def write_image(path: Path, value: int = 128, size: tuple[int, int] = (4, 8)) -> None:
    """A tiny solid-colour image (``size`` = width, height); format from the suffix."""
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, (value, 255 - value, value // 2)).save(path)


@pytest.fixture
def make_market() -> Callable[[Path, dict[str, Sequence[str]]], Path]:
    """Write ``{folder: [file names]}`` as tiny JPEGs under ``root`` (e.g. ``bounding_box_train``)."""

    def build(root: Path, folders: dict[str, Sequence[str]]) -> Path:
        for folder, names in folders.items():
            (root / folder).mkdir(parents=True, exist_ok=True)
            for i, name in enumerate(names):
                write_image(root / folder / name, value=(37 * i) % 256)
        return root

    return build


def write_cuhk03_mat(path: Path, data: dict[str, list[list[list[np.ndarray | None]]]]) -> None:
    """Write ``cuhk-03.mat`` as MATLAB v7.3 does: an HDF5 file (after a 512-byte header block) whose cells are
    object references into ``#refs#`` and whose arrays are stored in column-major order, i.e. transposed.

    ``data[kind][pair][person]`` is the person's 10 image cells (H x W x 3 uint8, or None for an empty cell).
    """
    import h5py

    counter = itertools.count()
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")

        def store(array: np.ndarray, matlab_class: bytes) -> h5py.Reference:
            ds = refs.create_dataset(f"r{next(counter)}", data=array)
            ds.attrs["MATLAB_class"] = matlab_class
            return ds.ref

        for kind, pairs in data.items():
            pair_refs = []
            for persons in pairs:
                cells = np.empty((len(persons), 10), dtype=h5py.ref_dtype)
                for i, person in enumerate(persons):
                    for j, image in enumerate(person):
                        if image is None:  # MATLAB's empty matrix: the dims [0 0] with a flag
                            cells[i, j] = store(np.zeros(2, dtype=np.uint64), b"double")
                        else:
                            cells[i, j] = store(np.ascontiguousarray(image.T), b"uint8")
                pair_refs.append(store(np.ascontiguousarray(cells.T), b"cell"))
            top = np.empty((len(pair_refs), 1), dtype=h5py.ref_dtype)  # a 1 x P cell, stored as P x 1
            for i, ref in enumerate(pair_refs):
                top[i, 0] = ref
            f.create_dataset(kind, data=top).attrs["MATLAB_class"] = b"cell"
    with open(path, "r+b") as f:  # the header MATLAB writes into the user block
        f.write(b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created on: Mon Jan  1 00:00:00 2024 HDF5 schema 1.00 .")


def write_cuhk03_protocol(path: Path, names: list[str], labels: list[int], cams: list[int],
                          train: list[int], query: list[int], gallery: list[int]) -> None:
    """A new-protocol config file as in zhunzhong07/person-re-ranking: a cell column of names and 1-based
    index columns."""
    from scipy.io import savemat

    def column(values: list[int]) -> np.ndarray:  # MATLAB stores numbers as double column vectors
        return np.asarray(values, dtype=np.float64).reshape(-1, 1)

    filelist = np.empty((len(names), 1), dtype=object)
    for i, name in enumerate(names):
        filelist[i, 0] = name
    savemat(path, {
        "filelist": filelist, "labels": column(labels), "camId": column(cams),
        "train_idx": column(train), "query_idx": column(query), "gallery_idx": column(gallery),
    })


@pytest.fixture
def cuhk03_mat() -> Callable[..., None]:
    """:func:`write_cuhk03_mat`, as a fixture."""
    return write_cuhk03_mat


@pytest.fixture
def cuhk03_protocol() -> Callable[..., None]:
    """:func:`write_cuhk03_protocol`, as a fixture."""
    return write_cuhk03_protocol
