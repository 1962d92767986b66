"""User-user and item-item co-interaction graphs (MCPT's G_u / G_i, DualGNN/DRAGON user graphs).

With ``R`` the binary U x I training matrix (duplicates once) and ``M = R`` (side="user") or
``M = R^T`` (side="item"), the co-count of rows a, b is ``C_ab = (M M^T)_ab`` = number of shared
neighbours. The graph keeps pairs ``a != b`` (no self-loops) with ``C_ab >= min_count``, weighted by

- ``"count"``:   ``C_ab``;
- ``"binary"``:  1 (MCPT: ``1[R R^T > 0] - I``);
- ``"jaccard"``: ``C_ab / (d_a + d_b - C_ab)`` with ``d`` the number of distinct neighbours.

``topk`` keeps, per row, the k pairs with the largest co-count (largest Jaccard for "jaccard");
ties go to the lower index. The result is then directed (row a lists its own top-k), unless
``symmetrize`` adds the transpose (an entry kept by either endpoint's top-k is kept both ways, at
most ``2 n k`` entries: MCPT's undirected graphs, memory-bounded). Then the normalisation of
`graphrec.graphs.normalize` is applied. The build logs its edge count and seconds.

``M M^T`` is computed as sparse x sparse products of ``chunk_size`` rows at a time, and the per-row
top-k is done on the sparse chunk with stable sorts, so no dense n x n (or chunk x n) matrix exists.
"""
from __future__ import annotations

import time
from typing import Optional

import torch

from graphrec.data.interactions import Interactions
from graphrec.graphs.bipartite import train_hash, unique_edges
from graphrec.graphs.normalize import NORMS, normalize_values
from graphrec.graphs.sparse import SparseGraph, csr_from_coo, csr_from_sorted, csr_rows
from graphrec.utils import content_hash, log

WEIGHTS = ("count", "binary", "jaccard")


def rank_within_rows(row: torch.Tensor, col: torch.Tensor, score: torch.Tensor, n_rows: int) -> torch.Tensor:
    """0-based rank of each entry inside its row by (score desc, col asc); entries in any order."""
    order = torch.argsort(row * (int(col.max()) + 1 if col.numel() else 1) + col)  # row-major, col asc
    order = order[torch.sort(-score[order], stable=True).indices]
    order = order[torch.sort(row[order], stable=True).indices]
    counts = torch.bincount(row, minlength=n_rows)
    start = torch.cumsum(counts, 0) - counts
    rank = torch.empty_like(row)
    rank[order] = torch.arange(row.numel(), device=row.device) - start[row[order]]
    return rank


def cointeraction_graph(train: Interactions, side: str = "user", topk: Optional[int] = None,
                        min_count: int = 1, weight: str = "count", norm: str = "none",
                        chunk_size: int = 4096, symmetrize: bool = False) -> SparseGraph:
    """Co-interaction graph of users (``R R^T``) or items (``R^T R``); see the module doc."""
    if side not in ("user", "item"):
        raise ValueError(f"cointeraction_graph: side must be 'user' or 'item', got {side!r}")
    if weight not in WEIGHTS:
        raise ValueError(f"cointeraction_graph: unknown weight {weight!r}; expected one of {WEIGHTS}")
    if norm not in NORMS:
        raise ValueError(f"cointeraction_graph: unknown norm {norm!r}; expected one of {NORMS}")
    if topk is not None and int(topk) < 1:
        raise ValueError(f"cointeraction_graph: topk must be >= 1 or None, got {topk}")
    if int(min_count) < 1:
        raise ValueError(f"cointeraction_graph: min_count must be >= 1, got {min_count}")
    t0 = time.perf_counter()
    u, i = unique_edges(train)
    if side == "user":
        a, b, n, m = u, i, train.n_users, train.n_items
    else:
        order = torch.sort(i, stable=True).indices
        a, b, n, m = i[order], u[order], train.n_items, train.n_users
    M = csr_from_sorted(a, b, torch.ones(a.numel()), (n, m))
    MT = csr_from_sorted(*_transpose_sorted(a, b, m), torch.ones(a.numel()), (m, n))
    deg = torch.bincount(a, minlength=n).to(torch.float32)
    crow, colM = M.crow_indices(), M.col_indices()
    rows_out, cols_out, vals_out = [], [], []
    for s in range(0, n, int(chunk_size)):
        e = min(n, s + int(chunk_size))
        lo, hi = int(crow[s]), int(crow[e])
        block = torch.sparse_csr_tensor(crow[s:e + 1] - lo, colM[lo:hi], torch.ones(hi - lo),
                                        size=(e - s, m), check_invariants=False)
        prod = torch.sparse.mm(block, MT)  # (e-s) x n co-counts, sparse
        r = csr_rows(prod) + s
        c = prod.col_indices()
        cnt = prod.values()
        keep = (r != c) & (cnt >= min_count)
        r, c, cnt = r[keep], c[keep], cnt[keep]
        if weight == "jaccard":
            w = cnt / (deg[r] + deg[c] - cnt)
        elif weight == "binary":
            w = torch.ones_like(cnt)
        else:
            w = cnt
        if topk is not None:
            score = w if weight == "jaccard" else cnt
            sel = rank_within_rows(r - s, c, score, e - s) < int(topk)
            r, c, w = r[sel], c[sel], w[sel]
        rows_out.append(r)
        cols_out.append(c)
        vals_out.append(w)
    row = torch.cat(rows_out) if rows_out else torch.zeros(0, dtype=torch.long)
    col = torch.cat(cols_out) if cols_out else torch.zeros(0, dtype=torch.long)
    val = torch.cat(vals_out) if vals_out else torch.zeros(0)
    if symmetrize and topk is not None:  # without top-k the co-count matrix is symmetric already
        adj = csr_from_coo(torch.cat([row, col]), torch.cat([col, row]), torch.cat([val, val]), (n, n), reduce="amax")
        row, col, val = csr_rows(adj), adj.col_indices(), adj.values()
    else:
        key_order = torch.argsort(row * n + col)  # chunks are row-disjoint; sort columns within rows
        row, col, val = row[key_order], col[key_order], val[key_order]
    val = normalize_values(row, col, val, (n, n), norm)
    params = {"side": side, "topk": None if topk is None else int(topk), "min_count": int(min_count),
              "weight": weight, "norm": norm}
    if symmetrize:  # only when set: the cache keys of existing graphs stay as they were
        params["symmetrize"] = True
    g = SparseGraph(csr_from_sorted(row, col, val, (n, n)),
                    {"kind": f"cointeraction_{side}", "norm": norm, "params": params,
                     "hash": content_hash("cointeraction", train_hash(train), params),
                     "build_s": time.perf_counter() - t0})
    log.info("graphs: %s co-interaction graph: %d nodes, %d stored entries (nnz), %.2f s", side, n, g.nnz,
             g.meta["build_s"])
    return g


def _transpose_sorted(a: torch.Tensor, b: torch.Tensor, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges (a, b) sorted by (a, b) -> (b, a) sorted by (b, a) (stable sort keeps a ascending)."""
    order = torch.sort(b, stable=True).indices
    return b[order], a[order]
