"""Re-ID evaluation: test features, chunked distances, CMC / mAP / mINP, and k-reciprocal re-ranking.

One protocol for every model (spec ``reid.md`` §6), so numbers are comparable across the table:

* per query, gallery items with the same pid **and** the same camera, and junk items (pid -1), are removed
  from the ranking; distractors (pid 0) stay as ordinary negatives;
* queries left without a true match are skipped, counted in ``num_valid_queries``, and the averages are over
  the valid queries (BoT/torchreid; layumi divides by all queries, identical whenever every query is valid);
* ties in distance are broken by gallery index (a stable sort), so results never depend on the sort kernel;
* AP is either ``"stepwise"`` (mean precision at each hit; BoT, sklearn >= 0.19) or ``"trapezoid"`` (the
  official Market-1501 rule; layumi, DG-Net), always recorded beside the number;
* mINP = mean over valid queries of (number of true matches) / (rank of the last true match).

Speed and memory: distances are produced in blocks of query rows (torch, on the evaluation device) and
ranked block by block, so no query x gallery float64 matrix is ever built. Nothing is argsorted: each row's
kept distances (junk set to +inf) are sorted by value in place, and each true match's rank is read off with
a binary search of its distance in that row (exact ties are then ordered by gallery index). That is the
result of a stable argsort at a fraction of its cost, with no per-query Python loop.

Re-ranking (Zhong et al., CVPR 2017) is computed the same way: one pass of blocked distances keeps only each
image's nearest neighbours (with their distances) and each row's maximum, the k-reciprocal weight vectors are
sparse rows, and the Jaccard term is accumulated from an inverted index, all in float32 on the device.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Iterator, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from personlab.runtime import one_cpu_thread

__all__ = [
    "AP_DEFINITIONS",
    "extract_features",
    "feature_metrics",
    "k_reciprocal_distances",
    "k_reciprocal_rows",
    "normalise_parts",
    "pairwise_distances",
    "rank_metrics",
    "ranked_gallery",
    "rerank_metrics",
]

ApKind = Literal["stepwise", "trapezoid"]
DistanceKind = Literal["euclidean", "dot"]

AP_DEFINITIONS: dict[str, str] = {
    "stepwise": "stepwise: mean over true matches of precision at the match's rank (BoT, sklearn>=0.19)",
    "trapezoid": "trapezoid: mean over true matches of (precision before + precision at the match)/2 "
    "(official Market-1501 code; layumi, DG-Net)",
}

# Elements per block of distances (query rows x gallery columns): 16 MB of float32 per block plus a sorted
# copy, which keeps the ranking's extra memory near 50 MB at any gallery size.
DEFAULT_BLOCK = 1 << 22


def _as_tensor(x: np.ndarray | torch.Tensor | Sequence, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return t if dtype is None else t.to(dtype)


def _check_labels(q_pids, g_pids, q_cams, g_cams, num_q: int, num_g: int, device) -> tuple[torch.Tensor, ...]:
    out = []
    for name, arr, n in (("q_pids", q_pids, num_q), ("g_pids", g_pids, num_g), ("q_cams", q_cams, num_q),
                         ("g_cams", g_cams, num_g)):
        t = _as_tensor(arr, torch.int64).reshape(-1).to(device)
        if t.numel() != n:
            raise ValueError(f"{name} has {t.numel()} entries but the distances have {n}; "
                             "pass one label per row/column")
        out.append(t)
    return tuple(out)


class _Ranker:
    """Ranks the true matches of each query, block by block of query rows, then reduces to CMC / AP / INP.

    Everything that depends only on the labels (each query's true matches and same-camera junk, as padded
    index tables) is built once here, so a block costs a copy, an in-place row sort and two small searches.
    """

    def __init__(self, q_pids: torch.Tensor, g_pids: torch.Tensor, q_cams: torch.Tensor, g_cams: torch.Tensor,
                 max_rank: int, ap: ApKind) -> None:
        if ap not in AP_DEFINITIONS:
            raise ValueError(f"ap must be one of {sorted(AP_DEFINITIONS)}, got {ap!r}")
        if max_rank < 1:
            raise ValueError(f"max_rank must be >= 1, got {max_rank}")
        if len(q_pids) == 0 or len(g_pids) == 0:
            raise ValueError(f"nothing to rank: {len(q_pids)} queries and {len(g_pids)} gallery images")
        self.q_pids, self.g_pids, self.q_cams, self.g_cams = q_pids, g_pids, q_cams, g_cams
        self.max_rank, self.ap = max_rank, ap
        self.g_junk = g_pids == -1
        self.num_global_junk = int(self.g_junk.sum())
        device = q_pids.device
        # gallery indices of each query's pid, padded (stable grouping keeps gallery order inside a pid)
        order = torch.argsort(g_pids, stable=True)
        uniq, counts = torch.unique_consecutive(g_pids[order], return_counts=True)
        starts = torch.cumsum(counts, 0) - counts
        pos = torch.searchsorted(uniq, q_pids).clamp(max=len(uniq) - 1)
        found = uniq[pos] == q_pids
        count = torch.where(found, counts[pos], 0)
        self.width = max(int(count.max()), 1)
        col = torch.arange(self.width, device=device)
        slot_ok = col[None, :] < count[:, None]
        self.same_pid = order[(torch.where(found, starts[pos], 0)[:, None] + col[None, :]).clamp(max=len(g_pids) - 1)]
        same_cam = g_cams[self.same_pid] == q_cams[:, None]
        self.good = slot_ok & ~same_cam & ~self.g_junk[self.same_pid]
        self.junk_here = slot_ok & same_cam
        self.num_good = self.good.sum(1)
        self.ranks = torch.zeros(len(q_pids), self.width, dtype=torch.int64, device=device)
        self._scratch: torch.Tensor | None = None

    def _buffer(self, rows: int, like: torch.Tensor) -> torch.Tensor:
        """One scratch block reused across calls: fresh multi-MB buffers cost page faults on every block."""
        if self._scratch is None or self._scratch.shape[0] < rows or self._scratch.dtype != like.dtype \
                or self._scratch.device != like.device:
            self._scratch = torch.empty(like.shape, dtype=like.dtype, device=like.device)
        return self._scratch[:rows]

    def add(self, start: int, dist: torch.Tensor) -> None:
        """Rank the true matches of query rows ``start .. start+len(dist)`` among their kept gallery items."""
        with one_cpu_thread(dist.device):
            self._add(start, dist)

    def _add(self, start: int, dist: torch.Tensor) -> None:
        rows, num_g = dist.shape
        if num_g != len(self.g_pids):
            raise ValueError(f"distance block has {num_g} gallery columns, expected {len(self.g_pids)}")
        sl = slice(start, start + rows)
        same_pid, good, junk_here, num_good = self.same_pid[sl], self.good[sl], self.junk_here[sl], self.num_good[sl]

        # the true matches of each query in (distance, gallery index) order; padding sorts last as +inf
        t = dist.gather(1, same_pid).masked_fill_(~good, math.inf)
        t_sorted, perm = torch.sort(t, dim=1, stable=True)

        # the kept items' distances, sorted (junk pushed to +inf): a true match's rank is 1 + the number of
        # kept items before it, read off with a binary search of the few matches in the sorted row
        ordered = self._buffer(rows, dist)
        ordered.copy_(dist).masked_fill_(self.g_junk[None, :], math.inf)
        jr, jc = torch.nonzero(junk_here, as_tuple=True)
        ordered[jr, same_pid[jr, jc]] = math.inf
        _sort_rows_(ordered)
        # NaN and +inf sort last, -inf first: the last slot before each row's junk must hold a finite number
        last_kept = num_g - 1 - self.num_global_junk - junk_here.sum(1)
        ends = torch.cat([ordered[:, :1], ordered.gather(1, last_kept.clamp(min=0)[:, None])], 1)
        if not bool(torch.isfinite(ends[last_kept >= 0]).all()):
            raise ValueError(f"distances of queries {start}..{start + rows - 1} contain NaN or inf; check the features")
        below = torch.searchsorted(ordered, t_sorted, side="left")
        upto = torch.searchsorted(ordered, t_sorted, side="right")
        ranks = below + 1
        # exact ties with a match (rare in float data) are ordered by gallery index, as a stable sort would
        hit = torch.arange(self.width, device=dist.device)[None, :] < num_good[:, None]
        tr, tj = torch.nonzero(hit & (upto - below > 1), as_tuple=True)
        if tr.numel():
            q = start + tr
            before = torch.arange(num_g, device=dist.device)[None, :] < same_pid.gather(1, perm)[tr, tj][:, None]
            junk = self.g_junk[None, :] | (
                (self.g_pids[None, :] == self.q_pids[q, None]) & (self.g_cams[None, :] == self.q_cams[q, None]))
            ranks[tr, tj] += ((dist[tr] == t_sorted[tr, tj][:, None]) & before & ~junk).sum(1)
        self.ranks[sl] = ranks

    def result(self) -> dict:
        """CMC, AP and INP from the ranks of every query's true matches (1-based, among kept items)."""
        valid = self.num_good > 0
        num_valid = int(valid.sum())
        if num_valid == 0:
            raise ValueError(
                f"none of the {len(valid)} queries has a true match in the gallery (same pid, other camera); "
                "check that query and gallery come from the same split"
            )
        num_good, ranks = self.num_good[valid], self.ranks[valid]
        hit = torch.arange(self.width, device=ranks.device)[None, :] < num_good[:, None]
        r = ranks.to(torch.float64).clamp(min=1)
        j = torch.arange(self.width, dtype=torch.float64, device=ranks.device)[None, :]
        at = (j + 1) / r
        if self.ap == "stepwise":
            terms = at
        else:  # precision just before the hit (1 at rank 1) and at it, averaged: the trapezoid rule
            terms = (torch.where(r > 1, j / (r - 1).clamp(min=1), torch.ones_like(r)) + at) / 2
        n = num_good.to(torch.float64)
        ap = torch.where(hit, terms, torch.zeros_like(terms)).sum(1) / n
        inp = n / r.gather(1, (num_good - 1)[:, None]).squeeze(1)
        first = torch.bincount((ranks[:, 0] - 1).clamp(max=self.max_rank), minlength=self.max_rank + 1)
        cmc = torch.cumsum(first[: self.max_rank], 0).to(torch.float64) / num_valid
        return {
            "cmc": cmc.cpu().numpy(),
            "mAP": float(ap.sum()) / num_valid,
            "mINP": float(inp.sum()) / num_valid,
            "num_valid_queries": num_valid,
            "num_queries": len(valid),
        }


