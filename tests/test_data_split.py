"""Split rules: disjoint and covering, per-user ratios, reproducibility, temporal order, MMRec rule."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.split import Split, dataset_split, make_split, per_user_counts, split_labels


def _log(n_users=60, n_items=40, seed=0, min_deg=1, max_deg=30):
    rng = np.random.default_rng(seed)
    deg = rng.integers(min_deg, max_deg + 1, n_users)
    user = np.repeat(np.arange(n_users), deg)
    item = np.concatenate([rng.choice(n_items, d, replace=False) for d in deg])
    perm = rng.permutation(user.size)  # rows not grouped by user
    ts = rng.integers(0, 50, user.size)  # many ties on purpose
    return Interactions(torch.from_numpy(user[perm]), torch.from_numpy(item[perm]), IdMap(np.arange(n_users)),
                        IdMap(np.arange(n_items)), timestamp=torch.from_numpy(ts[perm]))


def _rows(it: Interactions) -> list[tuple]:
    return sorted(zip(it.user.tolist(), it.item.tolist(), it.timestamp.tolist()))


@pytest.mark.parametrize("method", ["random", "temporal", "loo", "global_time"])
def test_disjoint_and_covering(method):
    inter = _log()
    s = make_split(inter, method=method, seed=5)
    parts = [_rows(p) for p in (s.train, s.valid, s.test)]
    assert sorted(sum(parts, [])) == _rows(inter)
    keys = [set((u, i) for u, i, _ in p) for p in parts]
    assert not (keys[0] & keys[1]) and not (keys[0] & keys[2]) and not (keys[1] & keys[2])


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.1), (0.6, 0.2, 0.2), (0.7, 0.15, 0.15)])
@pytest.mark.parametrize("method", ["random", "temporal"])
def test_per_user_ratios_within_one(method, ratios):
    inter = _log(n_items=100, min_deg=10, max_deg=80, seed=1)
    s = make_split(inter, method=method, ratios=ratios, seed=2)
    n = inter.user_degree().double()
    for r, part in zip(ratios, (s.train, s.valid, s.test)):
        got = torch.bincount(part.user, minlength=inter.n_users).double()
        assert torch.all((got - r * n).abs() < 1.0), (method, ratios)


def test_small_users_documented_rule():
    tr, va, te = per_user_counts(np.arange(1, 12))
    assert tr.tolist() == [1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]
    assert va.tolist() == [0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    assert te.tolist() == [0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]
    # MMRec's n >= 10 rule: held = n // 5, valid = held // 2, test = held - valid
    n = np.arange(10, 500)
    tr, va, te = per_user_counts(n)
    assert np.array_equal(va, (n // 5) // 2) and np.array_equal(te, n // 5 - (n // 5) // 2)
    assert np.array_equal(tr + va + te, n)


def test_same_seed_same_split_bit_for_bit(tmp_path):
    inter = _log(seed=3)
    a, b = make_split(inter, seed=11), make_split(inter, seed=11)
    for p, q in zip((a.train, a.valid, a.test), (b.train, b.valid, b.test)):
        assert torch.equal(p.user, q.user) and torch.equal(p.item, q.item)
    assert a.hash() == b.hash()
    assert make_split(inter, seed=12).hash() != a.hash()
    a.save(str(tmp_path))
    c = Split.load(str(tmp_path))
    assert c.hash() == a.hash() and c.seed == 11 and c.method == "random"


def test_loo_picks_latest():
    inter = _log(min_deg=1, max_deg=12, seed=4)
    inter.timestamp = torch.randperm(len(inter), generator=torch.Generator().manual_seed(0))  # distinct times
    s = make_split(inter, method="loo")
    deg = inter.user_degree()
    for u in range(inter.n_users):
        ts = sorted(inter.timestamp[inter.user == u].tolist())
        te = s.test.timestamp[s.test.user == u].tolist()
        va = s.valid.timestamp[s.valid.user == u].tolist()
        assert te == (ts[-1:] if deg[u] >= 2 else [])
        assert va == (ts[-2:-1] if deg[u] >= 3 else [])


def test_temporal_and_global_order():
    inter = _log(min_deg=10, max_deg=40, seed=6)
    inter.timestamp = torch.randperm(len(inter), generator=torch.Generator().manual_seed(1))
    s = make_split(inter, method="temporal")
    for u in range(inter.n_users):
        tr = s.train.timestamp[s.train.user == u]
        te = s.test.timestamp[s.test.user == u]
        assert tr.max() < te.min()
    g = make_split(inter, method="global_time")
    assert g.train.timestamp.max() < g.valid.timestamp.min() <= g.valid.timestamp.max() < g.test.timestamp.min()
    assert len(g.train) == int(0.8 * len(inter))


def test_predefined_and_roundtrip_labels():
    inter = _log(seed=7)
    lab = np.random.default_rng(0).integers(0, 3, len(inter))
    s = make_split(inter, method="predefined", labels=lab)
    assert s.sizes() == {"train": int((lab == 0).sum()), "valid": int((lab == 1).sum()), "test": int((lab == 2).sum())}
    full, lab2 = split_labels(s)
    assert len(full) == len(inter) and np.bincount(lab2).tolist() == np.bincount(lab).tolist()
    with pytest.raises(ValueError, match="row 3"):
        bad = lab.copy()
        bad[3] = 5
        make_split(inter, method="predefined", labels=bad)


@pytest.mark.parametrize("ratios", [(0.8, 0.1, 0.2), (0.5, 0.1, 0.1), (1.2, -0.1, -0.1)])
def test_bad_ratios(ratios):
    with pytest.raises(ValueError, match="sum to 1|non-negative"):
        make_split(_log(), ratios=ratios)


def test_unknown_method_and_missing_timestamps():
    inter = _log()
    with pytest.raises(ValueError, match="unknown split method"):
        make_split(inter, method="bogus")
    no_ts = Interactions(inter.user, inter.item, inter.user_map, inter.item_map)
    with pytest.raises(ValueError, match="timestamps"):
        make_split(no_ts, method="loo")


def test_dataset_split_auto(synthetic_small):
    s = dataset_split(synthetic_small, seed=1)
    assert s.method == "random" and s.seed == 1
    with pytest.raises(ValueError, match="no predefined split"):
        dataset_split(synthetic_small, method="predefined")


def test_random_split_reproduces_mmrec_reference(shared_data):
    """The per-user random rule with seed 999 gives exactly the x_label of the reference MMRec export."""
    pd = pytest.importorskip("pandas")
    ref_path = shared_data / "mmrec_format" / "ml100k_mm" / "split_original_ids.csv"
    if not ref_path.exists():
        pytest.skip(f"{ref_path} absent")
    from graphrec.datasets import load
    try:
        ds = load("ml-100k")
    except FileNotFoundError as e:
        pytest.skip(f"ml-100k unavailable: {e}")
    s = make_split(ds.interactions, seed=999)
    full, lab = split_labels(s)
    mine = pd.DataFrame({"user_id": full.user_map.to_original(full.user), "item_id": full.item_map.to_original(full.item),
                         "mine": lab})
    ref = pd.read_csv(ref_path)
    m = ref.merge(mine, on=["user_id", "item_id"])
    assert len(m) == 100_000
    assert (m["x_label"].to_numpy() == m["mine"].to_numpy()).all()
