r"""PAMD stage 2: the recommender over pretrained modality-disentangled item vectors (Han et al.,
WWW 2022, Sec. 4.4, Eq. 12-13), trained by BPR with uniform negatives (pairwise task).

Run it after ``--model pamd-pretrain`` with ``--set train.init_from=<pretraining run>``: the
model's ``encoder`` component (`graphrec.nn.disentangle.PAMDItemEncoder`) is loaded from it
(``train.init_components: [encoder]``, this model's config) and fine-tuned at its own learning
rate (``encoder_lr_ratio`` x ``train.lr``; paper 1e-4 against 1e-3). Without ``init_from`` the
encoder starts from random weights (no pretraining).
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn

from graphrec import losses
from graphrec.models import register_model
from graphrec.models.base import ModelContext, Recommender, Reps, rows_of
from graphrec.models.pamd_pretrain import VECTORS, content_features
from graphrec.nn.disentangle import ComponentAttention, PAMDItemEncoder

#: which of [t^c, v^c, t^s, v^s] the attention runs over: PAMD, PAMD_¬s, PAMD_¬c (Table 3)
COMPONENTS = {"all": VECTORS, "common": ("c_t", "c_v"), "specific": ("s_t", "s_v")}


@register_model("pamd")
class PAMD(Recommender):
    r"""PAMD's recommender, Eq. (12)-(13):

    .. math:: a_i = \mathrm{softmax}(e_i [e^c_t; e^c_v; e^s_t; e^s_v]^\top / \sqrt d), \quad
              \tilde e_i = e_i + \textstyle\sum_k a_{ik} v_{ik}, \quad \hat y_{ui} = p_u^\top \tilde e_i .

    - ``embedding_dim`` d: the paper's 150 by default; the pretraining run must have the same d.
    - ``components``: ``all`` (PAMD), ``common`` (PAMD_¬s: :math:`e^c_t, e^c_v` only) or
      ``specific`` (PAMD_¬c: :math:`e^s_t, e^s_v` only).
    - ``attention_query``: ``item`` (the paper: the item-ID embedding, scaled; :math:`\tilde e_i`
      does not depend on the user, so evaluation is one matrix product) or ``user`` (the authors'
      code: :math:`a_{ui} = \mathrm{softmax}_k(p_u \cdot v_{ik})`, unscaled,
      :math:`\hat y_{ui} = p_u \cdot e_i + \sum_k a_{uik}\, p_u \cdot v_{ik}`).
    - ``rec_loss``: ``bpr`` (paper) or ``bce`` (the authors' code: pointwise, one negative).
    - Regulariser: ``reg_weight`` x MMRec's EmbLoss (as `mf`) on the batch's user embeddings and
      item-ID embeddings :math:`e_i` (``reg_on: embeddings``, the parameters, as BPR's L2 term: the
      content part of :math:`\tilde e_i` is left free, so a strong regulariser shrinks
      :math:`\tilde e_i` towards the item's content rather than towards 0) or on the fused
      :math:`\tilde e_i` (``reg_on: fused``).
    - ID embeddings: Xavier-uniform (as `mf`; the paper's "(0, 1)" init is ambiguous) or
      ``init: normal`` (N(0, 1), the authors' code).
    The pretraining loss is not applied here (the authors' code fine-tunes on the recommendation
    loss only); the cross-modal mappers are not part of this model.
    """

    name = "pamd"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 150, modalities: Sequence[str] = ("text", "image"),
                 components: str = "all", attention_query: str = "item", rec_loss: str = "bpr",
                 encoder_lr_ratio: float = 0.1, reg_weight: float = 1e-4, reg_on: str = "embeddings",
                 init: str = "xavier",
                 primitive_layers: int = 1, theta_layers: int = 1, activation: str = "none",
                 layer_norm: bool = False, standardize: bool = True, **hp: Any):
        super().__init__(ctx)
        for key, value, known in (("components", components, tuple(COMPONENTS)),
                                  ("attention_query", attention_query, ("item", "user")),
                                  ("rec_loss", rec_loss, ("bpr", "bce")), ("init", init, ("xavier", "normal")),
                                  ("reg_on", reg_on, ("embeddings", "fused"))):
            if value not in known:
                raise ValueError(f"model.{key}={value!r}: expected one of {', '.join(known)}")
        self.components, self.attention_query, self.rec_loss = components, attention_query, rec_loss
        self.reg_weight, self.reg_on = float(reg_weight), reg_on
        self.modalities = list(modalities)
        d = int(embedding_dim)
        x_t, x_v = content_features(ctx, self.modalities, bool(standardize))
        self.register_buffer("x_t", x_t, persistent=False)
        self.register_buffer("x_v", x_v, persistent=False)
        self.encoder = PAMDItemEncoder(x_t.shape[1], x_v.shape[1], d, int(primitive_layers), int(theta_layers),
                                       activation, bool(layer_norm))
        self.user_emb = nn.Embedding(self.n_users, d)
        self.item_emb = nn.Embedding(self.n_items, d)
        for emb in (self.user_emb, self.item_emb):
            nn.init.xavier_uniform_(emb.weight) if init == "xavier" else nn.init.normal_(emb.weight)
        self.attention = ComponentAttention(d, scaled=attention_query == "item")
        if float(encoder_lr_ratio) < 0:
            raise ValueError(f"pamd: encoder_lr_ratio must be >= 0, got {encoder_lr_ratio}")
        self.encoder_lr_ratio = float(encoder_lr_ratio)
        self._frozen: Optional[torch.Tensor] = None  # a frozen encoder's vectors of all items, computed once
        if self.encoder_lr_ratio == 0:  # frozen: bit-identical vectors, no optimiser state
            self.encoder.requires_grad_(False)
            self.encoder._register_load_state_dict_pre_hook(lambda *a, **k: setattr(self, "_frozen", None))

    @classmethod
    def required_modalities(cls, hp: Dict[str, Any]) -> list[str]:
        return list(hp.get("modalities", ("text", "image")))

    # -- item side ---------------------------------------------------------------------------------
    def content(self, items: Optional[torch.Tensor] = None) -> torch.Tensor:
        """The attended vectors of ``items`` (all when None), [n, K, d] in the order of
        ``COMPONENTS[components]`` (a subset of :math:`[e^c_t, e^c_v, e^s_t, e^s_v]`)."""
        if self.encoder_lr_ratio == 0:  # frozen: encode every item once (reset when weights are loaded)
            if self._frozen is None or self._frozen.device != self.x_t.device:
                with torch.no_grad():
                    z = self.encoder(self.x_t, self.x_v)
                self._frozen = torch.stack([z[k] for k in COMPONENTS[self.components]], 1)
            return self._frozen if items is None else self._frozen[items]
        x_t, x_v = (self.x_t, self.x_v) if items is None else (self.x_t[items], self.x_v[items])
        z = self.encoder(x_t, x_v)
        return torch.stack([z[k] for k in COMPONENTS[self.components]], 1)

    def _fused(self, ids: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Eq. (12)-(13) with the item query: (:math:`\\tilde e_i` [n, d], weights [n, K])."""
        mix, w = self.attention(ids, values)
        return ids + mix, w

    def _pair_scores(self, u: torch.Tensor, ids: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """User-query scores of aligned rows: u, ids [B, d], values [B, K, d] -> [B]."""
        mix, _ = self.attention(u, values)
        return (u * (ids + mix)).sum(-1)

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """The encoder at ``encoder_lr_ratio`` x ``train.lr`` (PAMD Sec. 5.1: 1e-4 against 1e-3),
        the embeddings and the attention at ``train.lr``."""
        enc = [q for q in self.encoder.parameters() if q.requires_grad]
        ids = {id(q) for q in enc}
        rest = [q for q in self.parameters() if q.requires_grad and id(q) not in ids]
        return [{"params": enc, "lr": lr * self.encoder_lr_ratio, "weight_decay": weight_decay, "name": "encoder"},
                {"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "recommender"}]

    # -- the contract ------------------------------------------------------------------------------
    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        """Only the batch's items go through the encoder (fine-tuning re-encodes them each step)."""
        items = torch.unique(torch.cat([batch["pos"].flatten(), batch["neg"].flatten()]))
        ids, values = self.item_emb(items), self.content(items)
        if self.attention_query == "item":
            fused, _ = self._fused(ids, values)
            return Reps(user=self.user_emb.weight, item=fused, item_ids=items)
        return Reps(user=self.user_emb.weight, item=ids, item_ids=items, extras={"values": values})

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        u = reps.user.index_select(0, batch["user"])
        p, n = rows_of(reps, "item", batch["pos"]), rows_of(reps, "item", batch["neg"])
        if self.attention_query == "item":
            pos, neg = (u * p).sum(-1), (u * n).sum(-1)
        else:
            vp = rows_of(reps, "values", batch["pos"], side="item")
            vn = rows_of(reps, "values", batch["neg"], side="item")
            pos, neg = self._pair_scores(u, p, vp), self._pair_scores(u, n, vn)
        if self.rec_loss == "bpr":
            terms = {"bpr": losses.bpr_loss(pos, neg)}
        else:
            logits = torch.cat([pos, neg])
            labels = torch.cat([torch.ones_like(pos), torch.zeros_like(neg)])
            terms = {"bce": losses.bce_loss(logits, labels)}
        if self.reg_weight > 0:
            if self.reg_on == "embeddings":
                p, n = self.item_emb(batch["pos"]), self.item_emb(batch["neg"])
            terms["reg"] = self.reg_weight * losses.l2_reg(u, p, n)
        return terms

    def propagate(self) -> Reps:
        ids, values = self.item_emb.weight, self.content(None)
        if self.attention_query == "item":
            fused, w = self._fused(ids, values)
            return Reps(user=self.user_emb.weight, item=fused, extras={"attention": w})
        return Reps(user=self.user_emb.weight, item=ids, extras={"values": values})

    def score(self, users: torch.Tensor, reps: Reps) -> torch.Tensor:
        u = reps.user.index_select(0, users)
        if self.attention_query == "item":
            return u @ reps.item.T
        v = reps.extras["values"]                                   # [I, K, d]
        s_k = torch.einsum("bd,ikd->bik", u, v)                     # p_u . v_ik
        a = torch.softmax(s_k, -1)                                  # unscaled, as the authors' code
        return u @ reps.item.T + (a * s_k).sum(-1)

    def score_factors(self, reps: Reps):
        return (reps.user, reps.item) if self.attention_query == "item" else None

    # -- analysis (PAMD Table 6) --------------------------------------------------------------------
    @torch.no_grad()
    def attention_weights(self, users: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Attention weights [n, K] of the (user, item) pairs (the user is ignored with the item query)."""
        values = self.content(items)
        if self.attention_query == "item":
            return self.attention(self.item_emb(items), values)[1]
        return self.attention(self.user_emb(users), values)[1]

    def common_mask(self) -> torch.Tensor:
        """[K] bool: which attended vectors are common parts."""
        return torch.tensor([k.startswith("c_") for k in COMPONENTS[self.components]])
