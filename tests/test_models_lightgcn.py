"""LightGCN equals PyG's reference model for the same weights; propagation equals dense math."""
import pytest
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.graphs import bipartite_adjacency
from graphrec.errors import ConfigError
from graphrec.models import ModelContext, get_model, list_models
from graphrec.nn.propagation import LightGCNPropagation


def _train(n_users=12, n_items=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n_users, n_items, generator=g) < 0.3
    m[0, 0] = True
    m[-1, :] = False  # an isolated user: zero row, no NaN
    u, i = m.nonzero(as_tuple=True)
    return Interactions(u, i, IdMap(list(range(n_users))), IdMap(list(range(n_items)))), m


def test_lightgcn_matches_pyg_reference():
    from torch_geometric.nn.models import LightGCN as PygLightGCN

    train, m = _train()
    U, I = m.shape
    ctx = ModelContext(U, I, train, graphs={"ui": bipartite_adjacency(train)})
    ours = get_model("lightgcn")(ctx, embedding_dim=8, n_layers=3)
    ref = PygLightGCN(U + I, embedding_dim=8, num_layers=3)
    ref.embedding.weight.data.copy_(ours.embedding.weight.data)
    u, i = m.nonzero(as_tuple=True)
    ei = torch.stack([torch.cat([u, i + U]), torch.cat([i + U, u])])
    expect = ref.get_embedding(ei)
    reps = ours.propagate()
    assert torch.allclose(torch.cat([reps.user, reps.item]), expect, atol=1e-6)
    assert torch.isfinite(reps.user).all()


def test_propagation_readouts_equal_dense_formula():
    train, m = _train()
    U, I = m.shape
    A = torch.zeros(U + I, U + I)
    A[:U, U:] = m.float()
    A[U:, :U] = m.float().T
    d = A.sum(1)
    dinv = torch.where(d > 0, d.pow(-0.5), torch.zeros_like(d))
    Ahat = dinv[:, None] * A * dinv[None, :]
    x = torch.randn(U + I, 5)
    g = bipartite_adjacency(train)
    layers = [x]
    for _ in range(2):
        layers.append(Ahat @ layers[-1])
    assert torch.allclose(LightGCNPropagation(2, "mean")(g, x), sum(layers) / 3, atol=1e-5)
    assert torch.allclose(LightGCNPropagation(2, "sum")(g, x), sum(layers), atol=1e-5)
    assert torch.allclose(LightGCNPropagation(2, "last")(g, x), layers[-1], atol=1e-5)


def test_propagation_gradient_equals_dense_autograd():
    train, m = _train()
    g = bipartite_adjacency(train)
    dense = g.adj.to_dense()
    x = torch.randn(dense.shape[0], 4, requires_grad=True)
    w = torch.randn(dense.shape[0], 4)
    (LightGCNPropagation(2)(g, x) * w).sum().backward()
    gx = x.grad.clone()
    x.grad = None
    ((x + dense @ x + dense @ (dense @ x)) / 3 * w).sum().backward()
    assert torch.allclose(gx, x.grad, atol=1e-5)


def test_unknown_model_lists_known():
    with pytest.raises(ConfigError, match="lightgcn"):
        get_model("lightgnc")


def test_models_register_themselves_without_a_central_list():
    # every module of graphrec.models that defines a model is found by discovery
    import pkgutil

    import graphrec.models as pkg
    names = list_models()
    for cls_name in ("lightgcn", "mf", "freedom", "mixgcf", "sand-a", "vbpr+sand", "pop"):
        assert cls_name in names
    modules = {i.name for i in pkgutil.iter_modules(pkg.__path__)} - {"base"}
    found = {get_model(n).__module__.rsplit(".", 1)[1] for n in names}
    assert {m for m in modules if not m.startswith("_")} <= found
