"""PyG under graphrec: graph hand-off (orientation, copies, round trip), LightGCN == a chain of PyG
LGConv, NGCF written with a PyG layer (dense transcription of its equations; trains under the
trainer and beats popularity), and HeteroData loaded as a dataset."""
import json
import os
import runpy

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.data import HeteroData
from torch_geometric.nn import LGConv

import graphrec.experiment
from graphrec.data.hetero import from_heterodata
from graphrec.data.interactions import IdMap, Interactions
from graphrec.errors import DataError, MissingExtraError
from graphrec.graphs import GraphCache, bipartite_adjacency, build, interaction_matrix, knn_graph, pyg
from graphrec.models import ModelContext, get_model
from graphrec.models.ngcf import NGCFConv, node_dropout
from graphrec.nn.propagation import LightGCNPropagation

TINY = {"n_users": 150, "n_items": 80, "n_interactions": 3000}
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _train(n_users=12, n_items=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n_users, n_items, generator=g) < 0.3
    m[0, 0] = True
    m[-1, :] = False  # an isolated user: a zero row
    u, i = m.nonzero(as_tuple=True)
    return Interactions(u, i, IdMap(list(range(n_users))), IdMap(list(range(n_items)))), m


def _directed_graph():
    """A kNN item graph that is not symmetric (row i holds i's neighbours), with unequal weights."""
    feats = torch.randn(15, 6, generator=torch.Generator().manual_seed(1))
    g = knn_graph(feats, k=3, backend="torch", norm="row")
    dense = g.to_dense()
    assert not torch.allclose(dense, dense.T), "the orientation tests need a non-symmetric graph"
    return g, dense


def _lgconv_chain(x, n_layers, *graph_args, normalize=False):
    conv = LGConv(normalize=normalize)
    layers = [x]
    for _ in range(n_layers):
        layers.append(conv(layers[-1], *graph_args))
    return torch.stack(layers).mean(0)


# -- (a) LightGCN propagation == a chain of PyG LGConv ---------------------------------------------
def test_lightgcn_equals_lgconv_chain_on_the_cached_graph(tmp_path):
    train, m = _train()
    g = build({"kind": "bipartite", "norm": "sym"}, train, None, GraphCache(str(tmp_path)))
    ctx = ModelContext(m.shape[0], m.shape[1], train, graphs={"ui": g})
    model = get_model("lightgcn")(ctx, embedding_dim=8, n_layers=3)
    x = model.embedding.weight.detach()
    ours = LightGCNPropagation(3, "mean")(g, x)
    reps = model.propagate()
    assert torch.allclose(torch.cat([reps.user, reps.item]), ours, atol=1e-6)
    ei, w = pyg.edge_index(g)
    inputs = {"edge_index": (ei, w), "adj_t": (pyg.adj_t(g),)}
    if pyg.HAS_EDGE_INDEX:
        inputs["EdgeIndex"] = (pyg.to_edge_index_tensor(g), w)
    if pyg.HAS_SPARSE_TENSOR:
        inputs["SparseTensor"] = (pyg.to_sparse_tensor(g),)
    for form, args in inputs.items():
        theirs = _lgconv_chain(x, 3, *args)
        assert (theirs - ours).abs().max() <= 1e-6, form
    # PyG's own symmetric normalisation of the unnormalised bipartite edges is the oracle of ours
    ei0, w0 = pyg.edge_index(bipartite_adjacency(train, norm="none"))
    assert torch.equal(w0, torch.ones_like(w0))
    theirs = _lgconv_chain(x, 3, ei0, normalize=True)
    assert (theirs - ours).abs().max() <= 1e-6


def test_lightgcn_and_lgconv_chain_have_equal_gradients():
    train, _ = _train(seed=2)
    g = bipartite_adjacency(train)
    x = torch.randn(g.shape[0], 4, requires_grad=True)
    w = torch.randn(g.shape[0], 4)
    (LightGCNPropagation(2)(g, x) * w).sum().backward()
    ours, x.grad = x.grad.clone(), None
    (_lgconv_chain(x, 2, *pyg.edge_index(g)) * w).sum().backward()
    assert torch.allclose(ours, x.grad, atol=1e-6)


