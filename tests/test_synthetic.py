"""The synthetic pedestrian generator: Market-1501 layout and protocol, determinism, camera effects."""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from personlab.data.synthetic import contact_sheet, generate_market_like
from personlab.params import ParamsError, SyntheticReid, parse

# Written out by hand from the Market-1501 readme, not imported from the module under test.
NAME = re.compile(r"^(-1|\d{4})_c([1-9])s([1-6])_(\d{6})_(\d{2})\.jpg$")
TINY = SyntheticReid(
    num_identities=8,
    num_train_identities=4,
    num_cameras=3,
    images_per_camera=(1, 3),
    height=64,
    width=32,
    num_distractors=4,
    num_junk=3,
)
# Everything that is not the person switched off: what is left is identity appearance and viewpoint.
CLEAN = dataclasses.replace(
    TINY,
    num_identities=24,
    num_train_identities=4,
    num_distractors=0,
    num_junk=0,
    camera_color_cast=0.0,
    camera_saturation=0.0,
    camera_exposure=0.0,
    camera_blur=0.0,
    noise_std=0.0,
    bbox_jitter=0.0,
    occlusion_probability=0.0,
    clutter=0,
    bag_probability=0.0,
    backpack_probability=0.0,
    logo_probability=0.0,
)


def _generate(root: Path, cfg: SyntheticReid, seed: int = 0) -> tuple[Path, dict]:
    root.mkdir(parents=True)
    return root, generate_market_like(root, cfg, seed)


def _files(root: Path) -> dict[str, list[tuple[str, int, int]]]:
    """folder -> [(name, pid, cam)], parsed with the hand-written pattern."""
    out = {}
    for folder in sorted(p.name for p in root.iterdir()):
        rows = []
        for f in sorted((root / folder).iterdir()):
            m = NAME.match(f.name)
            assert m is not None, f"{folder}/{f.name} does not follow the Market-1501 naming"
            rows.append((f.name, int(m.group(1)), int(m.group(2))))
        out[folder] = rows
    return out


def _md5s(root: Path) -> dict[str, str]:
    files = sorted(f for f in root.rglob("*") if f.is_file())
    return {str(f.relative_to(root)): hashlib.md5(f.read_bytes()).hexdigest() for f in files}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    return _generate(tmp_path_factory.mktemp("syn") / "raw", TINY)


def test_layout_names_and_images(tiny):
    root, _ = tiny
    files = _files(root)
    assert sorted(files) == ["bounding_box_test", "bounding_box_train", "query"]
    for folder, rows in files.items():
        assert rows, f"{folder} is empty"
        for name, pid, cam in rows:
            assert 1 <= cam <= TINY.num_cameras
            assert pid == -1 or 0 <= pid <= TINY.num_identities
            with Image.open(root / folder / name) as im:
                assert im.format == "JPEG" and im.mode == "RGB" and im.size == (32, 64)


def test_summary_matches_the_files(tiny):
    root, summary = tiny
    counts = {k: len(v) for k, v in _files(root).items()}
    assert summary["train_images"] == counts["bounding_box_train"]
    assert summary["query_images"] == counts["query"]
    assert summary["gallery_images"] == counts["bounding_box_test"]
    assert summary["identities"] == 8


def test_junk_and_distractors_only_in_the_gallery(tiny):
    root, _ = tiny
    files = _files(root)
    pids = {folder: [pid for _, pid, _ in rows] for folder, rows in files.items()}
    assert pids["bounding_box_test"].count(-1) == 3
    assert pids["bounding_box_test"].count(0) == 4
    for folder in ("bounding_box_train", "query"):
        assert all(p >= 1 for p in pids[folder]), folder


def test_market_protocol(tiny):
    root, _ = tiny
    files = _files(root)
    cams: dict[str, dict[int, list[int]]] = {f: defaultdict(list) for f in files}
    for folder, rows in files.items():
        for _, pid, cam in rows:
            if pid > 0:
                cams[folder][pid].append(cam)
    train, query, gallery = cams["bounding_box_train"], cams["query"], cams["bounding_box_test"]
    assert len(train) == 4 and len(query) == 4
    assert set(train).isdisjoint(query) and set(train).isdisjoint(gallery)
    assert set(train) | set(query) == set(range(1, 9))  # pids 0001..0008
    assert set(gallery) == set(query)
    for pid, train_cams in train.items():
        assert len(set(train_cams)) >= 2, f"train id {pid} is seen by one camera only"
    for pid, query_cams in query.items():
        assert len(query_cams) == len(set(query_cams)), f"test id {pid} has two queries in one camera"
        assert set(query_cams) == set(query_cams) | set(gallery[pid]), f"test id {pid} lacks a query in a camera"
        assert len(set(query_cams)) >= 2
        for cam in query_cams:
            assert any(c != cam for c in gallery[pid]), f"query of {pid} in c{cam} has no cross-camera match"


def test_same_seed_same_bytes_other_seed_other_bytes(tiny, tmp_path):
    root, _ = tiny
    again, _ = _generate(tmp_path / "again", TINY)
    assert _md5s(again) == _md5s(root)
    other, _ = _generate(tmp_path / "other", TINY, seed=1)
    assert set(_md5s(other).values()).isdisjoint(_md5s(root).values())


def test_an_image_does_not_depend_on_the_rest_of_the_dataset(tiny, tmp_path):
    """Adding identities changes the split, not the pixels of a file that exists in both datasets."""
    root, _ = tiny
    more = dataclasses.replace(TINY, num_identities=10, num_distractors=0, num_junk=0)
    bigger, _ = _generate(tmp_path / "bigger", more)
    small = {Path(k).name: v for k, v in _md5s(root).items() if not Path(k).name.startswith(("0000", "-1"))}
    large = {Path(k).name: v for k, v in _md5s(bigger).items()}
    shared = set(small) & set(large)
    assert len(shared) >= len(small) // 2
    assert all(small[n] == large[n] for n in shared)


