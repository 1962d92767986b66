r"""PAMD stage 1: self-supervised pretraining of modality-disentangled item representations on item
content only (Han et al., WWW 2022, Sec. 4.1-4.3; layers and losses in `graphrec.nn.disentangle`).

Batches are items (task ``items``, `graphrec.train.task_items`): no user and no interaction is
read. The run selects its checkpoint by the pretraining loss on held-out items
(``train.valid_metric: loss``); its ``encoder`` component is what the recommender ``pamd`` loads
(``train.init_from=<this run> train.init_components=[encoder]``), and :meth:`export_tables`
hands the four vectors to other models.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch

from graphrec.models import register_model
from graphrec.models._modalities import feature_matrix
from graphrec.models.base import ModelContext, Recommender, Reps
from graphrec.nn.disentangle import (CrossModalMappers, PAMDItemEncoder, encoder_loss, gaps, infonce_ordering,
                                     ranking_loss)

MODES = ("full", "con", "en", "de")
CONTRASTIVE = ("softplus", "literal", "infonce")
ANCHORS = ("raw", "primitive")
#: order of the exported / attended vectors (PAMD Eq. 12): [t^c, v^c, t^s, v^s]
VECTORS = ("c_t", "c_v", "s_t", "s_v")


def content_features(ctx: ModelContext, modalities: Sequence[str], standardize: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(x_t, x_v): the two modalities' feature tables (textual first, as PAMD writes them), each
    optionally z-scored per dimension over the items (deviation, for the toolkit's mixed feature
    scales: the MSE gaps of Eq. 5-9 sum the two modalities, which must be on one scale)."""
    mods = list(modalities)
    if len(mods) != 2 or mods[0] == mods[1]:
        raise ValueError(f"PAMD takes exactly two distinct modalities (textual, visual), got {mods}")
    out = []
    for m in mods:
        x = feature_matrix(ctx, m).float()
        if standardize:
            x = (x - x.mean(0)) / x.std(0).clamp(min=1e-6)
        out.append(x)
    return out[0], out[1]


def encoder_kwargs(hp: Dict[str, Any]) -> Dict[str, Any]:
    """The architecture keywords of `PAMDItemEncoder` (both stages must be built alike)."""
    return {k: hp[k] for k in ("primitive_layers", "theta_layers", "activation", "layer_norm")}


