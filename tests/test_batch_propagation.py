"""Batch-local LightGCN readout equals whole-graph propagation, in value and gradient, for any
depth, readout and graph (symmetric or not); LightGCN's batch-local training step equals its
whole-graph step."""
import pytest
import torch

from graph_fixtures import random_interactions
from graphrec.graphs import bipartite_adjacency
from graphrec.graphs.sparse import SparseGraph
from graphrec.models import ModelContext, get_model
from graphrec.nn.batch_propagation import batch_readout
from graphrec.nn.propagation import LightGCNPropagation


def _directed_graph(n=25, seed=3):
    g = torch.Generator().manual_seed(seed)
    dense = (torch.rand(n, n, generator=g) < 0.15).float() * torch.rand(n, n, generator=g)
    dense[4] = 0  # a row with no entries
    return SparseGraph(dense.to_sparse_csr(), {"symmetric": False}), dense


@pytest.mark.parametrize("layers", [1, 2, 3])
@pytest.mark.parametrize("readout", ["mean", "sum"])
@pytest.mark.parametrize("kind", ["bipartite", "directed"])
def test_batch_readout_equals_full_propagation(layers, readout, kind):
    if kind == "bipartite":
        graph = bipartite_adjacency(random_interactions())
        dense = graph.adj.to_dense()
    else:
        graph, dense = _directed_graph()
    n = graph.shape[0]
    g = torch.Generator().manual_seed(layers)
    rows = torch.randperm(n, generator=g)[: n // 3]  # distinct, unsorted
    x = torch.randn(n, 6, dtype=torch.float32, requires_grad=True)
    w = torch.randn(rows.numel(), 6, generator=g)
    # oracle: dense powers of the matrix
    acc, h = x, x
    for _ in range(layers):
        h = dense @ h
        acc = acc + h
    want = acc / (layers + 1) if readout == "mean" else acc
    (gw,) = torch.autograd.grad((want[rows] * w).sum(), x)
    full = LightGCNPropagation(layers, readout)(graph, x)[rows]
    got = batch_readout(graph, x, rows, layers, readout)
    torch.testing.assert_close(got, want[rows])
    torch.testing.assert_close(got, full)
    (gb,) = torch.autograd.grad((got * w).sum(), x)
    torch.testing.assert_close(gb, gw)


@pytest.mark.parametrize("layers", [2, 3])
def test_two_readouts_of_one_graph_before_one_backward(layers):
    """Both readouts run their forward (through the graph's scratch table) before either backward
    (through the same table): values and the summed gradient still equal the dense oracle, and a
    second step with the same table gives the same gradient again."""
    graph = bipartite_adjacency(random_interactions())
    dense = graph.adj.to_dense()
    n = graph.shape[0]
    g = torch.Generator().manual_seed(5)
    x = torch.randn(n, 64, requires_grad=True)
    rows_a, rows_b = torch.randperm(n, generator=g)[:20], torch.randperm(n, generator=g)[:30]
    w_a, w_b = torch.randn(20, 64, generator=g), torch.randn(30, 64, generator=g)
    acc, h = x, x
    for _ in range(layers):
        h = dense @ h
        acc = acc + h
    want = acc / (layers + 1)
    (gw,) = torch.autograd.grad((want[rows_a] * w_a).sum() + (want[rows_b] * w_b).sum(), x)
    for _ in range(2):
        a = batch_readout(graph, x, rows_a, layers)
        b = batch_readout(graph, x, rows_b, layers)
        torch.testing.assert_close(a, want[rows_a].detach())
        torch.testing.assert_close(b, want[rows_b].detach())
        (gb,) = torch.autograd.grad((a * w_a).sum() + (b * w_b).sum(), x)
        torch.testing.assert_close(gb, gw)


def test_batch_readout_rejects_last_readout():
    graph = bipartite_adjacency(random_interactions())
    with pytest.raises(ValueError, match="readout"):
        batch_readout(graph, torch.randn(graph.shape[0], 2), torch.arange(3), 2, "last")


def test_lightgcn_batch_local_step_equals_whole_graph_step():
    train = random_interactions()
    ctx = ModelContext(train.n_users, train.n_items, train, graphs={"ui": bipartite_adjacency(train)})
    model = get_model("lightgcn")(ctx, embedding_dim=8, n_layers=2)
    g = torch.Generator().manual_seed(0)
    idx = torch.randint(0, len(train), (32,), generator=g)
    batch = {"user": train.user[idx], "pos": train.item[idx], "neg": torch.randint(0, train.n_items, (32,), generator=g)}
    grads = {}
    for local in (True, False):
        model.batch_local = local
        model.zero_grad()
        reps = model.train_forward(batch)
        assert (reps.user_ids is not None) == local
        terms = model.loss(batch, reps)
        sum(terms.values()).backward()
        grads[local] = (terms, model.embedding.weight.grad.clone())
    for k in grads[True][0]:
        torch.testing.assert_close(grads[True][0][k], grads[False][0][k])
    torch.testing.assert_close(grads[True][1], grads[False][1])


@pytest.mark.parametrize("name", ["freedom", "freedom+sand"])
def test_freedom_batch_local_step_equals_whole_graph_step(name):
    from test_models_mm import batch_of, make, tiny
    train, feats = tiny()
    model, _ = make(name, train, feats, reg_weight=1e-3)
    model.train()
    model.pre_epoch(0, torch.Generator().manual_seed(0))
    b = batch_of(train)
    got = {}
    for local in (True, False):
        model.batch_local = local
        model.zero_grad()
        torch.manual_seed(7)  # the same CLUB sample in freedom+sand
        terms = model.loss(b, model.train_forward(b))
        sum(terms.values()).backward()
        got[local] = (terms, {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None})
    for k in got[True][0]:
        torch.testing.assert_close(got[True][0][k], got[False][0][k])
    assert got[True][1].keys() == got[False][1].keys() and "item_emb" in got[True][1]
    for k in got[True][1]:
        torch.testing.assert_close(got[True][1][k], got[False][1][k])
