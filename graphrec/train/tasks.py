"""Tasks: how a model is trained (the batches its sampler yields) and judged (its evaluators).

A model names its task (`Recommender.task`); the composition root asks the task for the sampler and
the valid/test evaluators, and the trainer only sees batches and evaluators. Nothing else branches
on the kind of batch. Tasks are open: a pretraining stage registers its own with
:func:`register_task` (item batches and a validation-loss evaluator, say) in a module
``graphrec/train/task_<name>.py`` of its own, which is imported with this one (``_TASKS`` then
lists every task, for ``eval.protocol``'s choices); nothing here or in the trainer changes.

- ``pairwise``: (user, pos, neg[s]) triples (`graphrec.train.samplers.BPRSampler`); full ranking of
  every item per user with the user's training items masked (`graphrec.eval.ranking`).
- ``next_item``: shifted-sequence windows of the chronological training histories
  (`graphrec.train.samplers.SequenceSampler`); full ranking of every item after each held-out
  history (`graphrec.eval.sequential`), history items masked unless ``eval.mask_history`` is off.
"""
from __future__ import annotations

import abc
import importlib
import pkgutil
from typing import Any, ClassVar, Dict, Iterator, Optional, Protocol

import torch

from graphrec.data.sequences import Sequences
from graphrec.data.split import Split
from graphrec.errors import ConfigError
from graphrec.models.base import Recommender


class Sampler(Protocol):
    """What the trainer draws batches from."""

    def __len__(self) -> int: ...

    def epoch(self, generator: torch.Generator) -> Iterator[Dict[str, torch.Tensor]]: ...


class Evaluator(Protocol):
    """What the trainer selects epochs with (valid) and the run reports once (test).

    ``evaluate`` returns named metrics (``"recall@20"``, or ``"loss"`` for a pretraining stage);
    ``lower_is_better`` names those where smaller wins (the trainer's selection rule)."""

    users: torch.Tensor
    n_cold_users: int
    last_seconds: float
    lower_is_better: frozenset

    def evaluate(self, model: Any, reps: Any = None) -> Dict[str, float]: ...


