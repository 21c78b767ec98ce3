"""Speed and memory of the re-ID evaluator on a Market-1501-sized problem, side by side with direct versions.

Problem (random, deterministic from --seed): 3368 queries x 15913 gallery images, 751 identities, 6 cameras,
2048-d unit features drawn around one random centre per identity (noise set so that mAP lands mid-range,
where the ranks of the true matches spread over the gallery). The gallery holds 12115 identity images, 2798
distractors (pid 0) and 1000 junk images (pid -1).

Measured, each in a fresh process (so one measurement's freed memory cannot hide another's peak):

* ``features->metrics``: :func:`personlab.evaluation.reid.feature_metrics` (blocked distances + ranking),
  against the usual route: the whole Q x G distance matrix, then the per-query evaluator;
* ``distmat->metrics``: :func:`rank_metrics` on a precomputed float32 Q x G matrix, against the per-query
  evaluator written here from the protocol (stable argsort of the row, drop junk, cumulative hits: the
  algorithm of the peers' Python evaluators);
* ``rerank``: :func:`rerank_metrics` against a direct dense numpy k-reciprocal re-ranking (the structure of
  the public implementations: N x N distances, a full argsort, dense V, per-row loops), float32 throughout,
  side by side at each of ``--fractions`` of the problem (default half and full size; the dense reference
  needs ~6 GB and about a minute at full size). Without the full size among the fractions, its full-size
  time and memory are extrapolated from the largest fraction by its O(N^2) scaling.

Memory = the process's resident-set high-water mark during the call minus its resident set just before it
(Linux ``/proc/self/status`` VmHWM, reset through ``/proc/self/clear_refs``), so numpy and torch allocations
are both counted; inputs already loaded are not. Times are wall-clock seconds on whatever else the machine is
running: compare the ratios, which are measured back to back.

Usage: ``python benchmarks/eval_speed.py [--out metrics/bench/eval.json] [--fractions 0.5 1.0]``
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NUM_Q, NUM_G, NUM_IDS, NUM_CAMS, DIM = 3368, 15913, 751, 6, 2048
NUM_DISTRACTORS, NUM_JUNK = 2798, 1000


# ------------------------------------------------------------------------------------------ the problem


def make_problem(seed: int, noise: float) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((NUM_IDS + 1, DIM), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    q_pids = rng.integers(1, NUM_IDS + 1, NUM_Q)
    num_id = NUM_G - NUM_DISTRACTORS - NUM_JUNK
    g_pids = np.concatenate([rng.integers(1, NUM_IDS + 1, num_id), np.zeros(NUM_DISTRACTORS, np.int64),
                             -np.ones(NUM_JUNK, np.int64)])
    g_pids = g_pids[rng.permutation(NUM_G)]
    q_cams, g_cams = rng.integers(0, NUM_CAMS, NUM_Q), rng.integers(0, NUM_CAMS, NUM_G)

    def features(pids: np.ndarray) -> np.ndarray:
        own = np.where(pids > 0, pids, 0)
        f = centres[own] * (pids > 0)[:, None] + noise / np.sqrt(DIM) * rng.standard_normal((len(pids), DIM),
                                                                                          dtype=np.float32)
        return (f / np.linalg.norm(f, axis=1, keepdims=True)).astype(np.float32)

    return {"qf": features(q_pids), "gf": features(g_pids), "q_pids": q_pids, "g_pids": g_pids,
            "q_cams": q_cams, "g_cams": g_cams}


def subset(p: dict[str, np.ndarray], fraction: float) -> dict[str, np.ndarray]:
    nq, ng = int(round(NUM_Q * fraction)), int(round(NUM_G * fraction))
    return {"qf": p["qf"][:nq], "gf": p["gf"][:ng], "q_pids": p["q_pids"][:nq], "g_pids": p["g_pids"][:ng],
            "q_cams": p["q_cams"][:nq], "g_cams": p["g_cams"][:ng]}


# ------------------------------------------------------------------------------------------ references


def reference_metrics(distmat: np.ndarray, q_pids, g_pids, q_cams, g_cams, max_rank: int = 50) -> dict:
    """The per-query evaluator: for each query a stable argsort of its row, then masks and cumulative sums."""
    num_q = distmat.shape[0]
    cmc_sum, ap_sum, inp_sum, valid = np.zeros(max_rank), 0.0, 0.0, 0
    for i in range(num_q):
        order = np.argsort(distmat[i], kind="stable")
        pids, cams = g_pids[order], g_cams[order]
        keep = (pids != -1) & ~((pids == q_pids[i]) & (cams == q_cams[i]))
        hits = (pids[keep] == q_pids[i]).astype(np.int64)
        if not hits.any():
            continue
        valid += 1
        cum = hits.cumsum()
        first = int(np.argmax(hits))
        if first < max_rank:
            cmc_sum[first:] += 1
        positions = np.nonzero(hits)[0] + 1
        ap_sum += float(np.mean(cum[positions - 1] / positions))
        inp_sum += hits.sum() / positions[-1]
    return {"cmc": cmc_sum / valid, "mAP": ap_sum / valid, "mINP": inp_sum / valid, "num_valid_queries": valid}


def reference_rerank(qf: np.ndarray, gf: np.ndarray, k1: int = 20, k2: int = 6, lam: float = 0.3) -> np.ndarray:
    """Dense k-reciprocal re-ranking in numpy, float32, structured like the public implementations."""
    x = np.concatenate([qf, gf]).astype(np.float32)
    n, nq = len(x), len(qf)
    sq = (x * x).sum(1)
    d = sq[:, None] + sq[None, :] - 2 * (x @ x.T)
    d /= d.max(axis=1, keepdims=True)
    rank = np.argsort(d, axis=1).astype(np.int32)
    half = int(round(k1 / 2))
    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        forward = rank[i, : k1 + 1]
        recip = forward[(rank[forward, : k1 + 1] == i).any(1)]
        expanded = recip
        for c in recip:
            c_forward = rank[c, : half + 1]
            c_recip = c_forward[(rank[c_forward, : half + 1] == c).any(1)]
            if len(np.intersect1d(c_recip, recip)) > 2 / 3 * len(c_recip):
                expanded = np.append(expanded, c_recip)
        expanded = np.unique(expanded)
        w = np.exp(-d[i, expanded])
        v[i, expanded] = w / w.sum()
    if k2 > 1:
        v_qe = np.zeros_like(v)
        for i in range(n):
            v_qe[i] = v[rank[i, :k2]].mean(0)
        v = v_qe
    inverted = [np.nonzero(v[:, j])[0] for j in range(n)]
    jaccard = np.zeros((nq, n - nq), dtype=np.float32)
    for i in range(nq):
        overlap = np.zeros(n, dtype=np.float32)
        for j in np.nonzero(v[i])[0]:
            rows = inverted[j]
            overlap[rows] += np.minimum(v[i, j], v[rows, j])
        jaccard[i] = (1 - overlap / (2 - overlap))[nq:]
    return (1 - lam) * jaccard + lam * d[:nq, nq:]


# ------------------------------------------------------------------------------------------ one measurement


def _status(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"{field} not in /proc/self/status")


def _measure(fn) -> tuple[object, float, float]:
    Path("/proc/self/clear_refs").write_text("5")  # reset the RSS high-water mark to the current RSS
    before = _status("VmRSS")
    start = time.perf_counter()
    out = fn()
    seconds = time.perf_counter() - start
    return out, seconds, (_status("VmHWM") - before) / 2**20


def child(task: str, data_dir: str, fraction: float) -> dict:
    """Run one task in this (fresh) process and return its result, time and extra memory."""
    import torch

    from personlab.evaluation.reid import feature_metrics, pairwise_distances, rank_metrics, rerank_metrics

    p = {k: np.load(Path(data_dir) / f"{k}.npy") for k in ("qf", "gf", "q_pids", "g_pids", "q_cams", "g_cams")}
    if fraction < 1:
        p = subset(p, fraction)
    labels = (p["q_pids"], p["g_pids"], p["q_cams"], p["g_cams"])
    if task.startswith("distmat"):
        distmat = np.load(Path(data_dir) / "distmat.npy", mmap_mode=None)
    if task == "features_ours":
        out, s, mb = _measure(lambda: feature_metrics(p["qf"], p["gf"], *labels))
    elif task == "features_reference":
        def full_then_loop():  # the same distance formula, as one Q x G matrix
            return reference_metrics(pairwise_distances(torch.from_numpy(p["qf"]), torch.from_numpy(p["gf"])).numpy(),
                                     *labels)
        out, s, mb = _measure(full_then_loop)
    elif task == "distmat_ours":
        out, s, mb = _measure(lambda: rank_metrics(distmat, *labels))
    elif task == "distmat_reference":
        out, s, mb = _measure(lambda: reference_metrics(distmat, *labels))
    elif task == "rerank_ours":
        out, s, mb = _measure(lambda: rerank_metrics(p["qf"], p["gf"], *labels))
    elif task == "rerank_reference":
        def dense_then_loop():
            return reference_metrics(reference_rerank(p["qf"], p["gf"]), *labels)
        out, s, mb = _measure(dense_then_loop)
    else:
        raise ValueError(f"unknown task {task}")
    return {"seconds": s, "extra_mb": mb, "mAP": float(out["mAP"]), "mINP": float(out["mINP"]),
            "cmc": [float(c) for c in out["cmc"][:20]], "num_valid_queries": int(out["num_valid_queries"]),
            "torch_threads": torch.get_num_threads()}


def run_child(task: str, data_dir: str, fraction: float = 1.0) -> dict:
    cmd = [sys.executable, __file__, "--child", task, "--data", data_dir, "--fraction", str(fraction)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"{task} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {task:20s} fraction {fraction:<5} {result['seconds']:8.2f} s  {result['extra_mb']:8.1f} MB  "
          f"mAP {result['mAP']:.6f}", file=sys.stderr)
    return result


def _same(a: dict, b: dict, tol: float) -> float:
    """Largest difference between two results' mAP, mINP and CMC."""
    diffs = [abs(a["mAP"] - b["mAP"]), abs(a["mINP"] - b["mINP"])]
    diffs += [abs(x - y) for x, y in zip(a["cmc"], b["cmc"])]
    worst = max(diffs)
    if worst > tol:
        print(f"  WARNING: results differ by {worst:.2e} (> {tol})", file=sys.stderr)
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="metrics/bench/eval.json")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=3.5, help="feature noise relative to the identity centre")
    parser.add_argument("--fractions", type=float, nargs="+", default=[0.5, 1.0],
                        help="problem fractions for the side-by-side re-ranking runs (ascending; the last one is "
                             "extrapolated to full size when below 1)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--fraction", type=float, default=1.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.data, args.fraction)))
        return

    from personlab.io import write_json

    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="eval_bench_") as tmp:
        p = make_problem(args.seed, args.noise)
        for k, v in p.items():
            np.save(Path(tmp) / f"{k}.npy", v)
        d = (2 - 2 * p["qf"] @ p["gf"].T).astype(np.float32)  # squared Euclidean of unit features
        np.save(Path(tmp) / "distmat.npy", d)
        del d
        print("metrics:", file=sys.stderr)
        feat_ours, feat_ref = run_child("features_ours", tmp), run_child("features_reference", tmp)
        dist_ours, dist_ref = run_child("distmat_ours", tmp), run_child("distmat_reference", tmp)
        print("re-ranking:", file=sys.stderr)
        rr_pairs = []
        for fraction in args.fractions:
            ours = run_child("rerank_ours", tmp, fraction)
            rr_pairs.append((fraction, ours, run_child("rerank_reference", tmp, fraction)))
        rr_ours_full = rr_pairs[-1][1] if args.fractions[-1] >= 1 else run_child("rerank_ours", tmp)
    load_after = os.getloadavg()

    (f0, _, r0), (f1, _, r1) = rr_pairs[0], rr_pairs[-1]
    n0, n1 = f0 * (NUM_Q + NUM_G), f1 * (NUM_Q + NUM_G)
    exponent_time = float(np.log(r1["seconds"] / r0["seconds"]) / np.log(n1 / n0)) if len(rr_pairs) > 1 else None
    scale = (1.0 / f1) ** 2
    ref_full_s, ref_full_mb = r1["seconds"] * scale, r1["extra_mb"] * scale
    report = {
        "problem": {"queries": NUM_Q, "gallery": NUM_G, "identities": NUM_IDS, "cameras": NUM_CAMS, "dim": DIM,
                    "distractors": NUM_DISTRACTORS, "junk": NUM_JUNK, "noise": args.noise, "seed": args.seed,
                    "mAP": feat_ours["mAP"]},
        "machine": {"cpus": os.cpu_count(), "torch_threads": feat_ours["torch_threads"],
                    "python": platform.python_version(), "load_average_before": list(load_before),
                    "load_average_after": list(load_after)},
        "memory_method": "RSS high-water mark minus RSS before the call (/proc VmHWM reset via clear_refs), "
                         "each measurement in a fresh process",
        "features_to_metrics": {
            "ours": feat_ours, "reference_full_matrix_then_per_query": feat_ref,
            "speedup": feat_ref["seconds"] / feat_ours["seconds"],
            "memory_ratio": feat_ref["extra_mb"] / max(feat_ours["extra_mb"], 1e-9),
            "max_abs_difference": _same(feat_ours, feat_ref, 1e-6)},
        "distmat_to_metrics": {
            "ours": dist_ours, "reference_per_query_stable_argsort": dist_ref,
            "speedup": dist_ref["seconds"] / dist_ours["seconds"],
            "max_abs_difference": _same(dist_ours, dist_ref, 1e-6)},
        "rerank": {
            "ours_full_size": rr_ours_full,
            "side_by_side": [{"fraction": f, "images": int(f * (NUM_Q + NUM_G)), "ours": o, "dense_numpy": r,
                              "speedup": r["seconds"] / o["seconds"],
                              "memory_ratio": r["extra_mb"] / max(o["extra_mb"], 1e-9),
                              "max_abs_difference": _same(o, r, 1e-4)} for f, o, r in rr_pairs],
            "dense_numpy_time_exponent": exponent_time,
            "dense_numpy_full_size": {
                "from_fraction": f1, "rule": "measured" if f1 >= 1 else "x (1/fraction)^2 (O(N^2) arrays and argsort)",
                "seconds": ref_full_s, "extra_mb": ref_full_mb},
            "speedup_full_size": ref_full_s / rr_ours_full["seconds"],
            "memory_ratio_full_size": ref_full_mb / max(rr_ours_full["extra_mb"], 1e-9)},
    }
    write_json(args.out, report, ndigits=10)
    print(json.dumps({k: report[k] for k in ("features_to_metrics", "distmat_to_metrics")}, indent=1)[:3000],
          file=sys.stderr)


if __name__ == "__main__":
    main()
