"""Data that cannot train: checks run on a split before the first epoch.

`check_trainable` raises a `graphrec.errors.DataError` with a one-line message (what is wrong, the
counts, an example id, what to change) for a split that would train on nothing or be judged on
nothing:

* an empty train, valid or test part (valid selects the epoch, test is the result);
* a log where every user has one interaction (nothing to learn from and something to predict for
  any user);
* no valid (or test) user with a training interaction, where cold users are skipped by ranking
  evaluation (warm splits: every method but the user-level ``user`` split, whose held-out users are
  judged on their own histories);
* a (user, item) pair of valid or test that is also a training pair, when evaluation masks training
  items: the pair can never be hit, so the metric is biased low without any sign. Dedupe the log
  before splitting (`graphrec.data.filters.dedupe`), or pass ``allow_overlap=True`` to log the count
  instead (repeat-consumption data judged without masking).
"""
from __future__ import annotations

from typing import Optional

import torch

from graphrec.data.interactions import Interactions
from graphrec.errors import DataError
from graphrec.utils import log

COLD_SPLITS = ("user",)  # split methods whose held-out users need no training interactions


def _keys(it: Interactions) -> torch.Tensor:
    return it.user * max(1, it.n_items) + it.item


def check_trainable(split, *, train_masked: bool = True, warm: Optional[bool] = None,
                    allow_overlap: bool = False) -> None:
    """Raise a `DataError` if ``split`` (a `graphrec.data.split.Split`) cannot train and be judged.

    ``train_masked``: evaluation masks training items (the pairwise protocol; checks overlap).
    ``warm``: valid/test users must have training interactions (default: the split method is not one
    of `COLD_SPLITS`). ``allow_overlap``: log held-out pairs that repeat a training pair instead of
    raising."""
    src = split.train.source or "the log"
    method = getattr(split, "method", "") or "given"
    sizes = {p: len(getattr(split, p)) for p in ("train", "valid", "test")}
    desc = ", ".join(f"{k} {v:,}" for k, v in sizes.items())
    if sizes["train"] == 0:
        raise DataError(f"{src}: the train part of the {method} split is empty ({desc}); nothing to train on")
    users = torch.cat([split.train.user, split.valid.user, split.test.user])
    deg = torch.bincount(users, minlength=split.train.n_users)
    if int(deg.max()) <= 1:
        raise DataError(f"{src}: every one of the {int((deg > 0).sum()):,} users has a single interaction: no user "
                        f"has both something to learn from and something to predict; use a log with repeat users "
                        f"(k-core filtering, graphrec.data.filters.kcore)")
    for part, role in (("valid", "selects the epoch"), ("test", "is the result")):
        if sizes[part] == 0:
            raise DataError(f"{src}: the {part} part of the {method} split is empty ({desc}); {part} {role}: use "
                            f"ratios with a non-zero {part} share (data.ratios) or a log with more interactions "
                            f"per user")
    if warm is None:
        warm = method not in COLD_SPLITS
    train_deg = torch.bincount(split.train.user, minlength=split.train.n_users)
    if warm:
        for part in ("valid", "test"):
            held = torch.unique(getattr(split, part).user)
            if int((train_deg[held] > 0).sum()) == 0:
                raise DataError(f"{src}: none of the {held.numel():,} {part} users of the {method} split has a "
                                f"training interaction; ranking evaluation skips such cold users, so {part} "
                                f"metrics would average over nobody")
    if not train_masked:
        return
    train_keys = torch.unique(_keys(split.train))
    for part in ("valid", "test"):
        it: Interactions = getattr(split, part)
        keys = _keys(it)
        hit = torch.isin(keys, train_keys)
        n = int(hit.sum())
        if not n:
            continue
        r = int(torch.nonzero(hit)[0])
        uid = it.user_map.to_original([int(it.user[r])]).tolist()[0]
        iid = it.item_map.to_original([int(it.item[r])]).tolist()[0]
        msg = (f"{src}: {n:,} {part} pair(s) of the {method} split are also training pairs, e.g. user {uid!r} item "
               f"{iid!r}; evaluation masks training items, so they can never be hit")
        if allow_overlap:
            log.warning("%s (allowed)", msg)
        else:
            raise DataError(msg + ": dedupe the log before splitting (graphrec.data.filters.dedupe)")
