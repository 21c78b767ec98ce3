"""Verified downloads and safe extraction of dataset archives.

A dataset archive comes from a local path or an http(s) URL. Downloads resume: bytes land in
``<dest>.part`` and a second run asks the server for the rest with a ``Range`` request; the finished file is
renamed into place, so ``<dest>`` is always complete. The md5 is checked before anything is extracted.

Extraction refuses hostile archives before writing a single file: an absolute entry, an entry that climbs
out with ``..``, a symbolic or hard link that points outside the target, or a device/FIFO entry. The archive
is extracted into a temporary folder that is renamed onto the target only when every entry is written, so a
truncated or corrupt archive leaves nothing behind.
"""

from __future__ import annotations

import gzip
import lzma
import os
import posixpath
import shutil
import stat
import tarfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path

from tqdm import tqdm

from personlab.io import atomic_dir, md5sum

__all__ = ["OFFICIAL_MD5", "ArchiveError", "expected_md5", "extract", "fetch", "verify_md5"]

# md5 of the official archives as published by open-reid (see docs/data.md); MSMT17 is shared by request and
# has no public checksum, so its md5 must come from params.
OFFICIAL_MD5 = {
    "market1501": "65005ab7d12ec1c44de4eeafe813e68a",
    "dukemtmc": "2f93496f9b516d1ee5ef51c1d5e7d601",
    "cuhk03": "728939e58ad9f0ff53e521857dd8fb43",
}

_CHUNK = 1 << 20


class ArchiveError(ValueError):
    """An archive that is missing, fails its checksum, is truncated or corrupt, or tries to escape."""


def expected_md5(source: str, md5: str) -> str:
    """The md5 to check: the one set in params, else the official one for ``source``."""
    if md5:
        if len(md5) != 32 or any(c not in "0123456789abcdef" for c in md5.lower()):
            raise ArchiveError(f"data.reid.md5: {md5!r} is not an md5 (32 hex digits)")
        return md5.lower()
    if source in OFFICIAL_MD5:
        return OFFICIAL_MD5[source]
    raise ArchiveError(
        f"data.reid.md5: {source} has no published checksum; compute it once with `md5sum <archive>` on the "
        "copy you received and set data.reid.md5 to it in params.yaml"
    )


def verify_md5(path: Path, expected: str, fix: str = "download it again") -> None:
    """Raise :class:`ArchiveError` unless ``path`` has md5 ``expected``; ``fix`` says what to do then."""
    actual = md5sum(path)
    if actual != expected.lower():
        raise ArchiveError(
            f"{path}: md5 is {actual}, expected {expected}; the file is incomplete, corrupt or a different "
            f"release: {fix}, or set data.reid.md5 if you deliberately use another release"
        )


def _is_url(source: str) -> bool:
    return urllib.parse.urlparse(source).scheme in ("http", "https")


def fetch(
    source: str,
    downloads_dir: str | Path,
    md5: str | None = None,
    param: str = "data.reid.archive",
    progress: bool = True,
    timeout: float = 60.0,
) -> Path:
    """Return a local path to the archive named by ``source`` (a local path or an http(s) URL), its md5
    checked against ``md5`` (``None`` skips the check, for small auxiliary files without a published md5).

    A URL is downloaded into ``downloads_dir`` under its file name; an interrupted download resumes from
    ``<name>.part`` on the next call. A finished download whose md5 is wrong is kept (the md5 in params may be
    the wrong one) and the error says how to fetch it afresh. A local path is used in place and never
    modified. ``param`` is the params key that named ``source``; errors quote it.
    """
    if not source:
        raise ArchiveError(f"{param}: empty; set it to the file's local path or http(s) URL")
    if not _is_url(source):
        path = Path(source).expanduser()
        if not path.is_file():
            raise ArchiveError(
                f"{source}: file not found; download it and set {param} to its path (relative paths are "
                "relative to the project root)"
            )
        if md5 is not None:
            verify_md5(path, md5)
        return path
    name = posixpath.basename(urllib.parse.urlparse(source).path)
    if not name:
        raise ArchiveError(f"{source}: the URL names no file; point {param} at the file itself")
    dest = Path(downloads_dir) / name
    if not dest.is_file():
        dest.parent.mkdir(parents=True, exist_ok=True)
        part = dest.with_name(dest.name + ".part")
        _download(source, part, param, progress, timeout)
        os.replace(part, dest)
    if md5 is not None:
        verify_md5(dest, md5, fix=f"delete {dest} to download it again")
    return dest


