"""LightGCN (He et al., SIGIR 2020) on the cached symmetric-normalised bipartite graph."""
from __future__ import annotations

from typing import Any, Callable, Dict, Optional

import torch
from torch import nn
import torch.nn.functional as F

from graphrec import losses
from graphrec.models import register_model
from graphrec.models.base import ModelContext, Recommender, Reps, rows_of
from graphrec.nn.batch_propagation import batch_readout
from graphrec.nn.propagation import LightGCNPropagation
from graphrec.nn.sampled_propagation import subgraph_readout


@register_model("lightgcn")
class LightGCN(Recommender):
    r"""LightGCN: :math:`[E_U; E_I] = \mathrm{readout}_{l=0..K}(\hat{A}^l [E_U^{(0)}; E_I^{(0)}])`,
    :math:`\hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i`, with mean readout (the paper's
    :math:`\alpha_l = 1/(K+1)`) or sum.

    Loss: BPR on the propagated embeddings plus ``reg_weight`` x L2 of the batch's layer-0
    embeddings (LightGCN Eq. 15; MMRec/RecBole's EmbLoss: squared norms / batch size).

    Training steps compute the readout of the batch's users and items only
    (``batch_local=True``, `graphrec.nn.batch_propagation`): the same values and gradients as
    whole-graph propagation, from fewer graph entries. With ``train.sampler: neighbor`` a step
    propagates over a sampled subgraph instead (`graphrec.nn.sampled_propagation`, an unbiased
    estimate). Evaluation propagates the whole graph once.
    """

    name = "lightgcn"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, n_layers: int = 2,
                 reg_weight: float = 1e-4, readout: str = "mean", batch_local: bool = True, **hp):
        super().__init__(ctx)
        self.embedding = nn.Embedding(self.n_users + self.n_items, embedding_dim)
        nn.init.xavier_uniform_(self.embedding.weight)
        self.prop = LightGCNPropagation(n_layers, readout)
        self.reg_weight = float(reg_weight)
        self.graph = ctx.graphs["ui"]
        self.batch_local = bool(batch_local) and readout in ("mean", "sum")

    @classmethod
    def graph_specs(cls, hp: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
        return {"ui": {"kind": "bipartite", "norm": "sym"}}

    def propagate(self) -> Reps:
        out = self.prop(self.graph, self.embedding.weight)
        user, item = torch.split(out, [self.n_users, self.n_items])
        user0, item0 = torch.split(self.embedding.weight, [self.n_users, self.n_items])
        return Reps(user=user, item=item, extras={"user0": user0, "item0": item0})

    def subgraph_hops(self) -> int:
        return self.prop.num_layers

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        if "sub_ui" in batch:  # train.sampler=neighbor: a sampled subgraph around the batch
            return self._sampled_forward(batch)
        if not self.batch_local:
            return self.propagate()
        users = torch.unique(batch["user"])
        items = torch.unique(torch.cat([batch["pos"], batch["neg"]]))
        out, layer0 = batch_readout(self.graph, self.embedding.weight, torch.cat([users, self.n_users + items]),
                                    self.prop.num_layers, self.prop.readout, with_inputs=True)
        user, item = torch.split(out, [users.numel(), items.numel()])
        user0, item0 = torch.split(layer0, [users.numel(), items.numel()])
        return Reps(user=user, item=item, user_ids=users, item_ids=items, extras={"user0": user0, "item0": item0})

    def _sampled_forward(self, batch: Dict[str, torch.Tensor],
                         rows: Optional[Callable[[torch.Tensor], torch.Tensor]] = None) -> Reps:
        """``rows``: reads layer-0 rows by table index (sharded tables, `graphrec.train.sharding`);
        default: this table, with sparse gradients (the step touches these rows only)."""
        read = rows or (lambda ids: F.embedding(ids, self.embedding.weight, sparse=True))
        r = subgraph_readout(read, self.graph, batch, self.n_users, self.prop.num_layers, self.prop.readout)
        return Reps(user=r["out_user"], item=r["out_item"], user_ids=r["users"], item_ids=r["items"],
                    extras={"user0": r["x_user"], "item0": r["x_item"]})

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        u, p, n = (rows_of(reps, "user", batch["user"]), rows_of(reps, "item", batch["pos"]),
                   rows_of(reps, "item", batch["neg"]))
        terms = {"bpr": losses.bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight > 0:  # layer-0 rows (from the batch readout, their gradient joins its table)
            terms["reg"] = self.reg_weight * losses.l2_reg(
                rows_of(reps, "user0", batch["user"], "user"), rows_of(reps, "item0", batch["pos"], "item"),
                rows_of(reps, "item0", batch["neg"], "item"))
        return terms