def _sort_rows_(x: torch.Tensor) -> None:
    """Sort each row ascending in place (values only). On CPU numpy's vectorised sort is several times faster
    than torch's; on CUDA torch's segmented sort is the fast one."""
    if x.device.type == "cpu":
        x.numpy().sort(axis=1)
    else:
        x.copy_(torch.sort(x, dim=1).values)


def _block_rows(num_cols: int, block: int) -> int:
    return max(1, block // max(num_cols, 1))


def rank_metrics(
    distmat: np.ndarray | torch.Tensor,
    q_pids: np.ndarray | torch.Tensor | Sequence[int],
    g_pids: np.ndarray | torch.Tensor | Sequence[int],
    q_cams: np.ndarray | torch.Tensor | Sequence[int],
    g_cams: np.ndarray | torch.Tensor | Sequence[int],
    max_rank: int = 50,
    ap: ApKind = "stepwise",
    device: str | torch.device | None = None,
    block: int = DEFAULT_BLOCK,
) -> dict:
    """CMC, mAP and mINP of a query x gallery distance matrix under the Market-1501 protocol.

    Returns ``cmc`` (numpy, length ``max_rank``, fractions), ``mAP`` and ``mINP`` (fractions),
    ``num_valid_queries`` and ``num_queries``. The matrix keeps its dtype (float32 or float64) and is moved to
    ``device`` one block of rows at a time; a numpy input is never copied whole.
    """
    d = _as_tensor(distmat)
    if d.ndim != 2:
        raise ValueError(f"distmat must be 2-D (queries x gallery), got shape {tuple(d.shape)}")
    if not d.is_floating_point():
        d = d.to(torch.float64)
    device = torch.device(device) if device is not None else d.device
    labels = _check_labels(q_pids, g_pids, q_cams, g_cams, d.shape[0], d.shape[1], device)
    ranker = _Ranker(*labels, max_rank=max_rank, ap=ap)
    step = _block_rows(d.shape[1], block)
    for s in range(0, d.shape[0], step):
        ranker.add(s, d[s : s + step].to(device))
    return ranker.result()


def pairwise_distances(a: torch.Tensor, b: torch.Tensor, kind: DistanceKind = "euclidean",
                       b_sq: torch.Tensor | None = None, a_sq: torch.Tensor | None = None) -> torch.Tensor:
    """``euclidean``: squared Euclidean ``|a|^2 + |b|^2 - 2 a.b`` (BoT); ``dot``: ``-a.b`` (layumi/DG-Net score).

    On per-part L2-normalised features the two rank identically; ``b_sq`` and ``a_sq`` let a caller reuse the
    squared norms. The norms are laid down first and the product accumulated onto them in place: one pass
    over the output besides the matrix product.
    """
    if kind == "dot":
        return -(a @ b.T)
    if kind != "euclidean":
        raise ValueError(f"distance must be 'euclidean' or 'dot', got {kind!r}")
    if b_sq is None:
        b_sq = (b * b).sum(1)
    if a_sq is None:
        a_sq = (a * a).sum(1)
    return (a_sq[:, None] + b_sq[None, :]).addmm_(a, b.T, alpha=-2)


def _features(x: np.ndarray | torch.Tensor, device) -> torch.Tensor:
    t = _as_tensor(x)
    if t.ndim != 2:
        raise ValueError(f"features must be 2-D (items x dims), got shape {tuple(t.shape)}")
    return t.to(device=device, dtype=torch.float32)


def feature_metrics(
    qf: np.ndarray | torch.Tensor,
    gf: np.ndarray | torch.Tensor,
    q_pids, g_pids, q_cams, g_cams,
    distance: DistanceKind = "euclidean",
    max_rank: int = 50,
    ap: ApKind = "stepwise",
    device: str | torch.device | None = None,
    block: int = DEFAULT_BLOCK,
) -> dict:
    """Metrics straight from query and gallery features: distances are made and ranked one block at a time."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    q, g = _features(qf, device), _features(gf, device)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query features are {q.shape[1]}-d but gallery features are {g.shape[1]}-d")
    ranker = _Ranker(*_check_labels(q_pids, g_pids, q_cams, g_cams, len(q), len(g), device), max_rank=max_rank, ap=ap)
    g_sq = (g * g).sum(1)
    step = _block_rows(len(g), block)
    for s in range(0, len(q), step):
        ranker.add(s, pairwise_distances(q[s : s + step], g, distance, g_sq))
    return ranker.result()


# ------------------------------------------------------------------------------------------------------
# k-reciprocal re-ranking
# ------------------------------------------------------------------------------------------------------


def _reciprocal(nbr: torch.Tensor, rows: int) -> torch.Tensor:
    """``out[i, a]``: is ``i`` among the neighbours of its ``a``-th neighbour (same list length)?"""
    out = torch.empty(nbr.shape, dtype=torch.bool, device=nbr.device)
    for s in range(0, len(nbr), rows):
        own = torch.arange(s, min(s + rows, len(nbr)), device=nbr.device)
        out[s : s + rows] = (nbr[nbr[s : s + rows]] == own[:, None, None]).any(-1)
    return out


def _pair_sq_distances(x: torch.Tensor, sq: torch.Tensor, i: torch.Tensor, j: torch.Tensor, step: int) -> torch.Tensor:
    """Squared Euclidean distances of the pairs ``(i[n], j[n])``, gathered a bounded number at a time."""
    out = torch.empty(len(i), dtype=x.dtype, device=x.device)
    for s in range(0, len(i), step):
        a, b = i[s : s + step], j[s : s + step]
        out[s : s + step] = sq[a] + sq[b] - 2 * (x[a] * x[b]).sum(1)
    return out


def _segments(ptr: torch.Tensor, which: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat positions of the CSR segments ``which`` and, for each position, the index into ``which``."""
    lengths = ptr[which + 1] - ptr[which]
    owner = torch.repeat_interleave(torch.arange(len(which), device=ptr.device), lengths)
    offsets = torch.cumsum(lengths, 0) - lengths
    pos = ptr[which][owner] + torch.arange(len(owner), device=ptr.device) - offsets[owner]
    return pos, owner


def _nearest(x: torch.Tensor, sq: torch.Tensor, near: int, block: int) -> tuple[torch.Tensor, ...]:
    """Each row's ``near`` nearest items (squared Euclidean, ascending), their distances, and its largest distance.

    Symmetric tiles: tile (a, b) with b >= a serves rows a against columns b and, transposed, rows b against
    columns a, so every distance is computed once (half the multiply-adds of a row-by-row pass). Each row
    keeps a running top-``near`` merged tile by tile; once it holds ``near`` items, only a tile's entries not
    farther than its current ``near``-th distance can enter, and after the first tiles those are a few per
    row, so the merge costs a comparison pass instead of a top-k over the tile (measured 2x cheaper).
    """
    n, device = len(x), x.device
    side = max(near, math.isqrt(block))
    best_d = torch.full((n, near), math.inf, dtype=torch.float32, device=device)
    best_i = torch.zeros((n, near), dtype=torch.int64, device=device)
    row_max = torch.full((n,), -math.inf, dtype=torch.float32, device=device)

    def merge(rows: slice, first_col: int, d: torch.Tensor, transposed: bool) -> None:
        """Merge tile ``d`` into the lists of ``rows``: its rows, or its columns when ``transposed``."""
        row_max[rows] = torch.maximum(row_max[rows], d.amax(0 if transposed else 1))
        bound = best_d[rows, -1]
        if bool(torch.isinf(bound).any()):  # a list not yet full: take the tile's own top-near
            tile = d.T if transposed else d
            v, i = torch.topk(tile, min(near, tile.shape[1]), dim=1, largest=False)
        else:  # only the entries within the current bounds, packed into short padded rows
            if transposed:
                c, r = torch.nonzero(d <= bound[None, :], as_tuple=True)
                order = torch.argsort(r, stable=True)
                r, c = r[order], c[order]
                values = d[c, r]
            else:
                r, c = torch.nonzero(d <= bound[:, None], as_tuple=True)
                values = d[r, c]
            if len(r) == 0:
                return
            count = torch.bincount(r, minlength=len(bound))
            slot = torch.arange(len(r), device=device) - (torch.cumsum(count, 0) - count)[r]
            v = torch.full((len(bound), int(count.max())), math.inf, dtype=d.dtype, device=device)
            i = torch.zeros(v.shape, dtype=torch.int64, device=device)
            v[r, slot], i[r, slot] = values, c
        v, i = torch.cat([best_d[rows], v], 1), torch.cat([best_i[rows], i + first_col], 1)
        v, pick = torch.topk(v, near, dim=1, largest=False, sorted=True)
        best_d[rows], best_i[rows] = v, i.gather(1, pick)

    for a in range(0, n, side):
        rows_a = slice(a, min(a + side, n))
        for b in range(a, n, side):
            rows_b = slice(b, min(b + side, n))
            d = pairwise_distances(x[rows_a], x[rows_b], "euclidean", sq[rows_b], sq[rows_a])
            with one_cpu_thread(device):  # selection and bookkeeping: see one_cpu_thread
                merge(rows_a, b, d, transposed=False)
                if b != a:
                    merge(rows_b, a, d, transposed=True)
    return best_d, best_i, row_max


def _sparse_weights(x: torch.Tensor, sq: torch.Tensor, row_max: torch.Tensor, nn_idx: torch.Tensor,
                    near_idx: torch.Tensor, near_d: torch.Tensor, num_q: int, k1: int, k2: int,
                    block: int) -> tuple[torch.Tensor, ...]:
    """Steps 2-4 of :func:`k_reciprocal_rows`: the sparse rows V (CSR) and their gallery inverted index."""
    n, num_g, device = len(x), len(x) - num_q, x.device
    k, near = k1 + 1, near_idx.shape[1]
    # 2. k-reciprocal sets, their expansion, and the sparse weight rows V (CSR, columns sorted)
    kh = int(round(k1 / 2)) + 1
    half = nn_idx[:, :kh].contiguous()
    recip = _reciprocal(nn_idx, max(1, block // (k * k)))
    recip_half = _reciprocal(half, max(1, block // (kh * kh)))
    v_cols, v_vals, v_len = [], [], []
    step = max(1, block // (k * kh * k))
    for s in range(0, n, step):
        rows = torch.arange(s, min(s + step, n), device=device)
        nb, nb_ok = nn_idx[rows], recip[rows]  # R(i, k1) as a masked list
        cand, cand_ok = half[nb], recip_half[nb]  # R(c, k1/2) of every neighbour c
        shared = ((cand[..., None] == nb[:, None, None, :]) & nb_ok[:, None, None, :]).any(-1) & cand_ok
        accept = nb_ok & (3 * shared.sum(-1) > 2 * cand_ok.sum(-1))
        members = torch.cat([nb, cand.flatten(1)], 1)
        ok = torch.cat([nb_ok, (cand_ok & accept[..., None]).flatten(1)], 1)
        members = torch.where(ok, members, n).sort(1).values
        keep = members < n
        keep[:, 1:] &= members[:, 1:] != members[:, :-1]
        slot = torch.searchsorted(near_idx[rows], members).clamp_(max=near - 1)
        stored = near_idx[rows].gather(1, slot) == members
        dist = near_d[rows].gather(1, slot)
        pr, pc = torch.nonzero(keep, as_tuple=True)
        cols = members[pr, pc]
        d_pair = dist[pr, pc]
        missing = torch.nonzero(~stored[pr, pc]).squeeze(1)
        d_pair[missing] = _pair_sq_distances(x, sq, rows[pr[missing]], cols[missing], 1 << 12)
        w = torch.exp(-d_pair / row_max[rows[pr]])
        counts = keep.sum(1)
        total = torch.zeros(len(rows), dtype=torch.float32, device=device).index_add_(0, pr, w)
        v_cols.append(cols)
        v_vals.append(w / total[pr])
        v_len.append(counts)
    v_col, v_val = torch.cat(v_cols), torch.cat(v_vals)
    v_ptr = torch.cat([torch.zeros(1, dtype=torch.int64, device=device), torch.cumsum(torch.cat(v_len), 0)])
    del v_cols, v_vals, v_len

    # 3. local query expansion: V_i <- mean of V over the k2 nearest neighbours of i
    if k2 > 1:
        new_cols, new_vals, new_len = [], [], []
        mean_len = max(1, int(v_ptr[-1]) // n)
        step = max(1, block // (k2 * mean_len))
        for s in range(0, n, step):
            rows = torch.arange(s, min(s + step, n), device=device)
            which = nn_idx[rows, :k2].reshape(-1)
            pos, owner = _segments(v_ptr, which)
            owner_row = owner // k2  # local row of each gathered entry
            key = owner_row * n + v_col[pos]
            uniq, inverse = torch.unique(key, sorted=True, return_inverse=True)
            summed = torch.zeros(len(uniq), dtype=torch.float32, device=device).index_add_(0, inverse, v_val[pos])
            new_cols.append(uniq % n)
            new_vals.append(summed / k2)
            new_len.append(torch.bincount(uniq // n, minlength=len(rows)))
        v_col, v_val = torch.cat(new_cols), torch.cat(new_vals)
        v_ptr = torch.cat([torch.zeros(1, dtype=torch.int64, device=device), torch.cumsum(torch.cat(new_len), 0)])
        del new_cols, new_vals, new_len

    # 4. inverted index over the gallery rows of V (column -> gallery rows holding it)
    g_entries = torch.arange(int(v_ptr[num_q]), len(v_col), device=device)
    g_rows = torch.repeat_interleave(torch.arange(num_g, device=device), v_ptr[num_q + 1 :] - v_ptr[num_q:-1])
    by_col = torch.argsort(v_col[g_entries], stable=True)
    inv_row = g_rows[by_col]
    inv_val = v_val[g_entries][by_col]
    inv_ptr = torch.zeros(n + 1, dtype=torch.int64, device=device)
    inv_ptr[1:] = torch.cumsum(torch.bincount(v_col[g_entries], minlength=n), 0)
    del g_entries, g_rows, by_col

    return v_ptr, v_col, v_val, inv_ptr, inv_row, inv_val


def k_reciprocal_rows(
    qf: np.ndarray | torch.Tensor,
    gf: np.ndarray | torch.Tensor,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
    device: str | torch.device | None = None,
    block: int = DEFAULT_BLOCK,
) -> Iterator[tuple[int, torch.Tensor]]:
    """Re-ranked query x gallery distances (Zhong et al., CVPR 2017), yielded as ``(first_row, block)``.

    Input distance: squared Euclidean over query + gallery features, each row divided by its maximum.
    R(i, k) are the k-reciprocal neighbours among the k+1 nearest (i itself included); R*(i) adds R(c, round(k1/2))
    of every c in R(i, k1) that shares more than 2/3 of its members with R(i, k1); V_i = exp(-d) over R*(i),
    normalised to sum 1; with k2 > 1, V_i is replaced by the mean of V over i's k2 nearest neighbours;
    Jaccard distance = 1 - S/(2 - S) with S = sum_k min(V_ik, V_jk); the result is
    (1 - lambda) * Jaccard + lambda * d. Memory is O((q+g) * k1^2) plus one block, never (q+g)^2.
    """
    if k1 < 1 or k2 < 1:
        raise ValueError(f"k1 and k2 must be >= 1, got k1={k1}, k2={k2}")
    if not 0.0 <= lambda_value <= 1.0:
        raise ValueError(f"lambda_value must be in [0, 1], got {lambda_value}")
    device = torch.device(device) if device is not None else torch.device("cpu")
    q, g = _features(qf, device), _features(gf, device)
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"query features are {q.shape[1]}-d but gallery features are {g.shape[1]}-d")
    num_q, num_g = len(q), len(g)
    x = torch.cat([q, g])
    del q, g
    n = len(x)
    if k1 + 1 > n or k2 > n:
        raise ValueError(f"re-ranking needs more than k1={k1} (and at least k2={k2}) images; got {n}")
    sq = (x * x).sum(1)

    # 1. nearest neighbours (self first) and the row maxima that normalise the distances. Beyond the k1+1
    #    that define R(i, k1), half as many again are kept with their distances: most of the expanded set
    #    R*(i) lies among them, and the few members outside get their distance recomputed in step 2.
    k = k1 + 1
    near = min(n, k + k // 2)
    near_d, near_idx, row_max = _nearest(x, sq, near, block)
    if bool((row_max <= 0).any()):
        raise ValueError("re-ranking needs distinct features: some image is at distance 0 from every other")
    nn_idx = near_idx[:, :k].contiguous()
    near_idx, by_index = near_idx.sort(1)  # sorted by gallery index, for lookups with searchsorted
    near_d = near_d.gather(1, by_index)
    del by_index

    with one_cpu_thread(device):  # sparse bookkeeping: many small ops, see one_cpu_thread
        v_ptr, v_col, v_val, inv_ptr, inv_row, inv_val = _sparse_weights(
            x, sq, row_max, nn_idx, near_idx, near_d, num_q, k1, k2, block)
    del near_idx, near_d

    # 5. Jaccard against the gallery + the original distance, in blocks of queries bounded in pair count
    q_entry_pairs = (inv_ptr[v_col + 1] - inv_ptr[v_col])[: int(v_ptr[num_q])]
    q_pairs = torch.zeros(num_q, dtype=torch.int64, device=device).index_add_(
        0, torch.repeat_interleave(torch.arange(num_q, device=device), v_ptr[1 : num_q + 1] - v_ptr[:num_q]),
        q_entry_pairs)
    q_pairs = q_pairs.cpu().tolist()
    g_sq = sq[num_q:]
    max_rows = _block_rows(num_g, block)
    pair_budget = max(1, block // 4)  # each pair costs ~6 words in flight
    overlap_buffer = torch.empty(0, dtype=torch.float32, device=device)  # reused: fresh blocks cost page faults
    s = 0
    while s < num_q:
        e, budget = s, 0
        while e < num_q and e - s < max_rows and (e == s or budget + q_pairs[e] <= pair_budget):
            budget += q_pairs[e]
            e += 1
        with one_cpu_thread(device):
            rows = torch.arange(s, e, device=device)
            pos, owner = _segments(v_ptr, rows)  # the query rows' own entries
            ipos, iowner = _segments(inv_ptr, v_col[pos])  # every gallery entry sharing their columns
            shared = torch.minimum(v_val[pos][iowner], inv_val[ipos])
            if overlap_buffer.numel() < (e - s) * num_g:
                overlap_buffer = torch.empty((e - s) * num_g, dtype=torch.float32, device=device)
            overlap = overlap_buffer[: (e - s) * num_g].zero_()
            overlap.index_add_(0, owner[iowner] * num_g + inv_row[ipos], shared)
        # (1 - lambda)·(1 - S/(2 - S)) + lambda·d/max  =  lambda·d/max + 2(1 - lambda) - 2(1 - lambda)/(2 - S),
        # in place over the block (a handful of passes, no temporaries)
        out = pairwise_distances(x[s:e], x[num_q:], "euclidean", g_sq, sq[s:e])
        out.mul_((lambda_value / row_max[s:e])[:, None]).add_(2 * (1 - lambda_value))
        out.add_(overlap.sub_(2).reciprocal_().view(e - s, num_g), alpha=2 * (1 - lambda_value))
        yield s, out
        s = e


def k_reciprocal_distances(qf, gf, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                           device: str | torch.device | None = None, block: int = DEFAULT_BLOCK) -> np.ndarray:
    """The whole re-ranked query x gallery matrix (float32 numpy), for small problems and inspection."""
    blocks = [b.cpu() for _, b in k_reciprocal_rows(qf, gf, k1, k2, lambda_value, device, block)]
    return torch.cat(blocks).numpy()


def rerank_metrics(qf, gf, q_pids, g_pids, q_cams, g_cams, k1: int = 20, k2: int = 6, lambda_value: float = 0.3,
                   max_rank: int = 50, ap: ApKind = "stepwise", device: str | torch.device | None = None,
                   block: int = DEFAULT_BLOCK) -> dict:
    """Metrics of the re-ranked distances, ranked block by block as they are produced."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    labels = _check_labels(q_pids, g_pids, q_cams, g_cams, len(qf), len(gf), device)
    ranker = _Ranker(*labels, max_rank=max_rank, ap=ap)
    for s, d in k_reciprocal_rows(qf, gf, k1, k2, lambda_value, device, block):
        ranker.add(s, d)
    return ranker.result()


# ------------------------------------------------------------------------------------------------------
# features and ranked lists
# ------------------------------------------------------------------------------------------------------


def normalise_parts(emb: torch.Tensor, parts: Sequence[int], weights: Sequence[float]) -> torch.Tensor:
    """L2-normalise each embedding part separately and scale part k by sqrt(weights[k]).

    The square root goes on both query and gallery, so a dot product (or squared distance) weighs part k by
    ``weights[k]``: DG-Net's fine-grained half counted with its alpha.
    """
    if sum(parts) != emb.shape[1]:
        raise ValueError(f"embedding_parts {list(parts)} sum to {sum(parts)} but the model outputs {emb.shape[1]}-d "
                         "embeddings; fix embedding_parts in the model's model.json")
    if len(weights) != len(parts):
        raise ValueError(f"{len(weights)} part weights for {len(parts)} embedding parts")
    pieces = torch.split(emb, list(parts), dim=1)
    return torch.cat([F.normalize(p, dim=1) * math.sqrt(w) for p, w in zip(pieces, weights)], 1)


@torch.no_grad()
def extract_features(
    model: torch.nn.Module,
    root: str | Path,
    paths: Sequence[str],
    input_size: Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    parts: Sequence[int],
    part_weights: Sequence[float],
    flip: bool = False,
    batch_size: int = 128,
    interpolation: str = "bilinear",
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Test embeddings (float32, CPU) of the images ``root/paths``.

    The test transform is the training input path's (``personlab.data.loader``: decode, resize to
    ``input_size``, ``(x/255 - mean)/std``). With ``flip`` the embedding of the mirrored image is added before
    normalising (layumi/RRID's flip test). Then :func:`normalise_parts`.
    """
    from personlab.data.loader import decode_images, normalize

    if not paths:
        raise ValueError(f"no images to embed under {root}")
    device = torch.device(device)
    model = model.to(device).eval()
    size = (int(input_size[0]), int(input_size[1]))
    out = []
    for s in range(0, len(paths), batch_size):
        x = normalize(decode_images(root, paths[s : s + batch_size], size, interpolation).to(device), mean, std)
        emb = model(x).float()
        if flip:
            emb = emb + model(torch.flip(x, dims=[3])).float()
        out.append(normalise_parts(emb, parts, part_weights).cpu())
    return torch.cat(out)


def ranked_gallery(qf: torch.Tensor, gf: torch.Tensor, top: int, distance: DistanceKind = "euclidean") -> torch.Tensor:
    """Indices of the ``top`` nearest gallery items of each query row, ties by gallery index (for pictures)."""
    d = pairwise_distances(_features(qf, "cpu"), _features(gf, "cpu"), distance)
    return torch.sort(d, dim=1, stable=True).indices[:, :top]
