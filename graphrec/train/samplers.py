"""Vectorised (user, pos, neg) batch sampling for BPR-style training."""
from __future__ import annotations

from typing import Any, Dict, Iterator

import torch

from graphrec.data.interactions import Interactions


class BPRSampler:
    """Shuffles the training pairs each epoch and draws negatives for whole batches at once.

    Negatives exclude the user's training positives by vectorised rejection: draw candidates for
    the batch, test membership of ``user * n_items + item`` in the sorted key array with
    ``searchsorted``, redraw only the rejected ones. Rounds, not samples, are looped; each round
    shrinks the rejected set geometrically (by the user's density). ``mode="uniform"`` draws from
    the items that occur in training (MMRec's rule; items never seen in training are never
    negatives); ``"popularity"`` draws with probability proportional to ``degree ** alpha``.
    All randomness comes from ``generator`` so an epoch is reproducible from its state.
    """

    def __init__(self, train: Interactions, batch_size: int = 2048, num_neg: int = 1,
                 mode: str = "uniform", alpha: float = 0.75, device: torch.device | str = "cpu",
                 max_rounds: int = 100):
        if mode not in ("uniform", "popularity"):
            raise ValueError(f"negative sampling mode must be 'uniform' or 'popularity', got {mode!r}")
        if len(train) == 0:
            raise ValueError(f"{train.source or 'training split'}: no training interactions to sample from")
        self.device = torch.device(device)
        self.n_items = train.n_items
        self.batch_size = int(batch_size)
        self.num_neg = int(num_neg)
        self.mode = mode
        self.max_rounds = max_rounds
        keys = torch.unique(train.user * train.n_items + train.item)
        self.keys = keys.to(self.device)
        # Training pairs deduplicated: a repeated (u, i) row would be one positive seen twice.
        self.user = (keys // train.n_items).to(self.device)
        self.pos = (keys % train.n_items).to(self.device)
        deg = torch.bincount(self.pos, minlength=self.n_items).to(torch.float64)
        if mode == "uniform":
            self.candidates = torch.nonzero(deg > 0).flatten()
            self.weights = None
        else:
            w = deg.pow(alpha)
            self.candidates = torch.nonzero(w > 0).flatten()
            self.weights = w[self.candidates].to(torch.float32)
        full_users = torch.bincount(self.user, minlength=train.n_users) >= self.candidates.numel()
        if bool(full_users.any()):
            bad = torch.nonzero(full_users).flatten()[:5].tolist()
            raise ValueError(f"users {train.user_map.to_original(bad).tolist()} interacted with every "
                             f"candidate item: no negative exists for them")

    def __len__(self) -> int:
        return (self.user.numel() + self.batch_size - 1) // self.batch_size

    def _draw(self, n: int, generator: torch.Generator) -> torch.Tensor:
        if self.weights is None:
            pick = torch.randint(self.candidates.numel(), (n,), generator=generator, device=self.device)
        else:
            pick = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        return self.candidates[pick]

    def negatives(self, users: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One or ``num_neg`` negatives per user (shape [B] or [B, num_neg])."""
        u = users.repeat_interleave(self.num_neg) if self.num_neg > 1 else users
        neg = self._draw(u.numel(), generator)
        todo = torch.arange(u.numel(), device=self.device)
        for _ in range(self.max_rounds):
            k = u[todo] * self.n_items + neg[todo]
            pos = torch.searchsorted(self.keys, k).clamp(max=self.keys.numel() - 1)
            clash = self.keys[pos] == k
            todo = todo[clash]
            if todo.numel() == 0:
                break
            neg[todo] = self._draw(todo.numel(), generator)
        else:
            raise RuntimeError(f"negative sampling did not converge in {self.max_rounds} rounds")
        return neg.view(-1, self.num_neg) if self.num_neg > 1 else neg

    def epoch(self, generator: torch.Generator) -> Iterator[Dict[str, torch.Tensor]]:
        """Batches of one epoch. One negative per pair: the whole epoch's are drawn in one vectorised
        pass. Several (MixGCF's 64 candidates): each batch's are drawn with the batch, so memory
        holds batch x num_neg ids, not pairs x num_neg (12.8M at Clothing)."""
        perm = torch.randperm(self.user.numel(), generator=generator, device=self.device)
        users, pos = self.user[perm], self.pos[perm]
        neg = self.negatives(users, generator) if self.num_neg == 1 else None
        for s in range(0, perm.numel(), self.batch_size):
            e = s + self.batch_size
            yield {"user": users[s:e], "pos": pos[s:e],
                   "neg": neg[s:e] if neg is not None else self.negatives(users[s:e], generator)}


def sampler_for(model: Any, train: Interactions, cfg: Dict[str, Any], device: torch.device | str) -> BPRSampler:
    """The training sampler of ``model`` from the ``train`` config section; the model decides how
    many negatives a pair gets (`Recommender.negatives_per_pair`, from ``train.num_neg``)."""
    return BPRSampler(train, batch_size=int(cfg["batch_size"]),
                      num_neg=model.negatives_per_pair(int(cfg["num_neg"])),
                      mode=cfg["neg_sampling"], alpha=float(cfg["neg_alpha"]), device=device)
