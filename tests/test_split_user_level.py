"""User-level split (whole users to train/valid/test) and leave-one-out's chronological rule."""
from __future__ import annotations

import logging

import numpy as np
import pytest
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.split import METHODS, Split, dataset_split, loo_labels, make_split


def _log(n_users=60, n_items=40, seed=0, min_deg=1, max_deg=20, n_times=30):
    rng = np.random.default_rng(seed)
    deg = rng.integers(min_deg, max_deg + 1, n_users)
    user = np.repeat(np.arange(n_users), deg)
    item = np.concatenate([rng.choice(n_items, d, replace=False) for d in deg])
    perm = rng.permutation(user.size)  # rows not grouped by user
    ts = rng.integers(0, n_times, user.size)  # many ties on purpose
    return Interactions(torch.from_numpy(user[perm]), torch.from_numpy(item[perm]), IdMap(np.arange(n_users)),
                        IdMap(np.arange(n_items)), timestamp=torch.from_numpy(ts[perm]), source="log.csv")


def _rows(it: Interactions) -> list[tuple]:
    return sorted(zip(it.user.tolist(), it.item.tolist(), it.timestamp.tolist()))


def test_user_split_is_registered():
    assert "user" in METHODS


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.6, 0.3, 0.1)])
def test_user_split_moves_whole_users_at_the_ratios(ratios):
    inter = _log(n_users=200, seed=1)
    s = make_split(inter, method="user", ratios=ratios, seed=4)
    users = [set(p.user.tolist()) for p in (s.train, s.valid, s.test)]
    assert not (users[0] & users[1]) and not (users[0] & users[2]) and not (users[1] & users[2])
    assert users[0] | users[1] | users[2] == set(range(200))
    n_tr, n_va = int(np.floor(200 * ratios[0] + 1e-9)), int(np.floor(200 * ratios[1] + 1e-9))
    assert [len(u) for u in users] == [n_tr, n_va, 200 - n_tr - n_va]
    # each part holds every row of its users: whole histories
    for part, us in zip((s.train, s.valid, s.test), users):
        mine = inter.subset(torch.tensor([u in us for u in inter.user.tolist()]))
        assert _rows(part) == _rows(mine)
    assert s.method == "user" and s.seed == 4
    assert s.params == {"ratios": list(ratios), "holdout": 0.2}


def test_user_split_seeded_and_saved_round_trip(tmp_path):
    inter = _log(seed=2)
    a, b = make_split(inter, method="user", seed=7, holdout=0.3), make_split(inter, method="user", seed=7, holdout=0.3)
    assert a.hash() == b.hash()
    assert make_split(inter, method="user", seed=8).hash() != a.hash()
    a.save(str(tmp_path))
    c = Split.load(str(tmp_path))
    assert c.hash() == a.hash() and c.method == "user" and c.seed == 7
    assert c.params == {"ratios": [0.8, 0.1, 0.1], "holdout": 0.3}
    for p, q in zip((a.train, a.valid, a.test), (c.train, c.valid, c.test)):
        assert torch.equal(p.user, q.user) and torch.equal(p.item, q.item) and torch.equal(p.timestamp, q.timestamp)


def test_user_split_from_dataset_config_and_bad_holdout(synthetic_small):
    s = dataset_split(synthetic_small, method="user", seed=3, holdout=0.25)
    assert s.method == "user" and s.params["holdout"] == 0.25
    assert not set(s.train.user.tolist()) & set(s.test.user.tolist())
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(ValueError, match="holdout"):
            make_split(synthetic_small.interactions, method="user", holdout=bad)


def test_user_split_needs_no_timestamps():
    inter = _log(seed=5)
    no_ts = Interactions(inter.user, inter.item, inter.user_map, inter.item_map)
    assert make_split(no_ts, method="user").sizes()["train"] > 0


def test_loo_is_chronological_with_row_order_on_ties():
    """Brute force: sort each user's rows by (timestamp, row); last -> test, second last -> valid."""
    inter = _log(min_deg=1, max_deg=12, seed=6, n_times=4)  # 4 distinct times: ties everywhere
    lab = loo_labels(inter)
    ref = np.zeros(len(inter), dtype=np.int8)
    ts = inter.timestamp.tolist()
    for u in range(inter.n_users):
        rows = sorted(np.flatnonzero(inter.user.numpy() == u).tolist(), key=lambda r: (ts[r], r))
        if len(rows) >= 2:
            ref[rows[-1]] = 2
        if len(rows) >= 3:
            ref[rows[-2]] = 1
    assert np.array_equal(lab, ref)


def test_loo_small_users_are_logged(caplog):
    # user 0: 1 row, user 1: 2 rows, user 2: 3 rows
    inter = Interactions(torch.tensor([0, 1, 1, 2, 2, 2]), torch.tensor([0, 1, 2, 0, 1, 2]), IdMap(np.arange(3)),
                         IdMap(np.arange(3)), timestamp=torch.tensor([0, 1, 2, 3, 4, 5]), source="tiny.csv")
    logger = logging.getLogger("graphrec")
    logger.addHandler(caplog.handler)
    try:
        with caplog.at_level(logging.INFO, logger="graphrec"):
            s = make_split(inter, method="loo")
    finally:
        logger.removeHandler(caplog.handler)
    assert "tiny.csv" in caplog.text
    assert "1 user(s) with 1 row" in caplog.text and "1 user(s) with 2 rows" in caplog.text
    assert s.train.user.tolist() == [0, 1, 2] and s.valid.user.tolist() == [2] and s.test.user.tolist() == [1, 2]
