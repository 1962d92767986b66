"""Oracle tests for the bipartite, co-interaction and kNN graph builders, the spec entry point and
the exports."""
from __future__ import annotations

import networkx as nx
import numpy as np
import pytest
import torch
from networkx.algorithms import bipartite as nxb

import graphrec.graphs as G
from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import Interactions
from graph_fixtures import random_interactions


def dense_R(train: Interactions) -> torch.Tensor:
    R = torch.zeros(train.n_users, train.n_items)
    R[train.user, train.item] = 1.0
    return R


# -- bipartite --------------------------------------------------------------------------------
def test_bipartite_equals_dense_formula_with_isolated_nodes():
    train = random_interactions()
    R = dense_R(train)
    U, I = R.shape
    A = torch.zeros(U + I, U + I)
    A[:U, U:] = R
    A[U:, :U] = R.T
    d = A.sum(1)
    dinv = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    expected = dinv[:, None] * A * dinv[None, :]
    g = G.bipartite_adjacency(train)
    got = g.to_dense()
    assert torch.isfinite(got).all()
    assert torch.allclose(got, expected, atol=1e-6)
    assert (d == 0).sum() == 4 and got[d == 0].abs().sum() == 0  # isolated users and items: empty rows
    assert g.nnz == 2 * int(R.sum()) and g.meta["kind"] == "bipartite" and g.meta["nnz"] == g.nnz
    assert torch.equal(g.degree(), d.long())
    # row normalisation and the U x I matrices
    assert torch.allclose(G.bipartite_adjacency(train, "row").to_dense().sum(1), (d > 0).float(), atol=1e-6)
    du, di = R.sum(1), R.sum(0)
    inv = lambda x: torch.where(x > 0, x.pow(-0.5), torch.zeros_like(x))  # noqa: E731
    assert torch.allclose(G.interaction_matrix(train, "sym").to_dense(), inv(du)[:, None] * R * inv(di)[None, :])
    assert torch.equal(G.interaction_matrix(train).to_dense(), R)


# -- co-interaction ---------------------------------------------------------------------------
def nx_projection(train: Interactions, side: str, jaccard: bool = False) -> np.ndarray:
    B = nx.Graph()
    users = [("u", a) for a in range(train.n_users)]
    items = [("i", b) for b in range(train.n_items)]
    B.add_nodes_from(users, bipartite=0)
    B.add_nodes_from(items, bipartite=1)
    B.add_edges_from((("u", int(a)), ("i", int(b))) for a, b in zip(train.user, train.item))
    nodes = users if side == "user" else items
    P = nxb.overlap_weighted_projected_graph(B, nodes, jaccard=True) if jaccard \
        else nxb.weighted_projected_graph(B, nodes)
    out = np.zeros((len(nodes), len(nodes)))
    for (_, a), (_, b), w in P.edges(data="weight"):
        out[a, b] = out[b, a] = w
    return out


def nx_topk(W: np.ndarray, k: int, score: np.ndarray) -> np.ndarray:
    out = np.zeros_like(W)
    for a in range(W.shape[0]):
        cand = [b for b in range(W.shape[1]) if W[a, b] > 0]
        cand.sort(key=lambda b: (-score[a, b], b))  # ties: lower index wins
        for b in cand[:k]:
            out[a, b] = W[a, b]
    return out


@pytest.mark.parametrize("side", ["user", "item"])
def test_cointeraction_equals_networkx_projection(side):
    train = random_interactions(seed=1)
    counts = nx_projection(train, side)
    got = G.cointeraction_graph(train, side=side, chunk_size=7).to_dense().numpy()
    np.testing.assert_allclose(got, counts)
    assert np.all(np.diag(got) == 0)
    binary = G.cointeraction_graph(train, side=side, weight="binary").to_dense().numpy()
    np.testing.assert_array_equal(binary, (counts > 0).astype(float))
    jac = G.cointeraction_graph(train, side=side, weight="jaccard", chunk_size=5).to_dense().numpy()
    np.testing.assert_allclose(jac, nx_projection(train, side, jaccard=True), rtol=1e-6)
    mc = G.cointeraction_graph(train, side=side, min_count=2).to_dense().numpy()
    np.testing.assert_allclose(mc, np.where(counts >= 2, counts, 0))


@pytest.mark.parametrize("side,k", [("user", 3), ("item", 2), ("user", 1)])
def test_cointeraction_topk_equals_networkx_topk(side, k):
    train = random_interactions(seed=2, n_rows=200)
    counts = nx_projection(train, side)
    got = G.cointeraction_graph(train, side=side, topk=k, chunk_size=4).to_dense().numpy()
    np.testing.assert_allclose(got, nx_topk(counts, k, counts))
    assert ((got > 0).sum(1) <= k).all()
    jac = nx_projection(train, side, jaccard=True)
    got_j = G.cointeraction_graph(train, side=side, topk=k, weight="jaccard").to_dense().numpy()
    np.testing.assert_allclose(got_j, nx_topk(jac, k, jac), rtol=1e-6)


