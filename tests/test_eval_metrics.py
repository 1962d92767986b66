"""Ranking metrics against hand-computed values and torch_geometric.metrics."""
import math

import pytest
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.eval.metrics import metrics_from_hits
from graphrec.eval.ranking import RankingEvaluator


def test_hand_computed_single_user():
    # ranks 1..5, hits at ranks 2 and 4, |T_u| = 3
    hits = torch.tensor([[0, 1, 0, 1, 0]], dtype=torch.bool)
    m = metrics_from_hits(hits, torch.tensor([3]), ks=[5, 2])
    assert m["recall@5"].item() == pytest.approx(2 / 3)
    assert m["precision@5"].item() == pytest.approx(2 / 5)
    assert m["hit@2"].item() == 1.0
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)
    assert m["ndcg@5"].item() == pytest.approx(dcg / idcg)
    # @2: idcg over min(|T|, 2) = 2 positions
    assert m["ndcg@2"].item() == pytest.approx((1 / math.log2(3)) / (1 + 1 / math.log2(3)))
    assert m["map@5"].item() == pytest.approx((1 / 2 + 2 / 4) / 3)
    assert m["mrr@5"].item() == pytest.approx(0.5)
    assert m["recall@2"].item() == pytest.approx(1 / 3)


def test_no_hits_is_zero_everywhere():
    m = metrics_from_hits(torch.zeros(2, 4, dtype=torch.bool), torch.tensor([1, 5]), ks=[4])
    assert all(float(v.sum()) == 0.0 for v in m.values())


@pytest.mark.parametrize("name", ["Recall", "Precision", "NDCG", "HitRatio", "MRR", "MAP"])
def test_matches_pyg_linkpred(name):
    pyg = pytest.importorskip("torch_geometric.metrics")
    torch.manual_seed(0)
    b, n_items, k = 30, 40, 10
    scores = torch.randn(b, n_items)
    top = scores.topk(k, dim=1).indices
    truth = torch.rand(b, n_items) < 0.15
    truth[:, 0] = True  # every user has a positive
    hits = torch.gather(truth, 1, top)
    ours = metrics_from_hits(hits, truth.sum(1), ks=[k])
    key = {"Recall": "recall", "Precision": "precision", "NDCG": "ndcg", "HitRatio": "hit",
           "MRR": "mrr", "MAP": "map"}[name]
    metric = getattr(pyg, f"LinkPred{name}")(k)
    rows, cols = truth.nonzero(as_tuple=True)
    metric.update(top, torch.stack([rows, cols]))
    assert ours[f"{key}@{k}"].mean().item() == pytest.approx(float(metric.compute()), abs=1e-5)


def _inter(pairs, n_users, n_items):
    u = torch.tensor([p[0] for p in pairs])
    i = torch.tensor([p[1] for p in pairs])
    return Interactions(u, i, IdMap(list(range(n_users)), "user"), IdMap(list(range(n_items)), "item"))


class _FixedScores(torch.nn.Module):

    def __init__(self, scores):
        super().__init__()
        self.scores = scores

    def propagate(self):
        return {}

    def score(self, users, reps):
        return self.scores[users].clone()


def test_evaluator_masks_training_items_and_matches_brute_force():
    torch.manual_seed(1)
    n_users, n_items = 25, 30
    train = _inter([(u, i) for u in range(n_users) for i in range(n_items) if (u * 7 + i * 3) % 5 == 0], n_users, n_items)
    test = _inter([(u, i) for u in range(n_users) for i in range(n_items) if (u + i) % 7 == 1 and (u * 7 + i * 3) % 5], n_users, n_items)
    scores = torch.randn(n_users, n_items)
    ev = RankingEvaluator(test, [train], ks=[5, 10], user_chunk=7)
    got = ev.evaluate(_FixedScores(scores))
    # brute force in Python
    train_set = set(zip(train.user.tolist(), train.item.tolist()))
    test_set = {}
    for u, i in zip(test.user.tolist(), test.item.tolist()):
        test_set.setdefault(u, set()).add(i)
    rec = []
    nd = []
    for u, pos in test_set.items():
        order = [i for i in scores[u].argsort(descending=True).tolist() if (u, i) not in train_set][:10]
        h = [i in pos for i in order]
        rec.append(sum(h) / len(pos))
        dcg = sum(1 / math.log2(r + 2) for r, x in enumerate(h) if x)
        idcg = sum(1 / math.log2(r + 2) for r in range(min(len(pos), 10)))
        nd.append(dcg / idcg)
    assert got["recall@10"] == pytest.approx(sum(rec) / len(rec))
    assert got["ndcg@10"] == pytest.approx(sum(nd) / len(nd))


def test_evaluator_skips_cold_users_and_counts_them():
    train = _inter([(0, 0), (0, 1), (1, 2)], 3, 4)
    test = _inter([(0, 2), (2, 3)], 3, 4)  # user 2 has no training data
    ev = RankingEvaluator(test, [train], ks=[2])
    assert ev.n_cold_users == 1 and ev.users.tolist() == [0]
    # user 0: items 0,1 masked; perfect scores put item 2 first
    got = ev.evaluate(_FixedScores(torch.tensor([[9.0, 8.0, 1.0, 0.0]] * 3)))
    assert got["recall@2"] == 1.0 and got["ndcg@2"] == 1.0
