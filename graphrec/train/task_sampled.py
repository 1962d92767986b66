"""The ``sampled`` task: pairwise training, judged by sampled-negatives ranking (PAMD's protocol,
Han et al. WWW 2022, Sec. 5.1; `graphrec.eval.sampled`).

``--set eval.protocol=sampled`` judges any pairwise model this way: each user's held-out items
ranked among ``eval.sampled_negatives`` (1,000) items the user never interacted with, drawn once
per seed (the run's ``seed``) and shared by every model, epoch, valid and test of that seed; a
user with fewer than that many non-interacted items is ranked against all of them. Metrics are
``eval.metrics`` at the cut-offs ``eval.ks`` and ``eval.sampled_cutoffs`` (PAMD reports @5 and @10),
NDCG with the IDCG truncated at K. Training batches are the pairwise task's.
"""
from __future__ import annotations

from typing import Optional

import torch

from graphrec.data.split import Split
from graphrec.errors import ConfigError
from graphrec.models.base import Recommender
from graphrec.train.tasks import Evaluator, PairwiseTask, register_task


@register_task
class SampledTask(PairwiseTask):
    name = "sampled"

    def evaluators(self, model: Recommender, split: Split, cfg: dict,
                   device: torch.device) -> tuple[Evaluator, Evaluator]:
        from graphrec.eval.sampled import SampledEvaluator
        if split.method == "user":
            raise ConfigError("data.split=user holds out whole users, whom a per-user ranking cannot judge: "
                              "use another data.split with eval.protocol=sampled")
        e = cfg["eval"]
        known = split.train.concat(split.valid).concat(split.test)
        ks = sorted(set(e["ks"]) | set(e.get("sampled_cutoffs") or ()))
        kw = dict(known=known, train=split.train, n_neg=int(e["sampled_negatives"]),
                  ks=ks, metrics=e["metrics"], seed=int(cfg["seed"]), device=device, user_chunk=int(e["user_chunk"]))
        return SampledEvaluator(split.valid, **kw), SampledEvaluator(split.test, **kw)


def sampled_evaluator(split: Split, part: str, seed: int, n_neg: int, ks=(5, 10, 20),
                      metrics=("recall", "ndcg"), device: Optional[torch.device] = None):
    """The sampled evaluator of one part (``valid`` or ``test``) of a split, for judging a finished
    run's checkpoint by this protocol beside its full-ranking result."""
    from graphrec.eval.sampled import SampledEvaluator
    known = split.train.concat(split.valid).concat(split.test)
    return SampledEvaluator(getattr(split, part), known, split.train, n_neg=n_neg, ks=ks, metrics=metrics,
                            seed=seed, device=device or torch.device("cpu"))