def test_cointeraction_normalisation_and_errors():
    train = random_interactions(seed=3)
    W = G.cointeraction_graph(train, "item").to_dense()
    d = W.sum(1)
    inv = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    S = G.cointeraction_graph(train, "item", norm="sym").to_dense()
    assert torch.allclose(S, inv[:, None] * W * inv[None, :], atol=1e-6)
    rowsum = G.cointeraction_graph(train, "item", norm="row").to_dense().sum(1)
    assert torch.allclose(rowsum, (d > 0).float(), atol=1e-6)
    with pytest.raises(ValueError, match="side"):
        G.cointeraction_graph(train, side="both")
    with pytest.raises(ValueError, match="weight"):
        G.cointeraction_graph(train, weight="cosine")


# -- kNN --------------------------------------------------------------------------------------
def brute_force_sets(x: torch.Tensor, k: int, include_self: bool) -> list[set]:
    xn = x / x.norm(dim=1, keepdim=True)
    sim = (xn @ xn.T).numpy().astype(np.float64)
    out = []
    for a in range(sim.shape[0]):
        order = sorted((b for b in range(sim.shape[0]) if include_self or b != a), key=lambda b: (-sim[a, b], b))
        out.append(set(order[:k]))
    return out


def neighbour_sets(g: G.SparseGraph) -> list[set]:
    crow, col = g.adj.crow_indices(), g.adj.col_indices()
    return [set(col[crow[a]:crow[a + 1]].tolist()) for a in range(g.shape[0])]


BACKENDS = ["torch"] + (["faiss"] if G.knn.faiss_module() is not None else [])


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("include_self", [True, False])
def test_knn_neighbour_sets_equal_brute_force(backend, include_self):
    x = torch.randn(150, 24, generator=torch.Generator().manual_seed(0))
    g = G.knn_graph(x, k=7, backend=backend, include_self=include_self, chunk_size=32)
    assert neighbour_sets(g) == brute_force_sets(x, 7, include_self)
    assert torch.equal(g.degree(), torch.full((150,), 7))
    # FREEDOM: binary edges, sym-normalised with row sums -> every entry exactly 1/k
    assert torch.allclose(g.values, torch.full_like(g.values, 1 / 7))
    assert g.meta["params"]["backend"] == backend


def test_knn_backends_agree_and_ties_go_to_lower_index():
    x = torch.randn(300, 16, generator=torch.Generator().manual_seed(5))
    for backend in BACKENDS:
        assert neighbour_sets(G.knn_graph(x, k=5, backend=backend)) == brute_force_sets(x, 5, True)
    # planted exact ties: 3 clusters of identical directions; cosine is exactly 1 inside a cluster
    cluster = torch.arange(12) % 3
    planted = torch.nn.functional.one_hot(cluster, 3).float() * (1 + torch.arange(12)[:, None])
    for backend in BACKENDS:
        for include_self in (True, False):
            g = G.knn_graph(planted, k=2, backend=backend, include_self=include_self)
            want = [set([b for b in range(12) if cluster[b] == cluster[a] and (include_self or b != a)][:2])
                    for a in range(12)]
            assert neighbour_sets(g) == want, (backend, include_self)


def test_knn_options():
    x = torch.randn(40, 8, generator=torch.Generator().manual_seed(1))
    xn = x / x.norm(dim=1, keepdim=True)
    cos = G.knn_graph(x, k=4, backend="torch", norm="none", weight="cosine").to_dense()
    mask = cos != 0
    assert torch.allclose(cos[mask], (xn @ xn.T)[mask], atol=1e-5)
    sym = G.knn_graph(x, k=4, backend="torch", norm="none", symmetrize=True).to_dense()
    assert torch.equal(sym, sym.T) and torch.equal(sym, ((mask | mask.T)).float())
    rn = G.knn_graph(x, k=4, backend="torch", norm="row").to_dense()
    assert torch.allclose(rn.sum(1), torch.ones(40))
    io = G.knn_graph(x, k=4, backend="torch", norm="sym_inout").to_dense()
    A = mask.float()
    r, c = A.sum(1), A.sum(0)
    assert torch.allclose(io, r.pow(-0.5)[:, None] * A * c.pow(-0.5)[None, :], atol=1e-6)
    with pytest.raises(ValueError, match="backend"):
        G.knn_graph(x, backend="annoy")


