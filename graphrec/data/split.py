"""Train/valid/test splits of an `Interactions` log.

A `Split` holds three `Interactions` that share the full log's id maps, the name of the rule that
made it, its seed and a content hash of the (user, item) pairs of each part. It is saved with every
run and reloads bit for bit.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.errors import ConfigError
from graphrec.utils import atomic_write_json, content_hash, log


@dataclass
class Split:
    train: Interactions
    valid: Interactions
    test: Interactions
    method: str = "predefined"
    seed: Optional[int] = None
    params: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    @property
    def user_map(self) -> IdMap:
        return self.train.user_map

    @property
    def item_map(self) -> IdMap:
        return self.train.item_map

    def sizes(self) -> dict:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def hash(self) -> str:
        return content_hash(self.train.user, self.train.item, self.valid.user, self.valid.item,
                            self.test.user, self.test.item, self.user_map.ids.astype(str),
                            self.item_map.ids.astype(str))

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: str) -> str:
        """Write ``split.npz`` + ``split.json`` (method, seed, sizes, hash) into ``directory``."""
        os.makedirs(directory, exist_ok=True)
        arrays = {}
        for part in ("train", "valid", "test"):
            it: Interactions = getattr(self, part)
            arrays[f"{part}_user"] = it.user.numpy()
            arrays[f"{part}_item"] = it.item.numpy()
            if it.timestamp is not None:
                arrays[f"{part}_timestamp"] = it.timestamp.numpy()
            if it.rating is not None:
                arrays[f"{part}_rating"] = it.rating.numpy()
        ids_u, ids_i = self.user_map.ids, self.item_map.ids
        arrays["user_ids"] = ids_u.astype(str) if ids_u.dtype == object else ids_u
        arrays["item_ids"] = ids_i.astype(str) if ids_i.dtype == object else ids_i
        path = os.path.join(directory, "split.npz")
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        atomic_write_json(os.path.join(directory, "split.json"),
                          {"method": self.method, "seed": self.seed, "params": self.params,
                           "sizes": self.sizes(), "hash": self.hash()})
        return path

    @classmethod
    def load(cls, directory: str) -> "Split":
        path = os.path.join(directory, "split.npz")
        with np.load(path, allow_pickle=False) as z:
            umap, imap = IdMap(z["user_ids"], "user"), IdMap(z["item_ids"], "item")
            parts = {}
            for part in ("train", "valid", "test"):
                opt = (lambda k: torch.from_numpy(z[f"{part}_{k}"]) if f"{part}_{k}" in z else None)
                parts[part] = Interactions(torch.from_numpy(z[f"{part}_user"]), torch.from_numpy(z[f"{part}_item"]),
                                           umap, imap, timestamp=opt("timestamp"), rating=opt("rating"),
                                           source=path)
        with open(os.path.join(directory, "split.json")) as f:
            info = json.load(f)
        split = cls(parts["train"], parts["valid"], parts["test"], method=info["method"], seed=info["seed"],
                    params=info.get("params", {}))
        if split.hash() != info["hash"]:
            raise ValueError(f"{path}: split content hash {split.hash()} does not match the recorded "
                             f"{info['hash']} (file changed or corrupt)")
        return split


# -- split rules ---------------------------------------------------------------------------------
# Every rule assigns each row a label 0/1/2 (train/valid/test) and is a pure function of the rows
# (in their given order), the timestamps and the seed: numpy's `default_rng(seed)` is the only
# source of randomness, so the same log and seed give the same split bit for bit.

METHODS = ("random", "temporal", "loo", "global_time", "user", "kfold", "predefined")
DEFAULT_FOLDS = 5  # split=kfold: PAMD's protocol (per-user 3:1:1 over 5 folds)
#: default fraction of a held-out user's chronological history that becomes next-item targets in
#: the user-level split (the rest is the input history; `graphrec.eval.sequential`)
DEFAULT_HOLDOUT = 0.2
_EPS = 1e-9  # 0.2 * 15 is 3.0000000000000004 in floats; floor(n * r + eps) keeps counts exact


def _check_ratios(ratios: tuple[float, float, float]) -> tuple[float, float, float]:
    r = tuple(float(x) for x in ratios)
    if len(r) != 3:
        raise ValueError(f"split ratios must be (train, valid, test), got {ratios!r}")
    if any(x < 0 for x in r):
        raise ValueError(f"split ratios must be non-negative, got {ratios!r}")
    if abs(sum(r) - 1.0) > 1e-6:
        raise ValueError(f"split ratios {ratios!r} sum to {sum(r):g}, they must sum to 1")
    if r[0] <= 0:
        raise ValueError(f"split ratios {ratios!r}: the train ratio must be positive")
    return r  # type: ignore[return-value]


def _user_groups(user: np.ndarray, order: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stable-sort ``order`` (a row permutation) by user; return (rows grouped by user, rank of
    each grouped row inside its user's group counted from 0, size of that group)."""
    rows = order[np.argsort(user[order], kind="stable")]
    u = user[rows]
    start = np.r_[0, np.flatnonzero(u[1:] != u[:-1]) + 1]
    sizes = np.diff(np.r_[start, u.size])
    rank = np.arange(u.size) - np.repeat(start, sizes)
    return rows, rank, np.repeat(sizes, sizes)


