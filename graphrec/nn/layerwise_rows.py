r"""Chosen rows of every LightGCN layer, with the rows chosen from the layers themselves.

For a graph :math:`\hat A`, embeddings :math:`X` and L layers, the forward computes the tables
:math:`X^{(l)} = \hat A^l X` (l = 0..L), lets ``pick`` choose row ids :math:`S_l` from them (a
discrete choice, without gradient: MixGCF's hardest candidates), and returns
:math:`X^{(l)}[S_l]`. The backward takes the rows' gradients :math:`g_l` to :math:`X` in Horner
form,

.. math::
    \partial X = \mathrm{pad}_{S_0}(g_0) + \hat A^\top(\mathrm{pad}_{S_1}(g_1) + \hat A^\top(\dots
    + \hat A^\top \mathrm{pad}_{S_L}(g_L)))

so it accumulates into one table: L products with :math:`\hat A^\top` and L+1 row scatters,
instead of autograd's per-layer zero-filled gradient tables and sums (15 ms of fills per
Clothing step). The layer tables live in the graph's scratch slots (`SparseGraph.scratch_table`),
reused from step to step; they are dead once the forward returns.
"""
from __future__ import annotations

from typing import Callable, List, Sequence

import torch

from graphrec.graphs.sparse import SparseGraph, _mm

Pick = Callable[[List[torch.Tensor]], Sequence[torch.Tensor]]


class _LayerwiseRows(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, graph: SparseGraph, num_layers: int, pick: Pick):
        n = x.shape[0]
        tables = [x]
        for layer in range(1, num_layers + 1):
            tables.append(_mm(graph.adj, tables[-1], out=graph.scratch_table(n, x, slot=layer)))
        ids = [i.to(torch.long) for i in pick(tables)]
        if len(ids) != num_layers + 1:
            raise ValueError(f"layerwise_rows: pick returned {len(ids)} id tensors for {num_layers + 1} layers")
        ctx.graph, ctx.ids, ctx.shape = graph, ids, x.shape
        return tuple(t.index_select(0, i) for t, i in zip(tables, ids))

    @staticmethod
    def backward(ctx, *grads: torch.Tensor):
        # autograd hands zeros (never None) for rows the loss did not read
        graph, ids, n = ctx.graph, ctx.ids, ctx.shape[0]
        adj_t = graph.transpose_csr()
        last = len(grads) - 1
        acc = graph.scratch_table(n, grads[last], slot=1 + last % 2).zero_() if last else grads[0].new_zeros(ctx.shape)
        acc.index_add_(0, ids[last], grads[last])
        for layer in range(last - 1, -1, -1):
            # two scratch slots in turn; the final product is a fresh table, the parameter's gradient
            acc = _mm(adj_t, acc, out=graph.scratch_table(n, acc, slot=1 + layer % 2) if layer else None)
            acc.index_add_(0, ids[layer], grads[layer])
        return acc, None, None, None


def layerwise_rows(graph: SparseGraph, x: torch.Tensor, num_layers: int, pick: Pick) -> tuple[torch.Tensor, ...]:
    """``(X^(0)[S_0], ..., X^(L)[S_L])`` with ``X^(l) = graph^l x`` and ``S = pick([X^(0), ..., X^(L)])``
    (module docstring); differentiable in ``x``. ``pick`` runs without gradient and must not keep
    the tables: they are the graph's scratch tables, overwritten by the next call."""
    if x.dtype != graph.adj.dtype:
        x = x.to(graph.adj.dtype)
    return _LayerwiseRows.apply(x, graph, int(num_layers), pick)
