"""Vectorised training batches: (user, pos, neg) triples for BPR-style training (`BPRSampler`) and
shifted-sequence windows for next-item training (`SequenceSampler`)."""
from __future__ import annotations

from typing import Any, Dict, Iterator

import torch

from graphrec.data.interactions import Interactions
from graphrec.data.sequences import Sequences, segment_index
from graphrec.errors import ConfigError

DEFAULT_FANOUT = 10  # neighbours sampled per node and hop (train.sampler=neighbor)


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


def sampler_for(model: Any, train: Interactions, cfg: Dict[str, Any], device: torch.device | str) -> Any:
    """The training sampler of ``model`` from the ``train`` config section; the model decides how
    many negatives a pair gets (`Recommender.negatives_per_pair`, from ``train.num_neg``).
    ``train.sampler: neighbor`` samples subgraphs with PyG's link-level neighbour loader
    (`graphrec.train.link_neighbor`; ``train.num_neighbors`` per hop, default 10 for each of the
    model's `Recommender.subgraph_hops`)."""
    if cfg.get("sampler", "exact") == "neighbor":
        from graphrec.train.link_neighbor import LinkNeighborBatches
        hops = model.subgraph_hops()
        if hops is None:
            raise ConfigError(f"model {model.name!r} does not train on sampled subgraphs (train.sampler=neighbor); "
                              f"LightGCN and FREEDOM do")
        fanout = list(cfg.get("num_neighbors") or [DEFAULT_FANOUT] * hops)
        if len(fanout) != hops:
            raise ConfigError(f"train.num_neighbors={fanout} gives {len(fanout)} hop(s); model {model.name!r} "
                              f"propagates {hops}")
        if int(cfg["num_neg"]) != 1 or cfg["neg_sampling"] != "uniform":
            raise ConfigError("train.sampler=neighbor draws one uniform negative per pair (PyG's triplet sampling): "
                              "set train.num_neg=1 and train.neg_sampling=uniform")
        return LinkNeighborBatches(train, int(cfg["batch_size"]), fanout, device)
    return BPRSampler(train, batch_size=int(cfg["batch_size"]),
                      num_neg=model.negatives_per_pair(int(cfg["num_neg"])),
                      mode=cfg["neg_sampling"], alpha=float(cfg["neg_alpha"]), device=device)


class SequenceSampler:
    r"""Shifted-sequence training windows of the chronological training sequences (``next_item``).

    A user's sequence :math:`(i_1, \dots, i_n)` is cut from its end into windows of at most
    ``max_len + 1`` items that overlap by one item, ``[n - L - 1, n)``, ``[n - 2L - 1, n - L)``, ...
    (``L = max_len``, 0-based, clipped at 0), so each transition :math:`i_t \to i_{t+1}` is a
    target exactly once per epoch. A window's input ``seq`` is its items but the last, its
    ``target`` its items but the first (``target[:, c]`` follows ``seq[:, c]``), both left-padded
    with PAD = ``n_items`` to ``L`` columns, the latest item in the last column. Sequences of one
    item give no window. Windows are located once at construction (start, length, user: vectorised)
    and each batch's are gathered when it is yielded, so memory is O(windows), not O(windows x L).

    ``num_neg=1`` adds ``neg`` [B, L]: one uniform negative per target position among the items
    that occur in training, never an item of that user's training sequence (vectorised rejection,
    `BPRSampler.negatives`), PAD where ``target`` is PAD. All randomness comes from the generator.
    """

    def __init__(self, train: Interactions, max_len: int = 50, batch_size: int = 2048, num_neg: int = 0,
                 device: torch.device | str = "cpu"):
        if int(max_len) < 1:
            raise ValueError(f"sequence sampler: max_len must be >= 1, got {max_len}")
        if int(num_neg) not in (0, 1):
            raise ValueError(f"sequence sampler: num_neg must be 0 (no negatives) or 1 (one per position), "
                             f"got {num_neg}")
        self.device = torch.device(device)
        self.max_len = int(max_len)
        self.batch_size = int(batch_size)
        self.num_neg = int(num_neg)
        self.n_items = train.n_items
        self.pad = train.n_items
        seqs = Sequences.from_interactions(train)
        lens = seqs.lengths()
        L = self.max_len
        n_win = torch.div((lens - 1).clamp(min=0) + L - 1, L, rounding_mode="floor")  # ceil((n-1)/L)
        if int(n_win.sum()) == 0:
            raise ValueError(f"{train.source or 'training split'}: no training sequence has 2 or more items, "
                             f"so there is no next-item transition to train on")
        user, j = segment_index(torch.zeros_like(n_win), n_win)  # j-th window of user, from the end
        end = lens.index_select(0, user) - j * L                  # exclusive, inside the sequence
        begin = (end - L - 1).clamp(min=0)
        self.win_user = user.to(self.device)
        self.win_start = (seqs.indptr.index_select(0, user) + begin).to(self.device)  # flat index
        self.win_len = (end - begin - 1).to(self.device)                               # transitions
        self.items = seqs.items.to(self.device)
        self._neg = BPRSampler(train, batch_size=self.batch_size, num_neg=1, device=self.device) if num_neg else None

    @property
    def n_windows(self) -> int:
        return int(self.win_user.numel())

    def __len__(self) -> int:
        return (self.n_windows + self.batch_size - 1) // self.batch_size

    def windows(self, index: torch.Tensor | None = None) -> Dict[str, torch.Tensor]:
        """``seq``, ``target`` [B, max_len] and ``user`` [B] of the windows ``index`` (all when None)."""
        index = (torch.arange(self.n_windows, device=self.device) if index is None
                 else torch.as_tensor(index, dtype=torch.long, device=self.device))
        n = self.win_len.index_select(0, index)
        off = torch.arange(self.max_len, device=self.device).unsqueeze(0) - (self.max_len - n).unsqueeze(1)
        valid = off >= 0
        src = self.win_start.index_select(0, index).unsqueeze(1) + off.clamp(min=0)  # in range: n >= 1
        pad = torch.full_like(src, self.pad)
        return {"seq": torch.where(valid, self.items[src], pad),
                "target": torch.where(valid, self.items[src + 1], pad),
                "user": self.win_user.index_select(0, index)}

    def negatives(self, batch: Dict[str, torch.Tensor], generator: torch.Generator) -> torch.Tensor:
        """One negative per target position of ``batch`` (PAD where the target is PAD)."""
        if self._neg is None:
            raise ValueError("sequence sampler was built with num_neg=0: it draws no negatives")
        target = batch["target"]
        real = target != self.pad
        neg = torch.full_like(target, self.pad)
        users = batch["user"].unsqueeze(1).expand_as(target)[real]
        neg[real] = self._neg.negatives(users, generator)
        return neg

    def epoch(self, generator: torch.Generator) -> Iterator[Dict[str, torch.Tensor]]:
        """Batches of one epoch: the windows in a random order drawn from ``generator``."""
        perm = torch.randperm(self.n_windows, generator=generator, device=self.device)
        for s in range(0, perm.numel(), self.batch_size):
            batch = self.windows(perm[s:s + self.batch_size])
            if self._neg is not None:
                batch["neg"] = self.negatives(batch, generator)
            yield batch
