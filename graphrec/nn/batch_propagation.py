r"""Exact LightGCN readout for a batch's nodes only, without propagating the whole graph.

A training step scores only the batch's users and items, and the readout of K layers is a
polynomial in the graph, so it can be evaluated for the batch rows T in Horner form:

.. math::
    \sum_{l=0}^{K} \hat A^l E = E + \hat A\,(E + \hat A\,(\dots(E + \hat A E))), \qquad
    P_j[S_j] = E[S_j] + \hat A[S_j, :]\,P_{j+1}, \quad P_K = E, \quad S_0 = T,\;
    S_{j+1} = \mathcal N(S_j)

so layer j reads only the rows of :math:`\hat A` of :math:`S_j` (the batch's j-hop frontier),
except the innermost, which runs over the whole graph (its frontier is most of the graph; see
:class:`_BatchReadout`); its backward is one full product with :math:`\hat A^\top` (the graph
itself when symmetric). The result and every gradient equal those of full-graph propagation up
to float rounding. On Clothing scale (62k nodes, 399k stored entries, batch 2048) one 2-layer
step reads the graph once forward and once backward plus the batch's own 78k rows each way,
instead of four whole-graph products, and builds no full-size intermediate table besides the
innermost layer and the embedding gradient.
"""
from __future__ import annotations

from typing import Optional

import torch

from graphrec.graphs import native_spmm
from graphrec.graphs.sparse import SparseGraph, _mm
from graphrec.nn.propagation import readout_weight


def row_positions(crow: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Positions in ``col``/``values`` of the stored entries of ``rows`` (row-major), and the new crow."""
    starts = crow[rows]
    lens = crow[rows + 1] - starts
    sub_crow = torch.zeros(rows.numel() + 1, dtype=torch.long, device=crow.device)
    torch.cumsum(lens, 0, out=sub_crow[1:])
    total = int(sub_crow[-1])
    pos = torch.arange(total, device=crow.device) + torch.repeat_interleave(starts - sub_crow[:-1], lens,
                                                                            output_size=total)
    return pos, sub_crow


def _lookup(ids: torch.Tensor, n: int) -> torch.Tensor:
    """Table mapping the sorted ids ``ids`` to their positions (size n; other entries unset)."""
    table = torch.empty(n, dtype=torch.long, device=ids.device)
    table[ids] = torch.arange(ids.numel(), device=ids.device)
    return table


class _Frontier:
    """Rows S of a CSR graph, with the positions of their stored entries (computed once)."""

    def __init__(self, adj: torch.Tensor, rows: torch.Tensor):
        self.adj, self.rows = adj, rows
        self.pos, self.crow = row_positions(adj.crow_indices(), rows)
        self.cols = adj.col_indices().index_select(0, self.pos)

    def neighbours(self) -> torch.Tensor:
        """Sorted distinct columns stored in these rows: the next frontier."""
        mask = torch.zeros(self.adj.shape[1], dtype=torch.bool, device=self.adj.device)
        mask[self.cols] = True
        return torch.nonzero(mask).flatten()

    def block(self, inner: Optional[torch.Tensor] = None) -> torch.Tensor:
        """CSR of ``A[S, :]``; with ``inner`` (sorted ids, a superset of the columns) the columns
        are renumbered to positions in ``inner``."""
        col, n_cols = self.cols, self.adj.shape[1]
        if inner is not None:
            col, n_cols = _lookup(inner, n_cols).index_select(0, col), inner.numel()
        return torch.sparse_csr_tensor(self.crow, col, self.adj.values().index_select(0, self.pos),
                                       (self.rows.numel(), n_cols),
                                       check_invariants=False)


def _transposed_product(adj_t: torch.Tensor, rows: torch.Tensor, g: torch.Tensor, n: int) -> torch.Tensor:
    """``A^T pad_rows(g)``: the gradient, w.r.t. a full table of n rows, of ``A[rows, :] x``."""
    pad = g.new_zeros(n, g.shape[1])
    pad.index_copy_(0, rows, g)
    return _mm(adj_t, pad)


def _transpose(block: torch.Tensor) -> torch.Tensor:
    """CSR transpose of a (small) CSR block, each new row keeping its entries in old-row order (as
    torch's own transpose-and-convert gives): one counting pass in the compiled code (~0.2 ms for a
    Clothing batch's 78k entries), else one stable sort of the column indices (~1.2 ms; torch's
    transpose-and-convert took 2-4 ms)."""
    fast = native_spmm.csr_transpose(block)
    if fast is not None:
        return fast
    crow, col = block.crow_indices(), block.col_indices()
    n_rows, n_cols = block.shape
    order = torch.argsort(col, stable=True)
    t_crow = torch.zeros(n_cols + 1, dtype=crow.dtype, device=crow.device)
    torch.cumsum(torch.bincount(col, minlength=n_cols), 0, out=t_crow[1:])
    row = torch.repeat_interleave(torch.arange(n_rows, device=crow.device), crow.diff(), output_size=col.numel())
    return torch.sparse_csr_tensor(t_crow, row[order], block.values()[order], (n_cols, n_rows),
                                   check_invariants=False)


class _BatchReadout(torch.autograd.Function):
    r"""Forward: the Horner recursion of the module docstring, with its innermost step
    :math:`P_{K-1} = E + \hat A E` taken over the whole graph (for K >= 2 the batch's
    (K-1)-hop frontier covers most of the graph: at Clothing scale 40k of 62k nodes and 296k of
    399k entries, and slicing that frontier's rows out of the graph and the table cost more than
    the rows it saves). Backward, with :math:`g_0 = c\,g`:
    :math:`g_{j+1} = \hat A[S_j, S_{j+1}]^\top g_j` (the last one, :math:`\hat A[S_{K-2}, :]^\top
    g_{K-2}`, over all nodes) and
    :math:`\partial x = \sum_{j<K-1} \mathrm{pad}_{S_j}(g_j) + g_{K-1} + \hat A^\top g_{K-1}`,
    accumulated into one table."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, graph: SparseGraph, rows: torch.Tensor, num_layers: int,
                scale: float) -> torch.Tensor:
        adj, adj_t = graph.adj, graph.transpose_csr()
        frontiers = [_Frontier(adj, rows)]
        for _ in range(num_layers - 2):
            frontiers.append(_Frontier(adj, frontiers[-1].neighbours()))
        # P_{K-1} over the whole graph (one layer: P_0 = x); the next block reads it by node id
        p = _mm(adj, x, add=x, out=graph.scratch_table(adj.shape[0], x)) if num_layers >= 2 else x
        inner = None
        blocks = []
        for j in range(len(frontiers) - 1, -1, -1):
            b = frontiers[j].block(inner)
            blocks.append(b)
            p = _mm(b, p, add=x.index_select(0, frontiers[j].rows))
            inner = frontiers[j].rows
        ctx.frontiers, ctx.blocks, ctx.scale = [f.rows for f in frontiers], blocks[::-1], scale
        ctx.graph, ctx.adj_t = graph, adj_t
        ctx.n, ctx.num_layers = x.shape[0], num_layers
        return (p.mul_(scale) if scale != 1.0 else p), x.index_select(0, rows)

    @staticmethod
    def backward(ctx, grad: torch.Tensor, grad_x_rows: Optional[torch.Tensor]):
        g = grad.contiguous() * ctx.scale if ctx.scale != 1.0 else grad.contiguous()
        rows, blocks = ctx.frontiers, ctx.blocks
        small = [] if grad_x_rows is None else [(rows[0], grad_x_rows)]
        for j, b in enumerate(blocks):  # blocks[j] = A[S_j, S_{j+1}] (the last: A[S_j, :])
            small.append((rows[j], g))
            last = j == len(blocks) - 1 and ctx.num_layers >= 2  # full-size: into the scratch table
            g = _mm(_transpose(b), g, out=ctx.graph.scratch_table(ctx.adj_t.shape[0], g) if last else None)
        if ctx.num_layers >= 2:  # g is the gradient of the whole-graph P_{K-1} = x + A x
            dx = _mm(ctx.adj_t, g, add=g)
        else:  # one layer: g is already the gradient of x through A[S_0, :]
            dx = g
        for r, gj in small:  # the x[S_j] terms of every layer and the layer-0 rows output
            dx.index_add_(0, r, gj)
        return dx, None, None, None, None


