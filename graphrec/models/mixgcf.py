r"""LightGCN trained with MixGCF hard negatives (Huang et al., KDD 2021): the fine-tuning model of
MCPT's fine-tuning stage, and a LightGCN recipe of its own for large, sparse catalogues.

Measured (benchmarks/results/accuracy_mixgcf.md): with the paper's 64 candidates it beats uniform
negatives on synthetic-baby (7,050 items); on 1.6k-item catalogues (ml-100k, Amazon Scientific)
64 candidates are 4% of the items (on ml-100k 27% of the chosen ones are held-out positives) and
it peaks early and below LightGCN, while 4 candidates (``n_candidates``) beat LightGCN there."""
from __future__ import annotations

from typing import Dict

import torch
from torch import nn

from graphrec import losses
from graphrec.models import register_model
from graphrec.models.base import ModelContext, Reps
from graphrec.models.lightgcn import LightGCN
from graphrec.nn.candidate_argmax import CandidateArgmax
from graphrec.nn.layerwise_rows import layerwise_rows
from graphrec.nn.propagation import readout_weight


@register_model("mixgcf")
class MixGCF(LightGCN):
    r"""LightGCN whose negatives are synthesised from M candidates per (user, positive) pair.

    With the per-layer embeddings :math:`e^{(l)} = (\hat A^l E^{(0)})` and the pooled user vector
    :math:`e_u = c\sum_l e_u^{(l)}` (c = 1/(L+1) for the mean readout, 1 for sum), for each of the
    K synthetic negatives of a pair (u, i) and its candidates :math:`n_1..n_M` (uniform, none of
    u's training items):

    * positive mixing, per layer, :math:`\alpha^{(l)} \sim U(0,1)` shared by the candidates:
      :math:`e'^{(l)}_{n_j} = \alpha^{(l)} e^{(l)}_i + (1-\alpha^{(l)}) e^{(l)}_{n_j}`;
    * hop mixing: :math:`j^*_l = \arg\max_j \langle e_u, e'^{(l)}_{n_j}\rangle` (no gradient) and
      :math:`e_{neg} = c\sum_l e'^{(l)}_{n_{j^*_l}}`.

    Since :math:`\langle e_u, e'^{(l)}_{n_j}\rangle = \alpha^{(l)}\langle e_u, e^{(l)}_i\rangle +
    (1-\alpha^{(l)})\langle e_u, e^{(l)}_{n_j}\rangle` and :math:`1-\alpha^{(l)} > 0`, the arg max
    is that of :math:`\langle e_u, e^{(l)}_{n_j}\rangle`: the candidates are scored without
    forming their mixtures (the same choice as the reference code, which forms them all).

    Loss (MixGCF's ``create_bpr_loss``):
    :math:`\frac1B\sum_{(u,i)} \log(1 + \sum_k \exp(e_u^\top e_{neg,k} - e_u^\top e_i))` plus
    ``reg_weight`` :math:`\cdot(\|e_u^{(0)}\|^2 + \|e_i^{(0)}\|^2 + \sum_k\|e'^{(0)}_{neg,k}\|^2)/(2B)`
    (squared norms of the layer-0 rows, the synthetic negative's layer-0 mixture included; plain
    ``lightgcn`` keeps MMRec's unsquared norms for parity with MMRec's numbers).

    A step propagates the whole graph layer by layer (the candidates, B x K x M draws, are at
    Clothing most of the catalogue, so every layer's whole table is needed) and keeps only the rows
    the loss reads (`graphrec.nn.layerwise_rows`). Evaluation is LightGCN's: the same
    :meth:`propagate` and pooled inner product.
    """

    name = "mixgcf"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, n_layers: int = 3,
                 reg_weight: float = 1e-4, readout: str = "mean", n_candidates: int = 64,
                 n_negatives: int = 1, **hp):
        if readout not in ("mean", "sum"):
            raise ValueError(f"mixgcf pools the layers by 'mean' or 'sum', got readout={readout!r}")
        if int(n_candidates) < 1 or int(n_negatives) < 1:
            raise ValueError(f"mixgcf needs n_candidates >= 1 and n_negatives >= 1, got "
                             f"{n_candidates} and {n_negatives}")
        super().__init__(ctx, embedding_dim=embedding_dim, n_layers=n_layers, reg_weight=reg_weight,
                         readout=readout, batch_local=False, **hp)
        with torch.no_grad():  # MixGCF's code: Xavier on the user table and the item table separately
            nn.init.xavier_uniform_(self.embedding.weight[: self.n_users])
            nn.init.xavier_uniform_(self.embedding.weight[self.n_users:])
        self.n_candidates = int(n_candidates)
        self.n_negatives = int(n_negatives)
        self.hardest = CandidateArgmax()

    def negatives_per_pair(self, configured: int) -> int:
        want = self.n_candidates * self.n_negatives
        if configured not in (1, want):
            raise ValueError(f"mixgcf draws model.n_negatives x model.n_candidates = {want} candidates per "
                             f"pair itself; leave train.num_neg at 1 (it is {configured})")
        return want

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        r"""Per layer l, the rows of :math:`\hat A^l E^{(0)}` that the loss reads: the batch's users,
        positives and, per synthetic negative, the hardest candidate for that layer (hop mixing,
        chosen inside the forward from the layer tables; `graphrec.nn.layerwise_rows`)."""
        users, pos = batch["user"], batch["pos"]
        b, k, m = users.numel(), self.n_negatives, self.n_candidates
        cand = batch["neg"].reshape(b, k, m) + self.n_users  # items follow the users in the table
        fixed = torch.cat([users, pos + self.n_users])
        chosen = []

        def pick(tables):
            # the arg max does not depend on alpha (class docstring): choose before mixing
            e_u = sum(t.index_select(0, users) for t in tables) * readout_weight(len(tables) - 1, self.prop.readout)
            for t in tables:
                chosen.append(self.hardest(t, cand, e_u))
            return [torch.cat([fixed, c.flatten()]) for c in chosen]

        rows = layerwise_rows(self.graph, self.embedding.weight, self.prop.num_layers, pick)
        extras = {f"rows{l}": r for l, r in enumerate(rows)}
        extras["chosen"] = torch.stack(chosen, -1) - self.n_users  # [B, K, L+1] item ids
        return Reps(extras=extras)

    def mixing_weights(self, n_pairs: int, device: torch.device) -> torch.Tensor:
        r""":math:`\alpha` [B, K, L+1] ~ U(0, 1), from the global generator (saved in checkpoints)."""
        return torch.rand(n_pairs, self.n_negatives, self.prop.num_layers + 1, device=device)

    def synthesise(self, batch: Dict[str, torch.Tensor], reps: Reps, alpha: torch.Tensor):
        """(pooled user [B, d], pooled positive [B, d], pooled synthetic negatives [B, K, d],
        layer-0 rows (user, positive, negatives [B, K, d]), chosen candidate per layer [B, K, L+1])."""
        b, k = batch["user"].numel(), self.n_negatives
        users, pos, mixes = [], [], []
        for l in range(self.prop.num_layers + 1):
            u_l, p_l, n_l = torch.split(reps.extras[f"rows{l}"], [b, b, b * k])
            a = alpha[:, :, l].unsqueeze(-1)
            users.append(u_l)
            pos.append(p_l)
            mixes.append(a * p_l.unsqueeze(1) + (1 - a) * n_l.view(b, k, -1))  # positive mixing
        c = readout_weight(self.prop.num_layers, self.prop.readout)
        return (sum(users) * c, sum(pos) * c, sum(mixes) * c, (users[0], pos[0], mixes[0]),
                reps.extras["chosen"])

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        alpha = self.mixing_weights(batch["user"].numel(), batch["user"].device)
        u, p, n, (u0, p0, n0), _ = self.synthesise(batch, reps, alpha)
        pos = (u * p).sum(-1)
        neg = (u.unsqueeze(1) * n).sum(-1)
        terms = {"bpr": losses.multi_negative_bpr(pos, neg)}
        if self.reg_weight > 0:
            terms["reg"] = self.reg_weight * losses.l2_sq_reg(u0, p0, n0.reshape(u0.shape[0], -1))
        return terms
