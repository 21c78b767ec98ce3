"""Pictures of an evaluation: the CMC curve as DVC plot data and a ranked-list picture per model.

DVC draws the CMC curves itself (``dvc plots show``, one line per model from ``metrics/eval/curves/*.json``), so
only the data is written here. The ranked-list picture is drawn with Pillow, pixel for pixel the same on every
machine: each row is a query (blue frame) followed by its nearest gallery images in rank order, framed green
for a true match (same identity, another camera), red for a wrong identity and grey for junk (same identity in
the query's own camera, or a pid -1 image), which the metrics ignore.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image, ImageDraw

from personlab.io import atomic_path, write_json

__all__ = ["COLORS", "cmc_records", "evenly_spaced", "match_kinds", "ranked_list_picture", "write_cmc"]

COLORS = {"query": (40, 90, 220), "match": (20, 170, 40), "wrong": (215, 30, 30), "junk": (150, 150, 150)}
_BORDER, _GAP, _HEADER = 3, 10, 16


def cmc_records(cmc: Sequence[float], rerank_cmc: Sequence[float] | None = None) -> list[dict]:
    """``[{"rank": 1, "cmc": ..}, ..]`` in percent, the row format DVC's JSON plots read (x=rank, y=cmc)."""
    rows = []
    for k, value in enumerate(cmc):
        row = {"rank": k + 1, "cmc": 100.0 * float(value)}
        if rerank_cmc is not None:
            row["cmc_rerank"] = 100.0 * float(rerank_cmc[k])
        rows.append(row)
    return rows


def write_cmc(path: str | Path, cmc: Sequence[float], rerank_cmc: Sequence[float] | None = None) -> None:
    """Write the CMC curve of one model for DVC's multi-file CMC plot."""
    write_json(path, cmc_records(cmc, rerank_cmc))


def match_kinds(q_pid: int, q_cam: int, g_pids: Sequence[int], g_cams: Sequence[int]) -> list[str]:
    """The protocol's verdict on each listed gallery item: ``match``, ``wrong`` or ``junk``."""
    kinds = []
    for pid, cam in zip(g_pids, g_cams):
        if pid == -1 or (pid == q_pid and cam == q_cam):
            kinds.append("junk")
        else:
            kinds.append("match" if pid == q_pid else "wrong")
    return kinds


def _tile(path: Path, size: tuple[int, int], color: tuple[int, int, int]) -> Image.Image:
    width, height = size
    try:
        with Image.open(path) as img:
            face = img.convert("RGB").resize((width, height), Image.Resampling.BILINEAR)
    except OSError as exc:
        raise ValueError(f"{path}: cannot be read as an image ({exc}); re-run the download stage") from None
    tile = Image.new("RGB", (width + 2 * _BORDER, height + 2 * _BORDER), color)
    tile.paste(face, (_BORDER, _BORDER))
    return tile


def ranked_list_picture(
    path: str | Path,
    root: str | Path,
    rows: Sequence[tuple[str, Sequence[str], Sequence[str]]],
    title: str,
    tile_size: tuple[int, int] = (64, 128),
) -> None:
    """Draw ``rows`` of ``(query path, ranked gallery paths, kinds)`` (paths relative to ``root``) into a PNG.

    ``kinds`` come from :func:`match_kinds`; ``tile_size`` is (width, height) of every thumbnail.
    """
    if not rows:
        raise ValueError("a ranked-list picture needs at least one query row")
    root = Path(root)
    top = max(len(r[1]) for r in rows)
    tw, th = tile_size[0] + 2 * _BORDER, tile_size[1] + 2 * _BORDER
    width = tw * (top + 1) + _GAP + _GAP * 2
    height = _HEADER + len(rows) * (th + _GAP) + _GAP
    canvas = Image.new("RGB", (width, height), (255, 255, 255))
    draw = ImageDraw.Draw(canvas)
    draw.text((_GAP, 2), title, fill=(0, 0, 0))
    for i, (query, ranked, kinds) in enumerate(rows):
        if len(ranked) != len(kinds):
            raise ValueError(f"row {i}: {len(ranked)} gallery images but {len(kinds)} verdicts")
        y = _HEADER + i * (th + _GAP)
        canvas.paste(_tile(root / query, tile_size, COLORS["query"]), (_GAP, y))
        for k, (item, kind) in enumerate(zip(ranked, kinds)):
            if kind not in COLORS or kind == "query":
                raise ValueError(f"row {i}: unknown verdict {kind!r}; expected match, wrong or junk")
            canvas.paste(_tile(root / item, tile_size, COLORS[kind]), (2 * _GAP + tw * (k + 1), y))
    with atomic_path(path) as tmp:
        canvas.save(tmp, format="PNG")


def evenly_spaced(n_items: int, n: int) -> list[int]:
    """``n`` indices spread over ``range(n_items)`` (first and last included): a fixed, seed-free choice."""
    return sorted({int(i) for i in np.linspace(0, n_items - 1, num=min(n, n_items)).round()})