class _RowsProduct(torch.autograd.Function):
    """``y = A[S, :] x`` over a full ``x``; ``dx = A^T pad_S(dy)``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, adj: torch.Tensor, adj_t: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        ctx.adj_t, ctx.n = adj_t, x.shape[0]
        ctx.save_for_backward(rows)
        return _mm(_Frontier(adj, rows).block(), x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (rows,) = ctx.saved_tensors
        return _transposed_product(ctx.adj_t, rows, grad.contiguous(), ctx.n), None, None, None


def rows_product(adj: torch.Tensor, adj_t: torch.Tensor, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows ``rows`` (distinct) of ``adj @ x`` for a CSR ``adj`` whose transpose ``adj_t`` is given;
    differentiable in x (one product with ``adj_t`` in the backward)."""
    return _RowsProduct.apply(x, adj, adj_t, rows)


def batch_readout(graph: SparseGraph, x: torch.Tensor, rows: torch.Tensor, num_layers: int,
                  readout: str = "mean", with_inputs: bool = False):
    r"""Rows ``rows`` (distinct) of :math:`c\sum_{l=0}^{K}\hat A^l x` (c = 1/(K+1) for "mean", 1 for
    "sum"), differentiable in x; equals ``LightGCNPropagation(K, readout)(graph, x)[rows]``.

    ``with_inputs=True`` also returns ``x[rows]`` (e.g. for an L2 term on the layer-0 embeddings):
    its gradient joins the same table in the backward, instead of a separate full-size one."""
    if readout not in ("mean", "sum"):
        raise ValueError(f"batch_readout supports the 'mean' and 'sum' readouts, got {readout!r}")
    if x.dtype != graph.adj.dtype:
        x = x.to(graph.adj.dtype)
    if num_layers == 0:
        out = x[rows]
        return (out, out) if with_inputs else out
    scale = readout_weight(num_layers, readout)
    out, x_rows = _BatchReadout.apply(x, graph, rows, int(num_layers), scale)
    return (out, x_rows) if with_inputs else out
