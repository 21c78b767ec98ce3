"""CMC / mAP / mINP: hand-worked cases and a brute-force per-query implementation of the protocol."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from personlab.evaluation.reid import feature_metrics, normalise_parts, pairwise_distances, rank_metrics

# One gallery, five queries, worked by hand (spec reid.md §6):
#   g0 pid 1 cam 0 | g1 pid 2 cam 1 | g2 pid 1 cam 1 | g3 pid -1 (junk) | g4 pid 0 (distractor) | g5 pid 1 cam 2
#   g6 pid 3 cam 0
G_PIDS = [1, 2, 1, -1, 0, 1, 3]
G_CAMS = [0, 1, 1, 1, 2, 2, 0]
Q_PIDS = [1, 3, 3, 4, 1]
Q_CAMS = [0, 1, 0, 0, 1]
DIST = [
    # q0: g0 same pid+cam and g3 junk removed -> g1 F, g2 T, g4 F, g5 T, g6 F: hits at ranks 2 and 4
    [0.1, 0.2, 0.3, 0.05, 0.4, 0.5, 0.6],
    # q1: g4 F, then a tie at 0.4 in gallery order g1 F, g2 F, (g3 junk), g5 F, g6 T: hit at rank 5
    [0.9, 0.4, 0.4, 0.4, 0.1, 0.4, 0.4],
    # q2: its only pid-3 item, g6, is in its own camera -> no true match, skipped
    [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7],
    # q3: pid 4 is not in the gallery -> skipped
    [0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1],
    # q4: g5 T, (g2 junk: same cam), g1 F, (g3 junk), tie at 0.3: g0 T, g4 F, g6 F: hits at ranks 1 and 3
    [0.3, 0.2, 0.1, 0.25, 0.3, 0.05, 0.3],
]
STEPWISE = [1 / 2 * (1 / 2 + 2 / 4), 1 / 5, 1 / 2 * (1 / 1 + 2 / 3)]
# trapezoid term per hit j (0-based) at rank r: (j/(r-1) [1 if r == 1] + (j+1)/r) / 2
TRAPEZOID = [
    1 / 2 * ((0 + 1 / 2) / 2 + (1 / 3 + 2 / 4) / 2),
    (0 + 1 / 5) / 2,
    1 / 2 * ((1 + 1) / 2 + (1 / 2 + 2 / 3) / 2),
]
INP = [2 / 4, 1 / 5, 2 / 3]
FIRST_HIT = [2, 5, 1]


def _hand(max_rank: int = 6) -> np.ndarray:
    return np.array([np.mean([f <= k for f in FIRST_HIT]) for k in range(1, max_rank + 1)])


@pytest.mark.parametrize("ap,expected", [("stepwise", STEPWISE), ("trapezoid", TRAPEZOID)])
def test_hand_worked_case(ap: str, expected: list[float]) -> None:
    out = rank_metrics(np.array(DIST), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=6, ap=ap)
    assert out["num_valid_queries"] == 3 and out["num_queries"] == 5
    assert out["mAP"] == pytest.approx(np.mean(expected), abs=1e-12)
    assert out["mINP"] == pytest.approx(np.mean(INP), abs=1e-12)
    np.testing.assert_allclose(out["cmc"], _hand(), atol=1e-12)
    assert out["cmc"].tolist() == pytest.approx([1 / 3, 2 / 3, 2 / 3, 2 / 3, 1, 1])


def test_inputs_torch_float32_and_tiny_blocks_agree() -> None:
    ref = rank_metrics(np.array(DIST), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=6)
    for d in (torch.tensor(DIST), np.array(DIST, dtype=np.float32)):
        for block in (1, 7, 1 << 20):
            out = rank_metrics(d, torch.tensor(Q_PIDS), np.array(G_PIDS), Q_CAMS, torch.tensor(G_CAMS),
                               max_rank=6, block=block)
            assert out["mAP"] == pytest.approx(ref["mAP"], abs=1e-12)
            np.testing.assert_allclose(out["cmc"], ref["cmc"])


def test_cmc_saturates_beyond_the_gallery() -> None:
    out = rank_metrics(np.array(DIST), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, max_rank=50)
    assert len(out["cmc"]) == 50 and out["cmc"][-1] == 1.0


def test_no_valid_query_and_bad_input_fail_clearly() -> None:
    with pytest.raises(ValueError, match="true match"):
        rank_metrics(np.zeros((1, 3)), [5], [1, 2, 3], [0], [0, 1, 2])
    with pytest.raises(ValueError, match="NaN"):
        rank_metrics(np.array([[np.nan, 1.0]]), [1], [1, 1], [0], [1, 2])
    with pytest.raises(ValueError, match="g_pids"):
        rank_metrics(np.zeros((1, 3)), [1], [1, 2], [0], [0, 1, 2])
    with pytest.raises(ValueError, match="ap must be"):
        rank_metrics(np.array(DIST), Q_PIDS, G_PIDS, Q_CAMS, G_CAMS, ap="sklearn")


def brute_force(dist: np.ndarray, q_pids, g_pids, q_cams, g_cams, max_rank: int) -> dict:
    """The protocol, one query at a time, straight from its definition."""
    cmc = np.zeros(max_rank)
    ap_step, ap_trap, inp, valid = [], [], [], 0
    for i in range(len(dist)):
        order = sorted(range(dist.shape[1]), key=lambda j: (dist[i, j], j))
        kept = [j for j in order if g_pids[j] != -1 and not (g_pids[j] == q_pids[i] and g_cams[j] == q_cams[i])]
        hits = [r + 1 for r, j in enumerate(kept) if g_pids[j] == q_pids[i]]
        if not hits:
            continue
        valid += 1
        cmc[hits[0] - 1 :] += 1
        ap_step.append(np.mean([(j + 1) / r for j, r in enumerate(hits)]))
        ap_trap.append(np.mean([((j / (r - 1) if r > 1 else 1.0) + (j + 1) / r) / 2 for j, r in enumerate(hits)]))
        inp.append(len(hits) / hits[-1])
    return {"cmc": cmc / valid, "stepwise": np.mean(ap_step), "trapezoid": np.mean(ap_trap), "mINP": np.mean(inp),
            "valid": valid}


@pytest.mark.parametrize("seed", range(6))
def test_equals_brute_force_on_random_problems(seed: int) -> None:
    rng = np.random.default_rng(seed)
    nq, ng = int(rng.integers(5, 40)), int(rng.integers(20, 120))
    q_pids = rng.integers(1, 12, nq)
    g_pids = rng.choice(np.arange(-1, 14), ng)  # junk -1 and distractor 0 included
    q_cams, g_cams = rng.integers(0, 3, nq), rng.integers(0, 3, ng)
    # coarse values give many exact ties; ties must follow the gallery order
    dist = rng.integers(0, 6 if seed % 2 else 1000, (nq, ng)).astype(np.float64) / 7
    ref = brute_force(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10)
    for ap in ("stepwise", "trapezoid"):
        out = rank_metrics(dist, q_pids, g_pids, q_cams, g_cams, max_rank=10, ap=ap, block=int(rng.integers(1, 500)))
        assert out["num_valid_queries"] == ref["valid"]
        assert out["mAP"] == pytest.approx(ref[ap], abs=1e-12)
        assert out["mINP"] == pytest.approx(ref["mINP"], abs=1e-12)
        np.testing.assert_allclose(out["cmc"], ref["cmc"], atol=1e-12)


def test_feature_path_equals_distance_path() -> None:
    rng = np.random.default_rng(7)
    qf, gf = rng.normal(size=(30, 16)).astype(np.float32), rng.normal(size=(90, 16)).astype(np.float32)
    q_pids, g_pids = rng.integers(0, 8, 30), rng.integers(-1, 8, 90)
    q_cams, g_cams = rng.integers(0, 3, 30), rng.integers(0, 3, 90)
    # squared Euclidean by its definition, in float64
    dist = ((qf[:, None, :].astype(np.float64) - gf[None, :, :]) ** 2).sum(-1)
    ref = brute_force(dist, q_pids, g_pids, q_cams, g_cams, max_rank=20)
    out = feature_metrics(qf, gf, q_pids, g_pids, q_cams, g_cams, max_rank=20, block=200)
    assert out["mAP"] == pytest.approx(ref["stepwise"], abs=1e-9)
    np.testing.assert_allclose(out["cmc"], ref["cmc"])
    # on unit features, the dot-product score ranks exactly like the squared distance
    qn, gn = normalise_parts(torch.from_numpy(qf), [16], [1.0]), normalise_parts(torch.from_numpy(gf), [16], [1.0])
    a = feature_metrics(qn, gn, q_pids, g_pids, q_cams, g_cams, distance="dot")
    b = brute_force(-(qn.double() @ gn.double().T).numpy(), q_pids, g_pids, q_cams, g_cams, max_rank=50)
    assert a["mAP"] == pytest.approx(b["stepwise"], abs=1e-9)


def test_part_weights_scale_the_dot_product() -> None:
    torch.manual_seed(0)
    a, b = torch.randn(4, 6), torch.randn(5, 6)
    na, nb = normalise_parts(a, [2, 4], [1.0, 0.5]), normalise_parts(b, [2, 4], [1.0, 0.5])
    cos = lambda x, y: torch.nn.functional.normalize(x, dim=1) @ torch.nn.functional.normalize(y, dim=1).T  # noqa: E731
    expected = cos(a[:, :2], b[:, :2]) + 0.5 * cos(a[:, 2:], b[:, 2:])
    torch.testing.assert_close(-pairwise_distances(na, nb, "dot"), expected)
    with pytest.raises(ValueError, match="embedding_parts"):
        normalise_parts(a, [2, 2], [1.0, 1.0])
