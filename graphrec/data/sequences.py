"""Per-user time-ordered item histories for the sequential models.

Stored flat (CSR): ``items[indptr[u]:indptr[u+1]]`` is user ``u``'s history, oldest first. Ties in
time keep the log's row order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from graphrec.data.interactions import Interactions


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
        users = torch.arange(self.n_users) if users is None else torch.as_tensor(users, dtype=torch.long)
        lens = self.lengths()[users]
        L = int(lens.max()) if users.numel() else 0
        if max_len is not None:
            L = min(L, int(max_len))
        keep = lens.clamp(max=L)
        pad = self.n_items if pad_value is None else int(pad_value)
        out = torch.full((users.numel(), L), pad, dtype=torch.long)
        if L == 0:
            return out, keep
        col = torch.arange(L).unsqueeze(0)
        # source position of column c: the history's last `keep` items, aligned left or right
        start = self.indptr[users + 1] - keep
        offset = (col - (L - keep).unsqueeze(1)) if left else col
        valid = (offset >= 0) & (offset < keep.unsqueeze(1))
        src = (start.unsqueeze(1) + offset.clamp(min=0))[valid]
        out[valid] = self.items[src]
        return out, keep
