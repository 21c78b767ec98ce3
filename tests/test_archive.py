"""Verified download (md5, resume over HTTP Range) and safe extraction (hostile and truncated archives)."""

from __future__ import annotations

import hashlib
import http.server
import io
import tarfile
import threading
import zipfile
from pathlib import Path

import pytest

from personlab.data.archive import OFFICIAL_MD5, ArchiveError, expected_md5, extract, fetch

PAYLOAD = bytes(range(256)) * 40  # 10,240 bytes


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


# ----------------------------------------------------------------------------------------------------
# archives built in memory


def make_zip(path: Path, entries: dict[str, bytes], symlinks: dict[str, str] | None = None) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
        for name, target in (symlinks or {}).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o120777 << 16)  # S_IFLNK | rwx: how Info-ZIP stores a symbolic link
            zf.writestr(info, target)
    return path


def make_tar(path: Path, entries: dict[str, bytes], links: dict[str, tuple[bytes, str]] | None = None) -> Path:
    """``links`` maps a name to (tarfile.SYMTYPE or LNKTYPE, target)."""
    with tarfile.open(path, "w:gz") as tf:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, (kind, target) in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, target
            tf.addfile(info)
    return path


GOOD = {"Market-1501-v15.09.15/query/0001_c1s1_000151_00.jpg": b"jpeg bytes", "Market-1501-v15.09.15/readme.txt": b"hi"}


@pytest.mark.parametrize("maker", [make_zip, make_tar])
def test_extracts_a_good_archive(tmp_path, maker):
    archive = maker(tmp_path / "a.archive", GOOD)
    dest = tmp_path / "out"
    extract(archive, dest)
    found = {p.relative_to(dest).as_posix(): p.read_bytes() for p in dest.rglob("*") if p.is_file()}
    assert found == GOOD


def test_inside_symlink_is_kept_as_a_link(tmp_path):
    archive = make_zip(tmp_path / "a.zip", {"d/real.txt": b"x"}, symlinks={"d/alias.txt": "real.txt"})
    extract(archive, tmp_path / "out")
    alias = tmp_path / "out" / "d" / "alias.txt"
    assert alias.is_symlink() and alias.read_bytes() == b"x"


HOSTILE_ZIPS = [
    ({"../x": b"evil"}, None, "'../x'", "climbs out"),
    ({"ok/../../x": b"evil"}, None, "'ok/../../x'", "climbs out"),
    ({"/ABS": b"evil"}, None, "'/ABS'", "absolute path"),
    ({"ok.txt": b"x"}, {"link": "../../x"}, "'link'", "points outside"),
    ({"ok.txt": b"x"}, {"link": "/etc/passwd"}, "'link'", "absolute link target"),
]


@pytest.mark.parametrize("entries, symlinks, entry, why", HOSTILE_ZIPS)
def test_hostile_zip_is_refused_before_writing(tmp_path, entries, symlinks, entry, why):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    entries = {k.replace("/ABS", str(tmp_path / "abs_target")): v for k, v in entries.items()}
    entry = entry.replace("/ABS", str(tmp_path / "abs_target"))
    archive = make_zip(tmp_path / "evil.zip", entries, symlinks)
    with pytest.raises(ArchiveError) as err:
        extract(archive, work / "dest")
    assert entry in str(err.value) and why in str(err.value)
    assert not (work / "dest").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "evil.zip"]  # nothing anywhere else


HOSTILE_TARS = [
    ({"../x": b"evil"}, None, "'../x'", "climbs out"),
    ({"/ABS": b"evil"}, None, "'/ABS'", "absolute path"),
    ({"ok.txt": b"x"}, {"sub/link": (tarfile.SYMTYPE, "../../x")}, "'sub/link'", "points outside"),
    ({"ok.txt": b"x"}, {"link": (tarfile.SYMTYPE, "/etc")}, "'link'", "absolute link target"),
    ({"ok.txt": b"x"}, {"hard": (tarfile.LNKTYPE, "../x")}, "hard link 'hard'", "points outside"),
    ({"ok.txt": b"x"}, {"fifo": (tarfile.FIFOTYPE, "")}, "'fifo'", "device or FIFO"),
]


