"""Full-ranking evaluation over all items, masked, top-K on the device, in user chunks."""
from __future__ import annotations

import time
from typing import Dict, Iterable, Optional

import torch

from graphrec.data.interactions import Interactions
from graphrec.errors import require_one_of
from graphrec.eval.metrics import METRICS, metrics_from_hits
from graphrec.eval.screened_topk import ScreenedTopK, bf16_matmul_is_fast

SCREENS = ("auto", "bf16", "off")
#: "auto" screens catalogues at least this large: at 1,682 items (ml100k) the screen cost 0.09 s
#: against 0.08 s, at 16,000 random items it broke even, at Clothing's 23,033 it halved the time
AUTO_SCREEN_MIN_ITEMS = 16384


def _keys(inter: Interactions) -> torch.Tensor:
    """Sorted unique (user * n_items + item) keys: O(log n) membership by searchsorted."""
    return torch.unique(inter.user * inter.n_items + inter.item)


class RankingEvaluator:
    """Scores every evaluated user against ALL items, masks the user's known items, ranks top-K.

    Users evaluated: those with at least one held-out interaction in ``target`` and at least one
    training interaction (MMRec drops cold users the same way; their count is reported).
    ``mask`` lists the interactions whose items are excluded from the ranking (training items by
    default; training + valid items for ``mask_valid`` in test). One ``propagate()`` per call.

    ``screen``: ``"bf16"`` ranks through the certified bfloat16 screen of
    `graphrec.eval.screened_topk` (the same top-K as float32, ~2x faster at Clothing scale on a
    CPU with AVX512-BF16), ``"off"`` scores in float32 only, ``"auto"`` screens where the CPU runs
    bfloat16 GEMMs natively and the catalogue has at least ``AUTO_SCREEN_MIN_ITEMS`` items.
    Models whose score is not an inner product are always ranked exactly.
    """

    #: every ranking metric grows with quality (the trainer's selection rule)
    lower_is_better: frozenset = frozenset()

    def __init__(self, target: Interactions, mask: Iterable[Interactions], ks: Iterable[int] = (10, 20),
                 metrics: Iterable[str] = METRICS, device: torch.device | str = "cpu",
                 user_chunk: int = 256, train: Optional[Interactions] = None, screen: str = "auto"):
        require_one_of("eval screen", screen, SCREENS)
        self.screen = screen
        self.ks = sorted(set(int(k) for k in ks))
        self.metrics = list(metrics)
        self.device = torch.device(device)
        self.user_chunk = int(user_chunk)
        self.n_items = target.n_items
        masks = list(mask)
        train = train if train is not None else (masks[0] if masks else None)
        users = torch.unique(target.user)
        if train is not None:
            has_train = train.user_degree()[users] > 0
            self.n_cold_users = int((~has_train).sum())
            users = users[has_train]
        else:
            self.n_cold_users = 0
        self.users = users.to(self.device)
        tkeys = _keys(target)
        self.n_pos = torch.bincount(tkeys // self.n_items, minlength=target.n_users).to(self.device)
        self.target_keys = tkeys.to(self.device)
        if masks:
            mk = torch.unique(torch.cat([_keys(m) for m in masks]))
        else:
            mk = torch.empty(0, dtype=torch.long)
        mu = mk // self.n_items
        self.mask_indptr = torch.zeros(target.n_users + 1, dtype=torch.long)
        self.mask_indptr[1:] = torch.cumsum(torch.bincount(mu, minlength=target.n_users), 0)
        self.mask_items = (mk % self.n_items).to(self.device)
        self.mask_indptr = self.mask_indptr.to(self.device)

    def _mask_coords(self, users: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        start, end = self.mask_indptr[users], self.mask_indptr[users + 1]
        counts = end - start
        rows = torch.repeat_interleave(torch.arange(users.numel(), device=users.device), counts)
        offs = torch.arange(int(counts.sum()), device=users.device) - torch.repeat_interleave(
            torch.cumsum(counts, 0) - counts, counts)
        return rows, self.mask_items[torch.repeat_interleave(start, counts) + offs]

    def make_screen(self, model, reps) -> Optional[tuple[torch.Tensor, ScreenedTopK]]:
        """(user vectors, screen over the item vectors) when this evaluation screens, else None."""
        on = self.screen == "bf16" or (self.screen == "auto" and self.n_items >= AUTO_SCREEN_MIN_ITEMS
                                       and bf16_matmul_is_fast(self.device))
        factors_of = getattr(model, "score_factors", None) if on else None  # duck-typed scorers: exact
        factors = factors_of(reps) if factors_of is not None else None
        if factors is None:
            return None
        return factors[0], ScreenedTopK(factors[1])

    @torch.no_grad()
    def topk(self, model, reps, users: torch.Tensor, k: int,
             screen: Optional[tuple[torch.Tensor, ScreenedTopK]] = None) -> tuple[torch.Tensor, torch.Tensor]:
        """(item indices [B, k], valid flag [B, k]) for these users, masked items excluded;
        ``screen`` from :meth:`make_screen` (same result, faster)."""
        k = min(k, self.n_items)
        rows, cols = self._mask_coords(users)
        if screen is not None:
            return screen[1].topk(screen[0][users], k, rows, cols)
        scores = model.score(users, reps).float()
        if scores._base is not None or not scores.is_contiguous():
            scores = scores.clone()  # never write -inf into a model's cached tensor or a view of it
        scores[rows, cols] = float("-inf")
        vals, idx = torch.topk(scores, k, dim=1)
        return idx, torch.isfinite(vals)

    @torch.no_grad()
    def evaluate(self, model, reps=None) -> Dict[str, float]:
        """Mean metrics over evaluated users. ``reps`` (from one ``model.propagate()``) may be
        passed in so that valid and test share one propagation."""
        t0 = time.perf_counter()
        was_training = model.training
        model.eval()
        if reps is None:
            reps = model.propagate()
        kmax = max(self.ks)
        screen = self.make_screen(model, reps)
        self.screen_dropped_at: Optional[int] = None  # first user offset ranked without the screen
        sums: Dict[str, torch.Tensor] = {}
        for s in range(0, self.users.numel(), self.user_chunk):
            users = self.users[s:s + self.user_chunk]
            idx, ok = self.topk(model, reps, users, kmax, screen)
            if screen is not None and 2 * screen[1].last_fallback_rows > users.numel():
                # most rows are near-ties the bf16 bound cannot separate (e.g. an untrained model
                # whose item vectors are alike): each would be scored twice, so rank the rest in
                # float32 directly
                screen = None
                self.screen_dropped_at = s
            keys = users.unsqueeze(1) * self.n_items + idx
            pos = torch.searchsorted(self.target_keys, keys).clamp(max=max(0, self.target_keys.numel() - 1))
            hits = (self.target_keys[pos] == keys) & ok if self.target_keys.numel() else torch.zeros_like(ok)
            if hits.shape[1] < kmax:  # fewer items than K: pad with misses
                hits = torch.nn.functional.pad(hits, (0, kmax - hits.shape[1]))
            per_user = metrics_from_hits(hits, self.n_pos[users], self.ks, self.metrics)
            for name, v in per_user.items():
                sums[name] = sums.get(name, 0) + v.double().sum()
        n = max(1, self.users.numel())
        model.train(was_training)
        out = {name: float(v) / n for name, v in sums.items()}
        self.last_seconds = time.perf_counter() - t0
        return out