class Task(abc.ABC):
    """Sampler and evaluators of one way of training and judging a model."""

    name: ClassVar[str]
    #: the split rule of ``data.split: auto`` when the dataset fixes none
    default_split: ClassVar[str] = "random"

    @abc.abstractmethod
    def sampler(self, model: Recommender, split: Split, cfg: dict, device: torch.device) -> Optional[Sampler]:
        """Training batches (None: the model is not trained by SGD and is only evaluated)."""

    @abc.abstractmethod
    def evaluators(self, model: Recommender, split: Split, cfg: dict,
                   device: torch.device) -> tuple[Evaluator, Evaluator]:
        """(valid, test) evaluators; test is read once, for the selected checkpoint."""

    @abc.abstractmethod
    def recommend(self, model: Recommender, split: Split, users: torch.Tensor, k: int,
                  histories: Optional[Sequences] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(item indices [B, k], valid flags [B, k]) for ``users`` from everything the split knows
        of them, known items excluded; ``histories`` (one per user, oldest first) replaces what
        the split knows, for a task that ranks from histories."""


_TASKS: Dict[str, Task] = {}


def register_task(cls: type[Task]) -> type[Task]:
    """Class decorator: make ``cls`` available as ``get_task(cls.name)``."""
    _TASKS[cls.name] = cls()
    return cls


def get_task(name: str) -> Task:
    if name not in _TASKS:
        raise ConfigError(f"unknown task {name!r}; known tasks: {', '.join(sorted(_TASKS))}")
    return _TASKS[name]


def task_of(model: Recommender) -> Task:
    return get_task(model.task)


def list_tasks() -> list[str]:
    return sorted(_TASKS)


@register_task
class PairwiseTask(Task):
    name = "pairwise"

    def sampler(self, model: Recommender, split: Split, cfg: dict, device: torch.device) -> Optional[Sampler]:
        from graphrec.train.samplers import sampler_for
        if not model.trainable():
            return None
        return sampler_for(model, split.train, cfg["train"], device)

    def evaluators(self, model: Recommender, split: Split, cfg: dict,
                   device: torch.device) -> tuple[Evaluator, Evaluator]:
        from graphrec.eval.ranking import RankingEvaluator
        if split.method == "user":
            raise ConfigError("data.split=user holds out whole users, whom a per-user ranking cannot judge "
                              "(they have no training rows): use a sequence model or another data.split")
        e = cfg["eval"]
        kw = dict(ks=e["ks"], metrics=e["metrics"], device=device, user_chunk=int(e["user_chunk"]),
                  train=split.train, screen=str(e.get("screen", "auto")))
        valid = RankingEvaluator(split.valid, [split.train], **kw)
        test_mask = [split.train, split.valid] if e.get("mask_valid_in_test") else [split.train]
        return valid, RankingEvaluator(split.test, test_mask, **kw)

    def recommend(self, model: Recommender, split: Split, users: torch.Tensor, k: int,
                  histories: Optional[Sequences] = None) -> tuple[torch.Tensor, torch.Tensor]:
        from graphrec.eval.ranking import RankingEvaluator
        if histories is not None:
            raise ConfigError(f"model {model.name!r} ranks for known users (pairwise task); it takes no "
                              f"history of items")
        # the model learnt from the training rows: those are the items a user is known to have
        ev = RankingEvaluator(split.train, [split.train], ks=[1], device=users.device, train=split.train)
        return ev.topk(model, model.propagate(), users, k)


@register_task
class NextItemTask(Task):
    name = "next_item"
    default_split = "loo"

    def sampler(self, model: Recommender, split: Split, cfg: dict, device: torch.device) -> Optional[Sampler]:
        from graphrec.train.samplers import SequenceSampler
        if not model.trainable():
            return None
        t = cfg["train"]
        return SequenceSampler(split.train, max_len=self._max_len(model), batch_size=int(t["batch_size"]),
                               num_neg=model.sequence_negatives(), device=device)

    def evaluators(self, model: Recommender, split: Split, cfg: dict,
                   device: torch.device) -> tuple[Evaluator, Evaluator]:
        from graphrec.eval.sequential import NextItemEvaluator
        e = cfg["eval"]
        kw = dict(n_items=split.n_items, max_len=self._max_len(model), ks=e["ks"], metrics=e["metrics"],
                  mask_history=bool(e["mask_history"]), device=device, chunk=int(e["user_chunk"]))
        return NextItemEvaluator(split, "valid", **kw), NextItemEvaluator(split, "test", **kw)

    def recommend(self, model: Recommender, split: Split, users: torch.Tensor, k: int,
                  histories: Optional[Sequences] = None) -> tuple[torch.Tensor, torch.Tensor]:
        from graphrec.eval.sequential import top_next_items
        if histories is None:  # everything the split holds of each user, oldest first
            known = Sequences.from_interactions(split.train.concat(split.valid).concat(split.test))
            histories = known.select(users.cpu())
        histories = histories.to(users.device)
        rows = torch.arange(users.numel(), device=users.device)
        with torch.no_grad():
            return top_next_items(model, model.propagate(), histories, rows, users, k, self._max_len(model),
                                  split.n_items)

    @staticmethod
    def _max_len(model: Recommender) -> int:
        # a user-based model judged by this protocol reads no history (it scores the user): one column
        return int(model.max_len) if model.max_len is not None else 1


def _discover() -> None:
    """Import every ``graphrec.train.task_*`` module: each registers its task(s) on import."""
    import graphrec.train as package
    for info in pkgutil.iter_modules(package.__path__):
        if info.name.startswith("task_"):
            importlib.import_module(f"{package.__name__}.{info.name}")


_discover()
