"""Propagation over a frozen item-item graph (FREEDOM §3 / SAND Eq. 9): H = S^L X."""
from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn


def _adj(graph: Any) -> torch.Tensor:
    return graph.adj if hasattr(graph, "adj") else graph


class _FixedSpMM(torch.autograd.Function):
    """y = S x with a constant (non-symmetric) sparse S; backward uses a transpose built once."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, st: torch.Tensor, x: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        ctx.st = st
        return torch.sparse.mm(s, x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):  # type: ignore[override]
        return None, None, torch.sparse.mm(ctx.st, grad.contiguous())


class ItemGraphPropagation(nn.Module):
    r"""L hops over a frozen item-item graph S (e.g. FREEDOM's mixed kNN graph, rows summing to 1):

    .. math:: H^{(0)} = X, \quad H^{(l+1)} = S H^{(l)}, \quad \text{output } H^{(L)}

    (FREEDOM's ``n_mm_layers`` hops; SAND Eq. 9 with the code's one hop). S is directed (kNN rows),
    so the backward pass needs :math:`S^\top`; it is built once here instead of on every call.
    """

    def __init__(self, graph: Any, num_layers: int = 1):
        super().__init__()
        s = _adj(graph)
        self.s = s
        self.st = s.to_sparse_coo().t().coalesce().to_sparse_csr() if s.layout == torch.sparse_csr \
            else s.t().coalesce()
        self.num_layers = int(num_layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        for _ in range(self.num_layers):
            h = _FixedSpMM.apply(self.s, self.st, h) if h.requires_grad else torch.sparse.mm(self.s, h)
        return h

    def rows(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """``forward(x)[rows]`` reading only the rows' entries of S when there is one hop."""
        if self.num_layers != 1 or self.s.layout != torch.sparse_csr or not torch.is_grad_enabled():
            return self.forward(x)[rows]
        from graphrec.nn.batch_propagation import rows_product
        return rows_product(self.s, self.st, x, rows)

    def sampled_rows(self, read: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor) -> torch.Tensor:
        """``forward(X)[rows]`` with X's rows read by ``read(ids)`` (e.g. an embedding lookup with sparse
        gradients, for sampled-subgraph steps): reads the rows' L-hop neighbourhood in S only, so the
        cost follows the batch (k^L entries per row for a kNN graph), not the catalogue."""
        s = self.s if self.s.layout == torch.sparse_csr else self.s.to_sparse_csr()  # graphs are CSR already
        return self._hops(s, read, rows, self.num_layers)

    @staticmethod
    def _hops(s: torch.Tensor, read: Callable[[torch.Tensor], torch.Tensor], rows: torch.Tensor,
              hops: int) -> torch.Tensor:
        if hops == 0:
            return read(rows)
        from graphrec.nn.batch_propagation import row_positions
        pos, crow = row_positions(s.crow_indices(), rows)
        cols, w = s.col_indices().index_select(0, pos), s.values().index_select(0, pos)
        if hops == 1:
            h = read(cols)
        else:  # the inner hops over the distinct neighbours, once each
            inner, inv = torch.unique(cols, return_inverse=True)
            h = ItemGraphPropagation._hops(s, read, inner, hops - 1).index_select(0, inv)
        seg = torch.repeat_interleave(torch.arange(rows.numel(), device=rows.device), crow.diff(),
                                      output_size=cols.numel())
        return h.new_zeros(rows.numel(), h.shape[1]).index_add_(0, seg, h * w.to(h.dtype).unsqueeze(1))

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, nnz={self.s._nnz()}"
