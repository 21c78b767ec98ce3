"""Stage ``evaluate@<model>``: score one model on the re-ID test split; see docs/evaluation.md.

Reads params sections ``common`` and ``evaluate`` (``untrained`` also reads ``baseline``: the floor is the
baseline architecture with random weights under ``common.seed``). For a re-ID model it writes

* ``eval/<model>/features.h5`` — query and gallery test features with pids, cameras and image paths;
* ``metrics/eval/<model>.json`` — ``rank1 rank5 rank10 mAP mINP`` in percent (and the same under ``rerank``),
  with the protocol recorded as strings;
* ``metrics/eval/curves/<model>.json`` — the CMC curve (DVC plot data);
* ``metrics/pictures/eval/<model>/ranked.png`` — queries and their nearest gallery images.

``voxelpose`` is handed to :func:`personlab.pose.evaluate.evaluate_voxelpose`, which writes the same four
outputs for pose: ``eval/voxelpose/predictions.npz``, ``metrics/eval/voxelpose.json`` (PCP, MPJPE, AP@K,
recall), ``metrics/eval/curves/voxelpose.json`` (AP against the MPJPE threshold) and
``metrics/pictures/eval/voxelpose/`` (predicted and true poses in 3D and on the views).

Usage: ``python stages/evaluate.py <model>`` from the project root, ``<model>`` a folder under ``models/``,
``untrained`` or ``voxelpose``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import torch

from personlab.data.openreid import Record, ReidSplit, SplitError, load_reid_split
from personlab.evaluation.pictures import evenly_spaced, match_kinds, ranked_list_picture, write_cmc
from personlab.evaluation.reid import (
    AP_DEFINITIONS,
    extract_features,
    feature_metrics,
    ranked_gallery,
    rerank_metrics,
)
from personlab.io import atomic_path, write_json
from personlab.models import build, load_model
from personlab.params import EvaluateParams, ParamsError, load_section, section_digest
from personlab.runtime import setup

UNTRAINED = "untrained"
VOXELPOSE = "voxelpose"  # multi-view 3D pose: scored by personlab.pose.evaluate (PCP, MPJPE, AP@K)


def untrained_model(split: ReidSplit, seed: int) -> tuple[torch.nn.Module, dict]:
    """The baseline architecture of ``params.yaml`` with random weights (no ImageNet), seeded: the floor."""
    from personlab.reid_train import reid_meta

    baseline = load_section("baseline")
    m = baseline.model
    kwargs = {"num_classes": split.num_classes, "depth": m.depth, "last_stride": m.last_stride,
              "stem_relu": m.stem_relu, "neck": m.neck, "neck_feat": m.neck_feat}
    torch.manual_seed(seed)
    model = build("bot", kwargs)
    meta = reid_meta("bot", kwargs, split, baseline.input, [model.backbone.out_channels],
                     section_digest(baseline.model), UNTRAINED)
    return model, meta


def _records_arrays(records: list[Record]) -> tuple[list[str], np.ndarray, np.ndarray]:
    return ([r.path for r in records], np.array([r.pid for r in records], dtype=np.int64),
            np.array([r.camid for r in records], dtype=np.int64))


def write_features(path: Path, sets: dict[str, tuple[torch.Tensor, list[Record]]], attrs: dict) -> None:
    """``features.h5``: per set (query, gallery) ``features`` (N, D) float32, ``pids``, ``camids``, ``paths``."""
    with atomic_path(path) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            for key, value in attrs.items():
                f.attrs[key] = value
            for name, (feats, records) in sets.items():
                paths, pids, cams = _records_arrays(records)
                g = f.create_group(name)
                g.create_dataset("features", data=feats.numpy(), track_times=False)
                g.create_dataset("pids", data=pids, track_times=False)
                g.create_dataset("camids", data=cams, track_times=False)
                g.create_dataset("paths", data=np.array(paths, dtype=h5py.string_dtype()), track_times=False)


def _summary(out: dict) -> dict:
    cmc = out["cmc"]
    return {"rank1": 100 * cmc[0], "rank5": 100 * cmc[4], "rank10": 100 * cmc[9], "mAP": 100 * out["mAP"],
            "mINP": 100 * out["mINP"]}


def evaluate(name: str, cfg: EvaluateParams, device: torch.device, split: ReidSplit,
             model: torch.nn.Module, meta: dict) -> None:
    """Features, metrics (plain and re-ranked), CMC data and the ranked-list picture of one model."""
    parts = [int(p) for p in meta["embedding_parts"]]
    weights = [1.0] + [cfg.fine_weight] * (len(parts) - 1)
    interpolation = meta.get("interpolation", "bilinear")
    feats = {}
    for set_name, records in (("query", split.query), ("gallery", split.gallery)):
        feats[set_name] = extract_features(
            model, split.root, [r.path for r in records], meta["input_size"], meta["mean"], meta["std"], parts,
            weights, flip=cfg.flip, batch_size=cfg.batch_size, interpolation=interpolation, device=device)
    protocol = {
        "units": "percent",
        "ap": AP_DEFINITIONS[cfg.ap],
        "flip": "embedding of image + mirrored image, then normalised" if cfg.flip else "off",
        "feature": f"{meta['arch']} test embedding, parts {parts} each L2-normalised, part weights {weights}",
        "distance": {"euclidean": "squared Euclidean", "dot": "negative dot product"}[cfg.distance],
        "junk": "same pid and camera, and pid -1, removed per query; averages over valid queries",
        "input": f"{list(meta['input_size'])} {interpolation}, mean {list(meta['mean'])}, std {list(meta['std'])}",
    }
    write_features(Path("eval") / name / "features.h5", {"query": (feats["query"], split.query),
                                                        "gallery": (feats["gallery"], split.gallery)},
                   {"model": name, "arch": meta["arch"], "embedding_parts": parts, "part_weights": weights,
                    "flip": cfg.flip, "input_size": list(meta["input_size"]), "interpolation": interpolation})

    _, q_pids, q_cams = _records_arrays(split.query)
    _, g_pids, g_cams = _records_arrays(split.gallery)
    labels = (q_pids, g_pids, q_cams, g_cams)
    plain = feature_metrics(feats["query"], feats["gallery"], *labels, distance=cfg.distance,
                            max_rank=cfg.max_rank, ap=cfg.ap, device=device)
    result = {**_summary(plain), "num_queries": plain["num_queries"], "num_valid_queries": plain["num_valid_queries"],
              "protocol": protocol}
    rerank_cmc = None
    if cfg.rerank.enabled:
        rr = cfg.rerank
        reranked = rerank_metrics(feats["query"], feats["gallery"], *labels, k1=rr.k1, k2=rr.k2,
                                  lambda_value=rr.lambda_value, max_rank=cfg.max_rank, ap=cfg.ap, device=device)
        result["rerank"] = _summary(reranked)
        protocol["rerank"] = (f"k-reciprocal (Zhong et al. 2017) k1={rr.k1} k2={rr.k2} lambda={rr.lambda_value} "
                              "on squared Euclidean distances of the same features")
        rerank_cmc = reranked["cmc"]
    write_json(Path("metrics/eval") / f"{name}.json", result)
    write_cmc(Path("metrics/eval/curves") / f"{name}.json", plain["cmc"], rerank_cmc)

    chosen = evenly_spaced(len(split.query), cfg.ranked_queries)
    top = ranked_gallery(feats["query"][chosen], feats["gallery"], min(cfg.ranked_top, len(split.gallery)),
                         cfg.distance)
    rows = []
    for qi, ranked in zip(chosen, top.tolist()):
        q = split.query[qi]
        items = [split.gallery[g] for g in ranked]
        rows.append((q.path, [g.path for g in items],
                     match_kinds(q.pid, q.camid, [g.pid for g in items], [g.camid for g in items])))
    title = (f"{name}: rank-1 {result['rank1']:.1f}%  mAP {result['mAP']:.1f}%   "
             "frames: blue query, green match, red wrong, grey junk")
    ranked_list_picture(Path("metrics/pictures/eval") / name / "ranked.png", split.root, rows, title)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python stages/evaluate.py <model>   (a folder under models/, 'untrained' or 'voxelpose')",
              file=sys.stderr)
        return 2
    name = argv[0]
    try:
        common, cfg = load_section("common"), load_section("evaluate")
        device = setup(common)
        if name == VOXELPOSE:
            from personlab.pose.evaluate import evaluate_voxelpose  # only here: re-ID runs never import pose code

            evaluate_voxelpose(Path("models/voxelpose"), Path("data/splits/pose"), Path("eval/voxelpose"),
                               Path("metrics/eval/voxelpose.json"), Path("metrics/eval/curves/voxelpose.json"),
                               Path("metrics/pictures/eval/voxelpose"), load_section("voxelpose"))
            return 0
        split = load_reid_split()
        if name == UNTRAINED:
            model, meta = untrained_model(split, common.seed)
        else:
            folder = Path("models") / name
            if not (folder / "model.json").is_file():
                raise FileNotFoundError(f"{folder}/model.json not found; train it first (dvc repro {name}) or pass "
                                        "the name of a folder under models/")
            model, meta = load_model(folder)
            missing = [k for k in ("arch", "input_size", "mean", "std", "embedding_parts") if k not in meta]
            if missing:
                raise ValueError(f"{folder}/model.json lacks {', '.join(missing)}; re-run the stage that trains it")
        evaluate(name, cfg, device, split, model, meta)
    except (ParamsError, SplitError, FileNotFoundError, KeyError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
