"""Task ``next_item_comirec``: the ``next_item`` task whose evaluators also report ComiRec's
Recall@K and NDCG@K (`graphrec.eval.comirec`), the metrics of Demure's user-level protocol (Yao et
al., arXiv 2305.01915, Section 4.1). Training is the ``next_item`` task's; select it with
``eval.protocol=next_item_comirec`` (with ``data.split=user`` for the paper's split).
"""
from __future__ import annotations

import time
from typing import Dict

import torch

from graphrec.eval.comirec import comirec_metrics
from graphrec.eval.metrics import metrics_from_hits
from graphrec.eval.sequential import NextItemEvaluator, top_next_items
from graphrec.train.tasks import NextItemTask, register_task


class ComiRecNextItemEvaluator(NextItemEvaluator):
    """`NextItemEvaluator` plus ``comirec_recall@K`` / ``comirec_ndcg@K`` of the same ranking
    (the targets in their chronological order, duplicates kept)."""

    @torch.no_grad()
    def evaluate(self, model, reps=None) -> Dict[str, float]:
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            if reps is None:
                reps = model.propagate()
            kmax = max(self.ks)
            n = self.users.numel()
            sums: Dict[str, torch.Tensor] = {}
            for s in range(0, n, self.chunk):
                rows = torch.arange(s, min(n, s + self.chunk), device=self.device)
                idx, ok = top_next_items(model, reps, self.histories, rows, self.users.index_select(0, rows),
                                         kmax, self.max_len, self.n_items, self.mask_history)
                hits = self._hits_of(rows, idx, ok, kmax)
                per = metrics_from_hits(hits, self.n_pos.index_select(0, rows), self.ks, self.metrics)
                if idx.shape[1] < kmax:
                    pad = kmax - idx.shape[1]
                    idx = torch.nn.functional.pad(idx, (0, pad))
                    ok = torch.nn.functional.pad(ok, (0, pad))
                per.update(comirec_metrics(idx, ok, self.targets, rows, self.ks))
                for name, v in per.items():
                    sums[name] = sums.get(name, 0.0) + v.double().sum()
        finally:
            model.train(was_training)
        out = {name: float(v) / max(1, n) for name, v in sums.items()}
        self.last_seconds = time.perf_counter() - t0
        return out

    def _hits_of(self, rows: torch.Tensor, idx: torch.Tensor, ok: torch.Tensor, kmax: int) -> torch.Tensor:
        keys = rows.unsqueeze(1) * self.n_items + idx
        if self.target_keys.numel():
            pos = torch.searchsorted(self.target_keys, keys).clamp(max=self.target_keys.numel() - 1)
            hits = (self.target_keys[pos] == keys) & ok
        else:
            hits = torch.zeros_like(keys, dtype=torch.bool)
        if hits.shape[1] < kmax:
            hits = torch.nn.functional.pad(hits, (0, kmax - hits.shape[1]))
        return hits


@register_task
class ComiRecNextItemTask(NextItemTask):
    name = "next_item_comirec"

    def evaluators(self, model, split, cfg: dict, device: torch.device):
        e = cfg["eval"]
        kw = dict(n_items=split.n_items, max_len=self._max_len(model), ks=e["ks"], metrics=e["metrics"],
                  mask_history=bool(e["mask_history"]), device=device, chunk=int(e["user_chunk"]))
        return ComiRecNextItemEvaluator(split, "valid", **kw), ComiRecNextItemEvaluator(split, "test", **kw)
