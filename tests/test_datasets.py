"""Dataset parsers against fixture trees in the real layouts of Market-1501, DukeMTMC-reID, CUHK03 and MSMT17."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from personlab.data.datasets import (
    DatasetError,
    LayoutError,
    extract_cuhk03_images,
    load_dataset,
    parse_cuhk03,
    set_stats,
    verify_images,
)
from personlab.data.openreid import Record

M = "Market-1501-v15.09.15"
MARKET = {
    "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c3s1_000551_01.jpg", "0007_c2s1_000100_01.jpg"],
    "bounding_box_test": [
        "-1_c2s1_000002_00.jpg", "0000_c1s1_000001_00.jpg", "0003_c4s2_000300_02.jpg", "0005_c6s1_001000_01.jpg",
    ],
    "query": ["0003_c1s1_000310_00.jpg", "0005_c5s1_000900_00.jpg"],
}


def test_market_with_junk_and_distractors(tmp_path, make_market):
    raw = tmp_path / "raw"
    make_market(raw / M, MARKET)
    (raw / M / "bounding_box_test" / "Thumbs.db").write_bytes(b"\x00windows thumbnail cache")
    (raw / M / "readme.txt").write_text("Market-1501")
    ds = load_dataset(raw, "market1501")
    assert ds.name == "market1501" and ds.num_cameras == 6
    assert ds.train == [
        Record(f"{M}/bounding_box_train/0002_c1s1_000451_03.jpg", 2, 0),
        Record(f"{M}/bounding_box_train/0002_c3s1_000551_01.jpg", 2, 2),
        Record(f"{M}/bounding_box_train/0007_c2s1_000100_01.jpg", 7, 1),
    ]
    assert ds.gallery == [
        Record(f"{M}/bounding_box_test/-1_c2s1_000002_00.jpg", -1, 1),  # junk stays for the evaluator
        Record(f"{M}/bounding_box_test/0000_c1s1_000001_00.jpg", 0, 0),  # distractor: a real negative
        Record(f"{M}/bounding_box_test/0003_c4s2_000300_02.jpg", 3, 3),
        Record(f"{M}/bounding_box_test/0005_c6s1_001000_01.jpg", 5, 5),
    ]
    assert ds.query == [
        Record(f"{M}/query/0003_c1s1_000310_00.jpg", 3, 0),
        Record(f"{M}/query/0005_c5s1_000900_00.jpg", 5, 4),
    ]


def test_junk_never_enters_training(tmp_path, make_market):
    train = ["-1_c1s1_000001_00.jpg", "0004_c1s1_000002_00.jpg"]
    raw = make_market(tmp_path / "raw", {**MARKET, "bounding_box_train": train})
    assert [r.pid for r in load_dataset(raw, "synthetic").train] == [4]


def test_name_regex_reads_the_basename_not_the_path(tmp_path, make_market):
    raw = tmp_path / "raw"
    make_market(raw / "0099_c5s1 copy", MARKET)  # a folder name that a full-path regex would read as pid 99, c5
    ds = load_dataset(raw, "market1501")
    assert {r.pid for r in ds.train} == {2, 7} and {r.camid for r in ds.query} == {0, 4}


def test_synthetic_counts_its_cameras(tmp_path, make_market):
    raw = make_market(tmp_path / "raw", MARKET)  # synthetic data sits at the top of data/raw/reid
    ds = load_dataset(raw, "synthetic")
    assert ds.num_cameras == 6 and ds.train[0].path == "bounding_box_train/0002_c1s1_000451_03.jpg"


def test_duke_layout(tmp_path, make_market):
    raw = tmp_path / "raw"
    make_market(raw / "DukeMTMC-reID", {
        "bounding_box_train": ["0001_c2_f0046182.jpg", "0001_c6_f0061101.jpg"],
        "bounding_box_test": ["0005_c8_f0000001.jpg", "6000_c1_f0100000.jpg"],  # 6000: a distractor id
        "query": ["0005_c3_f0000002.jpg"],
    })
    (raw / "LICENSE_DukeMTMC-reID.txt").write_text("licence")
    ds = load_dataset(raw, "dukemtmc")
    assert ds.num_cameras == 8
    assert ds.train == [
        Record("DukeMTMC-reID/bounding_box_train/0001_c2_f0046182.jpg", 1, 1),
        Record("DukeMTMC-reID/bounding_box_train/0001_c6_f0061101.jpg", 1, 5),
    ]
    assert ds.gallery[0] == Record("DukeMTMC-reID/bounding_box_test/0005_c8_f0000001.jpg", 5, 7)
    assert ds.query == [Record("DukeMTMC-reID/query/0005_c3_f0000002.jpg", 5, 2)]


def test_duke_needs_its_top_folder(tmp_path, make_market):
    raw = tmp_path / "raw"
    make_market(raw / "duke_copy", MARKET)
    with pytest.raises(LayoutError, match=r"top folder DukeMTMC-reID/"):
        load_dataset(raw, "dukemtmc")


def test_missing_folder_is_named_with_the_fix(tmp_path, make_market):
    raw = tmp_path / "raw"
    make_market(raw / M, {k: v for k, v in MARKET.items() if k != "query"})
    with pytest.raises(LayoutError) as err:
        load_dataset(raw, "market1501")
    message = str(err.value)
    assert f"{M} lacks query" in message and "Market-1501-v15.09.15.zip" in message
    with pytest.raises(LayoutError, match="dataset folder not found"):
        load_dataset(tmp_path / "nowhere", "market1501")


@pytest.mark.parametrize(
    "name, problem", [("foo.jpg", "Market-1501 convention"), ("0001_c7s1_000001_00.jpg", "outside c1..c6")]
)
def test_bad_file_name_is_named(tmp_path, make_market, name, problem):
    raw = make_market(tmp_path / "raw", {**MARKET, "query": [name]})
    with pytest.raises(DatasetError) as err:
        load_dataset(raw, "market1501")
    assert name in str(err.value) and problem in str(err.value)


def test_unknown_source(tmp_path):
    with pytest.raises(LayoutError, match="unknown source 'viper'"):
        load_dataset(tmp_path, "viper")


# ----------------------------------------------------------------------------------------------------
# CUHK03


def cuhk03_images(seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    shapes = [(7, 3), (5, 4), (6, 2), (9, 5), (4, 3), (8, 6)]  # H != W, so a missed transpose shows
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for h, w in shapes]


def person(images: list[np.ndarray], columns: dict[int, int]) -> list[np.ndarray | None]:
    """10 cells; ``columns`` maps a 1-based column to an index into ``images``; the rest are empty."""
    return [images[columns[c]] if c in columns else None for c in range(1, 11)]


def test_cuhk03_mat_images_are_dereferenced_and_transposed(tmp_path, cuhk03_mat):
    lab, det = cuhk03_images(0), cuhk03_images(1)
    cuhk03_mat(tmp_path / "cuhk-03.mat", {
        "labeled": [
            [person(lab, {1: 0, 3: 1, 6: 2}), person(lab, {2: 3, 10: 4})],  # pair 1; column 2 empty, 3 is not
            [person(lab, {5: 5})],  # pair 2
        ],
        "detected": [[person(det, {1: 0}), person(det, {7: 1})], [person(det, {})]],
    })
    counts = extract_cuhk03_images(tmp_path / "cuhk-03.mat", tmp_path / "out")
    assert counts == {"labeled": 6, "detected": 2}
    expected = {
        "images_labeled/1_001_1_01.png": lab[0],
        "images_labeled/1_001_1_03.png": lab[1],
        "images_labeled/1_001_2_06.png": lab[2],
        "images_labeled/1_002_1_02.png": lab[3],
        "images_labeled/1_002_2_10.png": lab[4],
        "images_labeled/2_001_1_05.png": lab[5],
        "images_detected/1_001_1_01.png": det[0],
        "images_detected/1_002_2_07.png": det[1],
    }
    found = sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png"))
    assert found == sorted(expected)
    for name, image in expected.items():
        assert np.array_equal(np.asarray(Image.open(tmp_path / "out" / name)), image), name


def test_cuhk03_not_hdf5(tmp_path):
    (tmp_path / "cuhk-03.mat").write_bytes(b"MATLAB 5.0 MAT-file, not v7.3")
    with pytest.raises(DatasetError, match="not a MATLAB v7.3"):
        extract_cuhk03_images(tmp_path / "cuhk-03.mat", tmp_path / "out")


def test_cuhk03_new_protocol(tmp_path, make_market, cuhk03_protocol):
    names = ["1_001_1_01.png", "1_001_2_06.png", "1_002_1_02.png", "1_002_2_10.png", "2_001_1_05.png", "2_001_2_07.png"]
    for name in names:
        make_market(tmp_path, {"images_labeled": [name]})
    cuhk03_protocol(
        tmp_path / "cuhk03_new_protocol_config_labeled.mat", names,
        labels=[1, 1, 2, 2, 3, 3], cams=[1, 2, 1, 2, 1, 2], train=[1, 2], query=[3, 5], gallery=[4, 6],
    )
    ds = parse_cuhk03(tmp_path, "labeled")
    assert ds.num_cameras == 2
    assert ds.train == [Record("images_labeled/1_001_1_01.png", 1, 0), Record("images_labeled/1_001_2_06.png", 1, 1)]
    assert ds.query == [Record("images_labeled/1_002_1_02.png", 2, 0), Record("images_labeled/2_001_1_05.png", 3, 0)]
    assert ds.gallery == [Record("images_labeled/1_002_2_10.png", 2, 1), Record("images_labeled/2_001_2_07.png", 3, 1)]
    with pytest.raises(LayoutError, match="cuhk03_new_protocol_config_detected.mat"):
        parse_cuhk03(tmp_path, "detected")
    (tmp_path / "images_labeled" / names[5]).unlink()
    with pytest.raises(LayoutError, match="2_001_2_07.png: listed in cuhk03_new_protocol_config_labeled.mat"):
        parse_cuhk03(tmp_path, "labeled")


# ----------------------------------------------------------------------------------------------------
# MSMT17

MSMT_TRAIN = ["0000/0000_000_01_0303morning_0015_0.jpg 0", "0000/0000_001_11_0303noon_0100_1.jpg 0"]
MSMT_VAL = ["0001/0001_000_05_0303morning_0020_0.jpg 1"]
MSMT_QUERY = ["0000/0000_000_02_0113morning_0001_0.jpg 0"]
MSMT_GALLERY = ["0000/0000_001_15_0113noon_0009_0.jpg 0", "0002/0002_000_03_0113noon_0010_0.jpg 2"]


def make_msmt17(make_market, root, version: str, train_lines=MSMT_TRAIN):
    train_dir, test_dir = {"MSMT17_V1": ("train", "test"), "MSMT17_V2": ("mask_train_v2", "mask_test_v2")}[version]
    base = root / version
    for name, lines, folder in [
        ("list_train.txt", train_lines, train_dir), ("list_val.txt", MSMT_VAL, train_dir),
        ("list_query.txt", MSMT_QUERY, test_dir), ("list_gallery.txt", MSMT_GALLERY, test_dir),
    ]:
        base.mkdir(parents=True, exist_ok=True)
        (base / name).write_text("".join(line + "\n" for line in lines))
        make_market(base, {folder: [line.split()[0] for line in lines]})
    return root


@pytest.mark.parametrize(
    "version, train_dir, test_dir", [("MSMT17_V1", "train", "test"), ("MSMT17_V2", "mask_train_v2", "mask_test_v2")]
)
def test_msmt17_lists_and_distinct_test_pids(tmp_path, make_market, version, train_dir, test_dir):
    raw = make_msmt17(make_market, tmp_path, version)
    ds = load_dataset(raw, "msmt17")
    tr, te = f"{version}/{train_dir}", f"{version}/{test_dir}"
    assert ds.num_cameras == 15
    assert ds.train == [  # camera "11" has two digits: camid 10
        Record(f"{tr}/0000/0000_000_01_0303morning_0015_0.jpg", 0, 0),
        Record(f"{tr}/0000/0000_001_11_0303noon_0100_1.jpg", 0, 10),
    ]
    # test pids restart at 0: shifted past the largest train/val pid (1) so they never meet train pid 0
    assert ds.query == [Record(f"{te}/0000/0000_000_02_0113morning_0001_0.jpg", 2, 1)]
    assert ds.gallery == [
        Record(f"{te}/0000/0000_001_15_0113noon_0009_0.jpg", 2, 14),
        Record(f"{te}/0002/0002_000_03_0113noon_0010_0.jpg", 4, 2),
    ]
    with_val = load_dataset(raw, "msmt17", msmt17_use_val=True)
    assert with_val.train == sorted(ds.train + [Record(f"{tr}/0001/0001_000_05_0303morning_0020_0.jpg", 1, 4)])


def test_msmt17_bad_inputs(tmp_path, make_market):
    wrong_pid = [MSMT_TRAIN[0], "0000/0000_001_11_0303noon_0100_1.jpg 5"]
    raw = make_msmt17(make_market, tmp_path / "a", "MSMT17_V1", train_lines=wrong_pid)
    with pytest.raises(DatasetError, match=r"list_train.txt:2: pid 5 disagrees"):
        load_dataset(raw, "msmt17")
    raw = make_msmt17(make_market, tmp_path / "b", "MSMT17_V2")
    (raw / "MSMT17_V2" / "mask_test_v2" / "0002" / "0002_000_03_0113noon_0010_0.jpg").unlink()
    with pytest.raises(LayoutError, match=r"0002_000_03_0113noon_0010_0.jpg: listed in list_gallery.txt but missing"):
        load_dataset(raw, "msmt17")
    (raw / "MSMT17_V2" / "list_val.txt").unlink()
    with pytest.raises(LayoutError, match="lacks list_val.txt"):
        load_dataset(raw, "msmt17")


# ----------------------------------------------------------------------------------------------------


def test_unreadable_images_are_named(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (128, 64, 3), dtype=np.uint8)).save(tmp_path / "good.jpg", quality=90)
    Image.fromarray(rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)).save(tmp_path / "good.png")
    verify_images(tmp_path, [Record("good.jpg", 1, 0), Record("good.png", 1, 0)])
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "text.jpg").write_text("not an image")
    for name in ("cut.jpg", "text.jpg"):
        with pytest.raises(DatasetError) as err:
            verify_images(tmp_path, [Record("good.jpg", 1, 0), Record(name, 2, 1)])
        assert str(err.value).startswith(f"{tmp_path / name}: unreadable image")


def test_set_stats_excludes_junk_and_counts_distractors():
    records = [
        Record("a", -1, 0), Record("b", -1, 3),  # junk: not an id, not an image, not a camera
        Record("c", 0, 1), Record("d", 0, 2),  # distractors: one id
        Record("e", 7, 1), Record("f", 9, 1),
    ]
    assert set_stats(records) == {"ids": 3, "images": 4, "cameras": 2, "junk": 2}
