r"""NGCF (Wang et al., "Neural Graph Collaborative Filtering", SIGIR 2019), written with a stock
PyTorch Geometric ``MessagePassing`` layer and trained by graphrec's trainer like every model.

The graph is graphrec's cached symmetric-normalised bipartite graph ``L = D^{-1/2} A D^{-1/2}``
(the paper's Laplacian), handed to PyG without a copy as its ``adj_t``
(`graphrec.graphs.pyg.adj_t`); the same layer also takes PyG's ``edge_index``/``edge_weight``.
"""
from __future__ import annotations

from typing import Any, Dict, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch_geometric.nn import MessagePassing
from torch_geometric.typing import Adj, OptTensor
from torch_geometric.utils import spmm as pyg_spmm

from graphrec import losses
from graphrec.graphs import pyg
from graphrec.models import register_model
from graphrec.models.base import ModelContext, Recommender, Reps, rows_of


class NGCFConv(MessagePassing):
    r"""One NGCF embedding-propagation layer (NGCF Eq. 7, the matrix form of Eq. 3-5):

    .. math::
        E^{(l)} = \mathrm{LeakyReLU}\big((\mathcal{L} + I)\,E^{(l-1)} W_1^{(l)}
                  + (\mathcal{L} E^{(l-1)}) \odot E^{(l-1)}\, W_2^{(l)}\big)

    per node: :math:`e_i' = \sigma\big(W_1 (e_i + \sum_j \mathcal{L}_{ij} e_j)
    + W_2 (e_i \odot \sum_j \mathcal{L}_{ij} e_j)\big)` (the message
    :math:`\mathcal{L}_{ij} W_2 (e_j \odot e_i)` of Eq. 3 summed over neighbours). The linear maps
    carry biases (as the authors' code and RecBole's ``BiGNNLayer``); LeakyReLU slope 0.2.
    :math:`\sum_j \mathcal{L}_{ij} e_j` is PyG message passing with ``edge_weight`` (or one sparse
    product with ``adj_t``), so the layer takes every PyG graph input.
    """

    def __init__(self, in_channels: int, out_channels: int, negative_slope: float = 0.2, **kwargs: Any):
        kwargs.setdefault("aggr", "add")
        super().__init__(**kwargs)
        self.lin1 = nn.Linear(in_channels, out_channels)  # W_1: (L + I) E
        self.lin2 = nn.Linear(in_channels, out_channels)  # W_2: (L E) ⊙ E
        self.negative_slope = float(negative_slope)

    def forward(self, x: torch.Tensor, edge_index: Adj, edge_weight: OptTensor = None) -> torch.Tensor:
        side = self.propagate(edge_index, x=x, edge_weight=edge_weight)  # L E
        return F.leaky_relu(self.lin1(x + side) + self.lin2(side * x), self.negative_slope)

    def message(self, x_j: torch.Tensor, edge_weight: OptTensor) -> torch.Tensor:
        return x_j if edge_weight is None else edge_weight.view(-1, 1) * x_j

    def message_and_aggregate(self, adj_t: Adj, x: torch.Tensor) -> torch.Tensor:
        return pyg_spmm(adj_t, x, reduce=self.aggr)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.lin1.in_features}, {self.lin1.out_features})"


def node_dropout(adj: torch.Tensor, p: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """NGCF's node (edge) dropout on the normalised graph: each stored entry is kept with
    probability ``1 - p`` and rescaled by ``1 / (1 - p)`` (the authors' ``_dropout_sparse``). The
    CSR structure is shared; dropped entries are stored zeros."""
    vals = adj.values()
    keep = (torch.rand(vals.shape, device=vals.device, generator=generator) >= p).to(vals.dtype)
    return torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(), vals * keep / (1.0 - p),
                                   size=adj.shape, check_invariants=False)


@register_model("ngcf")
class NGCF(Recommender):
    r"""NGCF: :math:`L` layers of `NGCFConv` over the user-item graph; each layer's output goes
    through message dropout, the next layer takes it, and its L2-normalised copy joins the
    representation :math:`e^* = e^{(0)} \| \hat e^{(1)} \| \dots \| \hat e^{(L)}` (Eq. 9);
    :math:`\hat y_{ui} = {e_u^*}^\top e_i^*` (Eq. 10, the default `Recommender.score`).

    Loss: BPR (Eq. 11) plus ``reg_weight`` x the L2 term of the batch's layer-0 embeddings.
    Deviation: Eq. 11 writes :math:`\lambda\|\Theta\|_2^2` over all parameters; like RecBole's NGCF
    (whose defaults these are: 3 layers of 64, message dropout 0.1, node dropout 0, reg 1e-5) we use
    its ``EmbLoss`` (`graphrec.losses.l2_reg`) on the batch's layer-0 rows, so ``reg_weight`` means
    the same here as in RecBole.
    """

    name = "ngcf"
    task = "pairwise"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, hidden_dims: Sequence[int] = (64, 64, 64),
                 message_dropout: float = 0.1, node_dropout: float = 0.0, reg_weight: float = 1e-5, **hp: Any):
        super().__init__(ctx)
        dims = [int(embedding_dim)] + [int(d) for d in hidden_dims]
        if min(dims) < 1:
            raise ValueError(f"ngcf: embedding_dim and hidden_dims must be >= 1, got {dims}")
        for name, p in (("message_dropout", message_dropout), ("node_dropout", node_dropout)):
            if not 0.0 <= float(p) < 1.0:
                raise ValueError(f"ngcf: {name} must be in [0, 1), got {p}")
        self.embedding = nn.Embedding(self.n_users + self.n_items, dims[0])
        self.convs = nn.ModuleList(NGCFConv(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.dropout = nn.Dropout(float(message_dropout))
        self.node_dropout = float(node_dropout)
        self.reg_weight = float(reg_weight)
        self.adj = pyg.adj_t(ctx.graphs["ui"])  # the cached CSR itself, PyG's adj_t (no copy)
        # RecBole's xavier_normal_initialization: embeddings and linear weights, zero biases
        nn.init.xavier_normal_(self.embedding.weight)
        for conv in self.convs:
            for lin in (conv.lin1, conv.lin2):
                nn.init.xavier_normal_(lin.weight)
                nn.init.zeros_(lin.bias)

    @classmethod
    def graph_specs(cls, hp: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
        return {"ui": {"kind": "bipartite", "norm": "sym"}}

    def propagate(self) -> Reps:
        adj = node_dropout(self.adj, self.node_dropout) if self.training and self.node_dropout > 0 else self.adj
        h = self.embedding.weight
        layers = [h]
        for conv in self.convs:  # a loop over layers; each layer is one sparse product
            h = self.dropout(conv(h, adj))
            layers.append(F.normalize(h, p=2, dim=1))
        out = torch.cat(layers, dim=1)
        user, item = torch.split(out, [self.n_users, self.n_items])
        user0, item0 = torch.split(self.embedding.weight, [self.n_users, self.n_items])
        return Reps(user=user, item=item, extras={"user0": user0, "item0": item0})

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        u, p, n = (rows_of(reps, "user", batch["user"]), rows_of(reps, "item", batch["pos"]),
                   rows_of(reps, "item", batch["neg"]))
        terms = {"bpr": losses.bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight > 0:
            terms["reg"] = self.reg_weight * losses.l2_reg(
                rows_of(reps, "user0", batch["user"], "user"), rows_of(reps, "item0", batch["pos"], "item"),
                rows_of(reps, "item0", batch["neg"], "item"))
        return terms
