"""SASRec (Kang & McAuley, "Self-Attentive Sequential Recommendation", ICDM 2018) in RecBole's form."""
from __future__ import annotations

from typing import Dict

import torch
import torch.nn.functional as F
from torch import nn

from graphrec.errors import require_one_of
from graphrec.models import register_model
from graphrec.models.base import ModelContext, Recommender, Reps
from graphrec.nn import precision
from graphrec.nn.transformer import CausalTransformerEncoder

LOSSES = ("ce", "bce")


@register_model("sasrec")
class SASRec(Recommender):
    r"""Self-attentive next-item model.

    Input (SASRec Section III-A): :math:`X_t = M_{s_t} + P_{pos(t)}` with the item table
    :math:`M` (``n_items + 1`` rows; the last, ``n_items``, is the padding id: a zero row that
    receives no gradient and is never scored) and learned positions :math:`P` (``max_len`` rows).
    Positions count from the oldest item of the (left-padded) window, as RecBole counts them in its
    right-padded one, so extra left padding changes nothing. The causal encoder
    (`graphrec.nn.transformer`) gives :math:`F_t`; the score of item :math:`i` after position
    :math:`t` is :math:`r_{i,t} = F_t^\top M_i` (Section III-D, shared item embedding).

    Losses over every non-padding target position :math:`t` of the shifted batch (target
    :math:`o_t`, the item that follows position :math:`t`), averaged over those positions:

    - ``ce`` (RecBole's ``loss_type: CE``): softmax cross-entropy over all items,
      :math:`-\log \frac{\exp r_{o_t,t}}{\sum_{j=1}^{|I|} \exp r_{j,t}}`. This replaces the paper's
      sampled binary cross-entropy (Section III-E) by the full softmax, as RecBole's SASRec does.
    - ``bce`` (the paper's Section III-E): one sampled negative :math:`j_t` per position
      (``batch["neg"]``), :math:`-\log\sigma(r_{o_t,t}) - \log(1 - \sigma(r_{j_t,t}))`. The paper
      sums over positions; the mean only rescales the learning rate.

    Hyper-parameters (defaults in ``graphrec/configs/models/sasrec.yaml``): ``embedding_dim``,
    ``n_layers``, ``n_heads``, ``inner_dim``, ``dropout`` (embedding, residual and feed-forward
    dropout), ``attn_dropout`` (on the attention weights), ``max_len``, ``loss``,
    ``layer_norm_eps``, ``init_std``.
    """

    name = "sasrec"
    task = "next_item"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, n_layers: int = 2, n_heads: int = 2,
                 inner_dim: int = 256, dropout: float = 0.5, attn_dropout: float = 0.5, max_len: int = 50,
                 loss: str = "ce", layer_norm_eps: float = 1e-12, init_std: float = 0.02, **hp):
        super().__init__(ctx)
        require_one_of("sasrec: model.loss", loss, LOSSES)
        if int(max_len) < 1:
            raise ValueError(f"sasrec: model.max_len must be >= 1, got {max_len}")
        self.pad = self.n_items
        self.max_len = int(max_len)
        self.loss_kind = loss
        self.item_emb = nn.Embedding(self.n_items + 1, embedding_dim, padding_idx=self.pad)
        self.pos_emb = nn.Embedding(self.max_len, embedding_dim)
        self.encoder = CausalTransformerEncoder(embedding_dim, n_layers, n_heads, inner_dim, dropout,
                                                attn_dropout, eps=layer_norm_eps)
        self.encoder.reset_parameters(init_std)
        nn.init.normal_(self.item_emb.weight, 0.0, init_std)
        nn.init.normal_(self.pos_emb.weight, 0.0, init_std)
        with torch.no_grad():
            self.item_emb.weight[self.pad].zero_()

    # -- hooks of the next-item task -----------------------------------------------------------
    def sequence_negatives(self) -> int:
        """Sampled negatives per target position the sequence sampler must add as ``batch["neg"]``."""
        return 1 if self.loss_kind == "bce" else 0

    # -- encoding ------------------------------------------------------------------------------
    def _latest(self, t: torch.Tensor) -> torch.Tensor:
        """The latest ``max_len`` columns (RecBole's truncation of longer histories)."""
        return t[:, -self.max_len:] if t.shape[1] > self.max_len else t

    def encode(self, seq: torch.Tensor) -> torch.Tensor:
        """Hidden states [B, L, d] of a left-padded batch ``seq`` [B, L] (L <= ``max_len``); the
        rows at padding positions are unspecified. The encoder groups rows by length
        (`CausalTransformerEncoder`): padding costs little."""
        if seq.shape[1] > self.max_len:
            raise ValueError(f"sasrec: sequences of {seq.shape[1]} columns exceed model.max_len={self.max_len}")
        valid = seq != self.pad
        pos = (valid.cumsum(1) - 1).clamp(min=0)  # 0 at each row's oldest item
        x = self.item_emb(seq) + self.pos_emb(pos)
        return self.encoder(x, valid)

    # -- the contract --------------------------------------------------------------------------
    def item_table(self) -> torch.Tensor:
        """Item rows [n_items, d] without the padding row."""
        return self.item_emb.weight[: self.n_items]

    def propagate(self) -> Reps:
        return Reps(item=self.item_table())

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        """``extras["hidden"]``: [B, L, d] hidden states of ``batch["seq"]`` (its latest ``max_len`` columns)."""
        return Reps(item=self.item_table(), extras={"hidden": self.encode(self._latest(batch["seq"]))})

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        hidden = reps.extras["hidden"]
        target = self._latest(batch["target"])
        sel = target != self.pad
        if not bool(sel.any()):
            raise ValueError("sasrec: a training batch has no target position (every target is padding)")
        h, tgt = hidden[sel], target[sel]  # [N, d], [N]: only real targets reach the logits
        if self.loss_kind == "ce":
            with precision.region():  # train.amp: the [N, d] x [d, n_items] logits in bf16, the softmax in float32
                logits = h @ reps.item.T
            return {"ce": F.cross_entropy(logits.float(), tgt)}
        if "neg" not in batch:
            raise KeyError("sasrec with loss 'bce' needs batch['neg'] (one negative per position); the "
                           "sampler adds it when sequence_negatives() is 1")
        neg = self._latest(batch["neg"])[sel]
        if bool((neg == self.pad).any()):
            raise ValueError("sasrec: batch['neg'] holds the padding id at a target position")
        pos_logit = (h * reps.item.index_select(0, tgt)).sum(-1)
        neg_logit = (h * reps.item.index_select(0, neg)).sum(-1)
        return {"bce": F.softplus(-pos_logit).mean() + F.softplus(neg_logit).mean()}

    def score_sequences(self, batch: Dict[str, torch.Tensor], reps: Reps) -> torch.Tensor:
        return self.encode(self._latest(batch["seq"]))[:, -1] @ reps.item.T

    def score(self, users: torch.Tensor, reps: Reps) -> torch.Tensor:
        raise TypeError("sasrec scores sequences (score_sequences), not user ids: use the next_item task")

    def score_factors(self, reps: Reps) -> None:
        return None
