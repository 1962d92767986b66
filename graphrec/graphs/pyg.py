r"""Hand graphrec's graphs (`SparseGraph`: torch sparse CSR, float32) to PyTorch Geometric layers.

Orientation. A `SparseGraph` ``A`` of shape ``[n_rows, n_cols]`` is used as ``h' = A h``: row ``i``
is a *target* node and ``A[i, j]`` is the weight of the message from source ``j`` to ``i``. PyG's
message passing (``flow="source_to_target"``) reads ``edge_index[0]`` as the source ``j`` and
``edge_index[1]`` as the target ``i``, and computes
:math:`x'_i = \sum_{(j, i) \in E} w_{ji}\, x_j`. Hence::

    edge_index[0] = col(A)   (source j)        edge_index[1] = row(A)   (target i)
    edge_weight   = A.values()                 A[i, j] = weight of j -> i
    LGConv(normalize=False)(x, edge_index, edge_weight) == A @ x

For the symmetric graphs (the normalised user-item bipartite graph) both readings agree; for
directed ones (kNN item-item graphs: row ``i`` holds ``i``'s neighbours) only this one gives
``A @ x``. A rectangular ``A`` passes to a bipartite layer as ``size=(n_cols, n_rows)``
(`pyg_size`): sources are columns, targets are rows. PyG's sparse inputs (``adj_t``: a
``torch.sparse`` tensor or ``SparseTensor`` whose rows are targets) are ``A`` itself, untransposed.

Copies:

- `adj_t`: the graph's own CSR tensor (no copy). PyG layers with ``message_and_aggregate``
  (``LGConv``, ``GCNConv``, `graphrec.models.ngcf.NGCFConv`, ...) run it as one sparse product.
- `edge_index`: ``edge_weight`` is ``A.values()`` itself (a view: writing into it writes into the
  graph). ``edge_index`` is one new ``[2, nnz]`` int64 tensor: CSR stores no row ids, and PyG needs
  sources and targets in one contiguous tensor, so that allocation cannot be avoided.
- `to_edge_index_tensor` (``torch_geometric.EdgeIndex``, PyG >= 2.5): the same ``[2, nnz]`` tensor,
  marked sorted by target, with the CSR's row pointer handed over as its index pointer (no copy).
- `to_sparse_tensor` (``torch_geometric.typing.SparseTensor``, needs ``torch_sparse``): row
  pointer, columns and values shared with the CSR (no copy).

`HAS_EDGE_INDEX` / `HAS_SPARSE_TENSOR` say whether the installed PyG offers the last two; the
functions raise `MissingExtraError` (an ImportError) naming what is missing when they are called without it.
`from_edge_index` is the inverse of `edge_index` (duplicate edges summed).
"""
from __future__ import annotations

from typing import Optional

import torch

from graphrec.errors import DataError, GraphrecError, MissingExtraError
from graphrec.graphs.sparse import SparseGraph, csr_from_coo


def _has_edge_index() -> bool:
    try:
        import torch_geometric
    except ImportError:
        return False
    return hasattr(torch_geometric, "EdgeIndex")


def _has_sparse_tensor() -> bool:
    try:
        import torch_geometric.typing as pyg_typing
    except ImportError:
        return False
    # without torch_sparse, PyG's SparseTensor name exists but every use raises: read the flag instead
    return bool(getattr(pyg_typing, "WITH_TORCH_SPARSE", False))


#: whether ``torch_geometric.EdgeIndex`` exists in the installed PyG (2.5 and later)
HAS_EDGE_INDEX: bool = _has_edge_index()
#: whether ``torch_geometric.typing.SparseTensor`` is usable (``torch_sparse`` installed)
HAS_SPARSE_TENSOR: bool = _has_sparse_tensor()


def _adj(graph: SparseGraph | torch.Tensor) -> torch.Tensor:
    adj = graph.adj if isinstance(graph, SparseGraph) else graph
    if adj.layout != torch.sparse_csr:
        raise GraphrecError(f"graphrec.graphs.pyg: expected a SparseGraph or a torch sparse CSR tensor, "
                            f"got layout {adj.layout}")
    return adj


def pyg_size(graph: SparseGraph | torch.Tensor) -> tuple[int, int]:
    """``size=(n_sources, n_targets)`` for PyG's ``propagate``: ``(n_cols, n_rows)`` of ``A``."""
    adj = _adj(graph)
    return int(adj.shape[1]), int(adj.shape[0])


def adj_t(graph: SparseGraph | torch.Tensor) -> torch.Tensor:
    """The CSR ``A`` itself (no copy) as PyG's ``adj_t`` (a sparse input whose rows are targets):
    ``LGConv(normalize=False)(x, adj_t(g)) == A @ x``."""
    return _adj(graph)


