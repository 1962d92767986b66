"""Small shared inputs for the graph tests."""
from __future__ import annotations

import torch

from graphrec.data.interactions import IdMap, Interactions


def random_interactions(n_users: int = 30, n_items: int = 20, n_rows: int = 140, seed: int = 0,
                        isolated_users: int = 2, isolated_items: int = 2) -> Interactions:
    """Random log with duplicate rows and some users/items that have no row at all."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randint(0, n_users - isolated_users, (n_rows,), generator=g)
    i = torch.randint(0, n_items - isolated_items, (n_rows,), generator=g)
    u = torch.cat([u, u[:7]])  # planted duplicates
    i = torch.cat([i, i[:7]])
    return Interactions(u, i, IdMap(range(n_users), "user"), IdMap(range(n_items), "item"))