def _download(url: str, part: Path, param: str, progress: bool, timeout: float) -> None:
    """Fill ``part`` with the bytes of ``url``, continuing from its current size when the server allows."""
    have = part.stat().st_size if part.is_file() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # the part is at least as long as the file: start over
            part.unlink()
            return _download(url, part, param, progress, timeout)
        raise ArchiveError(f"{url}: HTTP {exc.code} {exc.reason}; check {param}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ArchiveError(
            f"{url}: cannot connect ({exc}); check the URL and network, or download the archive by hand and "
            f"set {param} to its local path"
        ) from None
    with response:
        resumed = response.status == 206
        if not resumed:
            have = 0  # the server ignored the range: it sends the whole file
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        received = have
        with open(part, "ab" if resumed else "wb") as f, tqdm(
            total=total, initial=have, unit="B", unit_scale=True, desc=part.name[: -len(".part")],
            disable=not progress,
        ) as bar:
            try:
                while block := response.read(_CHUNK):
                    f.write(block)
                    received += len(block)
                    bar.update(len(block))
            except (OSError, urllib.error.URLError) as exc:
                raise ArchiveError(
                    f"{url}: download interrupted after {received} bytes ({exc}); run the stage again to resume"
                ) from None
    if total is not None and received != total:
        raise ArchiveError(
            f"{url}: download stopped after {received} of {total} bytes; run the stage again to resume"
        )


def _inside(name: str) -> bool:
    """Whether archive-relative ``name`` stays inside the extraction root once normalised."""
    normal = posixpath.normpath(name)
    return normal != ".." and not normal.startswith("../")


def _check_name(archive: Path, name: str) -> None:
    if name.startswith(("/", "\\")) or (len(name) > 1 and name[1] == ":"):
        raise ArchiveError(f"{archive}: refusing entry {name!r}: absolute path; the archive is not a dataset release")
    if ".." in name.replace("\\", "/").split("/"):
        raise ArchiveError(
            f"{archive}: refusing entry {name!r}: it climbs out of the target with '..'; the archive is not a "
            "dataset release"
        )


def _check_link(archive: Path, name: str, target: str, hard: bool) -> None:
    kind = "hard link" if hard else "symbolic link"
    if target.startswith("/") or (len(target) > 1 and target[1] == ":"):
        raise ArchiveError(f"{archive}: refusing {kind} {name!r} -> {target!r}: absolute link target")
    # tar hard links name a member (root-relative); symbolic links are relative to the entry's folder
    resolved = target if hard else posixpath.join(posixpath.dirname(name), target)
    if not _inside(resolved):
        raise ArchiveError(f"{archive}: refusing {kind} {name!r} -> {target!r}: it points outside the target")


def _zip_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _check_zip(archive: Path, zf: zipfile.ZipFile) -> None:
    for info in zf.infolist():
        _check_name(archive, info.filename)
        if _zip_symlink(info):
            _check_link(archive, info.filename, zf.read(info).decode("utf-8", "replace"), hard=False)


def _check_tar(archive: Path, tf: tarfile.TarFile) -> list[tarfile.TarInfo]:
    members = tf.getmembers()  # reads the whole index: a truncated archive fails here, before any write
    for m in members:
        _check_name(archive, m.name)
        if m.issym() or m.islnk():
            _check_link(archive, m.name, m.linkname, hard=m.islnk())
        elif not (m.isfile() or m.isdir()):
            raise ArchiveError(
                f"{archive}: refusing entry {m.name!r}: device or FIFO entries have no place in a dataset"
            )
    return members


def _extract_zip(archive: Path, into: Path) -> None:
    root = os.path.realpath(into)
    with zipfile.ZipFile(archive) as zf:
        _check_zip(archive, zf)
        for info in zf.infolist():
            target = into / info.filename
            # links were checked one by one; this catches a chain of them that resolves outside the target
            if os.path.commonpath([root, os.path.realpath(target.parent)]) != root:
                raise ArchiveError(f"{archive}: refusing entry {info.filename!r}: it resolves outside the target")
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            if _zip_symlink(info):
                os.symlink(zf.read(info).decode(), target)
                continue
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)


def _extract_tar(archive: Path, into: Path) -> None:
    with tarfile.open(archive) as tf:
        members = _check_tar(archive, tf)
        # the "data" filter repeats the checks above inside tarfile itself (defence in depth)
        tf.extractall(into, members=members, filter="data")


def extract(archive: str | Path, dest: str | Path) -> None:
    """Extract a ``.zip``, ``.tar``, ``.tar.gz``/``.tgz`` (or ``.tar.bz2``/``.tar.xz``) archive onto ``dest``.

    ``dest`` is replaced whole, and only once every entry is written; on any error it is left as it was.
    """
    archive = Path(archive)
    if not archive.is_file():
        raise ArchiveError(f"{archive}: archive not found")
    if zipfile.is_zipfile(archive):
        extractor = _extract_zip
    elif tarfile.is_tarfile(archive):
        extractor = _extract_tar
    else:
        raise ArchiveError(
            f"{archive}: truncated or corrupt archive (no readable zip or tar index); download it again"
        )
    try:
        with atomic_dir(dest) as tmp:
            extractor(archive, tmp)
    except ArchiveError:
        raise
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, lzma.LZMAError) as exc:
        raise ArchiveError(f"{archive}: truncated or corrupt archive ({exc}); download it again") from None
