"""FREEDOM's degree-sensitive pruning and random edge dropout: sampling law and graph invariants."""
from __future__ import annotations

import itertools

import pytest
import torch

import graphrec.graphs as G
from graphrec.data.interactions import IdMap, Interactions
from graph_fixtures import random_interactions


def skewed_log() -> Interactions:
    """6 distinct edges with very different degree products (user 0 and item 0 are hubs)."""
    u = torch.tensor([0, 0, 0, 1, 2, 3, 0])  # last row duplicates (0, 0)
    i = torch.tensor([0, 1, 2, 0, 0, 3, 0])
    return Interactions(u, i, IdMap(range(4), "user"), IdMap(range(4), "item"))


def edge_probs(train: Interactions) -> torch.Tensor:
    p = G.DegreeSensitivePruner(train, 1.0).weights
    return p / p.sum()


@pytest.mark.parametrize("method", ["multinomial", "gumbel"])
def test_single_edge_frequencies_match_inverse_sqrt_degree(method):
    train = skewed_log()
    pr = G.DegreeSensitivePruner(train, keep_ratio=1 / 6 + 1e-9, method=method)
    assert pr.n_keep == 1 and pr.n_edges == 6
    p = edge_probs(train)
    # hand-computed weights 1/sqrt(d_u d_i): d_u = (3,1,1,1), d_i = (3,1,1,1)
    w = torch.tensor([1 / 3, 1 / 3 ** 0.5, 1 / 3 ** 0.5, 1 / 3 ** 0.5, 1 / 3 ** 0.5, 1.0])
    assert torch.allclose(p, w / w.sum())
    gen = torch.Generator().manual_seed(0)
    n = 20000
    counts = torch.zeros(6)
    for _ in range(n):
        counts += pr.sample_edges(gen).float()
    freq = counts / n
    sigma = (p * (1 - p) / n).sqrt()
    assert ((freq - p).abs() < 4.5 * sigma).all(), (freq, p)
    uniform = torch.full((6,), 1 / 6)
    assert ((freq - uniform).abs() > 10 * sigma).any()  # the weighting is really applied


def inclusion_two_draws(p: torch.Tensor) -> torch.Tensor:
    """Exact P(e in sample) for 2 sequential draws without replacement, by enumeration."""
    out = torch.zeros_like(p, dtype=torch.float64)
    for a, b in itertools.permutations(range(p.numel()), 2):
        prob = p[a] * p[b] / (1 - p[a])
        out[a] += prob
        out[b] += prob
    return out


@pytest.mark.parametrize("method", ["multinomial", "gumbel"])
def test_two_edge_inclusion_probabilities_without_replacement(method):
    train = skewed_log()
    pr = G.DegreeSensitivePruner(train, keep_ratio=2 / 6 + 1e-9, method=method)
    assert pr.n_keep == 2
    p = edge_probs(train).double()
    p = p / p.sum()
    expect = inclusion_two_draws(p)
    gen = torch.Generator().manual_seed(1)
    n = 20000
    counts = torch.zeros(6, dtype=torch.float64)
    for _ in range(n):
        m = pr.sample_edges(gen)
        assert int(m.sum()) == 2  # exact count, no duplicates (a mask cannot hold one twice)
        counts += m.double()
    freq = counts / n
    sigma = (expect * (1 - expect) / n).sqrt()
    assert ((freq - expect).abs() < 4.5 * sigma).all(), (freq, expect)
    assert abs(float(expect.sum()) - 2.0) < 1e-9


@pytest.mark.parametrize("cls", ["pruner", "dropout"])
def test_sampled_graph_is_renormalised_symmetric_subgraph(cls):
    train = random_interactions(n_users=60, n_items=40, n_rows=400, seed=3)
    sampler = G.DegreeSensitivePruner(train, 0.3) if cls == "pruner" else G.RandomEdgeDropout(train, 0.7)
    gen = torch.Generator().manual_seed(2)
    full = G.bipartite_adjacency(train)
    for _ in range(3):
        mask = sampler.sample_edges(gen)
        assert int(mask.sum()) == sampler.n_keep == int(sampler.n_edges * sampler.keep_ratio)
    gen = torch.Generator().manual_seed(9)
    mask = sampler.sample_edges(gen)
    gen = torch.Generator().manual_seed(9)
    g = sampler.sample(gen)
    kept = Interactions(sampler.u[mask], sampler.i[mask], train.user_map, train.item_map)
    oracle = G.bipartite_adjacency(kept).to_dense()  # D'^{-1/2} A' D'^{-1/2} on the kept edges
    dense = g.to_dense()
    assert torch.allclose(dense, oracle, atol=1e-6)
    assert torch.equal(dense, dense.T)  # both directions of each kept edge
    assert g.nnz == 2 * sampler.n_keep
    assert ((dense > 0) <= (full.to_dense() > 0)).all()  # a subgraph of the training graph
    assert torch.isfinite(dense).all()


def test_sampling_is_reproducible_and_validated():
    train = random_interactions(seed=4)
    pr = G.DegreeSensitivePruner(train, 0.2, method="gumbel")
    a = pr.sample(torch.Generator().manual_seed(5)).to_dense()
    b = pr.sample(torch.Generator().manual_seed(5)).to_dense()
    assert torch.equal(a, b)
    full = G.DegreeSensitivePruner(train, 1.0).sample()
    assert torch.allclose(full.to_dense(), G.bipartite_adjacency(train).to_dense())
    one = G.edge_dropout(train, 0.5, torch.Generator().manual_seed(0))
    assert one.nnz == 2 * int(G.RandomEdgeDropout(train, 0.5).n_edges * 0.5)
    with pytest.raises(ValueError, match="keep_ratio"):
        G.DegreeSensitivePruner(train, 0.0)
    with pytest.raises(ValueError, match="method"):
        G.DegreeSensitivePruner(train, 0.5, method="poisson")