def edge_index(graph: SparseGraph | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(edge_index [2, nnz] int64, edge_weight [nnz] float32)`` in PyG's orientation:
    ``edge_index[0]`` = column (source j), ``edge_index[1]`` = row (target i), sorted by target.
    ``edge_weight`` is the CSR's value tensor (a view, not a copy)."""
    adj = _adj(graph)
    crow, col = adj.crow_indices(), adj.col_indices()
    n_rows = crow.numel() - 1
    out = torch.empty(2, col.numel(), dtype=torch.long, device=col.device)
    out[0].copy_(col)
    counts = crow[1:] - crow[:-1]
    out[1] = torch.repeat_interleave(torch.arange(n_rows, device=col.device), counts, output_size=col.numel())
    return out, adj.values()


def from_edge_index(edge_index: torch.Tensor, edge_weight: Optional[torch.Tensor], shape: tuple[int, int],
                    meta: Optional[dict] = None) -> SparseGraph:
    """A `SparseGraph` ``A [n_targets, n_sources]`` from PyG edges (``edge_index[0]`` sources,
    ``edge_index[1]`` targets): ``A[i, j]`` = weight of ``j -> i``; duplicate edges are summed,
    ``edge_weight=None`` gives weight 1. ``shape`` is ``(n_rows, n_cols) = (n_targets, n_sources)``."""
    if edge_index.dim() != 2 or edge_index.shape[0] != 2:
        raise DataError(f"from_edge_index: edge_index must have shape [2, E], got {list(edge_index.shape)}")
    n_rows, n_cols = int(shape[0]), int(shape[1])
    src, dst = edge_index[0].long(), edge_index[1].long()
    if src.numel():
        for what, idx, n in (("source (edge_index[0])", src, n_cols), ("target (edge_index[1])", dst, n_rows)):
            lo, hi = int(idx.min()), int(idx.max())
            if lo < 0 or hi >= n:
                bad = int(torch.nonzero((idx < 0) | (idx >= n))[0])
                raise DataError(f"from_edge_index: {what} id {int(idx[bad])} of edge {bad} is outside [0, {n})")
    if edge_weight is not None and edge_weight.numel() != src.numel():
        raise DataError(f"from_edge_index: {edge_weight.numel()} edge weights for {src.numel()} edges")
    if edge_weight is None:
        edge_weight = torch.ones(src.numel(), dtype=torch.float32, device=src.device)
    adj = csr_from_coo(dst, src, edge_weight, (n_rows, n_cols), reduce="sum")
    return SparseGraph(adj, dict(meta or {"kind": "pyg"}))


def to_edge_index_tensor(graph: SparseGraph | torch.Tensor):
    """``torch_geometric.EdgeIndex`` of `edge_index`'s tensor: ``sparse_size=(n_sources,
    n_targets)``, sorted by target (``sort_order="col"``), the CSR's row pointer reused as its index
    pointer. Pass the weights (`edge_index`'s second value) beside it."""
    if not HAS_EDGE_INDEX:
        raise MissingExtraError("to_edge_index_tensor: this PyG has no torch_geometric.EdgeIndex (PyG >= 2.5 has it)")
    from torch_geometric import EdgeIndex

    adj = _adj(graph)
    ei, _ = edge_index(adj)
    symmetric = bool(isinstance(graph, SparseGraph) and graph.meta.get("symmetric")) and adj.shape[0] == adj.shape[1]
    out = EdgeIndex(ei, sparse_size=pyg_size(adj), sort_order="col", is_undirected=symmetric)
    # sorted by target, its "col" pointer is A's row pointer; PyG's own slicing code sets it this way
    if hasattr(out, "_indptr"):
        out._indptr = adj.crow_indices()
    return out


def to_sparse_tensor(graph: SparseGraph | torch.Tensor):
    """``torch_geometric.typing.SparseTensor`` sharing the CSR's row pointer, columns and values
    (rows = targets: PyG's ``adj_t``). Needs ``torch_sparse``."""
    if not HAS_SPARSE_TENSOR:
        raise MissingExtraError("to_sparse_tensor: torch_geometric.typing.SparseTensor needs the torch_sparse "
                            "package, which is not installed; use adj_t() (a torch sparse CSR) instead")
    from torch_geometric.typing import SparseTensor

    adj = _adj(graph)
    return SparseTensor(rowptr=adj.crow_indices(), col=adj.col_indices(), value=adj.values(),
                        sparse_sizes=(int(adj.shape[0]), int(adj.shape[1])), is_sorted=True, trust_data=True)
