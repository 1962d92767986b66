"""`synthetic-seq`: sequences with planted successors that an oracle recovers and popularity does not."""
from __future__ import annotations

import torch

from graphrec.data.sequences import Sequences
from graphrec.data.split import make_split
from graphrec.datasets import list_datasets, load
from graphrec.datasets.synthetic import generate_sequential
from graphrec.eval.sequential import NextItemEvaluator
from graphrec.models.base import Reps


class _Scorer(torch.nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def propagate(self) -> Reps:
        return Reps()

    def score_sequences(self, batch, reps):
        return self.fn(batch)


def test_registered_deterministic_and_shaped_as_documented():
    assert "synthetic-seq" in list_datasets()
    ds = load("synthetic-seq")
    it = ds.interactions
    assert (it.n_users, it.n_items) == (1000, 500)
    lens = it.user_degree()
    assert int(lens.min()) >= 10 and int(lens.max()) <= 40
    assert torch.unique(it.user * it.n_items + it.item).numel() == len(it)  # no repeats in a sequence
    s = Sequences.from_interactions(it)
    assert torch.equal(ds.meta["sequences"].items, s.items)
    # timestamps are positions 0..n-1
    pos = torch.arange(len(it)) - torch.repeat_interleave(s.indptr[:-1], lens)
    assert torch.equal(torch.sort(it.timestamp[torch.argsort(it.user, stable=True)]).values,
                       torch.sort(pos).values)
    # the successor is one permutation with a single cycle
    succ = ds.ground_truth["successor"]
    assert torch.equal(torch.sort(succ).values, torch.arange(500))
    x, seen = 0, set()
    for _ in range(500):
        seen.add(x)
        x = int(succ[x])
    assert len(seen) == 500 and x == 0
    # about p of the transitions follow the successor, and exactly those marked followed
    prev, nxt = s.items[:-1], s.items[1:]
    same_user = s.row_index()[:-1] == s.row_index()[1:]
    follows = (succ[prev] == nxt) & same_user
    assert 0.7 < float(follows.sum()) / float(same_user.sum()) < 0.9
    followed = ds.ground_truth["followed"][torch.argsort(it.user * 10_000 + it.timestamp)]
    assert torch.all(follows[followed[1:]])  # every marked row is its predecessor's successor
    assert load("synthetic-seq").interactions.content_hash() == it.content_hash()
    assert load("synthetic-seq", seed=1).interactions.content_hash() != it.content_hash()


def test_oracle_finds_the_planted_successor_and_popularity_does_not():
    ds = generate_sequential(seed=2)
    split = make_split(ds.interactions, method="loo")
    succ = ds.ground_truth["successor"]
    n = ds.n_items
    ev = NextItemEvaluator(split, "test", n_items=n, max_len=50, ks=(10,))

    def oracle(batch):
        return torch.nn.functional.one_hot(succ[batch["seq"][:, -1]], n).float()

    pop = torch.bincount(split.train.item, minlength=n).float()
    m_oracle = ev.evaluate(_Scorer(oracle))
    m_pop = ev.evaluate(_Scorer(lambda b: pop.expand(b["seq"].shape[0], -1).clone()))
    assert m_oracle["ndcg@10"] >= 0.7 and m_oracle["hit@10"] >= 0.7
    assert m_pop["ndcg@10"] < 0.15 and m_pop["ndcg@10"] < m_oracle["ndcg@10"] / 5
    # follow_prob = 0: no structure left to find
    flat = generate_sequential(n_users=300, follow_prob=0.0, seed=2)
    s0 = make_split(flat.interactions, method="loo")
    succ0 = flat.ground_truth["successor"]
    m0 = NextItemEvaluator(s0, "test", n_items=n, ks=(10,)).evaluate(
        _Scorer(lambda b: torch.nn.functional.one_hot(succ0[b["seq"][:, -1]], n).float()))
    assert m0["hit@10"] < 0.1
