"""The ``items`` task: a pretraining stage on item content (PAMD's stage 1, Han et al. WWW 2022,
Sec. 4.3): batches are items, no user and no interaction is read.

The items are split once, seeded by ``data.split_seed``: a fraction ``data.item_holdout`` of them
is held out for validation and as many for test; the rest are the training items, shuffled each
epoch from the trainer's generator into batches of ``train.batch_size`` (each batch's ids sorted:
``{"item": LongTensor[B]}``). The evaluators compute the model's own loss on the held-out items
(``{"loss": ..., <each term>: ...}``, smaller is better: the run selects its checkpoint with
``train.valid_metric: loss``) plus whatever the model's ``monitor(items)`` reports (PAMD: the
ordering fraction and the anti-collapse statistics), so those land in the epoch log.
A model of this task implements ``loss({"item": ids}, train_forward(batch))``.
"""
from __future__ import annotations

import time
from typing import Dict, Iterator, Optional

import torch

from graphrec.data.sequences import Sequences
from graphrec.data.split import Split
from graphrec.errors import ConfigError
from graphrec.models.base import Recommender
from graphrec.train.tasks import Evaluator, Sampler, Task, register_task

#: default held-out fraction when the config names none (data.item_holdout)
DEFAULT_HOLDOUT = 0.1


def item_split(n_items: int, holdout: float, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(train, valid, test) item ids (each sorted): a seeded permutation, ``holdout`` of the items
    (at least one) to valid and as many to test."""
    if not 0.0 < holdout < 0.5:
        raise ConfigError(f"data.item_holdout must be in (0, 0.5), got {holdout}")
    n_hold = max(1, int(round(holdout * n_items)))
    if n_items < 2 * n_hold + 1:
        raise ConfigError(f"items task: {n_items} items cannot give {n_hold} valid, {n_hold} test and one "
                          f"training item")
    perm = torch.randperm(n_items, generator=torch.Generator().manual_seed(int(seed)))
    valid, test, train = perm[:n_hold], perm[n_hold:2 * n_hold], perm[2 * n_hold:]
    return train.sort().values, valid.sort().values, test.sort().values


class ItemSampler:
    """Shuffled batches of training items, ``{"item": sorted ids [B]}``."""

    def __init__(self, items: torch.Tensor, batch_size: int, device: torch.device):
        self.items = items.to(device)
        self.batch_size = int(batch_size)
        self.device = device

    def __len__(self) -> int:
        return (self.items.numel() + self.batch_size - 1) // self.batch_size

    def epoch(self, generator: torch.Generator) -> Iterator[Dict[str, torch.Tensor]]:
        perm = torch.randperm(self.items.numel(), generator=generator, device=self.device)
        for s in range(0, perm.numel(), self.batch_size):
            yield {"item": self.items[perm[s:s + self.batch_size]].sort().values}


class ItemLossEvaluator:
    """Mean loss terms of the model on held-out items (batch-size weighted) and its monitor."""

    lower_is_better = frozenset({"loss"})

    def __init__(self, items: torch.Tensor, batch_size: int, device: torch.device):
        self.items = items.to(device)
        self.users = torch.empty(0, dtype=torch.long)  # the Evaluator protocol: no users judged
        self.n_cold_users = 0
        self.batch_size = int(batch_size)
        self.last_seconds = 0.0

    @torch.no_grad()
    def evaluate(self, model: Recommender, reps=None) -> Dict[str, float]:
        t0 = time.perf_counter()
        was = model.training
        model.eval()
        sums: Dict[str, float] = {}
        for s in range(0, self.items.numel(), self.batch_size):
            batch = {"item": self.items[s:s + self.batch_size]}
            terms = model.loss(batch, model.train_forward(batch))
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v) * batch["item"].numel()
        n = max(1, self.items.numel())
        out = {k: v / n for k, v in sums.items()}
        out["loss"] = sum(out.values())
        monitor = getattr(model, "monitor", None)
        if monitor is not None:
            out.update(monitor(self.items))
        model.train(was)
        self.last_seconds = time.perf_counter() - t0
        return out


@register_task
class ItemsTask(Task):
    name = "items"

    def sampler(self, model: Recommender, split: Split, cfg: dict, device: torch.device) -> Optional[Sampler]:
        train, _, _ = self._items(split, cfg)
        return ItemSampler(train, int(cfg["train"]["batch_size"]), device)

    def evaluators(self, model: Recommender, split: Split, cfg: dict,
                   device: torch.device) -> tuple[Evaluator, Evaluator]:
        if model.task != self.name:
            raise ConfigError(f"eval.protocol=items judges pretraining stages on item batches; model "
                              f"{model.name!r} is trained by the {model.task!r} task")
        _, valid, test = self._items(split, cfg)
        bs = int(cfg["train"]["batch_size"])
        return ItemLossEvaluator(valid, bs, device), ItemLossEvaluator(test, bs, device)

    def recommend(self, model: Recommender, split: Split, users: torch.Tensor, k: int,
                  histories: Optional[Sequences] = None) -> tuple[torch.Tensor, torch.Tensor]:
        raise ConfigError(f"model {model.name!r} is a pretraining stage on items and recommends nothing")

    @staticmethod
    def _items(split: Split, cfg: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        holdout = cfg["data"].get("item_holdout")
        return item_split(split.n_items, float(DEFAULT_HOLDOUT if holdout is None else holdout),
                          int(cfg["data"]["split_seed"]))
