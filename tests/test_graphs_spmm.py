"""spmm on CSR: values equal the dense product; gradients w.r.t. the dense operand are A^T g."""
from __future__ import annotations

import torch

import graphrec.graphs as G
from graph_fixtures import random_interactions


def test_spmm_forward_and_gradient_on_csr():
    train = random_interactions(seed=8)
    g = G.bipartite_adjacency(train)
    mix = G.knn_graph(torch.randn(train.n_items, 6), k=3)  # not symmetric: tests the transpose
    for graph in (g, mix):
        A = graph.to_dense()
        x = torch.randn(graph.shape[1], 4, requires_grad=True)
        w = torch.randn(graph.shape[0], 4)
        y = G.spmm(graph, x)
        assert torch.allclose(y, A @ x, atol=1e-5)
        (y * w).sum().backward()
        assert torch.allclose(x.grad, A.T @ w, atol=1e-5)
        assert torch.allclose(G.spmm(graph.coo(), x.detach()), y.detach(), atol=1e-6)
    # float64 gradcheck of the same operation through the COO view (CSR autograd shares the kernel)
    A64 = g.coo().double()
    x64 = torch.randn(g.shape[1], 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda t: torch.sparse.mm(A64, t), (x64,))


def test_graph_to_and_degree():
    g = G.bipartite_adjacency(random_interactions(seed=9))
    assert g.to("cpu") is g
    assert torch.allclose(g.degree(weighted=True), g.to_dense().sum(1))
    s = g.summary()
    assert s["nnz"] == g.nnz and s["degree_min"] == 0.0
