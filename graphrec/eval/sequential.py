r"""Next-item evaluation: full ranking of what follows each history (the ``next_item`` task).

Evaluation sets (`next_item_targets`), for ``which`` in {valid, test}:

* user-level split (``split.method == "user"``, Demure's protocol): the chronological sequence
  :math:`s_u = (i_1, \dots, i_n)` of each held-out user of that part is cut at
  :math:`n_T = \max(1, \mathrm{round}(h \cdot n))` (Python's round, at most :math:`n - 1`):
  history :math:`(i_1, \dots, i_{n - n_T})`, targets :math:`T_u = \{i_{n - n_T + 1}, \dots, i_n\}`
  (``h`` = ``split.params['holdout']``, default 0.2). Users with fewer than 2 items are skipped
  and counted.
* any other split (leave-one-out, temporal, random, ...): the history is u's chronological train
  rows (train + valid rows when judging test), the targets are u's rows of that part (one under
  leave-one-out). Users with targets but no history are skipped and counted (cold users).

`NextItemEvaluator` scores, per chunk of sequences, ``model.score_sequences(batch, reps)`` with
``batch = {"seq": LongTensor[B, max_len], "user": LongTensor[B]}`` (the latest ``max_len``
history items, left-padded with PAD = ``n_items``) after one ``reps = model.propagate()``, excludes
every history item of the sequence when ``mask_history`` (the whole history, also the part beyond
``max_len``), ranks the top K and computes the metrics of `graphrec.eval.metrics` against
:math:`T_u` (distinct items): Hit@K is ``hit``, Recall@K is ``recall`` (equal with one target),
MRR@K is ``mrr``. RecBole's sequential full ranking masks nothing (``mask_history=False``).
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, NamedTuple, Optional

import torch
import torch.nn.functional as F

from graphrec.data.sequences import Sequences, segment_index
from graphrec.data.split import DEFAULT_HOLDOUT, Split
from graphrec.eval.metrics import METRICS, metrics_from_hits

#: metrics reported by default (MRR on top of the pairwise set: one target per sequence under LOO)
SEQUENTIAL_METRICS = ("recall", "ndcg", "mrr", "hit", "precision", "map")


class NextItemSet(NamedTuple):
    """Row ``r`` is one evaluated user: ``histories[r]`` (oldest first) is the input,
    ``targets[r]`` the items to predict, ``users[r]`` the user index; ``n_cold_users`` users of the
    part were skipped (no history, or fewer than 2 items under the user-level split)."""

    histories: Sequences
    targets: Sequences
    users: torch.Tensor
    n_cold_users: int


def _part(split: Split, which: str):
    if which not in ("valid", "test"):
        raise ValueError(f"next-item evaluation judges 'valid' or 'test', got {which!r}")
    return getattr(split, which)


def holdout_counts(lengths: torch.Tensor, holdout: float) -> torch.Tensor:
    """Targets per held-out sequence of ``lengths`` items: ``max(1, round(holdout * n))``, at most
    ``n - 1`` so that a history remains (round half to even, as Python's ``round``)."""
    n_t = torch.round(lengths.to(torch.float64) * float(holdout)).to(torch.long).clamp(min=1)
    return torch.minimum(n_t, (lengths - 1).clamp(min=0))


def next_item_targets(split: Split, which: str, holdout: Optional[float] = None) -> NextItemSet:
    """The histories and targets of the users judged on ``which`` (see the module docstring);
    ``holdout`` overrides ``split.params['holdout']`` for a user-level split."""
    part = _part(split, which)
    if split.method == "user":
        h = float(holdout if holdout is not None else split.params.get("holdout", DEFAULT_HOLDOUT))
        if not 0.0 < h < 1.0:
            raise ValueError(f"user-level next-item targets: holdout must be in (0, 1), got {h!r}")
        seqs = Sequences.from_interactions(part)
        lens = seqs.lengths()
        n_cold = int((lens == 1).sum())
        users = torch.nonzero(lens >= 2).flatten()
        chosen = seqs.select(users)
        hist, tgt = chosen.split_tail(holdout_counts(chosen.lengths(), h))
        return NextItemSet(hist, tgt, users, n_cold)
    known = split.train if which == "valid" else split.train.concat(split.valid)
    hist_all = Sequences.from_interactions(known)
    tgt_all = Sequences.from_interactions(part)
    users = torch.nonzero(tgt_all.lengths() > 0).flatten()
    has = hist_all.lengths().index_select(0, users) > 0
    n_cold = int((~has).sum())
    users = users[has]
    return NextItemSet(hist_all.select(users), tgt_all.select(users), users, n_cold)


def history_batch(histories: Sequences, rows: torch.Tensor, users: torch.Tensor, max_len: int,
                  n_items: int) -> Dict[str, torch.Tensor]:
    """``{"seq": [B, max_len], "user": users}``: the latest ``max_len`` items of the histories
    ``rows``, left-padded with PAD = ``n_items`` (latest item in the last column)."""
    seq, _ = histories.padded(max_len, pad_value=n_items, users=rows, left=True)
    if seq.shape[1] < max_len:  # a fixed width: positions mean the same in every chunk
        seq = F.pad(seq, (max_len - seq.shape[1], 0), value=n_items)
    return {"seq": seq, "user": users}


def top_next_items(model, reps, histories: Sequences, rows: torch.Tensor, users: torch.Tensor, k: int,
                   max_len: int, n_items: int, mask_history: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """(item indices [B, k'], valid flags [B, k']) with k' = min(k, n_items): the best next items
    after the histories ``rows`` by ``model.score_sequences``, every history item excluded when
    ``mask_history`` (excluded ranks are flagged invalid)."""
    scores = model.score_sequences(history_batch(histories, rows, users, max_len, n_items), reps).float()
    if scores.shape != (rows.numel(), n_items):
        raise ValueError(f"{type(model).__name__}.score_sequences returned shape {tuple(scores.shape)}, "
                         f"expected ({rows.numel()}, {n_items})")
    if scores._base is not None or not scores.is_contiguous():
        scores = scores.clone()  # never write -inf into a model's cached tensor or a view of it
    if mask_history:
        seg, src = segment_index(histories.indptr.index_select(0, rows), histories.lengths().index_select(0, rows))
        scores[seg, histories.items.index_select(0, src)] = float("-inf")
    vals, idx = torch.topk(scores, min(k, n_items), dim=1)
    return idx, torch.isfinite(vals)


class NextItemEvaluator:
    """Full-ranking next-item evaluator over the sequences of one split part (module docstring).

    One ``model.propagate()`` per :meth:`evaluate` (eval mode, no grad; the model's training mode
    is restored after), then ``model.score_sequences`` per chunk of ``chunk`` sequences. Masking,
    top-K, hits and metrics are vectorised over the chunk. Exposes ``users`` (user index of each
    evaluated sequence), ``n_cold_users``, ``ks``, ``metrics``, ``mask_history`` and
    ``last_seconds`` (wall time of the last evaluation).
    """

    #: every ranking metric grows with quality (the trainer's selection rule)
    lower_is_better: frozenset = frozenset()

    def __init__(self, split: Split, which: str, n_items: int, max_len: int = 50,
                 ks: Iterable[int] = (10, 20, 50), metrics: Iterable[str] = SEQUENTIAL_METRICS,
                 mask_history: bool = True, device: torch.device | str = "cpu", chunk: int = 1024,
                 holdout: Optional[float] = None):
        if int(max_len) < 1:
            raise ValueError(f"next-item evaluation: max_len must be >= 1, got {max_len}")
        self.which = which
        self.n_items = int(n_items)
        self.max_len = int(max_len)
        self.ks = sorted(set(int(k) for k in ks))
        if not self.ks or self.ks[0] < 1:
            raise ValueError(f"next-item evaluation: cut-offs must be positive integers, got {list(ks)}")
        self.metrics = list(metrics)
        unknown = [m for m in self.metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {', '.join(METRICS)}")
        self.mask_history = bool(mask_history)
        self.device = torch.device(device)
        self.chunk = int(chunk)
        self.last_seconds = 0.0
        sets = next_item_targets(split, which, holdout)
        for name, s in (("history", sets.histories), ("target", sets.targets)):
            if s.items.numel() and int(s.items.max()) >= self.n_items:
                r = int(torch.nonzero(s.items >= self.n_items)[0])
                raise ValueError(f"{which} {name} item {int(s.items[r])} is outside the {self.n_items} "
                                 f"items of the model")
        self.n_cold_users = sets.n_cold_users
        self.users = sets.users.to(self.device)
        self.histories = sets.histories.to(self.device)
        self.targets = sets.targets.to(self.device)
        # distinct (row, item) target keys, sorted: membership of a ranked item by searchsorted
        tkeys = torch.unique(self.targets.row_index() * self.n_items + self.targets.items)
        self.target_keys = tkeys
        self.n_pos = torch.bincount(tkeys // self.n_items, minlength=self.users.numel())

    def __len__(self) -> int:
        return int(self.users.numel())

    def batch(self, rows: torch.Tensor) -> Dict[str, torch.Tensor]:
        """The evaluation batch of sequence rows ``rows`` (`history_batch`)."""
        return history_batch(self.histories, rows, self.users.index_select(0, rows), self.max_len, self.n_items)

    def extra_metrics(self, rows: torch.Tensor, idx: torch.Tensor, ok: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Further per-sequence metrics of the same top-K ranking (``idx``, ``ok`` [B, K] of the
        sequences ``rows``), summed and averaged like the others; none here (a protocol's own
        metrics: `graphrec.train.task_next_item_comirec`)."""
        return {}

    def _hits(self, model, reps, rows: torch.Tensor, kmax: int) -> tuple[torch.Tensor, Dict[str, torch.Tensor]]:
        idx, ok = top_next_items(model, reps, self.histories, rows, self.users.index_select(0, rows),
                                 kmax, self.max_len, self.n_items, self.mask_history)
        extra = self.extra_metrics(rows, idx, ok)
        keys = rows.unsqueeze(1) * self.n_items + idx
        if self.target_keys.numel():
            pos = torch.searchsorted(self.target_keys, keys).clamp(max=self.target_keys.numel() - 1)
            hits = (self.target_keys[pos] == keys) & ok
        else:
            hits = torch.zeros_like(keys, dtype=torch.bool)
        if hits.shape[1] < kmax:  # fewer items than K: the missing ranks are misses
            hits = F.pad(hits, (0, kmax - hits.shape[1]))
        return hits, extra

    @torch.no_grad()
    def evaluate(self, model, reps=None) -> Dict[str, float]:
        """Mean metrics over the evaluated sequences (``{"ndcg@10": ..., ...}``). ``reps`` from one
        ``model.propagate()`` may be passed in so that valid and test share one propagation."""
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        try:
            if reps is None:
                reps = model.propagate()
            kmax = max(self.ks)
            n = self.users.numel()
            # summed on the device: one host transfer per evaluation, not one per chunk and metric
            sums: Dict[str, torch.Tensor] = {f"{m}@{k}": torch.zeros((), dtype=torch.float64, device=self.device)
                                             for k in self.ks for m in self.metrics}
            for s in range(0, n, self.chunk):
                rows = torch.arange(s, min(n, s + self.chunk), device=self.device)
                hits, extra = self._hits(model, reps, rows, kmax)
                per_seq = metrics_from_hits(hits, self.n_pos.index_select(0, rows), self.ks, self.metrics)
                for name, v in {**per_seq, **extra}.items():
                    sums[name] = sums.get(name, 0.0) + v.double().sum()
        finally:
            model.train(was_training)
        out = {name: float(v) / max(1, n) for name, v in sums.items()}
        self.last_seconds = time.perf_counter() - t0
        return out
