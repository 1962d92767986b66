"""VBPR (He & McAuley, AAAI 2016) in MMRec's form, on the common trainer."""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from graphrec import losses
from graphrec.models import register_model
from graphrec.models._modalities import feature_matrix
from graphrec.models.base import ModelContext, Recommender, Reps
from graphrec.nn import precision


@register_model("vbpr")
class VBPR(Recommender):
    r"""VBPR: :math:`\hat y_{ui} = p_u^\top [\gamma_i \,\|\, \textstyle\sum_m W_m x^m_i + b]`.

    - :math:`p_u \in R^{2d}`, :math:`\gamma_i \in R^{d}` ID embeddings (Xavier-uniform);
    - :math:`W_m` per-modality linear maps to :math:`d`. :math:`\sum_m W_m x^m_i` is exactly MMRec's
      single ``item_linear`` on the concatenated features (block form, same Xavier-normal init scale),
      and keeps each modality's projection :math:`z^m_i = W_m x^m_i` available to SAND's plug-in.
      The paper's separate visual bias term :math:`\beta'^\top f_i` is absorbed by the user-side
      dot product, as in MMRec.
    - Loss (VBPR Eq. 4, MMRec): BPR (ln) + ``reg_weight`` · EmbLoss(p_u, e_pos, e_neg) (unsquared
      Frobenius / B, `graphrec.losses.l2_reg`), with optional ``dropout`` on the vectors.

    In training, item vectors are computed only for the batch's items (the feature projection of
    all items is the dominant cost at Amazon scale); the full item table is built in eval mode.
    """

    name = "vbpr"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, modalities: Sequence[str] = ("image", "text"),
                 reg_weight: float = 1e-4, dropout: float = 0.0, **hp: Any):
        super().__init__(ctx)
        d = int(embedding_dim)
        self.modalities = list(modalities)
        self.reg_weight, self.dropout = float(reg_weight), float(dropout)
        self.user = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, 2 * d)))
        self.item = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        feats = {m: feature_matrix(ctx, m) for m in self.modalities}
        for m, x in feats.items():
            self.register_buffer(f"feat_{m}", x, persistent=False)
        fan_in = sum(x.shape[1] for x in feats.values())
        std = math.sqrt(2.0 / (fan_in + d))
        self.proj = nn.ModuleDict({m: nn.Linear(x.shape[1], d, bias=False) for m, x in feats.items()})
        for lin in self.proj.values():
            nn.init.normal_(lin.weight, 0.0, std)
        self.bias = nn.Parameter(torch.zeros(d))

    @classmethod
    def required_modalities(cls, hp: Dict[str, Any]) -> list[str]:
        return list(hp.get("modalities", ("image", "text")))

    # -- modality projections (also the SAND plug-in's input) -----------------------------------
    def modality_projections(self, items: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """:math:`z^m = W_m x^m` for ``items`` (all items when None)."""
        out = {}
        for m in self.modalities:
            x = getattr(self, f"feat_{m}")
            with precision.region():  # train.amp: the feature projection in bf16, returned as float32
                x = precision.lowered(self, f"feat_{m}", x)
                out[m] = self.proj[m](x if items is None else x[items]).float()
        return out

    def _item_vectors(self, items: Optional[torch.Tensor]) -> torch.Tensor:
        z = self.modality_projections(items)
        content = torch.stack(list(z.values())).sum(0) + self.bias
        ids = self.item if items is None else self.item[items]
        return torch.cat([ids, content], dim=-1)

    def propagate(self) -> Reps:
        user = F.dropout(self.user, self.dropout, self.training)
        if self.training:  # batch items are projected in loss()
            return Reps(user=user)
        return Reps(user=user, item=self._item_vectors(None))

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        u = reps.user[batch["user"]]
        items = torch.cat([batch["pos"], batch["neg"]])
        iv = F.dropout(self._item_vectors(items), self.dropout, self.training)
        p, n = iv.chunk(2)
        terms = {"bpr": losses.bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight > 0:
            terms["reg"] = self.reg_weight * losses.l2_reg(u, p, n)
        return terms
