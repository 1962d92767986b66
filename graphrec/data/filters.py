"""Cleaning: duplicate rows, iterative k-core, implicit feedback from ratings.

Every repair logs what it removed; removing everything is an error, never an empty result.
"""
from __future__ import annotations

from typing import Optional

import numpy as np
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.errors import ConfigError, DataError
from graphrec.utils import log


def dedupe(inter: Interactions, keep: str = "first") -> Interactions:
    """Drop repeated (user, item) rows, keeping the ``first`` or ``last`` occurrence in row order
    (with timestamps, row order is the log's order, not time order). Logs the count removed."""
    if keep not in ("first", "last"):
        raise ConfigError(f"dedupe: keep must be 'first' or 'last', got {keep!r}")
    key = (inter.user * inter.n_items + inter.item).numpy()
    if keep == "last":
        _, idx = np.unique(key[::-1], return_index=True)
        idx = key.size - 1 - idx
    else:
        _, idx = np.unique(key, return_index=True)
    idx = np.sort(idx)
    removed = len(inter) - idx.size
    if removed:
        log.info("%s: removed %d duplicate (user, item) row(s), kept the %s of each", inter.source or "dedupe",
                 removed, keep)
    return inter.subset(torch.from_numpy(idx)) if removed else inter


def kcore(inter: Interactions, user_k: int = 5, item_k: int = 5, max_iter: int = 1000) -> Interactions:
    """Iterative k-core: repeatedly drop users with fewer than ``user_k`` rows and items with fewer
    than ``item_k`` rows until both hold; the id maps are compacted to the survivors (original ids
    kept, order kept). Degrees count rows, so dedupe first if repeats should not count."""
    for name, k in (("user_k", user_k), ("item_k", item_k)):
        if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 0:
            raise ConfigError(f"kcore: {name} must be an integer >= 0, got {k!r}")
    keep = torch.ones(len(inter), dtype=torch.bool)
    for _ in range(max_iter):
        ud = torch.bincount(inter.user[keep], minlength=inter.n_users)
        idg = torch.bincount(inter.item[keep], minlength=inter.n_items)
        bad = keep & ((ud[inter.user] < user_k) | (idg[inter.item] < item_k))
        if not bool(bad.any()):
            break
        keep &= ~bad
    n_keep = int(keep.sum())
    if n_keep == 0:
        raise DataError(f"{inter.source or 'interactions'}: the ({user_k}, {item_k})-core is empty: k-core "
                         f"filtering would remove all {len(inter)} rows; lower user_k/item_k")
    sub = inter.subset(torch.nonzero(keep).flatten())
    users = torch.unique(sub.user)
    items = torch.unique(sub.item)
    unew = torch.full((inter.n_users,), -1, dtype=torch.long)
    unew[users] = torch.arange(users.numel())
    inew = torch.full((inter.n_items,), -1, dtype=torch.long)
    inew[items] = torch.arange(items.numel())
    log.info("%s: (%d, %d)-core kept %d/%d rows, %d/%d users, %d/%d items", inter.source or "kcore", user_k,
             item_k, n_keep, len(inter), users.numel(), inter.n_users, items.numel(), inter.n_items)
    return Interactions(unew[sub.user], inew[sub.item], IdMap(inter.user_map.ids[users.numpy()], "user"),
                        IdMap(inter.item_map.ids[items.numpy()], "item"), timestamp=sub.timestamp,
                        rating=sub.rating, source=inter.source, meta=dict(inter.meta))


def to_implicit(inter: Interactions, threshold: Optional[float] = None) -> Interactions:
    """Ratings -> implicit interactions: rows with ``rating >= threshold`` are kept (all rows when
    ``threshold`` is None), the rating column is dropped. Logs the count removed."""
    keep = torch.ones(len(inter), dtype=torch.bool)
    if threshold is not None:
        if isinstance(threshold, bool) or not isinstance(threshold, (int, float, np.number)) or threshold != threshold:
            raise ConfigError(f"to_implicit: threshold must be a number, got {threshold!r}")
        if inter.rating is None:
            raise DataError(f"{inter.source or 'interactions'}: a rating threshold needs a rating column")
        keep = inter.rating.double() >= float(threshold)
        if not bool(keep.any()):
            raise DataError(f"{inter.source or 'interactions'}: no rating reaches the threshold {threshold}")
        log.info("%s: implicit feedback kept %d/%d rows with rating >= %g", inter.source or "to_implicit",
                 int(keep.sum()), len(inter), threshold)
    sub = inter.subset(torch.nonzero(keep).flatten())
    return Interactions(sub.user, sub.item, sub.user_map, sub.item_map, timestamp=sub.timestamp,
                        source=sub.source, meta=sub.meta)
