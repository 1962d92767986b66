"""`SparseGraph`: a normalised sparse adjacency (torch CSR, float32) plus its metadata record.

Every builder in `graphrec.graphs` returns one. ``meta`` holds ``kind``, ``shape``, ``nnz``,
``norm``, ``hash`` (content hash of the inputs and every parameter, the cache key), ``params`` and
``build_s`` (wall seconds of the build).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any, Optional, Union

import torch

from graphrec.graphs import native_spmm

# Sparse CSR is a supported path here (tested on CPU, used on CUDA); the "beta" notice would be
# printed once per process for every user of the toolkit and carries no action for them.
warnings.filterwarnings("ignore", message=r"Sparse CSR tensor support is in beta")
warnings.filterwarnings("ignore", message=r"Sparse invariant checks are implicitly disabled")


def csr_from_coo(row: torch.Tensor, col: torch.Tensor, val: Optional[torch.Tensor],
                 shape: tuple[int, int], reduce: str = "sum") -> torch.Tensor:
    """CSR (float32, int64 indices, columns sorted within each row) from coordinate triplets.

    Duplicate (row, col) pairs are combined with ``reduce`` ("sum" or "amax"); with ``val=None``
    every listed pair gets value 1 once (duplicates counted once).
    """
    n_rows, n_cols = int(shape[0]), int(shape[1])
    device = row.device
    row = row.to(torch.long)
    col = col.to(torch.long)
    key = row * n_cols + col
    if val is None:
        key = torch.unique(key)
        val = torch.ones(key.numel(), dtype=torch.float32, device=device)
    else:
        key, inv = torch.unique(key, return_inverse=True)
        out = torch.zeros(key.numel(), dtype=torch.float32, device=device)
        val = out.scatter_reduce(0, inv, val.to(torch.float32), reduce=reduce, include_self=False)
    r = torch.div(key, n_cols, rounding_mode="floor")
    c = key - r * n_cols
    return csr_from_sorted(r, c, val, (n_rows, n_cols))


def csr_from_sorted(row: torch.Tensor, col: torch.Tensor, val: torch.Tensor,
                    shape: tuple[int, int]) -> torch.Tensor:
    """CSR from triplets already sorted by (row, col) with no duplicates (no re-sort, O(nnz))."""
    n_rows = int(shape[0])
    counts = torch.bincount(row, minlength=n_rows)
    crow = torch.zeros(n_rows + 1, dtype=torch.long, device=row.device)
    crow[1:] = torch.cumsum(counts, 0)
    return torch.sparse_csr_tensor(crow, col.to(torch.long), val.to(torch.float32),
                                   size=(int(shape[0]), int(shape[1])), check_invariants=False)


def csr_rows(adj: torch.Tensor) -> torch.Tensor:
    """Row index of every stored entry of a CSR tensor."""
    crow = adj.crow_indices()
    n = crow.numel() - 1
    return torch.repeat_interleave(torch.arange(n, device=crow.device), crow[1:] - crow[:-1])


@dataclass
class SparseGraph:
    """A sparse adjacency ``adj`` (torch sparse CSR, float32) and its ``meta`` record."""

    adj: torch.Tensor
    meta: dict = field(default_factory=dict)
    _t: Optional[torch.Tensor] = field(default=None, repr=False, compare=False)
    _deg: Optional[torch.Tensor] = field(default=None, repr=False, compare=False)
    # scratch tables that products over this graph reuse from step to step (see scratch_table)
    _scratch: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.adj.layout != torch.sparse_csr:
            self.adj = self.adj.coalesce().to_sparse_csr() if self.adj.layout == torch.sparse_coo \
                else self.adj.to_sparse_csr()
        if self.adj.dtype != torch.float32:
            self.adj = self.adj.to(torch.float32)
        self.meta.setdefault("kind", "graph")
        self.meta.setdefault("norm", "none")
        self.meta.setdefault("params", {})
        self.meta.setdefault("hash", "")
        self.meta.setdefault("build_s", 0.0)
        self.meta["shape"] = list(self.shape)
        self.meta["nnz"] = self.nnz

    # -- basic properties ----------------------------------------------------------------------
    @property
    def csr(self) -> torch.Tensor:
        return self.adj

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.adj.shape[0]), int(self.adj.shape[1])

    @property
    def nnz(self) -> int:
        return int(self.adj.col_indices().numel())

    @property
    def device(self) -> torch.device:
        return self.adj.device

    @property
    def kind(self) -> str:
        return str(self.meta.get("kind"))

    def to(self, device: Union[str, torch.device]) -> "SparseGraph":
        """Copy on ``device`` (same metadata); returns ``self`` when already there."""
        device = torch.device(device)
        if self.adj.device == device:
            return self
        return SparseGraph(self.adj.to(device), dict(self.meta))

    def degree(self, weighted: bool = False) -> torch.Tensor:
        """Out-degree per row: number of stored entries (computed once and kept: sampled steps read
        it every step), or the row sum of values if ``weighted``."""
        if weighted:
            rows = csr_rows(self.adj)
            return torch.zeros(self.shape[0], device=self.device).index_add_(0, rows, self.adj.values())
        if self._deg is None or self._deg.device != self.adj.device:
            self._deg = self.adj.crow_indices().diff()
        return self._deg

    def transpose_csr(self) -> torch.Tensor:
        """``A^T`` as CSR, computed once and kept (``A`` itself when ``meta["symmetric"]``)."""
        if self.meta.get("symmetric"):
            return self.adj
        if self._t is None or self._t.device != self.adj.device:
            ei = self.edge_index()
            self._t = csr_from_coo(ei[1], ei[0], self.adj.values(), (self.shape[1], self.shape[0]))
        return self._t

    def scratch_table(self, n_rows: int, like: torch.Tensor, slot: int = 0) -> torch.Tensor:
        """A table of ``n_rows`` x ``like.shape[1]`` (``like``'s dtype and device) kept with the graph
        and handed out again on the next call with the same shape and ``slot``: for full-size
        intermediates that are dead before the next product over this graph starts (the batch
        readout's; the per-layer tables of `graphrec.nn.layerwise_rows`, one slot per layer).
        Allocating them afresh every step made glibc map fresh pages for each: 3,600-7,500 page
        faults and 10-17 ms of kernel time per Clothing LightGCN step on the 2-core VM."""
        shape = (int(n_rows), int(like.shape[1]), like.dtype, like.device)
        buf = self._scratch.get((int(slot),) + shape)
        if buf is None:
            # tables of another shape are dropped: only the current shape's slots stay alive
            self._scratch = {k: v for k, v in self._scratch.items() if k[1:] == shape}
            buf = self._scratch[(int(slot),) + shape] = torch.empty(shape[:2], dtype=like.dtype, device=like.device)
        return buf

    # -- other views ---------------------------------------------------------------------------
    def coo(self) -> torch.Tensor:
        """The same matrix as a coalesced sparse COO tensor."""
        return torch.sparse_coo_tensor(self.edge_index(), self.adj.values(), self.shape,
                                       check_invariants=False).coalesce()

    def edge_index(self) -> torch.Tensor:
        """``[2, nnz]`` int64 (row, col) of the stored entries, row-major order. Not PyG's
        orientation (source, target) = (col, row): use `graphrec.graphs.pyg.edge_index` for PyG layers."""
        return torch.stack([csr_rows(self.adj), self.adj.col_indices()])

    @property
    def values(self) -> torch.Tensor:
        return self.adj.values()

    def to_dense(self) -> torch.Tensor:
        """Dense copy; for small graphs and tests only."""
        if self.shape[0] * self.shape[1] > 50_000_000:
            raise ValueError(f"to_dense() refused for a {self.shape} graph (> 5e7 entries); "
                             f"use the sparse tensor")
        return self.adj.to_dense()

    def summary(self) -> dict[str, Any]:
        deg = self.degree().float()
        return {"kind": self.kind, "shape": list(self.shape), "nnz": self.nnz, "norm": self.meta.get("norm"),
                "degree_min": float(deg.min()) if deg.numel() else 0.0,
                "degree_mean": float(deg.mean()) if deg.numel() else 0.0,
                "degree_max": float(deg.max()) if deg.numel() else 0.0,
                "build_s": float(self.meta.get("build_s", 0.0)), "hash": self.meta.get("hash")}

    def __repr__(self) -> str:
        return (f"SparseGraph(kind={self.kind}, shape={self.shape}, nnz={self.nnz}, "
                f"norm={self.meta.get('norm')}, device={self.device})")


class _CSRMatmul(torch.autograd.Function):
    """``y = A x`` with ``dL/dx = A^T (dL/dy)``, using a CSR ``A^T`` built once per graph.

    torch 2.13's own CSR backward on CPU works but re-derives the transpose on every call; with the
    cached transpose forward+backward costs two CSR products (see benchmarks/results/graphs_cpu.md).
    """

    @staticmethod
    def forward(ctx, adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        ctx.adj_t = adj_t
        return _mm(adj, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return None, None, _mm(ctx.adj_t, grad.contiguous())


def _mm(adj: torch.Tensor, x: torch.Tensor, add: Optional[torch.Tensor] = None,
        out: Optional[torch.Tensor] = None) -> torch.Tensor:
    """``adj @ x`` (``+ add`` when given; one pass in the compiled loop), into ``out`` when given
    (a scratch table reused across steps; it must not share memory with ``x``); no autograd.

    CPU CSR float32 products go through the compiled loop of `graphrec.graphs.native_spmm` when it
    is available (about 2x torch's at Clothing scale). Otherwise, for CPU CSR, ``addmm`` into an
    uninitialised output (beta=0) skips the zero-fill that ``torch.sparse.mm`` does first; other
    devices and layouts use ``torch.sparse.mm``."""
    if adj.layout == torch.sparse_csr:
        res = native_spmm.csr_spmm(adj, x, add, out)
        if res is not None:
            return res
        if adj.device.type == "cpu":
            if out is None:
                out = torch.empty(adj.shape[0], x.shape[1], dtype=x.dtype, device=x.device)
            torch.addmm(out, adj, x, beta=0, out=out)
            return out if add is None else out.add_(add)
    res = torch.sparse.mm(adj, x)
    if add is not None:
        res = res.add_(add)
    return res if out is None else out.copy_(res)


def spmm(graph: Union[SparseGraph, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """``A @ x`` for a sparse ``A`` (CSR or COO, CPU or CUDA) and dense ``x``; differentiable in x.

    For a `SparseGraph` the gradient w.r.t. ``x`` uses the graph's cached CSR transpose
    (`_CSRMatmul`); a bare tensor goes through ``torch.sparse.mm`` and torch's own autograd.
    Gradients w.r.t. the graph's values are not provided (graphs are fixed at build time).
    """
    adj = graph.adj if isinstance(graph, SparseGraph) else graph
    if adj.device != x.device:
        raise ValueError(f"spmm: graph on {adj.device} but features on {x.device}; call graph.to(device)")
    if x.dtype != adj.dtype:
        x = x.to(adj.dtype)
    if isinstance(graph, SparseGraph) and x.requires_grad and torch.is_grad_enabled():
        return _CSRMatmul.apply(adj, graph.transpose_csr(), x)
    if x.requires_grad and torch.is_grad_enabled():
        return torch.sparse.mm(adj, x)  # torch's own autograd for a bare tensor
    return _mm(adj, x)
