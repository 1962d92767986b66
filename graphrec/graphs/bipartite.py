"""User-item graphs from training interactions.

- `bipartite_adjacency`: the (U+I) x (U+I) graph ``A = [[0, R], [R^T, 0]]`` with
  ``Â = D^{-1/2} A D^{-1/2}`` (LightGCN Eq. 7; SAND Eq. 3; FREEDOM's evaluation adjacency), where
  ``R`` is the binary U x I interaction matrix (duplicate rows counted once) and ``D`` the node
  degrees. Isolated users/items (no training row) give empty rows, never inf/NaN. Deviation from
  FREEDOM's code: it adds 1e-7 to every degree instead of special-casing zeros, which changes
  values by a relative 1e-7 at most.
- `interaction_matrix`: ``R`` itself (U x I), optionally ``D_u^{-1/2} R D_i^{-1/2}`` or ``D_u^{-1} R``.
"""
from __future__ import annotations

import time

import torch

from graphrec.data.interactions import Interactions
from graphrec.graphs.normalize import normalize_values
from graphrec.graphs.sparse import SparseGraph, csr_from_sorted
from graphrec.utils import content_hash, log


def unique_edges(train: Interactions, device: torch.device | str | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Distinct (user, item) training pairs sorted by user then item; logs how many duplicates."""
    n_items = train.n_items
    key = train.user.to(torch.long) * n_items + train.item.to(torch.long)
    if device is not None:
        key = key.to(device)
    key = torch.unique(key)
    dups = len(train) - key.numel()
    if dups:
        log.info("graphs: %d duplicate (user, item) training rows counted once", dups)
    u = torch.div(key, n_items, rounding_mode="floor")
    return u, key - u * n_items


def train_hash(train: Interactions) -> str:
    """Hash of what a graph depends on: the training pairs and the index ranges."""
    return content_hash(train.pairs_hash(), train.n_users, train.n_items)


def bipartite_from_edges(u: torch.Tensor, i: torch.Tensor, n_users: int, n_items: int,
                         norm: str = "sym", perm_item_major: torch.Tensor | None = None) -> torch.Tensor:
    """CSR of the symmetric (U+I)^2 adjacency from distinct edges sorted by (user, item).

    The item-side rows need the edges sorted by (item, user): pass that permutation when it is
    precomputed (the per-epoch pruner does), else it is computed with a stable sort.
    """
    n = n_users + n_items
    du = torch.bincount(u, minlength=n_users).to(torch.float32)
    di = torch.bincount(i, minlength=n_items).to(torch.float32)
    # every endpoint of a listed edge has degree >= 1, so no zero division can occur here
    if norm == "sym":
        fwd = du[u].rsqrt() * di[i].rsqrt()
        bwd = fwd
    elif norm == "row":
        fwd, bwd = 1.0 / du[u], 1.0 / di[i]
    elif norm == "none":
        fwd = bwd = torch.ones(u.numel(), dtype=torch.float32, device=u.device)
    else:
        raise ValueError(f"unknown bipartite norm {norm!r} (expected 'sym', 'row' or 'none')")
    if perm_item_major is None:
        perm_item_major = torch.sort(i, stable=True).indices  # (u, i) order -> (i, u) order
    iu, uu, rev = i[perm_item_major], u[perm_item_major], bwd[perm_item_major]
    row = torch.cat([u, iu + n_users])
    col = torch.cat([i + n_users, uu])
    return csr_from_sorted(row, col, torch.cat([fwd, rev]), (n, n))


def bipartite_adjacency(train: Interactions, norm: str = "sym") -> SparseGraph:
    """The (U+I) x (U+I) user-item adjacency, users first, items offset by U (see module doc).

    ``norm``: "sym" (default, ``D^{-1/2} A D^{-1/2}``), "row" (``D^{-1} A``) or "none" (binary).
    """
    if norm not in ("sym", "row", "none"):
        raise ValueError(f"bipartite_adjacency: unknown norm {norm!r} (expected 'sym', 'row' or 'none')")
    t0 = time.perf_counter()
    u, i = unique_edges(train)
    adj = bipartite_from_edges(u, i, train.n_users, train.n_items, norm)
    params = {"norm": norm}
    return SparseGraph(adj, {"kind": "bipartite", "norm": norm, "params": params, "symmetric": norm != "row",
                             "hash": content_hash("bipartite", train_hash(train), params),
                             "build_s": time.perf_counter() - t0})


def interaction_matrix(train: Interactions, norm: str = "none") -> SparseGraph:
    """The U x I matrix ``R`` (binary, duplicates once): "none", "sym" (``D_u^{-1/2} R D_i^{-1/2}``)
    or "row" (``D_u^{-1} R``)."""
    if norm not in ("sym", "row", "none"):
        raise ValueError(f"interaction_matrix: unknown norm {norm!r} (expected 'none', 'sym' or 'row')")
    t0 = time.perf_counter()
    u, i = unique_edges(train)
    shape = (train.n_users, train.n_items)
    val = normalize_values(u, i, torch.ones(u.numel()), shape, norm)
    params = {"norm": norm}
    return SparseGraph(csr_from_sorted(u, i, val, shape),
                       {"kind": "interaction", "norm": norm, "params": params,
                        "hash": content_hash("interaction", train_hash(train), params),
                        "build_s": time.perf_counter() - t0})
