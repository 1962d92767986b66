"""Sampled-negatives ranking (PAMD's protocol): oracles, a brute-force per-user reference, the
negative-sampling policy and the ``sampled`` task."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.split import Split
from graphrec.eval.sampled import SampledEvaluator, sample_negatives
from graphrec.stats import paired_t


def _inter(pairs, n_users, n_items):
    pairs = list(pairs)
    u = torch.tensor([p[0] for p in pairs], dtype=torch.long)
    i = torch.tensor([p[1] for p in pairs], dtype=torch.long)
    return Interactions(u, i, IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item"))


def _world(n_users=40, n_items=300, n_train=8, n_test=2, seed=0):
    g = np.random.default_rng(seed)
    tr, va, te = [], [], []
    for u in range(n_users):
        items = g.choice(n_items, n_train + 1 + n_test, replace=False)
        tr += [(u, int(i)) for i in items[:n_train]]
        va += [(u, int(items[n_train]))]
        te += [(u, int(i)) for i in items[n_train + 1:]]
    return Split(_inter(tr, n_users, n_items), _inter(va, n_users, n_items), _inter(te, n_users, n_items))


class _Scores(torch.nn.Module):
    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def propagate(self):
        return None

    def score(self, users, reps):
        return self.scores[users]


def _evaluator(split, part="test", **kw):
    known = split.train.concat(split.valid).concat(split.test)
    kw.setdefault("n_neg", 100)
    kw.setdefault("ks", (5, 10))
    return SampledEvaluator(getattr(split, part), known, split.train, **kw)


def _truth(split, part="test"):
    t = getattr(split, part)
    m = torch.zeros(split.n_users, split.n_items, dtype=torch.bool)
    m[t.user, t.item] = True
    return m


def test_oracle_scores_one_and_reversed_oracle_scores_zero():
    split = _world()
    truth = _truth(split).float()
    noise = 1e-3 * torch.rand(truth.shape, generator=torch.Generator().manual_seed(0))
    ev = _evaluator(split)
    best = ev.evaluate(_Scores(truth + noise))
    assert all(v == pytest.approx(1.0) for v in best.values()), best
    worst = ev.evaluate(_Scores(-truth + noise))
    assert all(v == 0.0 for v in worst.values()), worst


def test_random_scores_with_one_held_out_item_give_recall_k_over_candidates():
    # one test item per user among 1,000 negatives: P(hit in the top 10) = 10 / 1001
    n_users, n_items = 3000, 1100
    split = _world(n_users, n_items, n_train=3, n_test=1, seed=1)
    ev = _evaluator(split, n_neg=1000, ks=(10,), metrics=("recall",))
    scores = torch.rand(n_users, n_items, generator=torch.Generator().manual_seed(2))
    r = ev.evaluate(_Scores(scores))["recall@10"]
    p = 10 / 1001
    assert abs(r - p) < 4 * math.sqrt(p * (1 - p) / n_users), r


def test_hand_computed_ndcg_with_held_out_items_at_ranks_one_and_three():
    # user 0: test items 0 and 1; ranked 1st and 3rd among the candidates -> (1 + 1/2) / (1 + 1/log2 3)
    n_items = 30
    split = Split(_inter([(0, 10), (1, 11)], 2, n_items), _inter([(0, 12), (1, 13)], 2, n_items),
                  _inter([(0, 0), (0, 1), (1, 2)], 2, n_items))
    ev = _evaluator(split, n_neg=20, ks=(5,), metrics=("ndcg", "recall"))
    s = torch.zeros(2, n_items)
    s[0, 0], s[0, 1] = 10.0, 8.0
    s[0, int(ev.negatives[0, 0])] = 9.0  # one negative between them
    per = ev.per_user(_Scores(s))
    assert float(per["ndcg@5"][0]) == pytest.approx((1 + 0.5) / (1 + 1 / math.log2(3)), abs=1e-6)
    assert float(per["ndcg@5"][0]) == pytest.approx(0.920, abs=1e-3)
    assert float(per["recall@5"][0]) == 1.0


def test_untruncated_idcg_divides_by_all_held_out_positions():
    n_items = 40
    split = Split(_inter([(0, 30)], 1, n_items), _inter([(0, 31)], 1, n_items),
                  _inter([(0, i) for i in range(3)], 1, n_items))
    s = torch.zeros(1, n_items)
    s[0, :3] = torch.tensor([3.0, 2.0, 1.0])  # all three on top
    t = _evaluator(split, n_neg=10, ks=(2,), metrics=("ndcg",)).evaluate(_Scores(s))["ndcg@2"]
    u = _evaluator(split, n_neg=10, ks=(2,), metrics=("ndcg",), idcg="untruncated").evaluate(_Scores(s))["ndcg@2"]
    assert t == pytest.approx(1.0)
    idcg3 = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert u == pytest.approx((1 + 1 / math.log2(3)) / idcg3)


def test_matches_a_brute_force_per_user_ranking():
    split = _world(n_users=30, n_items=200, n_test=3, seed=3)
    ev = _evaluator(split, n_neg=50, ks=(1, 5, 10), metrics=("recall", "ndcg", "hit", "precision"))
    scores = torch.randn(30, 200, generator=torch.Generator().manual_seed(4))
    got = ev.per_user(_Scores(scores))
    truth = _truth(split)
    for row, u in enumerate(ev.users.tolist()):
        gt = torch.nonzero(truth[u]).flatten().tolist()
        negs = [int(x) for x, ok in zip(ev.negatives[row], ev.neg_ok[row]) if ok]
        cand = gt + negs
        order = sorted(cand, key=lambda i: -float(scores[u, i]))
        for k in (1, 5, 10):
            top = order[:k]
            hits = [1.0 if i in gt else 0.0 for i in top]
            dcg = sum(h / math.log2(r + 2) for r, h in enumerate(hits))
            idcg = sum(1 / math.log2(r + 2) for r in range(min(len(gt), k)))
            assert float(got[f"recall@{k}"][row]) == pytest.approx(sum(hits) / len(gt), abs=1e-6)
            assert float(got[f"ndcg@{k}"][row]) == pytest.approx(dcg / idcg, abs=1e-5)
            assert float(got[f"hit@{k}"][row]) == float(sum(hits) > 0)
            assert float(got[f"precision@{k}"][row]) == pytest.approx(sum(hits) / k, abs=1e-6)


def test_negatives_avoid_every_interaction_are_distinct_and_fixed_per_seed():
    split = _world(n_users=50, n_items=120)
    known = split.train.concat(split.valid).concat(split.test)
    users = torch.arange(50)
    a, ok_a = sample_negatives(known, users, 100, seed=7)
    b, ok_b = sample_negatives(known, users, 100, seed=7)
    c, _ = sample_negatives(known, users, 100, seed=8)
    assert torch.equal(a, b) and torch.equal(ok_a, ok_b)
    assert not torch.equal(a, c)
    seen = set(zip(known.user.tolist(), known.item.tolist()))
    for u in range(50):
        row = a[u][ok_a[u]].tolist()
        assert len(row) == len(set(row))
        assert not any((u, i) in seen for i in row)
        # 120 items, 11 known: fewer than 100 free items -> all 109 of them... capped at 100
        assert len(row) == 100
    # fewer free items than asked: every free item, once
    d, ok_d = sample_negatives(known, users, 500, seed=7)
    for u in range(50):
        free = set(range(120)) - {i for (v, i) in seen if v == u}
        assert set(d[u][ok_d[u]].tolist()) == free


def test_negatives_are_uniform_over_free_items():
    # one user, 10 known items of 60, 5 negatives drawn per seed: each free item ~ 5/50 of the draws
    known = _inter([(0, i) for i in range(10)], 1, 60)
    counts = torch.zeros(60)
    for seed in range(400):
        neg, ok = sample_negatives(known, torch.tensor([0]), 5, seed=seed)
        counts[neg[0][ok[0]].long()] += 1
    assert counts[:10].sum() == 0
    p = counts[10:] / 400
    assert float((p - 0.1).abs().max()) < 0.06


def test_include_gt_in_count_keeps_the_candidate_total():
    split = _world(n_users=20, n_items=200, n_test=3)
    ev = _evaluator(split, n_neg=50, include_gt_in_count=True)
    items, ok, is_gt = ev.candidates()
    assert torch.all(ok.sum(1) == 50)
    assert torch.all(is_gt.sum(1) == 3)


def test_per_user_values_feed_the_paired_t_test():
    split = _world(n_users=60, n_items=200)
    ev = _evaluator(split, n_neg=50, ks=(10,), metrics=("recall",))
    truth = _truth(split).float()
    g = torch.Generator().manual_seed(5)
    weak, strong = torch.rand(truth.shape, generator=g), truth + 0.9 * torch.rand(truth.shape, generator=g)
    a, b = ev.per_user(_Scores(weak))["recall@10"], ev.per_user(_Scores(strong))["recall@10"]
    assert float(a.mean()) == pytest.approx(ev.evaluate(_Scores(weak))["recall@10"])
    t, p = paired_t(a.tolist(), b.tolist())
    assert t > 0 and p < 0.05


def test_sampled_protocol_judges_a_pairwise_model_end_to_end(tmp_path):
    """``eval.protocol=sampled`` through a run: its test numbers are the sampled evaluator's on the
    selected checkpoint (negatives fixed by the seed), and never below full ranking's (the candidates
    are a subset of the items full ranking ranks, so every full-ranking hit is a sampled hit)."""
    from graphrec.eval.ranking import RankingEvaluator
    from graphrec.experiment import load_run, run
    from graphrec.train.task_sampled import sampled_evaluator
    ov = {"threads": 1, "data": {"dataset_args": {"scale": 0.15}},
          "eval": {"protocol": "sampled", "sampled_negatives": 60}, "train": {"progress": False}}
    r = run(model="mf", dataset="synthetic", overrides=ov, epochs=2, out=str(tmp_path / "run"), quiet=True, seed=3)
    assert {"recall@5", "ndcg@5", "recall@10", "recall@20"} <= set(r["test"])
    p = load_run(str(tmp_path / "run"))
    again = sampled_evaluator(p.split, "test", seed=3, n_neg=60, ks=(5, 10, 20), metrics=("recall", "ndcg"))
    got = again.evaluate(p.model)
    assert all(got[k] == pytest.approx(r["test"][k], abs=1e-9) for k in got)
    full = RankingEvaluator(p.split.test, [p.split.train], ks=[5, 10, 20], metrics=["recall"],
                            train=p.split.train).evaluate(p.model)
    for k in (5, 10, 20):
        assert got[f"recall@{k}"] >= full[f"recall@{k}"] - 1e-9
    assert got["recall@20"] > full["recall@20"]