# -- (b) hand-off: orientation, copies, round trip -------------------------------------------------
def test_edge_index_orientation_is_source_col_target_row():
    g, dense = _directed_graph()
    ei, w = pyg.edge_index(g)
    # every edge (j -> i) carries A[i, j]; edge_index[0] = source j, edge_index[1] = target i
    assert torch.equal(dense[ei[1], ei[0]], w)
    assert int((dense != 0).sum()) == ei.shape[1]
    x = torch.randn(dense.shape[0], 5)
    for args in ((ei, w), (pyg.adj_t(g),)):
        assert torch.allclose(LGConv(normalize=False)(x, *args), dense @ x, atol=1e-6)
    # the other reading (row as source) propagates along A^T, which differs on this graph
    assert not torch.allclose(LGConv(normalize=False)(x, ei.flip(0), w), dense @ x, atol=1e-3)


@pytest.mark.parametrize("which", ["bipartite", "directed", "rectangular"])
def test_csr_edge_index_csr_round_trip_is_identical(which):
    train, m = _train(seed=3)
    g = {"bipartite": lambda: bipartite_adjacency(train), "directed": lambda: _directed_graph()[0],
         "rectangular": lambda: interaction_matrix(train, norm="sym")}[which]()
    ei, w = pyg.edge_index(g)
    assert pyg.pyg_size(g) == (g.shape[1], g.shape[0])
    back = pyg.from_edge_index(ei, w, g.shape)
    for part in ("crow_indices", "col_indices", "values"):
        assert torch.equal(getattr(back.adj, part)(), getattr(g.adj, part)()), part
    dense = g.to_dense()
    assert torch.equal(back.to_dense(), dense)
    if which == "rectangular":  # rows users (targets), columns items (sources)
        assert torch.equal(dense != 0, m)


def test_from_edge_index_sums_duplicates_and_names_bad_ids():
    ei = torch.tensor([[0, 2, 2, 1], [1, 0, 0, 2]])  # edge 2 -> 0 given twice
    g = pyg.from_edge_index(ei, torch.tensor([1.0, 2.0, 3.0, 4.0]), (3, 3))
    want = torch.zeros(3, 3)
    want[1, 0], want[0, 2], want[2, 1] = 1.0, 5.0, 4.0
    assert torch.equal(g.to_dense(), want)
    with pytest.raises(DataError, match=r"target \(edge_index\[1\]\) id 7 of edge 1"):
        pyg.from_edge_index(torch.tensor([[0, 1], [0, 7]]), None, (3, 3))


def test_hand_off_shares_memory_where_it_can():
    g = bipartite_adjacency(_train()[0])
    assert pyg.adj_t(g) is g.adj
    _, w = pyg.edge_index(g)
    assert w.data_ptr() == g.adj.values().data_ptr()


def test_edge_index_tensor_reuses_the_row_pointer():
    g, dense = _directed_graph()
    if not pyg.HAS_EDGE_INDEX:
        with pytest.raises(MissingExtraError, match="EdgeIndex"):
            pyg.to_edge_index_tensor(g)
        pytest.skip("this PyG has no torch_geometric.EdgeIndex")
    e = pyg.to_edge_index_tensor(g)
    e.validate()
    assert e.sparse_size() == (g.shape[1], g.shape[0]) and e.is_sorted_by_col
    assert e.get_indptr().data_ptr() == g.adj.crow_indices().data_ptr()
    x = torch.randn(dense.shape[0], 3)
    assert torch.allclose(LGConv(normalize=False)(x, e, pyg.edge_index(g)[1]), dense @ x, atol=1e-6)


def test_sparse_tensor_hand_off_or_a_clear_error():
    g, dense = _directed_graph()
    if not pyg.HAS_SPARSE_TENSOR:
        with pytest.raises(MissingExtraError, match="torch_sparse"):
            pyg.to_sparse_tensor(g)
        return
    st = pyg.to_sparse_tensor(g)
    assert st.storage.rowptr().data_ptr() == g.adj.crow_indices().data_ptr()
    x = torch.randn(dense.shape[0], 3)
    assert torch.allclose(LGConv(normalize=False)(x, st), dense @ x, atol=1e-6)