def per_user_counts(n: np.ndarray, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n_train, n_valid, n_test) per user with ``n`` interactions (MMRec's rule, generalised).

    ``held = floor(n * (r_valid + r_test))``, ``valid = floor(held * r_valid / (r_valid + r_test))``,
    ``test = held - valid``, ``train = n - held`` (for 8:1:1: ``held = n // 5``, ``valid = held // 2``).
    Users too small for that rule to give one valid and one test row (fewer than 10 rows at 8:1:1)
    get exactly one valid and one test row when they have >= 3 rows (MMRec's small-user rule
    ``[0]*(n-2) + [1] + [2]``), one train + one test row when they have 2, and their single row in
    train when they have 1 (a user must be in train to be scored at all).
    """
    n = np.asarray(n, dtype=np.int64)
    _, rv, rt = ratios
    held = np.floor(n * (rv + rt) + _EPS).astype(np.int64)
    valid = np.floor(held * (rv / (rv + rt)) + _EPS).astype(np.int64) if rv + rt > 0 else np.zeros_like(n)
    test = held - valid
    small = ((valid < 1) & (rv > 0)) | ((test < 1) & (rt > 0))
    has_v, has_t = int(rv > 0), int(rt > 0)
    # small users: one row to each held-out part that has a positive ratio, train keeps >= 1 row;
    # with only 2 rows the single held-out row goes to test (or to valid when there is no test)
    valid = np.where(small, np.where(n >= 3, has_v, np.where(n == 2, has_v * (1 - has_t), 0)), valid)
    test = np.where(small, np.where(n >= 2, has_t, 0), test)
    train = n - valid - test
    return train, valid, test


def _labels_from_rank(rank: np.ndarray, size: np.ndarray, ratios: tuple[float, float, float]) -> np.ndarray:
    ntr, nva, _ = per_user_counts(size, ratios)
    return np.where(rank < ntr, 0, np.where(rank < ntr + nva, 1, 2)).astype(np.int8)


def random_labels(inter: Interactions, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                  seed: int = 999) -> np.ndarray:
    """Per-user random ratio split, MMRec's convention: shuffle all rows with
    ``numpy.random.default_rng(seed).permutation``, stable-sort by user, then label each user's
    shuffled rows ``[0]*train + [1]*valid + [2]*test`` (counts from `per_user_counts`)."""
    ratios = _check_ratios(ratios)
    user = inter.user.numpy()
    perm = np.random.default_rng(seed).permutation(user.size)
    rows, rank, size = _user_groups(user, perm)
    labels = np.empty(user.size, dtype=np.int8)
    labels[rows] = _labels_from_rank(rank, size, ratios)
    return labels


def kfold_labels(inter: Interactions, folds: int = DEFAULT_FOLDS, fold: int = 0, seed: int = 999) -> np.ndarray:
    r"""Per-user k-fold rotation (PAMD's protocol: 3:1:1 with 5 folds): shuffle all rows with
    ``numpy.random.default_rng(seed).permutation``, group them by user, and give the row of rank r
    in its user's shuffled group (of user u) the fold :math:`f = (r + o_u) \bmod k`, with a random
    offset :math:`o_u` per user (so fold 0 does not always get a small user's extra rows). Fold
    ``fold`` is test, fold ``fold + 1 (mod k)`` valid, the rest train. Over the k settings of
    ``fold`` every row is in test exactly once and in valid exactly once; a user with at least k
    rows has at least one valid and one test row in every fold, and each part's size is within 1
    of n / k."""
    if int(folds) < 3:
        raise ConfigError(f"data.folds must be at least 3 (train, valid and test folds), got {folds!r}")
    if not 0 <= int(fold) < int(folds):
        raise ConfigError(f"data.fold must be in [0, {int(folds)}) with data.folds={int(folds)}, got {fold!r}")
    k, fold = int(folds), int(fold)
    user = inter.user.numpy()
    rng = np.random.default_rng(seed)
    rows, rank, _ = _user_groups(user, rng.permutation(user.size))
    offset = rng.integers(0, k, size=int(user.max()) + 1 if user.size else 0)
    f = (rank + offset[user[rows]]) % k
    labels = np.empty(user.size, dtype=np.int8)
    labels[rows] = np.where(f == fold, 2, np.where(f == (fold + 1) % k, 1, 0))
    return labels


def _time_order(inter: Interactions, what: str) -> np.ndarray:
    if inter.timestamp is None:
        raise ValueError(f"{inter.source or 'interactions'}: a {what} split needs timestamps, the log has none")
    ts = inter.timestamp.numpy()
    return np.lexsort((np.arange(ts.size), ts))  # by time, ties by row order


def temporal_labels(inter: Interactions, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """Per-user temporal ratio split: each user's earliest rows -> train, then valid, latest -> test
    (same per-user counts as the random rule; ties in time keep row order)."""
    ratios = _check_ratios(ratios)
    user = inter.user.numpy()
    rows, rank, size = _user_groups(user, _time_order(inter, "temporal"))
    labels = np.empty(user.size, dtype=np.int8)
    labels[rows] = _labels_from_rank(rank, size, ratios)
    return labels


def loo_labels(inter: Interactions) -> np.ndarray:
    """Leave-one-out, chronological per user (timestamp order, row order on ties): each user's
    latest row -> test, second latest -> valid, the rest -> train.
    Users with 2 rows give no valid row (one train + one test row); users with 1 row stay in
    train only (a user must have history to be judged). Both counts are logged."""
    user = inter.user.numpy()
    rows, rank, size = _user_groups(user, _time_order(inter, "leave-one-out"))
    from_end = size - 1 - rank
    lab = np.where((from_end == 0) & (size >= 2), 2, np.where((from_end == 1) & (size >= 3), 1, 0))
    labels = np.empty(user.size, dtype=np.int8)
    labels[rows] = lab
    first = rank == 0  # one entry per user
    n1, n2 = int((size[first] == 1).sum()), int((size[first] == 2).sum())
    if n1 or n2:
        log.info("%s: leave-one-out split: %d user(s) with 1 row kept in train only, %d user(s) with 2 rows "
                 "have no valid row", inter.source or "interactions", n1, n2)
    return labels


def user_labels(inter: Interactions, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                seed: int = 999) -> np.ndarray:
    """User-level split (Demure's protocol): the users that have rows are shuffled with
    ``numpy.random.default_rng(seed).permutation`` and cut ``floor(n * r_train)`` train users,
    ``floor(n * r_valid)`` valid users, the rest test users; every row of a user gets its user's
    label, so valid and test hold whole histories of users never seen in training. The next-item
    evaluator cuts each held-out history into input and targets (`Split.params['holdout']`)."""
    ratios = _check_ratios(ratios)
    user = inter.user.numpy()
    active = np.unique(user)
    perm = np.random.default_rng(seed).permutation(active)
    n = active.size
    ntr = int(np.floor(n * ratios[0] + _EPS))
    nva = int(np.floor(n * ratios[1] + _EPS))
    group = np.zeros(inter.n_users, dtype=np.int8)
    group[perm[ntr:ntr + nva]] = 1
    group[perm[ntr + nva:]] = 2
    if n and (ntr == 0 or (ratios[1] > 0 and nva == 0) or (ratios[2] > 0 and ntr + nva == n)):
        log.warning("%s: user-level split of %d user(s) at ratios %s leaves a part without users "
                    "(%d train, %d valid, %d test)", inter.source or "interactions", n, list(ratios),
                    ntr, nva, n - ntr - nva)
    return group[user]


def global_time_labels(inter: Interactions, ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)) -> np.ndarray:
    """Global temporal cut: the earliest ``floor(N * r_train)`` rows of the whole log -> train, the
    next ``floor(N * r_valid)`` -> valid, the rest -> test. Users may appear only in valid/test
    (cold users); the evaluator skips users without train rows."""
    ratios = _check_ratios(ratios)
    order = _time_order(inter, "global temporal")
    n = order.size
    ntr = int(np.floor(n * ratios[0] + _EPS))
    nva = int(np.floor(n * ratios[1] + _EPS))
    labels = np.empty(n, dtype=np.int8)
    labels[order[:ntr]] = 0
    labels[order[ntr:ntr + nva]] = 1
    labels[order[ntr + nva:]] = 2
    return labels


def split_from_labels(inter: Interactions, labels: np.ndarray | torch.Tensor, method: str = "predefined",
                      seed: Optional[int] = None, params: Optional[dict] = None) -> Split:
    """Build a `Split` from per-row labels 0/1/2 (train/valid/test)."""
    lab = labels.numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if lab.shape != (len(inter),):
        raise ValueError(f"{inter.source or 'interactions'}: {lab.size} split labels for {len(inter)} rows")
    bad = np.flatnonzero((lab != 0) & (lab != 1) & (lab != 2))
    if bad.size:
        raise ValueError(f"{inter.source or 'interactions'}: split label {lab[bad[0]]!r} at row {int(bad[0])} "
                         f"is not 0/1/2 (train/valid/test); {bad.size} bad row(s)")
    lab_t = torch.from_numpy(lab.astype(np.int64))
    parts = [inter.subset(torch.nonzero(lab_t == k).flatten()) for k in (0, 1, 2)]
    return Split(*parts, method=method, seed=seed, params=dict(params or {}))


def make_split(inter: Interactions, method: str = "random", ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
               seed: int = 999, labels: Optional[np.ndarray | torch.Tensor] = None,
               holdout: float = DEFAULT_HOLDOUT, folds: int = DEFAULT_FOLDS, fold: int = 0) -> Split:
    """One entry point for every rule: ``random`` (per-user, MMRec), ``temporal`` (per-user),
    ``loo`` (leave-one-out), ``global_time`` (one cut in time over the whole log), ``user``
    (user-level, whole users to train/valid/test; ``holdout`` is recorded for the evaluator),
    ``kfold`` (per-user rotation, fold ``fold`` of ``folds``; `kfold_labels`), ``predefined``
    (``labels``, e.g. MMRec's ``x_label``)."""
    if method == "kfold":
        lab = kfold_labels(inter, folds, fold, seed)
        return split_from_labels(inter, lab, method=method, seed=seed,
                                 params={"folds": int(folds), "fold": int(fold)})
    if method == "user":
        if not 0.0 < float(holdout) < 1.0:
            raise ValueError(f"user-level split: holdout must be in (0, 1), got {holdout!r}")
        lab = user_labels(inter, ratios, seed)
        return split_from_labels(inter, lab, method=method, seed=seed,
                                 params={"ratios": list(_check_ratios(ratios)), "holdout": float(holdout)})
    if method == "random":
        lab = random_labels(inter, ratios, seed)
    elif method == "temporal":
        lab = temporal_labels(inter, ratios)
    elif method == "loo":
        lab = loo_labels(inter)
    elif method == "global_time":
        lab = global_time_labels(inter, ratios)
    elif method == "predefined":
        if labels is None:
            raise ValueError("predefined split needs labels (0/1/2 per row)")
        lab = labels
    else:
        raise ValueError(f"unknown split method {method!r}; known: {', '.join(METHODS)}")
    params = {} if method in ("loo", "predefined") else {"ratios": list(_check_ratios(ratios))}
    return split_from_labels(inter, lab, method=method, seed=seed if method == "random" else None, params=params)


def split_labels(split: Split) -> tuple[Interactions, np.ndarray]:
    """Inverse of `split_from_labels`: (train+valid+test concatenated, labels)."""
    full = split.train.concat(split.valid).concat(split.test)
    lab = np.repeat(np.array([0, 1, 2], dtype=np.int8), [len(split.train), len(split.valid), len(split.test)])
    return full, lab


def dataset_split(dataset, method: str = "auto", seed: int = 999,
                  ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
                  holdout: float = DEFAULT_HOLDOUT, auto: str = "random", folds: int = DEFAULT_FOLDS,
                  fold: int = 0) -> Split:
    """The split of a `graphrec.datasets.Dataset`: ``auto`` = its predefined split when the source
    fixes one (MMRec ``x_label``), otherwise the rule ``auto`` (the task's own: per-user random for
    pairwise models, leave-one-out for next-item models); any other method goes to `make_split` on
    the full log."""
    if method == "auto":
        if dataset.split is not None:
            return dataset.split
        method = auto
    if method == "predefined":
        if dataset.split is None:
            raise ValueError(f"dataset {dataset.name!r} has no predefined split; use random, temporal, loo, "
                             f"global_time or user")
        return dataset.split
    return make_split(dataset.interactions, method=method, ratios=ratios, seed=seed, holdout=holdout,
                      folds=folds, fold=fold)
