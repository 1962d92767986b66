"""Dedupe, k-core (against a brute-force oracle) and implicit conversion."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from graphrec.data import IdMap, Interactions, dedupe, kcore, to_implicit


def _inter(pairs, n_users=None, n_items=None, rating=None):
    u = torch.tensor([p[0] for p in pairs])
    i = torch.tensor([p[1] for p in pairs])
    nu = n_users or int(u.max()) + 1
    ni = n_items or int(i.max()) + 1
    return Interactions(u, i, IdMap(np.arange(nu) * 10, "user"), IdMap(np.arange(ni) + 100, "item"),
                        rating=None if rating is None else torch.tensor(rating),
                        timestamp=torch.arange(len(pairs)))


def test_dedupe_first_last(caplog):
    it = _inter([(0, 1), (1, 1), (0, 1), (0, 2), (0, 1)])
    f = dedupe(it, "first")
    assert f.timestamp.tolist() == [0, 1, 3]
    l = dedupe(it, "last")
    assert l.timestamp.tolist() == [1, 3, 4]
    with pytest.raises(ValueError, match="keep"):
        dedupe(it, "middle")


def _brute_kcore(pairs, uk, ik):
    rows = list(pairs)
    while True:
        uc, ic = {}, {}
        for u, i in rows:
            uc[u] = uc.get(u, 0) + 1
            ic[i] = ic.get(i, 0) + 1
        new = [(u, i) for u, i in rows if uc[u] >= uk and ic[i] >= ik]
        if len(new) == len(rows):
            return new
        rows = new


@pytest.mark.parametrize("seed", range(6))
def test_kcore_matches_brute_force(seed):
    rng = np.random.default_rng(seed)
    n_u, n_i = 40, 30
    key = np.unique(rng.integers(0, n_u, 300) * n_i + (rng.zipf(1.6, 300) % n_i))
    pairs = [(int(k // n_i), int(k % n_i)) for k in key]
    uk, ik = int(rng.integers(2, 5)), int(rng.integers(2, 5))
    want = _brute_kcore(pairs, uk, ik)
    it = _inter(pairs, n_u, n_i)
    if not want:
        with pytest.raises(ValueError, match="removes? all|would remove all"):
            kcore(it, uk, ik)
        return
    got = kcore(it, uk, ik)
    orig = sorted(zip((got.user_map.to_original(got.user) // 10).tolist(),
                      (got.item_map.to_original(got.item) - 100).tolist()))
    assert orig == sorted(want)
    assert int(got.user_degree().min()) >= uk and int(got.item_degree().min()) >= ik  # maps compacted


def test_kcore_removing_everything_is_an_error():
    it = _inter([(0, 0), (1, 1), (2, 2)])
    with pytest.raises(ValueError, match="would remove all 3 rows"):
        kcore(it, 2, 2)


def test_implicit_threshold():
    it = _inter([(0, 0), (0, 1), (1, 0)], rating=[5.0, 2.0, 4.0])
    imp = to_implicit(it, threshold=4)
    assert imp.rating is None and sorted(zip(imp.user.tolist(), imp.item.tolist())) == [(0, 0), (1, 0)]
    assert len(to_implicit(it)) == 3
    with pytest.raises(ValueError, match="no rating reaches"):
        to_implicit(it, threshold=6)
    with pytest.raises(ValueError, match="needs a rating column"):
        to_implicit(_inter([(0, 0)]), threshold=1)
