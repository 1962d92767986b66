"""Negative sampling: never a training positive, right shapes, reproducible, distribution."""
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.train.samplers import BPRSampler


def _train(n_users=50, n_items=40, density=0.4, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n_users, n_items, generator=g) < density
    m[:, 0] = True
    u, i = m.nonzero(as_tuple=True)
    return Interactions(u, i, IdMap(list(range(n_users))), IdMap(list(range(n_items)))), m


def test_negatives_are_never_positives_and_cover_epoch():
    train, m = _train()
    s = BPRSampler(train, batch_size=64, num_neg=3)
    g = torch.Generator().manual_seed(3)
    seen = 0
    for b in s.epoch(g):
        assert b["neg"].shape == (b["user"].numel(), 3)
        assert not m[b["user"].unsqueeze(1).expand_as(b["neg"]), b["neg"]].any()
        assert m[b["user"], b["pos"]].all()
        seen += b["user"].numel()
    assert seen == int(m.sum())


def test_same_seed_same_batches():
    train, _ = _train()
    s = BPRSampler(train, batch_size=100)
    a = [b["neg"] for b in s.epoch(torch.Generator().manual_seed(5))]
    b = [b["neg"] for b in s.epoch(torch.Generator().manual_seed(5))]
    assert all(torch.equal(x, y) for x, y in zip(a, b))


def test_uniform_negatives_are_uniform_over_non_positives():
    # one user with positives {0..4} among 10 items: negatives uniform over 5..9
    u = torch.zeros(5, dtype=torch.long)
    i = torch.arange(5)
    other = Interactions(torch.tensor([1] * 5), torch.arange(5, 10), IdMap([0, 1, 2]), IdMap(list(range(10))))
    train = Interactions(torch.cat([u, other.user]), torch.cat([i, other.item]), IdMap([0, 1, 2]), IdMap(list(range(10))))
    s = BPRSampler(train, batch_size=10, num_neg=1)
    g = torch.Generator().manual_seed(0)
    draws = s.negatives(torch.zeros(20000, dtype=torch.long), g)
    counts = torch.bincount(draws, minlength=10).float()
    assert counts[:5].sum() == 0
    assert torch.allclose(counts[5:] / 20000, torch.full((5,), 0.2), atol=0.015)


def test_popularity_sampling_follows_degree():
    # items 0..3 with degrees 1, 2, 4, 8 across users 1..8; user 0 draws
    rows = [(1 + r, it) for it, d in enumerate([1, 2, 4, 8]) for r in range(d)]
    u = torch.tensor([r[0] for r in rows] + [0])
    i = torch.tensor([r[1] for r in rows] + [4])
    train = Interactions(u, i, IdMap(list(range(9))), IdMap(list(range(5))))
    s = BPRSampler(train, mode="popularity", alpha=1.0)
    draws = s.negatives(torch.zeros(30000, dtype=torch.long), torch.Generator().manual_seed(1))
    freq = torch.bincount(draws, minlength=5).float() / 30000
    assert freq[4] == 0  # user 0's positive
    expect = torch.tensor([1, 2, 4, 8.0]) / 15
    assert torch.allclose(freq[:4], expect, atol=0.015)