# -- (d) NGCF's layer == a dense transcription of its equations ------------------------------------
def _dense_ngcf_layer(L, E, conv):
    """NGCF Eq. 7: LeakyReLU((L + I) E W1 + b1 + ((L E) * E) W2 + b2), slope 0.2."""
    W1, b1, W2, b2 = conv.lin1.weight.T, conv.lin1.bias, conv.lin2.weight.T, conv.lin2.bias
    eye = torch.eye(L.shape[0])
    pre = (L + eye) @ E @ W1 + b1 + ((L @ E) * E) @ W2 + b2
    return torch.where(pre > 0, pre, 0.2 * pre)


def test_ngcf_layer_equals_dense_equations():
    train, _ = _train(seed=4)
    g = bipartite_adjacency(train)
    L = g.to_dense()
    torch.manual_seed(0)
    conv = NGCFConv(6, 5)
    torch.nn.init.normal_(conv.lin1.bias)
    torch.nn.init.normal_(conv.lin2.bias)
    E = torch.randn(L.shape[0], 6)
    want = _dense_ngcf_layer(L, E, conv)
    assert (want < 0).any() and (want > 0).any()  # both branches of LeakyReLU are exercised
    for args in (pyg.edge_index(g), (pyg.adj_t(g),)):
        assert torch.allclose(conv(E, *args), want, atol=1e-5)


def test_ngcf_propagate_equals_dense_readout():
    train, m = _train(seed=5)
    g = bipartite_adjacency(train)
    ctx = ModelContext(m.shape[0], m.shape[1], train, graphs={"ui": g})
    model = get_model("ngcf")(ctx, embedding_dim=6, hidden_dims=[5, 4]).eval()  # eval: no dropout
    L, E = g.to_dense(), model.embedding.weight.detach()
    parts, h = [E], E
    for conv in model.convs:
        h = _dense_ngcf_layer(L, h, conv)
        parts.append(F.normalize(h, dim=1))
    want = torch.cat(parts, 1)  # Eq. 9: e* = e(0) || e(1) || e(2) (layers L2-normalised)
    reps = model.propagate()
    assert reps.user.shape == (m.shape[0], 15)
    assert torch.allclose(torch.cat([reps.user, reps.item]).detach(), want, atol=1e-5)
    users = torch.tensor([0, 3])
    assert torch.allclose(model.score(users, reps), want[users] @ want[m.shape[0]:].T, atol=1e-5)


def test_node_dropout_keeps_structure_and_rescales():
    g = bipartite_adjacency(_train()[0])
    d = node_dropout(g.adj, 0.5, torch.Generator().manual_seed(0))
    v, v0 = d.values(), g.adj.values()
    assert torch.equal(d.crow_indices(), g.adj.crow_indices())
    kept = v != 0
    assert 0 < int(kept.sum()) < v.numel()
    assert torch.allclose(v[kept], 2 * v0[kept])


# -- (c) NGCF trains under graphrec's trainer ------------------------------------------------------
def _run(model, tmp_path, epochs, dataset="synthetic", overrides=None):
    ov = overrides or {"data": {"dataset_args": dict(TINY)}}
    ov = {**ov, "train": {"batch_size": 256, "patience": -1}}
    return graphrec.experiment.run(model=model, dataset=dataset, overrides=ov, epochs=epochs, seed=0,
                                   out=str(tmp_path / model), quiet=True)


def _losses(run_dir):
    with open(os.path.join(run_dir, "epochs.jsonl")) as f:
        return [json.loads(line)["loss"] for line in f if line.strip()]


def test_ngcf_trains_under_the_trainer_and_beats_popularity(tmp_path):
    pop = _run("pop", tmp_path, 1)
    ngcf = _run("ngcf", tmp_path, 10)
    # random ranking finds 20/80 = 0.25 of held-out items at 20; popularity ~0.47 on this data;
    # one NGCF epoch ~0.40: the margin needs the collaborative signal that training learns
    assert ngcf["valid"]["recall@20"] > pop["valid"]["recall@20"] + 0.05
    assert ngcf["test"]["recall@20"] > pop["test"]["recall@20"]
    losses = _losses(ngcf["run_dir"])
    assert len(losses) == 10 and losses[-1] < 0.8 * losses[0]


