"""The results table of the README, generated from the metrics files so it is never typed by hand.

``python -m personlab.report`` reads ``metrics/eval/*.json`` and ``metrics/train/*.json`` and rewrites the
part of ``README.md`` between ``<!-- results:start -->`` and ``<!-- results:end -->``; ``--check`` only
reports whether the README is up to date (exit 1 if not).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from personlab.io import atomic_path, read_json

__all__ = ["REID_ORDER", "render", "update_readme"]

START, END = "<!-- results:start -->", "<!-- results:end -->"
REID_ORDER = ("untrained", "teacher", "baseline", "relation", "dgnet")


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _train_time(metrics_dir: Path, stage: str) -> str:
    path = metrics_dir / "train" / f"{stage}.json"
    return _fmt(read_json(path).get("wall_s"), 0) if path.is_file() else "–"


def render(metrics_dir: Path = Path("metrics")) -> str:
    """Markdown tables of every evaluated model: re-ID rank-k/mAP/mINP (and re-ranked), pose PCP/MPJPE/AP."""
    eval_dir = metrics_dir / "eval"
    reid = [name for name in REID_ORDER if (eval_dir / f"{name}.json").is_file()]
    reid += sorted(p.stem for p in eval_dir.glob("*.json") if p.stem not in REID_ORDER and p.stem != "voxelpose")
    lines = []
    if reid:
        lines += [
            "| re-ID model | rank-1 | rank-5 | mAP | mINP | re-ranked rank-1 | re-ranked mAP | train s |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for name in reid:
            m = read_json(eval_dir / f"{name}.json")
            rr = m.get("rerank", {})
            lines.append(
                f"| {name} | {_fmt(m['rank1'])} | {_fmt(m['rank5'])} | {_fmt(m['mAP'])} | {_fmt(m['mINP'])} | "
                f"{_fmt(rr.get('rank1'))} | {_fmt(rr.get('mAP'))} | {_train_time(metrics_dir, name)} |"
            )
        protocol = read_json(eval_dir / f"{reid[0]}.json").get("protocol", {})
        lines += ["", f"Percent; AP: {protocol.get('ap', '?')}; distance: {protocol.get('distance', '?')}; "
                      f"flip: {protocol.get('flip', '?')}."]
    pose_path = eval_dir / "voxelpose.json"
    if pose_path.is_file():
        m = read_json(pose_path)
        lines += [
            "",
            "| pose model | PCP avg | MPJPE mm | AP25 | AP50 | AP100 | recall@500 | train s |",
            "|---|---|---|---|---|---|---|---|",
            f"| voxelpose | {_fmt(m['pcp_avg'])} | {_fmt(m['mpjpe_mm'])} | {_fmt(m['ap25'], 3)} | "
            f"{_fmt(m['ap50'], 3)} | {_fmt(m['ap100'], 3)} | {_fmt(m['recall500'], 3)} | "
            f"{_train_time(metrics_dir, 'voxelpose')} |",
            f"| triangulated detections | {_fmt(m.get('baseline.pcp_avg'))} | {_fmt(m.get('baseline.mpjpe_mm'))} | "
            f"{_fmt(m.get('baseline.ap25'), 3)} | {_fmt(m.get('baseline.ap50'), 3)} | "
            f"{_fmt(m.get('baseline.ap100'), 3)} | {_fmt(m.get('baseline.recall500'), 3)} | – |",
        ]
    return "\n".join(lines)


def update_readme(readme: Path, table: str) -> bool:
    """Put ``table`` between the markers of ``readme``; return whether the file changed."""
    text = readme.read_text()
    if START not in text or END not in text:
        raise ValueError(f"{readme}: the markers {START} and {END} are missing; add them where the table goes")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = f"{head}{START}\n{table}\n{END}{tail}"
    if new == text:
        return False
    with atomic_path(readme) as tmp:
        tmp.write_text(new)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m personlab.report", description=__doc__.split("\n\n")[0])
    parser.add_argument("--readme", type=Path, default=Path("README.md"))
    parser.add_argument("--metrics", type=Path, default=Path("metrics"))
    parser.add_argument("--check", action="store_true", help="only check that the README table is current")
    args = parser.parse_args(argv)
    table = render(args.metrics)
    if args.check:
        current = args.readme.read_text()
        ok = f"{START}\n{table}\n{END}" in current
        print("README results are up to date" if ok else "README results are stale: run python -m personlab.report")
        return 0 if ok else 1
    changed = update_readme(args.readme, table)
    print(f"{args.readme}: {'updated' if changed else 'already up to date'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
