"""Popularity: score(u, i) = training degree of i. A sanity baseline with nothing to learn."""
from __future__ import annotations

from typing import Dict

import torch

from graphrec.models import register_model
from graphrec.models.base import ModelContext, Recommender, Reps


@register_model("pop")
class Pop(Recommender):
    r"""Most-popular ranking: :math:`\hat{y}_{ui} = |\{u' : (u', i) \in \mathcal{R}_{train}\}|`."""

    name = "pop"

    def __init__(self, ctx: ModelContext, **hp):
        super().__init__(ctx)
        self.register_buffer("popularity", ctx.train.item_degree().to(torch.float32))

    def propagate(self) -> Reps:
        return Reps(extras={"item_pop": self.popularity})

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        raise RuntimeError("pop has no trainable parameters; the trainer skips training for it")

    def score(self, users: torch.Tensor, reps: Reps) -> torch.Tensor:
        return reps.extras["item_pop"].unsqueeze(0).expand(users.numel(), -1)
