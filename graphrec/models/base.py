"""The model contract shared by every recommender (DESIGN.md, "A model").

A model is built from a `ModelContext` (sizes, training interactions, prebuilt graphs, item
features, device) and its hyper-parameters, and declares its ``task`` (`graphrec.train.tasks`):
the task's sampler makes its batches and the task's evaluator judges it. The trainer calls, per
training step::

    reps  = model.train_forward(batch)     # a `Reps` record (default: the whole-graph propagate())
    terms = model.loss(batch, reps)        # dict of named loss terms; the trainer sums them

and per evaluation ``reps = model.propagate()`` once (in eval mode, no grad) followed by
``model.score(users, reps)`` (pairwise task) or ``model.score_sequences(batch, reps)``
(next-item task) for chunks of users or sequences. Models never read files and never build
graphs: they declare the graphs they need in ``graph_specs(cfg)`` and receive them in the context.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, ClassVar, Dict, Optional

import torch
from torch import nn

from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import Interactions

@dataclass
class Reps:
    """What a forward pass hands to :meth:`Recommender.loss` and :meth:`Recommender.score`.

    ``user`` / ``item``: the final user and item rows, either of every user/item or, in a
    batch-local training step, only of the ids in ``user_ids`` / ``item_ids`` (sorted global ids,
    one per row). ``extras``: further named tensors of the model's own (layer-0 rows, per-layer
    rows, hidden states, ...); an extra table of user or item rows shares the id list of its side.
    """

    user: Optional[torch.Tensor] = None
    item: Optional[torch.Tensor] = None
    user_ids: Optional[torch.Tensor] = None
    item_ids: Optional[torch.Tensor] = None
    extras: Dict[str, torch.Tensor] = field(default_factory=dict)

    def table(self, key: str) -> torch.Tensor:
        """``user``, ``item`` or the extra named ``key``."""
        if key in ("user", "item"):
            t = getattr(self, key)
        else:
            t = self.extras.get(key)
        if t is None:
            raise KeyError(f"representations hold no {key!r} table (extras: {sorted(self.extras)})")
        return t


def rows_of(reps: Reps, key: str, ids: torch.Tensor, side: Optional[str] = None) -> torch.Tensor:
    """Rows ``ids`` (global ids) of the table ``key`` (``"user"``, ``"item"`` or an extra), also
    when the record holds only some rows: then their sorted global ids are ``reps.user_ids`` or
    ``reps.item_ids`` of ``side`` (default: ``key`` itself, which must then be a side)."""
    held = getattr(reps, f"{side or key}_ids")
    # index_select, not table[...]: on CPU its gather and its backward (index_add) take about
    # a third and two thirds of advanced indexing's (index_put with accumulate)
    if held is None:
        return reps.table(key).index_select(0, ids)
    return reps.table(key).index_select(0, torch.searchsorted(held, ids))


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
    to the inner product of ``reps.user[users]`` with ``reps.item``)."""

    name: str = "base"
    #: the task that trains and judges the model (`graphrec.train.tasks`): ``"pairwise"`` takes
    #: (user, pos, neg) batches and ranks per user, ``"next_item"`` takes sequence batches
    task: ClassVar[str] = "pairwise"
    #: estimator steps per batch taken by the auxiliary optimiser (SAND's CLUB: 50), before the
    #: main step; only used when :meth:`auxiliary_parameters` is not empty
    auxiliary_steps: int = 1
    #: next-item task: the latest history items a sequence batch holds (None: the model scores
    #: users, not histories)
    max_len: Optional[int] = None

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
        """Named loss terms for a batch of the model's task (the trainer sums them)."""

    def trainable(self) -> bool:
        """Whether the trainer runs training steps (False: evaluate only, e.g. popularity)."""
        return any(p.requires_grad for p in self.parameters())

    def score(self, users: torch.Tensor, reps: Reps) -> torch.Tensor:
        """Scores [B, n_items] of ``users`` against every item."""
        return reps.user.index_select(0, users) @ reps.item.T

    def score_sequences(self, batch: Dict[str, torch.Tensor], reps: Reps) -> torch.Tensor:
        """Scores [B, n_items] of the next item after each history in ``batch`` (``seq`` [B, L]
        left-padded with ``n_items``, ``user`` [B]). A user-based model scores the sequence's user,
        so every model can be judged by the next-item protocol; sequence models override this."""
        return self.score(batch["user"], reps)

    def score_factors(self, reps: Reps) -> Optional[tuple[torch.Tensor, torch.Tensor]]:
        """(user vectors [U, d], item vectors [I, d]) with ``score(users) == U[users] @ I.T``, or
        None when the score is not such an inner product. The evaluator's screened top-K
        (`graphrec.eval.screened_topk`) needs them; a model overriding :meth:`score` must
        override this too (or keep the None that sends it to the exact path)."""
        if type(self).score is not Recommender.score:
            return None
        return reps.user, reps.item

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        """The representations one training step needs (the trainer passes them to :meth:`loss`).
        Default: the whole-graph :meth:`propagate`. A model may return only the batch's rows, as
        ``reps[key]`` plus ``reps[key + '_ids']`` (the global ids of those rows, sorted); losses
        read rows through :func:`rows_of`."""
        return self.propagate()

    def param_groups(self, lr: float, weight_decay: float) -> Optional[list[dict]]:
        """Optimiser parameter groups (``{"params": [...], "lr": ..., "weight_decay": ...}``, an
        optional ``"name"``) when parts of the model learn at their own rate, such as a pretrained
        encoder fine-tuned at a tenth of ``train.lr`` (PAMD, PMMRec); they must hold every trainable
        main parameter once. None (default): one group at ``train.lr`` and ``train.weight_decay``."""
        return None

    def subgraph_hops(self) -> Optional[int]:
        """Hops of neighbourhood a training step reads, for sampled-subgraph training
        (``train.sampler: neighbor``, `graphrec.train.link_neighbor`; batches then carry the
        subgraph, see there); None: the model does not train on sampled subgraphs."""
        return None

    def negatives_per_pair(self, configured: int) -> int:
        """How many negatives the sampler draws per (user, positive) pair, given ``train.num_neg``.
        The models here score one negative per pair (``batch['neg']`` of shape [B]); a model that
        takes several (``[B, n]``) overrides this."""
        if int(configured) != 1:
            raise ValueError(f"model {self.name!r} scores one negative per (user, positive) pair; "
                             f"train.num_neg={configured} is not supported (set it to 1)")
        return 1

    def sequence_negatives(self) -> int:
        """Next-item task: sampled negatives per target position the sequence sampler draws (0 for
        models whose loss ranks every item, e.g. a full softmax)."""
        return 0

    # -- optional hooks ------------------------------------------------------------------------
    def export_tables(self) -> Dict[str, torch.Tensor]:
        """Named tables a later stage or another model reads (``graphrec export``, then
        ``data.extra_features`` or a fine-tuning model's initialiser): ``"item/<name>"``
        [n_items, d] (row = item index) or ``"user/<name>"`` [n_users, d]. Called in eval mode
        without gradients. Default: none."""
        return {}

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