def test_mix_graphs_is_freedom_weighted_sum():
    gen = torch.Generator().manual_seed(2)
    gv = G.knn_graph(torch.randn(50, 32, generator=gen), k=5, backend="torch")
    gt = G.knn_graph(torch.randn(50, 8, generator=gen), k=5, backend="torch")
    mix = G.mix_graphs({"image": gv, "text": gt}, {"image": 0.1, "text": 0.9})
    assert torch.allclose(mix.to_dense(), 0.1 * gv.to_dense() + 0.9 * gt.to_dense(), atol=1e-7)
    assert torch.allclose(mix.to_dense().sum(1), torch.ones(50), atol=1e-6)  # rows sum to 1
    assert ((mix.degree() >= 5) & (mix.degree() <= 10)).all()
    with pytest.raises(ValueError, match="different modalities"):
        G.mix_graphs({"image": gv}, {"text": 1.0})


# -- build(spec) and exports --------------------------------------------------------------------
def features_for(train: Interactions) -> ItemFeatures:
    gen = torch.Generator().manual_seed(4)
    return ItemFeatures({"image": torch.randn(train.n_items, 32, generator=gen),
                         "text": torch.randn(train.n_items, 12, generator=gen)}, train.item_map)


def test_build_specs(tmp_path):
    train = random_interactions(seed=6)
    feats = features_for(train)
    cache = G.GraphCache(str(tmp_path))
    b = G.build({"kind": "bipartite", "norm": "sym"}, train, cache=cache)
    assert torch.equal(b.to_dense(), G.bipartite_adjacency(train).to_dense())
    r = G.build({"kind": "interaction", "norm": "none"}, train)
    assert r.shape == (train.n_users, train.n_items)
    k = G.build({"kind": "knn", "modality": "image", "k": 3, "backend": "torch"}, train, feats, cache)
    assert neighbour_sets(k) == brute_force_sets(feats["image"], 3, True)
    mix = G.build({"kind": "knn_mix", "modalities": {"image": 0.1, "text": 0.9}, "k": 3}, train, feats, cache)
    want = 0.1 * G.knn_graph(feats["image"], k=3).to_dense() + 0.9 * G.knn_graph(feats["text"], k=3).to_dense()
    assert torch.allclose(mix.to_dense(), want, atol=1e-7)
    c = G.build({"kind": "cointeraction", "side": "item", "topk": 2}, train, cache=cache)
    assert torch.equal(c.to_dense(), G.cointeraction_graph(train, "item", topk=2).to_dense())
    again = G.build({"kind": "cointeraction", "side": "item", "topk": 2}, train, cache=cache)
    assert again.meta["cached"] and torch.equal(again.to_dense(), c.to_dense())
    with pytest.raises(ValueError, match="unknown kind 'pagerank'"):
        G.build({"kind": "pagerank"}, train)
    with pytest.raises(ValueError, match="modality 'audio' missing"):
        G.build({"kind": "knn", "modality": "audio"}, train, feats)
    with pytest.raises(ValueError, match="needs item features"):
        G.build({"kind": "knn", "modality": "image"}, train)
    with pytest.raises(ValueError, match="unknown option"):
        G.build({"kind": "bipartite", "k": 3}, train)


def test_exports_feed_pyg_and_networkx():
    from torch_geometric.nn import LGConv

    train = random_interactions(seed=7)
    g = G.bipartite_adjacency(train)
    x = torch.randn(g.shape[0], 5)
    data = G.to_pyg(g)
    out = LGConv(normalize=False)(x, data.edge_index, data.edge_weight)
    # PyG aggregates messages from edge_index[0] into edge_index[1]; symmetric graph -> same as A x
    assert torch.allclose(out, G.spmm(g, x), atol=1e-5)
    nxg = G.to_networkx(g)
    assert isinstance(nxg, nx.Graph) and not nxg.is_directed()
    assert nxg.number_of_edges() == g.nnz // 2
    assert np.allclose(nx.to_numpy_array(nxg, nodelist=range(g.shape[0])), g.to_dense().numpy(), atol=1e-6)
    knn = G.knn_graph(torch.randn(20, 4), k=3)
    assert G.to_networkx(knn).is_directed()
    h = G.to_hetero(train)
    ei = h["user", "interacts", "item"].edge_index
    assert ei.shape[1] == g.nnz // 2 and h["user"].num_nodes == train.n_users
    assert torch.equal(h["item", "rev_interacts", "user"].edge_index, ei.flip(0))
    R = G.interaction_matrix(train, "sym").to_dense()
    assert torch.allclose(h["user", "interacts", "item"].edge_weight, R[ei[0], ei[1]])
