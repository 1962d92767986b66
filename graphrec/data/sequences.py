"""Per-user time-ordered item histories for the sequential models.

Stored flat (CSR): ``items[indptr[u]:indptr[u+1]]`` is user ``u``'s history, oldest first. Ties in
time keep the log's row order. A `Sequences` need not cover every user: `select` and `split_tail`
give CSR sets whose row ``r`` is any chosen sequence (the evaluated users of a split).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from graphrec.data.interactions import Interactions


def segment_index(starts: torch.Tensor, counts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(segment of each element, flat source index) of the concatenated ranges
    ``[starts[r], starts[r] + counts[r])``: the vectorised form of ``for r: range(...)``."""
    counts = counts.to(torch.long)
    seg = torch.repeat_interleave(torch.arange(counts.numel(), device=counts.device), counts)
    first = torch.cumsum(counts, 0) - counts
    offs = torch.arange(seg.numel(), device=counts.device) - first.index_select(0, seg)
    return seg, starts.to(torch.long).index_select(0, seg) + offs


@dataclass
class Sequences:
    indptr: torch.Tensor  # [n_users + 1]
    items: torch.Tensor   # [n_events], grouped by user, oldest first
    n_items: int

    @classmethod
    def from_interactions(cls, inter: Interactions) -> "Sequences":
        """Order each user's rows by timestamp (row order when there is none)."""
        n = len(inter)
        pos = torch.arange(n)
        if inter.timestamp is not None:
            # stable sorts: by row, then time, then user -> (user, time, row) order
            order = torch.sort(inter.timestamp, stable=True).indices
        else:
            order = pos
        order = order[torch.sort(inter.user[order], stable=True).indices]
        indptr = torch.zeros(inter.n_users + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(torch.bincount(inter.user, minlength=inter.n_users), 0)
        return cls(indptr, inter.item[order].contiguous(), inter.n_items)

    @classmethod
    def from_lengths(cls, lengths: torch.Tensor, items: torch.Tensor, n_items: int) -> "Sequences":
        """CSR from per-row lengths and the concatenated items."""
        lengths = torch.as_tensor(lengths, dtype=torch.long)
        indptr = torch.zeros(lengths.numel() + 1, dtype=torch.long, device=lengths.device)
        indptr[1:] = torch.cumsum(lengths, 0)
        if int(indptr[-1]) != items.numel():
            raise ValueError(f"Sequences: lengths sum to {int(indptr[-1])} but {items.numel()} items were given")
        return cls(indptr, torch.as_tensor(items, dtype=torch.long), int(n_items))

    def row_index(self) -> torch.Tensor:
        """Row of every flat item ([n_events])."""
        return torch.repeat_interleave(torch.arange(self.n_users, device=self.indptr.device), self.lengths())

    def select(self, rows: torch.Tensor) -> "Sequences":
        """The sequences of ``rows`` (in that order) as a new CSR set."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=self.indptr.device)
        counts = self.lengths().index_select(0, rows)
        _, src = segment_index(self.indptr.index_select(0, rows), counts)
        return Sequences.from_lengths(counts, self.items.index_select(0, src), self.n_items)

    def split_tail(self, n_tail: torch.Tensor) -> tuple["Sequences", "Sequences"]:
        """(heads, tails): row ``r``'s last ``n_tail[r]`` items form its tail, the others its head
        (``0 <= n_tail[r] <= len(r)``)."""
        n_tail = torch.as_tensor(n_tail, dtype=torch.long, device=self.indptr.device).expand(self.n_users)
        lens = self.lengths()
        if bool(((n_tail < 0) | (n_tail > lens)).any()):
            r = int(torch.nonzero((n_tail < 0) | (n_tail > lens))[0])
            raise ValueError(f"Sequences.split_tail: row {r} has {int(lens[r])} items, cannot cut a tail of "
                             f"{int(n_tail[r])}")
        row = self.row_index()
        tail = (self.indptr[1:] - n_tail).index_select(0, row) <= torch.arange(self.items.numel(),
                                                                             device=self.items.device)
        return (Sequences.from_lengths(lens - n_tail, self.items[~tail], self.n_items),
                Sequences.from_lengths(n_tail.clone(), self.items[tail], self.n_items))

    def to(self, device: torch.device | str) -> "Sequences":
        return Sequences(self.indptr.to(device), self.items.to(device), self.n_items)

    @property
    def n_users(self) -> int:
        return int(self.indptr.numel() - 1)

    def __len__(self) -> int:
        return self.n_users

    def lengths(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]

    def __getitem__(self, user: int) -> torch.Tensor:
        return self.items[self.indptr[user]:self.indptr[user + 1]]

    def padded(self, max_len: Optional[int] = None, pad_value: Optional[int] = None,
               users: Optional[torch.Tensor] = None, left: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(LongTensor[n, L], lengths[n]): each history truncated to its latest ``max_len`` items,
        padded with ``pad_value`` (default ``n_items``, a free embedding row). ``left=True`` puts
        padding first so the latest item is always in the last column."""
        dev = self.indptr.device
        users = (torch.arange(self.n_users, device=dev) if users is None
                 else torch.as_tensor(users, dtype=torch.long, device=dev))
        lens = self.lengths()[users]
        L = int(lens.max()) if users.numel() else 0
        if max_len is not None:
            L = min(L, int(max_len))
        keep = lens.clamp(max=L)
        pad = self.n_items if pad_value is None else int(pad_value)
        out = torch.full((users.numel(), L), pad, dtype=torch.long, device=dev)
        if L == 0:
            return out, keep
        col = torch.arange(L, device=dev).unsqueeze(0)
        # source position of column c: the history's last `keep` items, aligned left or right
        start = self.indptr[users + 1] - keep
        offset = (col - (L - keep).unsqueeze(1)) if left else col
        valid = (offset >= 0) & (offset < keep.unsqueeze(1))
        src = (start.unsqueeze(1) + offset.clamp(min=0))[valid]
        out[valid] = self.items[src]
        return out, keep
