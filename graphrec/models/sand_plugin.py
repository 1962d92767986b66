"""SAND as a plug-in (SAND Table 3): the same split/alignment/distancing heads composed over a
backbone's per-modality item projections. ``vbpr+sand`` and ``freedom+sand``."""
from __future__ import annotations

from typing import Any, Dict, Optional

import torch

from graphrec.models import register_model
from graphrec.models.base import ModelContext, Reps
from graphrec.models.freedom import FREEDOM
from graphrec.models.sand import SAND_HEAD_KEYS, SANDAuxMixin, sand_items
from graphrec.models.vbpr import VBPR
from graphrec.nn.fusion import SANDHeads

#: plug-in defaults (inferred from the parameter counts of SAND's Table 3): 64-d projections split 32/32, heads 32->64->64->32, CLUB(32, 32)
#: directly on the halves (no code maps)
PLUGIN_DEFAULTS: Dict[str, Any] = {"align": "solosim", "distance": "club", "alpha": 0.012, "beta": 0.006,
                                   "tau": 0.2, "code_dim": None}


class SANDPlugin(SANDAuxMixin):
    r"""Mixin over a backbone exposing ``modality_projections(items) -> {m: z_m}``, the per-modality
    item vectors that enter its score or loss. Adds SAND's terms to the backbone's loss:
    :math:`L = L_{backbone} + \alpha L_{align}(z) + \beta\,\mathrm{mean}_m L^m_{dis}(z)`, with
    :math:`z_m = [g_m \| q_m]` split in column halves. Nothing of the backbone is copied or changed.
    """

    def __init__(self, ctx: ModelContext, align_items: str = "all", club_steps: int = 50, **hp: Any):
        head_hp = {**PLUGIN_DEFAULTS, **{k: hp.pop(k) for k in list(hp) if k in SAND_HEAD_KEYS}}
        super().__init__(ctx, **hp)
        self.align_items = align_items
        self.auxiliary_steps = int(club_steps)
        with torch.no_grad():
            dims = {m: int(z.shape[1]) for m, z in self.modality_projections(torch.zeros(1, dtype=torch.long,
                                                                                          device=ctx.device)).items()}
        if len(dims) < 2:
            raise ValueError(f"{type(self).__name__}: the backbone exposes modality projections {list(dims)}; SAND "
                             "needs two (FREEDOM: set reg_weight > 0 so its projections exist and matter)")
        self.sand = SANDHeads(dims, **head_hp)

    def sand_inputs(self, batch: Dict[str, torch.Tensor], reps: Optional[Reps]) -> Dict[str, torch.Tensor]:
        return self.modality_projections(sand_items(batch, self.align_items))

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        self._aux_codes = None
        terms = super().loss(batch, reps)
        terms.update(self.sand(self.sand_inputs(batch, reps)))
        return terms


@register_model("vbpr+sand")
class VBPRSAND(SANDPlugin, VBPR):
    """VBPR + SAND: the heads act on VBPR's per-modality projections W_m x^m (which sum to its
    content vector, so alignment/distancing shape the scored item vectors)."""

    name = "vbpr+sand"


@register_model("freedom+sand")
class FREEDOMSAND(SANDPlugin, FREEDOM):
    """FREEDOM + SAND: the heads act on FREEDOM's modality projections W_m x^m, which enter the
    training objective through the λ-weighted modality BPR (so ``reg_weight`` must be > 0: with
    λ = 0 they influence nothing the model scores)."""

    name = "freedom+sand"
