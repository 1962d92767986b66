"""Per-layer chosen rows (`graphrec.nn.layerwise_rows`) equal dense propagation in value and in
gradient (Horner backward against autograd through dense products), for 0-3 layers, directed and
symmetric graphs, repeated ids, unused layers and a choice that reads the tables; the layer tables
are scratch tables that the next call reuses."""
import pytest
import torch

from graph_fixtures import random_interactions
from graphrec.graphs import bipartite_adjacency
from graphrec.graphs.sparse import SparseGraph
from graphrec.nn.layerwise_rows import layerwise_rows


def _graphs():
    g = torch.Generator().manual_seed(5)
    dense = (torch.rand(40, 40, generator=g) < 0.12).float() * torch.rand(40, 40, generator=g)
    dense[6] = 0
    directed = SparseGraph(dense.to_sparse_csr(), {"symmetric": False})
    sym = bipartite_adjacency(random_interactions())
    return {"directed": (directed, dense), "bipartite": (sym, sym.adj.to_dense())}


@pytest.mark.parametrize("layers", [0, 1, 2, 3])
@pytest.mark.parametrize("kind", ["directed", "bipartite"])
def test_layerwise_rows_equal_dense_propagation_and_its_gradient(layers, kind):
    graph, dense = _graphs()[kind]
    n = dense.shape[0]
    g = torch.Generator().manual_seed(layers)
    x = torch.randn(n, 6, generator=g, requires_grad=True)
    q = torch.randn(6, generator=g)
    seen = []

    def pick(tables):
        seen.append([t.clone() for t in tables])
        # a choice that depends on the tables (the best-scoring rows), with repeats, and layer 1 unused
        top = torch.stack([t @ q for t in tables]).topk(5, dim=1).indices
        return [torch.cat([r, r[:2], torch.tensor([0, n - 1])]) for r in top]

    rows = layerwise_rows(graph, x, layers, pick)
    weights = [torch.randn(r.shape, generator=g) for r in rows]
    loss = sum((w * r).sum() for l, (w, r) in enumerate(zip(weights, rows)) if l != 1)
    gx, = torch.autograd.grad(loss, x)

    ref_tables = [x]
    for _ in range(layers):
        ref_tables.append(dense @ ref_tables[-1])
    for got, want in zip(seen[0], ref_tables):
        torch.testing.assert_close(got, want.detach(), rtol=1e-5, atol=1e-6)
    top = torch.stack([t.detach() @ q for t in ref_tables]).topk(5, dim=1).indices
    ids = [torch.cat([r, r[:2], torch.tensor([0, n - 1])]) for r in top]
    ref_rows = [t[i] for t, i in zip(ref_tables, ids)]
    for got, want in zip(rows, ref_rows):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    ref_loss = sum((w * r).sum() for l, (w, r) in enumerate(zip(weights, ref_rows)) if l != 1)
    ref_gx, = torch.autograd.grad(ref_loss, x)
    torch.testing.assert_close(gx, ref_gx, rtol=1e-5, atol=1e-5)


def test_layerwise_rows_reuse_the_graphs_scratch_tables():
    graph, _ = _graphs()["bipartite"]
    x = torch.randn(graph.shape[0], 4, requires_grad=True)
    ptrs = []

    def pick(tables):
        ptrs.append([t.data_ptr() for t in tables[1:]])
        return [torch.arange(3)] * len(tables)

    for _ in range(2):
        sum(r.sum() for r in layerwise_rows(graph, x, 2, pick)).backward()
    assert ptrs[0] == ptrs[1] and len(set(ptrs[0])) == 2
    with pytest.raises(ValueError, match="2 id tensors for 3 layers"):
        layerwise_rows(graph, x, 2, lambda tables: [torch.arange(3)] * 2)
