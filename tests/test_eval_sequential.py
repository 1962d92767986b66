"""Next-item evaluation: targets of each split rule, hand-computed metrics, a brute-force
per-sequence reference, whole-history masking, an oracle scorer, the model protocol."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.split import make_split, split_from_labels
from graphrec.eval.sequential import NextItemEvaluator, next_item_targets
from graphrec.models.base import Reps


class Scorer(torch.nn.Module):
    """A model stub: ``fn(batch) -> [B, n_items]``; counts propagations, keeps the batches."""

    task = "next_item"

    def __init__(self, fn):
        super().__init__()
        self.fn, self.propagations, self.batches, self.modes = fn, 0, [], []

    def propagate(self) -> Reps:
        self.propagations += 1
        self.modes.append(self.training)
        return Reps()

    def score_sequences(self, batch, reps):
        assert isinstance(reps, Reps) and not torch.is_grad_enabled()
        self.batches.append(batch)
        return self.fn(batch)


def _table_scorer(table: torch.Tensor) -> Scorer:
    return Scorer(lambda b: table[b["user"]].clone())


def _tiny():
    """6 items. u0: 0,1 train; 2 valid; 3 test. u1: 4 train; 5 valid; 1 test. u2: 2 train only.
    u3: 0 in test only (cold)."""
    u = torch.tensor([0, 0, 0, 0, 1, 1, 1, 2, 3])
    i = torch.tensor([0, 1, 2, 3, 4, 5, 1, 2, 0])
    ts = torch.tensor([0, 1, 2, 3, 0, 1, 2, 0, 5])
    lab = np.array([0, 0, 1, 2, 0, 1, 2, 0, 2])
    inter = Interactions(u, i, IdMap(np.arange(4)), IdMap(np.arange(6)), timestamp=ts)
    return split_from_labels(inter, lab)


def test_hand_computed_metrics_masked_and_unmasked():
    split = _tiny()
    table = torch.zeros(4, 6)
    table[0] = torch.tensor([9., 8, 7, 1, 5, 6])   # masked 0,1,2 -> ranking 5,4,3: target 3 at rank 3
    table[1] = torch.tensor([1., 7, 3, 4, 9, 8])   # masked 4,5   -> ranking 1,3,2: target 1 at rank 1
    ev = NextItemEvaluator(split, "test", n_items=6, max_len=4, ks=(1, 3))
    assert ev.users.tolist() == [0, 1] and ev.n_cold_users == 1
    m = ev.evaluate(_table_scorer(table))
    expect = {"hit@1": 0.5, "recall@1": 0.5, "ndcg@1": 0.5, "mrr@1": 0.5, "precision@1": 0.5, "map@1": 0.5,
              "hit@3": 1.0, "recall@3": 1.0, "ndcg@3": (1 / math.log2(4) + 1) / 2, "mrr@3": (1 / 3 + 1) / 2,
              "precision@3": 1 / 3, "map@3": (1 / 3 + 1) / 2}
    assert m.keys() == expect.keys()
    for k, v in expect.items():
        assert m[k] == pytest.approx(v, abs=1e-6), k
    # without masking: u0's target ranks 6th (miss), u1's target ranks 3rd behind 4 and 5
    m = NextItemEvaluator(split, "test", n_items=6, max_len=4, ks=(1, 3), mask_history=False).evaluate(
        _table_scorer(table))
    assert m["hit@1"] == 0 and m["hit@3"] == 0.5 and m["ndcg@3"] == pytest.approx(0.5 / math.log2(4))
    assert m["mrr@3"] == pytest.approx(1 / 6)


def test_batches_left_padded_latest_history_last_and_one_propagation():
    split = _tiny()
    model = _table_scorer(torch.zeros(4, 6))
    model.train()
    ev = NextItemEvaluator(split, "test", n_items=6, max_len=4, ks=(1,), chunk=1)
    ev.evaluate(model)
    assert model.propagations == 1 and model.modes == [False] and model.training  # eval mode, restored
    assert [b["seq"].tolist() for b in model.batches] == [[[6, 0, 1, 2]], [[6, 6, 4, 5]]]
    assert [b["user"].tolist() for b in model.batches] == [[0], [1]]
    model.batches.clear()
    NextItemEvaluator(split, "valid", n_items=6, max_len=2, ks=(1,)).evaluate(model)
    assert model.batches[0]["seq"].tolist() == [[0, 1], [6, 4]]  # valid: train history only
    assert ev.last_seconds > 0


def test_targets_of_leave_one_out_and_user_level_splits():
    rng = np.random.default_rng(0)
    n_users, n_items = 40, 60
    deg = rng.integers(1, 25, n_users)
    user = np.repeat(np.arange(n_users), deg)
    item = np.concatenate([rng.choice(n_items, d, replace=False) for d in deg])
    ts = rng.permutation(user.size)
    inter = Interactions(torch.from_numpy(user), torch.from_numpy(item), IdMap(np.arange(n_users)),
                         IdMap(np.arange(n_items)), timestamp=torch.from_numpy(ts))
    chrono = {u: item[user == u][np.argsort(ts[user == u])].tolist() for u in range(n_users)}

    loo = make_split(inter, method="loo")
    sets = next_item_targets(loo, "test")
    assert sets.users.tolist() == [u for u in range(n_users) if deg[u] >= 2] and sets.n_cold_users == 0
    for r, u in enumerate(sets.users.tolist()):
        assert sets.histories[r].tolist() == chrono[u][:-1] and sets.targets[r].tolist() == chrono[u][-1:]
    sets = next_item_targets(loo, "valid")
    for r, u in enumerate(sets.users.tolist()):
        assert sets.histories[r].tolist() == chrono[u][:-2] and sets.targets[r].tolist() == [chrono[u][-2]]

    us = make_split(inter, method="user", ratios=(0.5, 0.25, 0.25), seed=1)
    for which, part in (("valid", us.valid), ("test", us.test)):
        held = sorted(set(part.user.tolist()))
        sets = next_item_targets(us, which)
        assert sets.users.tolist() == [u for u in held if deg[u] >= 2]
        assert sets.n_cold_users == sum(deg[u] == 1 for u in held)
        for r, u in enumerate(sets.users.tolist()):
            n = len(chrono[u])
            n_t = min(n - 1, max(1, round(0.2 * n)))
            assert sets.histories[r].tolist() == chrono[u][:n - n_t] and sets.targets[r].tolist() == chrono[u][n - n_t:]
    sets = next_item_targets(us, "test", holdout=0.5)
    assert all(len(sets.targets[r]) == min(len(chrono[u]) - 1, max(1, round(0.5 * len(chrono[u]))))
               for r, u in enumerate(sets.users.tolist()))


def _reference(split, which, scores, ks, mask, holdout=0.2):
    """Per-sequence Python loops: the protocol written out from its definitions."""
    n_items = scores.shape[1]
    parts = {"train": split.train, "valid": split.valid, "test": split.test}

    def chrono(it, u):
        rows = [r for r in range(len(it)) if int(it.user[r]) == u]
        return [int(it.item[r]) for r in sorted(rows, key=lambda r: (int(it.timestamp[r]), r))]

    cases = []
    for u in sorted(set(parts[which].user.tolist())):
        if split.method == "user":
            s = chrono(parts[which], u)
            if len(s) < 2:
                continue
            n_t = min(len(s) - 1, max(1, round(holdout * len(s))))
            hist, tgt = s[:len(s) - n_t], s[len(s) - n_t:]
        else:
            hist = chrono(parts["train"], u) + (chrono(parts["valid"], u) if which == "test" else [])
            tgt = chrono(parts[which], u)
            if not hist:
                continue
        cases.append((u, set(hist), set(tgt)))
    out = {f"{m}@{k}": 0.0 for k in ks for m in ("recall", "ndcg", "mrr", "hit", "precision", "map")}
    for u, hist, tgt in cases:
        cand = [i for i in range(n_items) if not (mask and i in hist)]
        ranked = sorted(cand, key=lambda i: -float(scores[u, i]))
        for k in ks:
            top = ranked[:k]
            hit_ranks = [r + 1 for r, i in enumerate(top) if i in tgt]
            nh = len(hit_ranks)
            out[f"recall@{k}"] += nh / len(tgt)
            out[f"precision@{k}"] += nh / k
            out[f"hit@{k}"] += float(nh > 0)
            out[f"mrr@{k}"] += 1.0 / hit_ranks[0] if hit_ranks else 0.0
            idcg = sum(1 / math.log2(r + 1) for r in range(1, min(len(tgt), k) + 1))
            out[f"ndcg@{k}"] += sum(1 / math.log2(r + 1) for r in hit_ranks) / idcg
            out[f"map@{k}"] += sum((j + 1) / r for j, r in enumerate(hit_ranks)) / min(len(tgt), k)
    return {k: v / max(1, len(cases)) for k, v in out.items()}, len(cases)


@pytest.mark.parametrize("method", ["loo", "random", "user"])
@pytest.mark.parametrize("mask", [True, False])
def test_vectorised_equals_brute_force_reference(method, mask):
    rng = np.random.default_rng(3)
    n_users, n_items = 50, 25
    deg = rng.integers(1, 16, n_users)
    user = np.repeat(np.arange(n_users), deg)
    item = np.concatenate([rng.choice(n_items, d, replace=False) for d in deg])
    perm = rng.permutation(user.size)
    ts = rng.integers(0, 6, user.size)  # ties: row order decides
    inter = Interactions(torch.from_numpy(user[perm]), torch.from_numpy(item[perm]), IdMap(np.arange(n_users)),
                         IdMap(np.arange(n_items)), timestamp=torch.from_numpy(ts))
    split = make_split(inter, method=method, seed=2, ratios=(0.6, 0.2, 0.2))
    scores = torch.rand(n_users, n_items, generator=torch.Generator().manual_seed(4))
    ks = (1, 5, 10, 30)  # 30 > n_items: the missing ranks are misses
    for which in ("valid", "test"):
        ev = NextItemEvaluator(split, which, n_items=n_items, max_len=3, ks=ks, mask_history=mask, chunk=7)
        got = ev.evaluate(_table_scorer(scores))
        ref, n = _reference(split, which, scores, ks, mask)
        assert len(ev.users) == n > 5
        for k, v in ref.items():
            assert got[k] == pytest.approx(v, abs=1e-6), (which, k)


def test_masking_excludes_the_whole_history_beyond_max_len():
    """The scorer puts every history item (of which only the latest 2 are in the batch) above the
    targets: masked, the targets rank first; unmasked, they rank after the whole history."""
    rng = np.random.default_rng(5)
    n_users, n_items = 20, 40
    user = np.repeat(np.arange(n_users), 12)
    item = np.concatenate([rng.choice(n_items, 12, replace=False) for _ in range(n_users)])
    inter = Interactions(torch.from_numpy(user), torch.from_numpy(item), IdMap(np.arange(n_users)),
                         IdMap(np.arange(n_items)), timestamp=torch.from_numpy(np.tile(np.arange(12), n_users)))
    split = make_split(inter, method="loo")
    table = torch.zeros(n_users, n_items)
    for u in range(n_users):
        table[u, item[user == u][:-1]] = 10.0 + torch.rand(11)  # train + valid items
        table[u, item[user == u][-1]] = 5.0                      # the test target
    masked = NextItemEvaluator(split, "test", n_items, max_len=2, ks=(1, 11)).evaluate(_table_scorer(table))
    assert masked["ndcg@1"] == 1.0 and masked["mrr@11"] == 1.0
    plain = NextItemEvaluator(split, "test", n_items, max_len=2, ks=(1, 11), mask_history=False).evaluate(
        _table_scorer(table))
    assert plain["hit@11"] == 0.0


def test_oracle_scorer_ranking_the_targets_first_gets_ndcg_one():
    rng = np.random.default_rng(6)
    n_users, n_items = 30, 50
    deg = rng.integers(5, 20, n_users)
    user = np.repeat(np.arange(n_users), deg)
    item = np.concatenate([rng.choice(n_items, d, replace=False) for d in deg])
    inter = Interactions(torch.from_numpy(user), torch.from_numpy(item), IdMap(np.arange(n_users)),
                         IdMap(np.arange(n_items)), timestamp=torch.from_numpy(rng.permutation(user.size)))
    for method, which in (("loo", "test"), ("user", "test"), ("user", "valid")):
        split = make_split(inter, method=method, seed=0, ratios=(0.4, 0.3, 0.3))
        sets = next_item_targets(split, which)
        table = torch.zeros(n_users, n_items)
        for r, u in enumerate(sets.users.tolist()):
            table[u, sets.targets[r]] = 1.0
        m = NextItemEvaluator(split, which, n_items, ks=(10,)).evaluate(_table_scorer(table))
        assert m["ndcg@10"] == pytest.approx(1.0) and m["mrr@10"] == 1.0 and m["hit@10"] == 1.0


def test_bad_scores_shape_and_unknown_metric():
    split = _tiny()
    with pytest.raises(ValueError, match="score_sequences returned shape"):
        NextItemEvaluator(split, "test", 6, ks=(1,)).evaluate(Scorer(lambda b: torch.zeros(len(b["user"]), 5)))
    with pytest.raises(ValueError, match="unknown metric"):
        NextItemEvaluator(split, "test", 6, metrics=("auc",))
    with pytest.raises(ValueError, match="'valid' or 'test'"):
        next_item_targets(split, "train")
