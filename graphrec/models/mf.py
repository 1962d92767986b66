"""MF-BPR (Rendle et al. 2009): dot-product matrix factorisation trained with BPR."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from graphrec import losses
from graphrec.models import register_model
from graphrec.models.base import ModelContext, Recommender, Reps


@register_model("mf")
class MF(Recommender):
    r"""Matrix factorisation: :math:`\hat{y}_{ui} = \mathbf{e}_u^\top \mathbf{e}_i`.

    Loss: BPR (Rendle et al. Eq. 4) plus :math:`\lambda \cdot \frac{1}{2}\|\Theta_{batch}\|^2 / B`
    on the batch's embeddings (RecBole/MMRec convention for ``reg_weight``).
    """

    name = "mf"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, reg_weight: float = 1e-4, **hp):
        super().__init__(ctx)
        self.user_emb = nn.Embedding(self.n_users, embedding_dim)
        self.item_emb = nn.Embedding(self.n_items, embedding_dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)
        self.reg_weight = float(reg_weight)

    def propagate(self) -> Reps:
        return Reps(user=self.user_emb.weight, item=self.item_emb.weight)

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        u, p, n = reps.user[batch["user"]], reps.item[batch["pos"]], reps.item[batch["neg"]]
        terms = {"bpr": losses.bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight > 0:
            terms["reg"] = self.reg_weight * losses.l2_reg(u, p, n)
        return terms
