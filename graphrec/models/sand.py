"""SAND (He et al. 2024, arXiv 2406.08270): separate alignment and distancing of modality-generic
and modality-unique parts, on a DRAGON-style multimodal GNN (read from the official code)."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from graphrec import losses
from graphrec.models import register_model
from graphrec.models._modalities import ID_MODALITY, FrozenItemGraphSpecs, content_modalities, feature_matrix
from graphrec.models.base import ModelContext, Recommender, Reps
from graphrec.nn.fusion import ModalityWeights, SANDHeads, SANDInput
from graphrec.nn.item_graph import ItemGraphPropagation
from graphrec.nn import precision
from graphrec.nn.linear_chain import Consumer, linear_consumers
from graphrec.nn.propagation import LightGCNPropagation

#: hyper-parameters of the SAND heads (shared with the plug-in models)
SAND_HEAD_KEYS = ("align", "distance", "alpha", "beta", "tau", "generic_fraction", "head_hidden", "head_out",
                  "code_dim", "club_hidden", "club_estimator", "negl2_mode", "distance_reduce", "intra_negatives")


class SANDAuxMixin:
    """CLUB estimator training through the trainer's auxiliary hook (SAND's code: an Adam step of the estimator per batch, 50 by default).

    The code fits φ for ``club_steps`` Adam steps per mini-batch on the detached codes of the
    current model. Here the trainer runs ``auxiliary_steps`` aux steps before the main loss; the
    codes are computed once per batch (no grad: they cannot change while only φ moves) and reused
    by every step, then invalidated by :meth:`loss`. Deviation: φ is fitted before (not after)
    the main forward of the batch, so the bound the model minimises uses the freshly fitted φ.
    Classes using it define ``sand_inputs(batch, reps)`` -> ``{modality: SANDInput}``
    (``reps=None``: compute them afresh).
    """

    sand: SANDHeads
    _aux_codes: Optional[tuple] = None

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        return self.sand.estimator_parameters()

    def auxiliary_loss(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        if self.sand.club is None:
            return {}
        if self._aux_codes is None:
            with torch.no_grad():
                self._aux_codes = self.sand.estimator_codes(self.sand_inputs(batch, None))
        return self.sand.estimator_loss(self._aux_codes)


def sand_items(batch: Dict[str, torch.Tensor], align_items: str) -> Optional[torch.Tensor]:
    """Rows the SAND terms are computed on: all items (code) or the batch's distinct items."""
    if align_items == "all":
        return None
    if align_items == "batch":
        return torch.unique(torch.cat([batch["pos"], batch["neg"]]))
    raise ValueError(f"align_items must be 'all' or 'batch', got {align_items!r}")