@pytest.mark.parametrize("entries, links, entry, why", HOSTILE_TARS)
def test_hostile_tar_is_refused_before_writing(tmp_path, entries, links, entry, why):
    work = tmp_path / "a" / "b"
    work.mkdir(parents=True)
    entries = {k.replace("/ABS", str(tmp_path / "abs_target")): v for k, v in entries.items()}
    entry = entry.replace("/ABS", str(tmp_path / "abs_target"))
    archive = make_tar(tmp_path / "evil.tar.gz", entries, links)
    with pytest.raises(ArchiveError) as err:
        extract(archive, work / "dest")
    assert entry in str(err.value) and why in str(err.value)
    assert not (work / "dest").exists()
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["a", "b", "evil.tar.gz"]


def test_hostile_entry_after_good_ones_leaves_existing_target_untouched(tmp_path):
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "keep.txt").write_text("previous run")
    archive = make_tar(tmp_path / "evil.tar.gz", {"a.txt": b"a", "b.txt": b"b", "../x": b"evil"})
    with pytest.raises(ArchiveError):
        extract(archive, dest)
    assert [p.name for p in dest.iterdir()] == ["keep.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "evil.tar.gz"]  # no temp folder left


@pytest.mark.parametrize("maker, suffix", [(make_zip, ".zip"), (make_tar, ".tar.gz")])
def test_truncated_archive_is_refused(tmp_path, maker, suffix):
    big = {f"d/{i}.bin": bytes((i * 7 + j) % 251 for j in range(3000)) for i in range(8)}
    whole = maker(tmp_path / f"whole{suffix}", big).read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(whole[: len(whole) * 2 // 3])
    with pytest.raises(ArchiveError, match="truncated|corrupt"):
        extract(cut, tmp_path / "dest")
    assert not (tmp_path / "dest").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([f"whole{suffix}", f"cut{suffix}"])


def test_corrupt_member_is_refused(tmp_path):
    whole = bytearray(make_zip(tmp_path / "a.zip", {"x.bin": b"A" * 5000}).read_bytes())
    start = whole.index(b"x.bin") + len("x.bin")  # first bytes of the compressed data after the local header
    whole[start + 2] ^= 0xFF
    (tmp_path / "a.zip").write_bytes(bytes(whole))
    with pytest.raises(ArchiveError, match="truncated or corrupt"):
        extract(tmp_path / "a.zip", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


# ----------------------------------------------------------------------------------------------------
# md5


def test_expected_md5_defaults_and_errors():
    assert expected_md5("market1501", "") == "65005ab7d12ec1c44de4eeafe813e68a"
    assert expected_md5("dukemtmc", "") == "2f93496f9b516d1ee5ef51c1d5e7d601"
    assert expected_md5("cuhk03", "") == "728939e58ad9f0ff53e521857dd8fb43"
    assert expected_md5("market1501", "ABCDEF0123456789ABCDEF0123456789") == "abcdef0123456789abcdef0123456789"
    with pytest.raises(ArchiveError, match=r"msmt17 has no published checksum.*md5sum.*data\.reid\.md5"):
        expected_md5("msmt17", "")
    with pytest.raises(ArchiveError, match="not an md5"):
        expected_md5("market1501", "1234")
    assert set(OFFICIAL_MD5) == {"market1501", "dukemtmc", "cuhk03"}


def test_local_archive_with_wrong_md5_is_refused_and_kept(tmp_path):
    archive = tmp_path / "Market.zip"
    archive.write_bytes(PAYLOAD)
    assert fetch(str(archive), tmp_path / "dl", md5=md5(PAYLOAD)) == archive
    with pytest.raises(ArchiveError) as err:
        fetch(str(archive), tmp_path / "dl", md5="0" * 32)
    assert f"md5 is {md5(PAYLOAD)}, expected {'0' * 32}" in str(err.value)
    assert archive.read_bytes() == PAYLOAD  # the user's own file is never touched


def test_missing_local_archive(tmp_path):
    with pytest.raises(ArchiveError, match=r"file not found; download it and set data\.reid\.archive"):
        fetch(str(tmp_path / "nope.zip"), tmp_path / "dl", md5=None)
    with pytest.raises(ArchiveError, match="empty"):
        fetch("", tmp_path / "dl")


# ----------------------------------------------------------------------------------------------------
# HTTP download with resume


class Server:
    """A local HTTP server for PAYLOAD with byte-range support; it can cut the first response short and can
    ignore ranges, and it records the Range header of every request."""

    def __init__(self, cut_first: int | None = None, honour_range: bool = True):
        self.ranges: list[str | None] = []
        self.cut_first, self.honour_range = cut_first, honour_range
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):  # keep the test output clean
                pass

            def do_GET(self):
                if self.path != "/files/Market-1501-v15.09.15.zip":
                    self.send_error(404)
                    return
                header = self.headers.get("Range")
                owner.ranges.append(header)
                start = 0
                if header and owner.honour_range:
                    start = int(header.removeprefix("bytes=").rstrip("-"))
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(PAYLOAD) - 1}/{len(PAYLOAD)}")
                else:
                    self.send_response(200)
                body = PAYLOAD[start:]
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if owner.cut_first is not None:
                    body, owner.cut_first = body[: owner.cut_first], None
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/files/Market-1501-v15.09.15.zip"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "Server":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_interrupted_download_resumes_with_a_range_request(tmp_path):
    dl = tmp_path / "dl"
    with Server(cut_first=3000) as server:
        with pytest.raises(ArchiveError, match="stopped after 3000 of 10240 bytes; run the stage again to resume"):
            fetch(server.url, dl, md5=md5(PAYLOAD), progress=False, timeout=5)
        part = dl / "Market-1501-v15.09.15.zip.part"
        assert part.read_bytes() == PAYLOAD[:3000]
        assert not (dl / "Market-1501-v15.09.15.zip").exists()
        path = fetch(server.url, dl, md5=md5(PAYLOAD), progress=False, timeout=5)
    assert server.ranges == [None, "bytes=3000-"]
    assert path == dl / "Market-1501-v15.09.15.zip" and path.read_bytes() == PAYLOAD
    assert not part.exists()


def test_server_without_range_support_restarts_the_file(tmp_path):
    dl = tmp_path / "dl"
    dl.mkdir()
    (dl / "Market-1501-v15.09.15.zip.part").write_bytes(b"stale bytes from another file")
    with Server(honour_range=False) as server:
        path = fetch(server.url, dl, md5=md5(PAYLOAD), progress=False, timeout=5)
    assert server.ranges == ["bytes=29-"]
    assert path.read_bytes() == PAYLOAD


def test_downloaded_file_with_wrong_md5_is_named_and_kept(tmp_path):
    dl = tmp_path / "dl"
    with Server() as server:
        with pytest.raises(ArchiveError) as err:
            fetch(server.url, dl, md5="f" * 32, progress=False, timeout=5)
        assert f"delete {dl / 'Market-1501-v15.09.15.zip'} to download it again" in str(err.value)
        assert fetch(server.url, dl, md5=md5(PAYLOAD), progress=False, timeout=5).read_bytes() == PAYLOAD
    assert server.ranges == [None]  # the corrected md5 accepted the kept file without a second download


def test_http_error_names_the_url(tmp_path):
    with Server() as server:
        url = server.url.replace("files/", "missing/")
        with pytest.raises(ArchiveError, match=r"HTTP 404.*data\.reid\.archive"):
            fetch(url, tmp_path / "dl", md5=None, progress=False, timeout=5)
