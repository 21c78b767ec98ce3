"""k-reciprocal re-ranking against a direct float64 implementation written from the paper's definitions."""

from __future__ import annotations

import numpy as np
import pytest

from personlab.evaluation.reid import k_reciprocal_distances, rank_metrics, rerank_metrics


def reference_rerank(qf: np.ndarray, gf: np.ndarray, k1: int, k2: int, lam: float) -> np.ndarray:
    """Zhong et al. (CVPR 2017), eqs. 4-13, with Python sets and dense float64 vectors."""
    x = np.concatenate([qf, gf]).astype(np.float64)
    n, nq = len(x), len(qf)
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    d = d / d.max(axis=1, keepdims=True)  # d is symmetric: each row over its max = each column over its max
    order = [sorted(range(n), key=lambda j: (d[i, j], j)) for i in range(n)]

    def nearest(i: int, k: int) -> list[int]:  # N(i, k): the k nearest, i itself included
        return order[i][: k + 1]

    def reciprocal(i: int, k: int) -> set[int]:  # R(i, k) = {j in N(i, k) : i in N(j, k)}
        return {j for j in nearest(i, k) if i in nearest(j, k)}

    half = int(round(k1 / 2))
    v = np.zeros((n, n))
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = set(r)
        for c in r:
            rc = reciprocal(c, half)
            if len(rc & r) > 2 / 3 * len(rc):
                expanded |= rc
        members = sorted(expanded)
        w = np.exp(-d[i, members])
        v[i, members] = w / w.sum()
    if k2 > 1:
        v = np.stack([v[nearest(i, k2 - 1)].mean(0) for i in range(n)])
    jaccard = np.zeros((nq, n - nq))
    for i in range(nq):
        for j in range(nq, n):
            s = np.minimum(v[i], v[j]).sum()
            jaccard[i, j - nq] = 1 - s / (2 - s)
    return (1 - lam) * jaccard + lam * d[:nq, nq:]


def _problem(seed: int, nq: int, ng: int, dim: int, ids: int):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, dim))
    q_pids, g_pids = rng.integers(0, ids, nq), rng.integers(0, ids, ng)
    qf = (centres[q_pids] + 0.8 * rng.normal(size=(nq, dim))).astype(np.float32)
    gf = (centres[g_pids] + 0.8 * rng.normal(size=(ng, dim))).astype(np.float32)
    q_cams, g_cams = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    return qf, gf, q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed,k1,k2,lam", [(0, 20, 6, 0.3), (1, 5, 3, 0.3), (2, 7, 1, 0.5)])
def test_matches_direct_reference(seed: int, k1: int, k2: int, lam: float) -> None:
    qf, gf, q_pids, g_pids, q_cams, g_cams = _problem(seed, 15, 55, 12, 9)
    ref = reference_rerank(qf, gf, k1, k2, lam)
    # a tiny block forces every stage of the chunked computation to run in many pieces
    for block in (1 << 22, 997):
        ours = k_reciprocal_distances(qf, gf, k1, k2, lam, block=block)
        assert ours.dtype == np.float32 and ours.shape == ref.shape
        np.testing.assert_allclose(ours, ref, atol=1e-5)
    for ap in ("stepwise", "trapezoid"):
        want = rank_metrics(ref, q_pids, g_pids, q_cams, g_cams, ap=ap)
        got = rerank_metrics(qf, gf, q_pids, g_pids, q_cams, g_cams, k1, k2, lam, ap=ap, block=997)
        assert got["mAP"] == pytest.approx(want["mAP"], abs=1e-4)
        assert got["mINP"] == pytest.approx(want["mINP"], abs=1e-4)
        np.testing.assert_allclose(got["cmc"], want["cmc"], atol=1e-4)


def test_reranking_helps_on_clustered_features() -> None:
    qf, gf, q_pids, g_pids, q_cams, g_cams = _problem(3, 40, 160, 16, 12)
    plain = rank_metrics(((qf[:, None] - gf[None]) ** 2).sum(-1), q_pids, g_pids, q_cams, g_cams)
    rr = rerank_metrics(qf, gf, q_pids, g_pids, q_cams, g_cams, k1=8, k2=3)
    assert rr["mAP"] > plain["mAP"]


def test_rejects_too_few_images() -> None:
    qf, gf, *_ = _problem(4, 3, 5, 4, 2)
    with pytest.raises(ValueError, match="k1"):
        k_reciprocal_distances(qf, gf, k1=20)
