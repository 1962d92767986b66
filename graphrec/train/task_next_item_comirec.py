"""Task ``next_item_comirec``: the ``next_item`` task whose evaluators also report ComiRec's
Recall@K and NDCG@K (`graphrec.eval.comirec`), the metrics of Demure's user-level protocol (Yao et
al., arXiv 2305.01915, Section 4.1). Training is the ``next_item`` task's; select it with
``eval.protocol=next_item_comirec`` (with ``data.split=user`` for the paper's split).
"""
from __future__ import annotations

from typing import Dict

import torch

from graphrec.eval.comirec import comirec_metrics
from graphrec.eval.sequential import NextItemEvaluator
from graphrec.train.tasks import NextItemTask, register_task


class ComiRecNextItemEvaluator(NextItemEvaluator):
    """`NextItemEvaluator` plus ``comirec_recall@K`` / ``comirec_ndcg@K`` of the same ranking
    (the targets in their chronological order, duplicates kept)."""

    def extra_metrics(self, rows: torch.Tensor, idx: torch.Tensor, ok: torch.Tensor) -> Dict[str, torch.Tensor]:
        kmax = max(self.ks)
        if idx.shape[1] < kmax:  # fewer items than K: the missing ranks are misses
            idx = torch.nn.functional.pad(idx, (0, kmax - idx.shape[1]))
            ok = torch.nn.functional.pad(ok, (0, kmax - ok.shape[1]))
        return comirec_metrics(idx, ok, self.targets, rows, self.ks)


@register_task
class ComiRecNextItemTask(NextItemTask):
    name = "next_item_comirec"

    def evaluators(self, model, split, cfg: dict, device: torch.device):
        e = cfg["eval"]
        kw = dict(n_items=split.n_items, max_len=self._max_len(model), ks=e["ks"], metrics=e["metrics"],
                  mask_history=bool(e["mask_history"]), device=device, chunk=int(e["user_chunk"]))
        return ComiRecNextItemEvaluator(split, "valid", **kw), ComiRecNextItemEvaluator(split, "test", **kw)
