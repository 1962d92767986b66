r"""Cold-start items in next-item evaluation (PMMRec, Li et al., ICDE 2024, Section IV-F, Table VII).

An item is *cold* when it occurs fewer than ``threshold`` times (the paper: 10) in the training
split. Two ways to judge a model on cold items:

- ``leak_free`` (`cold_metrics`): the evaluated sequences of a `NextItemEvaluator` whose held-out
  target is cold, ranked exactly as the full evaluation ranks them (same history masking). A cold
  target was never (or rarely) trained on, so this is what our claims use.
- ``literal`` (`literal_instances`): the paper's protocol, every complete user sequence cut into
  prefixes that end in a cold item, the cold item being the target of the prefix before it. Some
  of these targets are training events (a cold item still occurs up to ``threshold - 1`` times in
  training), so this mode is for comparison with the paper only.
"""
from __future__ import annotations

from typing import Dict, Iterable, Optional

import torch

from graphrec.data.interactions import Interactions
from graphrec.data.sequences import Sequences, segment_index
from graphrec.eval.metrics import metrics_from_hits


def cold_items(train: Interactions, threshold: int = 10) -> torch.Tensor:
    """Bool [n_items]: items with fewer than ``threshold`` training occurrences."""
    return torch.bincount(train.item, minlength=train.n_items) < int(threshold)


def literal_instances(seqs: Sequences, cold: torch.Tensor) -> tuple[Sequences, torch.Tensor, torch.Tensor]:
    """(histories, targets [M], sequence row [M]): one instance per position ``t >= 1`` of every
    sequence whose item is cold; its history is the sequence's items before ``t`` (oldest first)."""
    lens = seqs.lengths()
    row, flat = segment_index(seqs.indptr[:-1], lens)
    pos = flat - seqs.indptr.index_select(0, row)
    keep = (pos >= 1) & cold.index_select(0, seqs.items)
    row, flat, pos = row[keep], flat[keep], pos[keep]
    _, src = segment_index(seqs.indptr.index_select(0, row), pos)
    indptr = torch.cat([pos.new_zeros(1), torch.cumsum(pos, 0)])
    return Sequences(indptr, seqs.items.index_select(0, src), seqs.n_items), seqs.items.index_select(0, flat), row


def cold_rows(evaluator, cold: torch.Tensor) -> torch.Tensor:
    """Rows of ``evaluator`` (a `graphrec.eval.sequential.NextItemEvaluator`) with a cold target."""
    t = evaluator.targets
    hit = cold.to(t.items.device).index_select(0, t.items)
    rows = t.row_index()
    flag = torch.zeros(len(evaluator), dtype=torch.bool, device=hit.device).index_put_((rows,), hit, accumulate=True)
    return torch.nonzero(flag).flatten()


@torch.no_grad()
def cold_metrics(evaluator, model, cold: torch.Tensor, reps=None, ks: Optional[Iterable[int]] = None,
                 metrics: Iterable[str] = ("hit", "ndcg")) -> Dict[str, float]:
    """Mean metrics over the evaluator's sequences whose target is cold (``leak_free`` mode), and
    ``n_cold`` (their count)."""
    rows = cold_rows(evaluator, cold)
    ks = sorted(set(int(k) for k in (ks or evaluator.ks)))
    out = {f"{m}@{k}": 0.0 for k in ks for m in metrics}
    out["n_cold"] = int(rows.numel())
    if not rows.numel():
        return out
    was = model.training
    model.eval()
    try:
        reps = model.propagate() if reps is None else reps
        sums = {k: 0.0 for k in out if k != "n_cold"}
        for s in range(0, rows.numel(), evaluator.chunk):
            r = rows[s:s + evaluator.chunk]
            hits, _ = evaluator._hits(model, reps, r, max(ks))
            for name, v in metrics_from_hits(hits, evaluator.n_pos.index_select(0, r), ks, metrics).items():
                sums[name] += float(v.double().sum())
    finally:
        model.train(was)
    out.update({k: v / rows.numel() for k, v in sums.items()})
    return out
