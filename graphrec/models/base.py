"""The model contract shared by every general-CF recommender (DESIGN.md, "A model").

A model is built from a `ModelContext` (sizes, training interactions, prebuilt graphs, item
features, device) and its hyper-parameters. The trainer calls, per training step::

    reps  = model.propagate()              # whole-graph forward, once per step
    terms = model.loss(batch, reps)        # dict of named loss terms; the trainer sums them

and per evaluation ``reps = model.propagate()`` once (in eval mode, no grad) followed by
``model.score(users, reps)`` for user chunks. Models never read files and never build graphs:
they declare the graphs they need in ``graph_specs(cfg)`` and receive them in the context.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import torch
from torch import nn

from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import Interactions

Reps = Dict[str, torch.Tensor]


def rows_of(reps: Reps, key: str, ids: torch.Tensor, ids_of: Optional[str] = None) -> torch.Tensor:
    """``reps[key][ids]``, also when ``reps`` holds only some rows: their sorted global ids are
    ``reps[(ids_of or key) + '_ids']`` (``ids_of`` lets several tables share one id list)."""
    held = reps.get((ids_of or key) + "_ids")
    # index_select, not reps[key][...]: on CPU its gather and its backward (index_add) take about
    # a third and two thirds of advanced indexing's (index_put with accumulate)
    if held is None:
        return reps[key].index_select(0, ids)
    return reps[key].index_select(0, torch.searchsorted(held, ids))


@dataclass
class ModelContext:
    n_users: int
    n_items: int
    train: Interactions
    graphs: Dict[str, Any] = field(default_factory=dict)  # name -> graphrec.graphs.SparseGraph
    features: Optional[ItemFeatures] = None
    device: torch.device = torch.device("cpu")
    seed: int = 0


class Recommender(nn.Module, abc.ABC):
    """Base class. Subclasses set ``name`` and implement ``propagate``/``loss`` (``score`` defaults
    to the inner product of ``reps['user'][users]`` with ``reps['item']``)."""

    name: str = "base"
    #: "bpr" models take (user, pos, neg) batches; "none" models (pop) are not trained by SGD.
    batch_kind: str = "bpr"

    def __init__(self, ctx: ModelContext):
        super().__init__()
        self.n_users = ctx.n_users
        self.n_items = ctx.n_items

    # -- declared needs ------------------------------------------------------------------------
    @classmethod
    def graph_specs(cls, hp: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
        """Graphs to build before the model: ``{name: spec}`` (see `graphrec.graphs.build`)."""
        return {}

    @classmethod
    def required_modalities(cls, hp: Dict[str, Any]) -> list[str]:
        return []

    # -- the contract --------------------------------------------------------------------------
    @abc.abstractmethod
    def propagate(self) -> Reps:
        """Whole-graph forward: at least ``{'user': [U, d], 'item': [I, d]}``."""

    @abc.abstractmethod
    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        """Named loss terms for a batch ``{'user', 'pos', 'neg'}`` (the trainer sums them)."""

    def score(self, users: torch.Tensor, reps: Reps) -> torch.Tensor:
        return reps["user"][users] @ reps["item"].T

    def score_factors(self, reps: Reps) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(user vectors [U, d], item vectors [I, d]) with ``score(users) == U[users] @ I.T``, or
        None when the score is not such an inner product. The evaluator's screened top-K
        (`graphrec.eval.screened_topk`) needs them; a model overriding :meth:`score` must
        override this too (or keep the None that sends it to the exact path)."""
        if type(self).score is not Recommender.score:
            return None
        return reps["user"], reps["item"]

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        """The representations one training step needs (the trainer passes them to :meth:`loss`).
        Default: the whole-graph :meth:`propagate`. A model may return only the batch's rows, as
        ``reps[key]`` plus ``reps[key + '_ids']`` (the global ids of those rows, sorted); losses
        read rows through :func:`rows_of`."""
        return self.propagate()

    def negatives_per_pair(self, configured: int) -> int:
        """How many negatives the sampler draws per (user, positive) pair, given ``train.num_neg``.
        The models here score one negative per pair (``batch['neg']`` of shape [B]); a model that
        takes several (``[B, n]``) overrides this."""
        if int(configured) != 1:
            raise ValueError(f"model {self.name!r} scores one negative per (user, positive) pair; "
                             f"train.num_neg={configured} is not supported (set it to 1)")
        return 1

    # -- optional hooks ------------------------------------------------------------------------
    def pre_epoch(self, epoch: int, generator: torch.Generator) -> None:
        """Called before each training epoch (e.g. FREEDOM's per-epoch edge pruning)."""

    def auxiliary_parameters(self) -> list[nn.Parameter]:
        """Parameters trained by their own optimiser (e.g. SAND's CLUB estimator)."""
        return []

    def auxiliary_loss(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Loss for the auxiliary parameters, stepped before the main loss in every batch."""
        return {}

    def main_parameters(self) -> list[nn.Parameter]:
        aux = {id(p) for p in self.auxiliary_parameters()}
        return [p for p in self.parameters() if id(p) not in aux]
