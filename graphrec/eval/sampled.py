r"""Sampled-negatives ranking (the protocol of PAMD, Han et al. WWW 2022, Sec. 5.1, after Guo et al.
IJCAI 2019): each user's held-out items are ranked among ``n_neg`` random items the user never
interacted with, not among all items.

Policy (fixed here, stated in results):

- negatives are drawn uniformly without replacement from the items the user has no interaction
  with in any part of the split (train, valid or test), once per seed, on the host, and kept for
  every evaluation of the run, so every model and epoch of one seed sees the same candidates
  (valid and test share them: both exclude the same interactions);
- a user with fewer than ``n_neg`` such items gets all of them;
- candidates are the user's held-out items of the evaluated part plus the negatives (the paper's
  "1,000 negatives"; ``include_gt_in_count=True`` draws ``n_neg - |T_u|`` negatives instead, the
  authors' code's 1,000 candidates in all);
- Recall@K and NDCG@K as in `graphrec.eval.metrics` (IDCG truncated at K;
  ``idcg="untruncated"`` divides by the IDCG of all :math:`|T_u|` positions, the authors' code);
  users without held-out or training interactions are skipped, as in full ranking.

Sampling is vectorised: per user chunk, uniform random keys for every item, the user's known items
keyed out, the ``n_neg`` smallest keys taken (a uniform draw without replacement).
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, Optional

import torch

from graphrec.data.interactions import Interactions
from graphrec.eval.metrics import METRICS, metrics_from_hits


#: users whose negatives are drawn at once (fixed: the draw must not depend on a setting)
NEG_CHUNK = 512


def _keys(inter: Interactions) -> torch.Tensor:
    return torch.unique(inter.user * inter.n_items + inter.item)


def _csr(keys: torch.Tensor, n_users: int, n_items: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(indptr [U+1], items) of sorted (user * n_items + item) keys."""
    indptr = torch.zeros(n_users + 1, dtype=torch.long)
    indptr[1:] = torch.cumsum(torch.bincount(keys // n_items, minlength=n_users), 0)
    return indptr, keys % n_items


def _rows(indptr: torch.Tensor, items: torch.Tensor, users: torch.Tensor, fill: int) -> torch.Tensor:
    """Each user's items as a padded matrix [B, max count] (``fill`` where a row is short)."""
    start, count = indptr[users], indptr[users + 1] - indptr[users]
    width = int(count.max()) if users.numel() else 0
    col = torch.arange(width)
    ok = col.unsqueeze(0) < count.unsqueeze(1)
    idx = (start.unsqueeze(1) + col).clamp(max=max(0, items.numel() - 1))
    return torch.where(ok, items[idx] if items.numel() else torch.full_like(idx, fill), torch.full_like(idx, fill))


def sample_negatives(known: Interactions, users: torch.Tensor, n_neg: int, seed: int,
                     n_keep: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(negatives [B, n_neg] int32, valid [B, n_neg] bool) for ``users``: uniform without
    replacement among the items each user has no row of in ``known``; ``n_keep`` [B] caps the
    count per user (default ``n_neg``). Users with fewer free items get all of them (the rest of
    their row is invalid). Deterministic in ``seed`` (one generator read in user order, in chunks
    of a fixed ``NEG_CHUNK`` users: memory ``NEG_CHUNK x n_items`` floats)."""
    n_items, n_users = known.n_items, known.n_users
    indptr, items = _csr(_keys(known), n_users, n_items)
    k = min(int(n_neg), n_items)
    gen = torch.Generator().manual_seed(int(seed))
    out = torch.empty(users.numel(), k, dtype=torch.int32)  # 39k users x 1,000: 156 MB, not 312
    ok = torch.empty(users.numel(), k, dtype=torch.bool)
    users = users.cpu()
    chunk = NEG_CHUNK
    for s in range(0, users.numel(), chunk):
        us = users[s:s + chunk]
        keys = torch.rand(us.numel(), n_items, generator=gen)
        start, count = indptr[us], indptr[us + 1] - indptr[us]
        rows = torch.repeat_interleave(torch.arange(us.numel()), count)
        offs = torch.arange(int(count.sum())) - torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
        keys[rows, items[torch.repeat_interleave(start, count) + offs]] = 2.0  # known: never drawn
        vals, idx = torch.topk(keys, k, dim=1, largest=False)
        cap = torch.full((us.numel(),), k) if n_keep is None else n_keep[s:s + chunk].clamp(0, k)
        out[s:s + chunk] = idx.to(torch.int32)
        ok[s:s + chunk] = (vals < 2.0) & (torch.arange(k).unsqueeze(0) < cap.unsqueeze(1))
    return out, ok


class SampledEvaluator:
    """Ranks each evaluated user's held-out items (``target``) among sampled negatives
    (module docstring). ``known`` lists every interaction of the split (the negatives' exclusion
    set), ``train`` the training part (users without training rows are skipped)."""

    lower_is_better: frozenset = frozenset()

    def __init__(self, target: Interactions, known: Interactions, train: Interactions, n_neg: int = 1000,
                 ks: Iterable[int] = (5, 10), metrics: Iterable[str] = ("recall", "ndcg"), seed: int = 0,
                 device: torch.device | str = "cpu", user_chunk: int = 256, include_gt_in_count: bool = False,
                 idcg: str = "truncated"):
        if idcg not in ("truncated", "untruncated"):
            raise ValueError(f"idcg must be 'truncated' or 'untruncated', got {idcg!r}")
        unknown = [m for m in metrics if m not in METRICS]
        if unknown:
            raise ValueError(f"unknown metrics {unknown}; known: {', '.join(METRICS)}")
        self.ks = sorted(set(int(k) for k in ks))
        self.metrics = list(metrics)
        self.device = torch.device(device)
        self.user_chunk = int(user_chunk)
        self.idcg = idcg
        self.n_items = target.n_items
        users = torch.unique(target.user)
        has_train = train.user_degree()[users] > 0
        self.n_cold_users = int((~has_train).sum())
        users = users[has_train]
        self.users = users.to(self.device)
        t_indptr, t_items = _csr(_keys(target), target.n_users, self.n_items)
        self.gt = _rows(t_indptr, t_items, users, -1)                        # [B, max |T_u|], -1 pad
        self.n_pos = (self.gt >= 0).sum(1)
        cap = (int(n_neg) - self.n_pos).clamp(min=0) if include_gt_in_count else None
        self.negatives, self.neg_ok = sample_negatives(known, users, int(n_neg), seed, n_keep=cap)
        self.last_seconds = 0.0

    def candidates(self, rows: slice = slice(None)) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(items [B, C] int64, valid [B, C], is_gt [B, C]) of the evaluated users ``rows``:
        held-out items first, then the negatives."""
        gt, neg, nok = self.gt[rows], self.negatives[rows].long(), self.neg_ok[rows]
        items = torch.cat([gt.clamp(min=0), neg], 1)
        ok = torch.cat([gt >= 0, nok], 1)
        is_gt = torch.cat([gt >= 0, torch.zeros_like(nok)], 1)
        return items, ok, is_gt

    @torch.no_grad()
    def per_user(self, model, reps=None) -> Dict[str, torch.Tensor]:
        """Per-user metric values [B] (in ``self.users`` order): the paired t-test's unit."""
        was_training = model.training
        model.eval()
        if reps is None:
            reps = model.propagate()
        kmax = max(self.ks)
        out: Dict[str, list] = {}
        for s in range(0, self.users.numel(), self.user_chunk):
            users = self.users[s:s + self.user_chunk]
            cand, valid, gt = (t.to(self.device) for t in self.candidates(slice(s, s + self.user_chunk)))
            scores = model.score(users, reps).float().gather(1, cand)
            scores = scores.masked_fill(~valid, float("-inf"))
            k = min(kmax, cand.shape[1])
            vals, idx = torch.topk(scores, k, dim=1)
            hits = gt.gather(1, idx) & torch.isfinite(vals)
            if k < kmax:
                hits = torch.nn.functional.pad(hits, (0, kmax - k))
            n_pos = self.n_pos[s:s + self.user_chunk].to(self.device)
            vals_ = metrics_from_hits(hits, n_pos, self.ks, self.metrics)
            if self.idcg == "untruncated":
                for kk in self.ks:
                    if f"ndcg@{kk}" in vals_:
                        vals_[f"ndcg@{kk}"] = vals_[f"ndcg@{kk}"] * _idcg(n_pos.clamp(max=kk)) / _idcg(n_pos)
            for name, v in vals_.items():
                out.setdefault(name, []).append(v)
        model.train(was_training)
        return {name: torch.cat(v) for name, v in out.items()}

    def evaluate(self, model, reps=None) -> Dict[str, float]:
        t0 = time.perf_counter()
        per = self.per_user(model, reps)
        n = max(1, self.users.numel())
        out = {name: float(v.double().sum()) / n for name, v in per.items()}
        self.last_seconds = time.perf_counter() - t0
        return out


def _idcg(n: torch.Tensor) -> torch.Tensor:
    """:math:`\\sum_{r \\le n} 1/\\log_2(r+1)` per entry of ``n`` (>= 1)."""
    top = int(n.max()) if n.numel() else 1
    table = torch.cat([torch.zeros(1), (1.0 / torch.log2(torch.arange(2, top + 2, dtype=torch.float32))).cumsum(0)])
    return table.to(n.device)[n.clamp(min=1).long()]


__all__ = ["SampledEvaluator", "sample_negatives"]