# -- HeteroData as a dataset -----------------------------------------------------------------------
def _hetero(n_users=150, n_items=80, n_edges=3000, seed=0):
    from graphrec.datasets.synthetic import generate

    ds = generate(n_users, n_items, n_edges, n_clusters=6, dims={"image": 8}, seed=seed)
    inter = ds.interactions
    key = torch.unique(inter.user * n_items + inter.item)  # distinct pairs, as a graph holds them
    data = HeteroData()
    data["user"].node_id = torch.arange(n_users) + 1000  # original ids
    data["item"].x = ds.features["image"]
    data["user", "buys", "item"].edge_index = torch.stack([key // n_items, key % n_items])
    data["user", "buys", "item"].time = torch.arange(key.numel(), dtype=torch.float64)
    data["item", "rev_buys", "user"].edge_index = data["user", "buys", "item"].edge_index.flip(0)
    return data


def test_heterodata_loads_as_a_dataset():
    data = _hetero()
    ds = from_heterodata(data)
    ei = data["user", "buys", "item"].edge_index
    assert torch.equal(ds.interactions.user, ei[0]) and torch.equal(ds.interactions.item, ei[1])
    assert torch.equal(ds.interactions.timestamp, data["user", "buys", "item"].time)
    assert ds.n_users == 150 and ds.n_items == 80
    assert ds.interactions.user_map.to_original(torch.tensor([0, 7])).tolist() == [1000, 1007]
    assert ds.interactions.item_map.to_original(torch.tensor([5])).tolist() == [5]
    assert torch.equal(ds.features["x"], data["item"].x)
    named = from_heterodata(data, edge="buys", modality="image")
    assert named.features.modalities == ["image"]


def test_lightgcn_trains_on_a_heterodata_dataset(tmp_path):
    ds = from_heterodata(_hetero())
    pop = _run("pop", tmp_path, 1, dataset=ds, overrides={})
    res = _run("lightgcn", tmp_path, 8, dataset=ds, overrides={"train": {"lr": 0.01}})
    assert res["dataset"] == "heterodata" and res["n_users"] == 150 and res["n_items"] == 80
    assert res["split"]["train"] + res["split"]["valid"] + res["split"]["test"] == len(ds.interactions)
    losses = _losses(res["run_dir"])
    assert all(b < a for a, b in zip(losses, losses[1:]))  # it trains: BPR falls every epoch
    # the graph carries the planted clusters: ~0.86 against popularity's ~0.34 (random: 0.25)
    assert res["valid"]["recall@20"] > pop["valid"]["recall@20"] + 0.2


def _bad(kind):
    data = _hetero(30, 20, 300)
    if kind == "node type":
        return data, {"item": "product"}, r"no node type 'product'"
    if kind == "two edge types":
        data["user", "views", "item"].edge_index = data["user", "buys", "item"].edge_index.clone()
        return data, {}, r"2 candidate edge types from 'user' to 'item'"
    if kind == "edge id":
        data["item"].num_nodes = 20
        ei = data["user", "buys", "item"].edge_index
        ei[1, 5] = 20
        return data, {}, r"item id 20 of edge 5 \(row 1\) is outside \[0, 20\)"
    if kind == "non-finite x":
        data["item"].x[3, 0] = float("nan")
        return data, {}, r"HeteroData\['item'\]\.x: modality 'x' has NaN/inf in 1 row.*item indices \[3\]"
    if kind == "edge type":
        return data, {"edge": "likes"}, r"no edge type \('user', 'likes', 'item'\)"
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["node type", "two edge types", "edge id", "non-finite x", "edge type"])
def test_bad_heterodata_gets_a_one_line_error(kind):
    data, kwargs, msg = _bad(kind)
    with pytest.raises(DataError, match=msg) as e:
        from_heterodata(data, **kwargs)
    assert "\n" not in str(e.value)


# -- the example a new user copies -----------------------------------------------------------------
def test_pyg_example_runs(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # its run directory goes under ./runs here
    runpy.run_path(os.path.join(ROOT, "examples", "pyg_model.py"), run_name="__main__")
    out = capsys.readouterr().out
    assert "test recall@20" in out