@register_model("pamd-pretrain")
class PAMDPretrain(Recommender):
    r"""PAMD pretraining, :math:`L_{pre} = L_{en} + L_{de}` (Eq. 11), on batches of items.

    - ``mode``: ``full`` (Eq. 11), ``con`` (PAMD-CON, Eq. 14: :math:`L_{en} + L^c`, no ranking),
      ``en`` (PAMD_en: Eq. 3 only), ``de`` (PAMD_de: Eq. 10 only). Only the mode's terms are returned.
    - ``contrastive``: ``softplus`` (the bounded form of Eq. 10, default), ``literal`` (the printed,
      unbounded Eq. 10; diagnostic only) or ``infonce`` (the authors' code, per item, ``tau``).
    - ``anchor_space``: ``raw`` (the cross-modal maps predict the other modality's input features,
      as the authors' code: fixed targets, no collapse) or ``primitive`` (the paper: they predict
      :math:`e_t, e_v`, with a stop-gradient unless ``anchor_stop_grad`` is false; learnable targets
      can shrink to a constant).
    - All parameters (projections, :math:`\Theta`, :math:`\Phi`) are trained jointly on
      :math:`L_{pre}` (the paper's Eq. 10 says "argmin over :math:`\Phi`", but the encoder must
      learn from it for anything to disentangle; the authors' code does the same).

    Layer shapes: ``embedding_dim`` d (default 150, the paper's); one linear layer per network by default (the
    authors' code), deeper with ``*_layers`` and ``activation``.
    """

    name = "pamd-pretrain"
    task = "items"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 150, modalities: Sequence[str] = ("text", "image"),
                 mode: str = "full", contrastive: str = "softplus", anchor_space: str = "raw",
                 anchor_stop_grad: bool = True, tau: float = 0.5, ortho: str = "per_item", align: str = "sum",
                 primitive_layers: int = 1, theta_layers: int = 1, phi_layers: int = 1, activation: str = "none",
                 layer_norm: bool = False, standardize: bool = True, **hp: Any):
        super().__init__(ctx)
        for key, value, known in (("mode", mode, MODES), ("contrastive", contrastive, CONTRASTIVE),
                                  ("anchor_space", anchor_space, ANCHORS)):
            if value not in known:
                raise ValueError(f"model.{key}={value!r}: expected one of {', '.join(known)}")
        self.mode, self.contrastive, self.anchor_space = mode, contrastive, anchor_space
        self.anchor_stop_grad, self.tau, self.ortho, self.align = bool(anchor_stop_grad), float(tau), ortho, align
        self.modalities = list(modalities)
        x_t, x_v = content_features(ctx, self.modalities, bool(standardize))
        self.register_buffer("x_t", x_t, persistent=False)
        self.register_buffer("x_v", x_v, persistent=False)
        d = int(embedding_dim)
        self.encoder = PAMDItemEncoder(x_t.shape[1], x_v.shape[1], d, int(primitive_layers), int(theta_layers),
                                       activation, bool(layer_norm))
        raw = anchor_space == "raw"
        self.mapper = CrossModalMappers(d, x_t.shape[1] if raw else d, x_v.shape[1] if raw else d,
                                        int(phi_layers), activation)

    @classmethod
    def required_modalities(cls, hp: Dict[str, Any]) -> list[str]:
        return list(hp.get("modalities", ("text", "image")))

    # -- forward ----------------------------------------------------------------------------------
    def encode(self, items: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """The six PAMD vectors of ``items`` (all items when None), each [n, d]."""
        x_t, x_v = (self.x_t, self.x_v) if items is None else (self.x_t[items], self.x_v[items])
        return self.encoder(x_t, x_v)

    def _forward(self, items: torch.Tensor) -> Dict[str, torch.Tensor]:
        z = self.encode(items)
        if self.mode == "en":  # Eq. 3 alone never maps across
            return z
        if self.anchor_space == "raw":
            anchors = (self.x_t[items], self.x_v[items])
        else:
            anchors = (z["e_t"], z["e_v"])
            if self.anchor_stop_grad:
                anchors = (anchors[0].detach(), anchors[1].detach())
        return {**z, **self.mapper(z), "anchor_t": anchors[0], "anchor_v": anchors[1]}

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        items = batch["item"]
        return Reps(item_ids=items, extras=self._forward(items))

    def terms(self, z: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Per-item loss terms [B] of the mode (their batch means are the loss)."""
        out: Dict[str, torch.Tensor] = {}
        if self.mode in ("full", "con", "en"):
            en = encoder_loss(z["c_t"], z["c_v"], z["s_t"], z["s_v"], self.ortho, self.align)
            out["en_align"], out["en_orth"] = en["align"], en["orth"]
        if self.mode == "con":
            out["de_c"] = gaps(z["anchor_t"], z["anchor_v"], z)["c"]
        elif self.mode in ("full", "de"):
            if self.contrastive == "infonce":
                out["de"] = (infonce_ordering(z["anchor_t"], z["hat_t_c"], z["hat_t_p"], z["hat_t_s"], self.tau)
                             + infonce_ordering(z["anchor_v"], z["hat_v_c"], z["hat_v_p"], z["hat_v_s"], self.tau))
            else:
                g = gaps(z["anchor_t"], z["anchor_v"], z)
                out["de"] = ranking_loss(g["c"], g["p"], g["s"], self.contrastive)
        return out

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        return {k: v.mean() for k, v in self.terms(reps.extras).items()}

    # -- diagnostics ------------------------------------------------------------------------------
    @torch.no_grad()
    def monitor(self, items: torch.Tensor) -> Dict[str, float]:
        """Anti-collapse and ordering monitor over ``items`` (the held-out items; logged with each
        validation): the fraction of items with :math:`L^c < L^p < L^s`, the median gap
        differences, the smallest per-dimension std of :math:`e_t` and :math:`e_v` across items
        (a collapse drives it to 0) and the mean norms of the common and specific parts."""
        was = self.training
        self.eval()
        z = self.encode(items)
        out = {"std_min_t": float(z["e_t"].std(0).min()), "std_min_v": float(z["e_v"].std(0).min()),
               "norm_common": float(torch.cat([z["c_t"], z["c_v"]]).norm(dim=-1).mean()),
               "norm_specific": float(torch.cat([z["s_t"], z["s_v"]]).norm(dim=-1).mean())}
        if self.mode != "en":
            g = gaps(*self._anchors_of(items, z), self.mapper(z))
            out["order_frac"] = float(((g["c"] < g["p"]) & (g["p"] < g["s"])).float().mean())
            out["median_p_minus_c"] = float((g["p"] - g["c"]).median())
            out["median_s_minus_p"] = float((g["s"] - g["p"]).median())
        self.train(was)
        return out

    def _anchors_of(self, items: torch.Tensor, z: Dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if self.anchor_space == "raw":
            return self.x_t[items], self.x_v[items]
        return z["e_t"], z["e_v"]

    # -- outputs ----------------------------------------------------------------------------------
    def item_vectors(self) -> torch.Tensor:
        """[n_items, 4d]: :math:`[e^c_t, e^c_v, e^s_t, e^s_v]` per item (PAMD Sec. 5.8's features)."""
        z = self.encode(None)
        return torch.cat([z[k] for k in VECTORS], -1)

    def propagate(self) -> Reps:
        return Reps(item=self.item_vectors())

    def score(self, users: torch.Tensor, reps: Reps) -> torch.Tensor:
        raise TypeError("pamd-pretrain is a pretraining stage and ranks nothing: fine-tune its encoder with "
                        "--model pamd --set train.init_from=<this run>")

    def score_factors(self, reps: Reps):
        return None

    @torch.no_grad()
    def export_tables(self) -> Dict[str, torch.Tensor]:
        """``{"item/pamd": [n_items, 4d]}``, columns :math:`[e^c_t, e^c_v, e^s_t, e^s_v]` (d each), row = item index."""
        was = self.training
        self.eval()
        table = self.item_vectors().detach().float().cpu().contiguous()
        self.train(was)
        return {"item/pamd": table}