def _channel_means(root: Path) -> dict[str, np.ndarray]:
    return {
        f.name: np.asarray(Image.open(f), dtype=np.float64).reshape(-1, 3).mean(0)
        for f in sorted(root.rglob("*.jpg"))
    }


def test_each_camera_has_its_own_colour_cast(tmp_path):
    """Same files rendered with and without the cast: the colour ratio is one vector per camera."""
    plain = dataclasses.replace(TINY, camera_saturation=0.0, camera_exposure=0.0, camera_blur=0.0, noise_std=0.0)
    base, _ = _generate(tmp_path / "base", plain)
    cast, _ = _generate(tmp_path / "cast", dataclasses.replace(plain, camera_color_cast=0.2))
    before, after = _channel_means(base), _channel_means(cast)
    assert before.keys() == after.keys()
    per_cam: dict[int, list[np.ndarray]] = defaultdict(list)
    for name in before:
        ratio = after[name] / before[name]
        per_cam[int(NAME.match(name).group(2))].append(ratio / ratio.mean())  # chromaticity change only
    centres = {}
    for cam, ratios in per_cam.items():
        ratios = np.stack(ratios)
        centres[cam] = np.median(ratios, axis=0)
        assert np.abs(ratios - centres[cam]).max() < 0.04, f"c{cam}: the cast is not the same on all its images"
    spread = max(np.abs(centres[a] - centres[b]).max() for a in centres for b in centres)
    assert spread > 0.08, "the cameras' colour casts are indistinguishable"
    unchanged, _ = _generate(tmp_path / "unchanged", plain)
    assert _md5s(unchanged) == _md5s(base)


def _person_colours(root: Path, folder: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Median colour of the torso and of the legs, from the image centre where the person stands."""
    feats, pids, cams = [], [], []
    for f in sorted((root / folder).glob("*.jpg")):
        pix = np.asarray(Image.open(f), dtype=np.float64)
        torso, legs = pix[20:30, 13:19].reshape(-1, 3), pix[40:54, 12:20].reshape(-1, 3)
        feats.append(np.concatenate([np.median(torso, 0), np.median(legs, 0)]))
        m = NAME.match(f.name)
        pids.append(int(m.group(1)))
        cams.append(int(m.group(2)))
    return np.stack(feats), np.array(pids), np.array(cams)


def test_identity_is_recognisable_across_cameras(tmp_path):
    """With camera effects off, the clothes alone find the same person in another camera most of the time."""
    root, _ = _generate(tmp_path / "clean", CLEAN)
    fq, pq, cq = _person_colours(root, "query")
    fg, pg, cg = _person_colours(root, "bounding_box_test")
    hits = []
    for f, p, c in zip(fq, pq, cq):
        other = cg != c
        dist = np.linalg.norm(fg[other] - f, axis=1)
        hits.append(pg[other][np.argmin(dist)] == p)
    num_test = CLEAN.num_identities - CLEAN.num_train_identities
    assert np.mean(hits) >= 0.6 > 3.0 / num_test  # far above chance (1 in 20)


def test_small_pools_make_look_alikes(tmp_path):
    """One colour per pool: every torso and every pair of legs has (about) the same colour."""
    varied, _ = _generate(tmp_path / "varied", dataclasses.replace(CLEAN, num_top_colors=16, num_bottom_colors=10))
    alike, _ = _generate(
        tmp_path / "alike",
        dataclasses.replace(CLEAN, num_top_colors=1, num_bottom_colors=1, num_patterns=1, shade_jitter=0.0),
    )

    def spread(root: Path) -> float:
        feats = _person_colours(root, "bounding_box_train")[0]
        return float(np.median(np.linalg.norm(feats[:, None] - feats[None], axis=2)))

    assert spread(alike) < 0.5 * spread(varied)


def test_contact_sheet_is_a_png_of_the_expected_size(tiny, tmp_path):
    root, _ = tiny
    out = tmp_path / "pictures" / "sheet.png"
    contact_sheet(root, out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # 4 test ids x 3 cameras of 32x64 cells: 32 + 3 * (32 + 2) + 2 wide, 14 + 4 * (64 + 2) + 2 high
    with Image.open(out) as im:
        assert im.size == (136, 280)
    contact_sheet(root, out, num_identities=2)
    with Image.open(out) as im:
        assert im.size == (136, 148)
    assert [p.name for p in out.parent.iterdir()] == ["sheet.png"]  # nothing temporary left behind


def test_contact_sheet_needs_a_market_tree(tmp_path):
    with pytest.raises(FileNotFoundError, match="query"):
        contact_sheet(tmp_path, tmp_path / "sheet.png")


def test_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "stale.jpg").write_bytes(b"x")
    with pytest.raises(ValueError, match="not empty"):
        generate_market_like(tmp_path, TINY, 0)
    assert [p.name for p in tmp_path.iterdir()] == ["stale.jpg"]


@pytest.mark.parametrize(
    "data, message",
    [
        ({"num_identities": 8, "num_train_identities": 8}, "s.num_train_identities: 8 leaves no test identity"),
        ({"images_per_camera": [3, 2]}, "s.images_per_camera: [3, 2] is [min, max]"),
        ({"num_top_colors": 17}, "s.num_top_colors: 17 is out of range"),
    ],
)
def test_bad_params_name_the_key(data, message):
    with pytest.raises(ParamsError) as err:
        parse(SyntheticReid, data, "s")
    assert str(err.value).startswith(message)