@register_model("sand")
@register_model("sand-a")
@register_model("sand-b")
@register_model("sand-c")
@register_model("sand-d")
class SAND(SANDAuxMixin, FrozenItemGraphSpecs, Recommender):
    r"""SAND with a DRAGON-style encoder (SAND Eq. 3-17 and the official code). For each modality m:

    .. math::
        Z_m = X_m W_m + b_m = [E^m_g \| E^m_q], \quad
        F_m = L_2(\mathrm{LeakyReLU}(L_1 Z_m)), \quad
        X^{(0)}_m = \mathrm{rownorm}([P_m; F_m]), \quad
        [U_m; I_m] = \textstyle\sum_{l=0}^{2} \hat A^l X^{(0)}_m

    then :math:`I = [I_1 \| \dots \| I_M]`, :math:`e_i = I_i + (S I)_i` (frozen kNN graph S, one
    hop), :math:`e_u = [w_{u,1} U_1 \| \dots]` (Eq. 15), :math:`\hat y = e_u^\top e_i`, and the
    total loss (Eq. 17, code form) :math:`L_{bpr} + \alpha L_{align} + \beta \cdot
    \mathrm{mean}_m L^m_{dis}` with log-base-2 mean BPR.

    Variants: ``sand-a`` (solosim + club), ``sand-b`` (solosim + l2), ``sand-c`` (infonce + club),
    ``sand-d`` (infonce + l2); ``distance: none`` / ``align: none`` give the ablations.
    ``proj_dim`` = None keeps the code's full-width projection (d_m x d_m); an int projects to
    that width instead. Z_m is never materialised in training or scoring: everything reading it
    starts with a linear layer, so those layers are re-associated onto the features
    (:mod:`graphrec.nn.linear_chain`; exact, and ~10x fewer multiply-adds at 4096-d). The modality ``id`` is a learnable item table of
    width ``id_dim`` standing in for a second modality when a dataset has only one (our
    extension; SAND always has image + text).
    """

    name = "sand"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, modalities: Sequence[str] = ("image", "text"),
                 proj_dim: Optional[int] = None, mlp_hidden: int = 256, n_ui_layers: int = 2, n_mm_layers: int = 1,
                 knn_k: int = 10, mm_image_weight: float = 0.1, bpr_log_base: float = 2.0, id_dim: int = 64,
                 align_items: str = "all", club_steps: int = 50, **hp: Any):
        super().__init__(ctx)
        unknown = set(hp) - set(SAND_HEAD_KEYS)
        if unknown:
            raise TypeError(f"SAND: unknown hyper-parameter(s) {sorted(unknown)}")
        d = int(embedding_dim)
        self.modalities = list(modalities)
        if len(self.modalities) < 1 or not content_modalities(self.modalities):
            raise ValueError(f"SAND needs at least one content modality, got {self.modalities}")
        self.d, self.bpr_log_base, self.align_items = d, float(bpr_log_base), align_items
        self.auxiliary_steps = int(club_steps)
        self.proj = nn.ModuleDict()
        dims: Dict[str, int] = {}
        for m in self.modalities:
            if m == ID_MODALITY:
                self.id_table = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, int(id_dim))))
                dims[m] = int(id_dim)
                continue
            x = feature_matrix(ctx, m)
            self.register_buffer(f"feat_{m}", x, persistent=False)
            out = x.shape[1] if proj_dim is None else int(proj_dim)
            self.proj[m] = nn.Linear(x.shape[1], out)
            dims[m] = out
        self.mlp = nn.ModuleDict({m: nn.Sequential(nn.Linear(dims[m], int(mlp_hidden)), nn.LeakyReLU(),
                                                   nn.Linear(int(mlp_hidden), d)) for m in self.modalities})
        self.pref = nn.ParameterDict({m: nn.Parameter(nn.init.xavier_normal_(torch.empty(self.n_users, d)))
                                      for m in self.modalities})
        self.user_weights = ModalityWeights(self.n_users, len(self.modalities))
        self.ui_graph = ctx.graphs["ui"]
        self.ui = LightGCNPropagation(int(n_ui_layers), "sum")
        self.mm = ItemGraphPropagation(ctx.graphs["mm"], int(n_mm_layers))
        self.sand = SANDHeads(dims, **hp)

    def modality_projections(self, items: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        r""":math:`Z_m = [E^m_g \| E^m_q]` for ``items`` (all items when None), materialised (diagnostics)."""
        out = {}
        for m in self.modalities:
            if m == ID_MODALITY:
                out[m] = self.id_table if items is None else self.id_table[items]
            else:
                x = getattr(self, f"feat_{m}")
                out[m] = self.proj[m](x if items is None else x[items])
        return out

    def _consume(self, m: str, consumers: list[Consumer], items: Optional[torch.Tensor] = None) -> list[torch.Tensor]:
        """Outputs of linear ``consumers`` of Z_m (rows ``items``) without materialising Z_m."""
        if m == ID_MODALITY:
            z = self.id_table if items is None else self.id_table[items]
            return [z[:, c] if layer is None else layer(z[:, c]) for layer, c in consumers]
        x = getattr(self, f"feat_{m}")
        # mixed precision (train.amp): the N x d_in x K product of the content features, SAND's largest
        # (23,033 x 4096 at Clothing), runs in bf16 on a bf16 copy of the features cast once; the
        # outputs return to float32 for the rest of the model (graphrec/nn/precision.py)
        with precision.region():
            x = precision.lowered(self, f"feat_{m}", x)
            outs = linear_consumers(x if items is None else x[items], self.proj[m], consumers)
        return [o.float() for o in outs]

    def propagate(self) -> Reps:
        x0, extra = [], {}
        for m in self.modalities:
            heads = self.sand.first_layers(m) if self.training and self.sand.active else {}
            outs = self._consume(m, [(self.mlp[m][0], slice(None))] + list(heads.values()))
            f = self.mlp[m][1:](outs[0])
            x0.append(F.normalize(torch.cat([self.pref[m], f]), dim=-1))
            extra.update({f"sand_{m}_{k}": v for k, v in zip(heads, outs[1:])})
        out = self.ui(self.ui_graph, torch.cat(x0, dim=-1))  # all modalities in one sparse product
        user, item = torch.split(out, [self.n_users, self.n_items])
        item = item + self.mm(item)
        user = self.user_weights(list(user.split(self.d, dim=-1)))
        return Reps(user=user, item=item, extras=extra)

    def sand_inputs(self, batch: Dict[str, torch.Tensor], reps: Optional[Reps]) -> Dict[str, SANDInput]:
        items = sand_items(batch, self.align_items)
        out: Dict[str, SANDInput] = {}
        for m in self.modalities:
            if reps is None:  # the estimator's codes only
                layers = self.sand.first_layers(m, ("code_g", "code_q"))
                out[m] = dict(zip(layers, self._consume(m, list(layers.values()), items)))
            else:
                held = {k: reps.extras[f"sand_{m}_{k}"] for k in self.sand.first_layers(m)}
                out[m] = held if items is None else {k: v[items] for k, v in held.items()}
        return out

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        self._aux_codes = None
        u = reps.user[batch["user"]]
        p, n = reps.item[batch["pos"]], reps.item[batch["neg"]]
        terms = {"bpr": losses.bpr_loss((u * p).sum(-1), (u * n).sum(-1), self.bpr_log_base)}
        if self.sand.active:
            terms.update(self.sand(self.sand_inputs(batch, reps)))
        return terms
