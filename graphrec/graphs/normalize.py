"""Normalisation of sparse adjacencies, applied once at build time.

With ``A`` the stored (weighted) matrix, ``r = A 1`` its row sums and ``c = A^T 1`` its column sums:

- ``"none"``: ``A``.
- ``"row"``:  ``D_r^{-1} A`` (row-stochastic).
- ``"sym"``:  ``D_r^{-1/2} A D_c^{-1/2}`` for a rectangular matrix (the U x I interaction matrix);
  for a square one ``D_r^{-1/2} A D_r^{-1/2}`` with the *row* sums on both sides. For symmetric
  matrices (the bipartite graph) row and column sums coincide, so this is LightGCN's / SAND Eq. 3's
  ``D^{-1/2} A D^{-1/2}``; for directed kNN graphs it is exactly FREEDOM's and LATTICE's code
  (``compute_normalized_laplacian`` uses the row sum for both indices), which makes every entry of a
  binary k-regular kNN graph equal 1/k.
- ``"sym_inout"``: ``D_r^{-1/2} A D_c^{-1/2}`` also for square matrices (in/out degrees), the
  paper-level reading of Eq. 7 for a directed kNN graph.

Zero-degree rows/columns get factor 0 (never inf/NaN): isolated nodes keep empty rows.
"""
from __future__ import annotations

import torch

NORMS = ("none", "row", "sym", "sym_inout")


def inv_pow(deg: torch.Tensor, p: float) -> torch.Tensor:
    """``deg ** -p`` with 0 where ``deg == 0``."""
    out = torch.zeros_like(deg, dtype=torch.float32)
    nz = deg > 0
    out[nz] = deg[nz].to(torch.float32).pow(-p)
    return out


def normalize_values(row: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: tuple[int, int],
                     norm: str) -> torch.Tensor:
    """Normalised values for triplets ``(row, col, val)`` of a ``shape`` matrix (see module doc)."""
    if norm not in NORMS:
        raise ValueError(f"unknown normalisation {norm!r}; expected one of {NORMS}")
    if norm == "none":
        return val.to(torch.float32)
    val = val.to(torch.float32)
    n_rows, n_cols = int(shape[0]), int(shape[1])
    r = torch.zeros(n_rows, dtype=torch.float32, device=val.device).index_add_(0, row, val)
    if norm == "row":
        return val * inv_pow(r, 1.0)[row]
    if norm == "sym" and n_rows == n_cols:
        d = inv_pow(r, 0.5)
        return val * d[row] * d[col]
    c = torch.zeros(n_cols, dtype=torch.float32, device=val.device).index_add_(0, col, val)
    return val * inv_pow(r, 0.5)[row] * inv_pow(c, 0.5)[col]


def normalize_csr(adj: torch.Tensor, norm: str) -> torch.Tensor:
    """A CSR tensor with the same pattern and normalised values."""
    from graphrec.graphs.sparse import csr_rows

    if norm == "none":
        return adj
    row = csr_rows(adj)
    vals = normalize_values(row, adj.col_indices(), adj.values(), tuple(adj.shape), norm)
    return torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(), vals, size=adj.shape, check_invariants=False)
