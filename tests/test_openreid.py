"""The open-reid split files: written from records, read back by load_reid_split, checked by hand."""

from __future__ import annotations

import json

import pytest

from personlab.data.openreid import Record, SplitError, load_reid_split, pid_labels, write_reid_split

TRAIN = [
    Record("bounding_box_train/0007_c2s1_000100_01.jpg", 7, 1),
    Record("bounding_box_train/0002_c1s1_000451_03.jpg", 2, 0),
    Record("bounding_box_train/0002_c3s1_000551_01.jpg", 2, 2),
    Record("bounding_box_train/0002_c1s1_000460_01.jpg", 2, 0),
]
QUERY = [Record("query/0005_c5s1_000900_00.jpg", 5, 4), Record("query/0003_c1s1_000310_00.jpg", 3, 0)]
GALLERY = [
    Record("bounding_box_test/0005_c6s1_001000_01.jpg", 5, 5),
    Record("bounding_box_test/0003_c1s1_000300_02.jpg", 3, 0),  # same camera as its query: junk for it
    Record("bounding_box_test/0003_c4s2_000300_02.jpg", 3, 3),
    Record("bounding_box_test/0005_c5s1_000950_00.jpg", 5, 4),
    Record("bounding_box_test/0000_c1s1_000001_00.jpg", 0, 0),
    Record("bounding_box_test/-1_c2s1_000002_00.jpg", -1, 1),
]


@pytest.fixture
def written(tmp_path):
    (tmp_path / "raw").mkdir()
    write_reid_split(tmp_path / "splits", "market1501", 6, TRAIN, QUERY, GALLERY)
    return tmp_path


def test_files_follow_the_open_reid_schema(written):
    meta = json.loads((written / "splits" / "meta.json").read_text())
    assert meta["name"] == "market1501" and meta["shot"] == "multiple" and meta["num_cameras"] == 6
    identities = meta["identities"]
    assert len(identities) == 8 and all(len(cams) == 6 for cams in identities)  # pids 0..7
    assert identities[2][0] == [
        "bounding_box_train/0002_c1s1_000451_03.jpg", "bounding_box_train/0002_c1s1_000460_01.jpg"
    ]
    assert identities[2][2] == ["bounding_box_train/0002_c3s1_000551_01.jpg"]
    assert identities[3][0] == ["bounding_box_test/0003_c1s1_000300_02.jpg", "query/0003_c1s1_000310_00.jpg"]
    assert identities[0][0] == ["bounding_box_test/0000_c1s1_000001_00.jpg"]
    assert identities[1] == identities[4] == identities[6] == [[]] * 6  # unused pids: empty camera lists
    assert sum(len(files) for cams in identities for files in cams) == 11  # every image but the junk one

    (split,) = json.loads((written / "splits" / "splits.json").read_text())
    assert split["trainval"] == [2, 7] and split["query"] == [3, 5] and split["gallery"] == [0, 3, 5]
    # the standard protocol: the 2 official queries, not every image of the query identities (open-reid)
    assert split["query_images"] == [["query/0003_c1s1_000310_00.jpg", 3, 0], ["query/0005_c5s1_000900_00.jpg", 5, 4]]
    assert [row[0] for row in split["gallery_images"]] == [
        "bounding_box_test/-1_c2s1_000002_00.jpg",
        "bounding_box_test/0000_c1s1_000001_00.jpg",
        "bounding_box_test/0003_c1s1_000300_02.jpg",
        "bounding_box_test/0003_c4s2_000300_02.jpg",
        "bounding_box_test/0005_c5s1_000950_00.jpg",
        "bounding_box_test/0005_c6s1_001000_01.jpg",
    ]
    assert json.loads((written / "splits" / "labels.json").read_text()) == {"2": 0, "7": 1}


def test_round_trip(written):
    split = load_reid_split(written / "splits", written / "raw")
    assert split.name == "market1501" and split.root == written / "raw" and split.num_cameras == 6
    assert split.train == sorted(TRAIN)  # every path is unique, so sorting records sorts by path
    assert split.query == sorted(QUERY) and split.gallery == sorted(GALLERY)
    assert split.pid2label == {2: 0, 7: 1} and split.num_classes == 2
    assert isinstance(split.train[0], Record) and split.train[0].camid == 0


def test_labels_follow_sorted_pids_not_file_order():
    assert pid_labels([30, 4, 1000, 4, 7]) == {4: 0, 7: 1, 30: 2, 1000: 3}


@pytest.mark.parametrize(
    "train, query, gallery, message",
    [
        (TRAIN + [Record("bounding_box_train/-1_c1.jpg", -1, 0)], QUERY, GALLERY, "junk image bounding_box_train"),
        (TRAIN, QUERY + [Record("query/-1_c1.jpg", -1, 0)], GALLERY, "in the query set"),
        (TRAIN + [Record("bounding_box_train/0003_c1.jpg", 3, 0)], QUERY, GALLERY, "pid 3) are in both the train"),
        (TRAIN, QUERY, GALLERY + [Record("bounding_box_test/0003_c7.jpg", 3, 6)], "camera 6, outside 0..5"),
        (TRAIN, QUERY, GALLERY + [QUERY[0]], "listed twice"),
        (TRAIN, [], GALLERY, "the query set is empty"),
    ],
)
def test_impossible_splits_are_refused(tmp_path, train, query, gallery, message):
    with pytest.raises(SplitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        write_reid_split(tmp_path / "splits", "market1501", 6, train, query, gallery)
    assert not (tmp_path / "splits").exists()


def test_missing_or_inconsistent_files(written):
    with pytest.raises(FileNotFoundError, match=r"dvc repro download"):
        load_reid_split(written / "splits", written / "no_raw")
    labels = written / "splits" / "labels.json"
    labels.write_text(json.dumps({"2": 1, "7": 0}))
    with pytest.raises(SplitError, match="labels do not match"):
        load_reid_split(written / "splits", written / "raw")
    labels.unlink()
    with pytest.raises(FileNotFoundError, match="labels.json: not found"):
        load_reid_split(written / "splits", written / "raw")
    (written / "splits" / "splits.json").write_text(json.dumps([{"trainval": [2]}]))
    (written / "splits" / "labels.json").write_text("{}")
    with pytest.raises(SplitError, match="open-reid schema"):
        load_reid_split(written / "splits", written / "raw")
