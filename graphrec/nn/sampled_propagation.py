"""LightGCN propagation on a sampled bipartite subgraph (`graphrec.train.link_neighbor`)."""
from __future__ import annotations

from typing import Callable, Dict

import torch

from graphrec.graphs.sparse import SparseGraph
from graphrec.nn.propagation import readout_weight


def sampled_lightgcn(x_user: torch.Tensor, x_item: torch.Tensor, deg_user: torch.Tensor, deg_item: torch.Tensor,
                     ui: torch.Tensor, iu: torch.Tensor, num_layers: int, readout: str = "mean"
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Readout of ``num_layers`` LightGCN layers (He et al. 2020, Eq. 3-4) over a sampled subgraph,
    each layer an unbiased estimate of the full graph's:

    .. math::
        e_i^{(l+1)} = \frac{\sqrt{d_i}}{s_i} \sum_{u \in S(i)} \frac{e_u^{(l)}}{\sqrt{d_u}}, \qquad
        \mathbb{E}\big[e_i^{(l+1)}\big] = \sum_{u \in N(i)} \frac{e_u^{(l)}}{\sqrt{d_u d_i}}

    (users alike) with :math:`d` the full graph's degrees and :math:`S(i)` the :math:`s_i`
    neighbours sampled uniformly for node i; with every neighbour sampled it is exact. Nodes of the
    last hop have no sampled neighbours and get 0 there, a value the seeds' layers never read.
    ``ui`` [2, E] holds (user, item) local indices of edges into items, ``iu`` (item, user) of
    edges into users; returns the readout of every subgraph node (``"mean"`` or ``"sum"``).
    """
    if readout not in ("mean", "sum"):
        raise ValueError(f"sampled propagation reads out 'mean' or 'sum', got {readout!r}")
    nu, ni = x_user.shape[0], x_item.shape[0]
    s_item = torch.bincount(ui[1], minlength=ni).clamp(min=1).to(x_item.dtype)
    s_user = torch.bincount(iu[1], minlength=nu).clamp(min=1).to(x_user.dtype)
    du, di = deg_user.to(x_user.dtype).clamp(min=1), deg_item.to(x_item.dtype).clamp(min=1)
    # per-edge weight sqrt(d_dst) / (s_dst sqrt(d_src)), fixed over the layers
    w_ui = (di.sqrt() / s_item)[ui[1]] / du.sqrt()[ui[0]]
    w_iu = (du.sqrt() / s_user)[iu[1]] / di.sqrt()[iu[0]]
    out_u, out_i = x_user, x_item
    hu, hi = x_user, x_item
    for _ in range(num_layers):
        hu, hi = (torch.zeros_like(hu).index_add_(0, iu[1], hi.index_select(0, iu[0]) * w_iu.unsqueeze(1)),
                  torch.zeros_like(hi).index_add_(0, ui[1], hu.index_select(0, ui[0]) * w_ui.unsqueeze(1)))
        out_u, out_i = out_u + hu, out_i + hi
    w = readout_weight(num_layers, readout)
    return out_u * w, out_i * w


def subgraph_readout(read: Callable[[torch.Tensor], torch.Tensor], graph: SparseGraph, batch: Dict[str, torch.Tensor],
                     n_users: int, num_layers: int, readout: str = "mean") -> Dict[str, torch.Tensor]:
    """:func:`sampled_lightgcn` over a sampled batch's subgraph (`graphrec.train.link_neighbor`)
    with layer-0 rows read by ``read(table ids)`` (users 0..n_users-1, then items; e.g. an embedding
    lookup with sparse gradients) and d the degrees of the full bipartite ``graph``. Returns
    ``users``/``items`` (the subgraph's ids, sorted, as `graphrec.models.base.rows_of` reads them)
    with their readouts ``out_user``/``out_item`` and layer-0 rows ``x_user``/``x_item``."""
    users, items = batch["sub_users"], batch["sub_items"]
    ids = torch.cat([users, n_users + items])
    x_u, x_i = torch.split(read(ids), [users.numel(), items.numel()])
    d = graph.degree().index_select(0, ids)
    out_u, out_i = sampled_lightgcn(x_u, x_i, d[:users.numel()], d[users.numel():], batch["sub_ui"],
                                    batch["sub_iu"], num_layers, readout)
    ou, oi = torch.argsort(users), torch.argsort(items)
    return {"users": users[ou], "out_user": out_u[ou], "x_user": x_u[ou],
            "items": items[oi], "out_item": out_i[oi], "x_item": x_i[oi]}
