"""Approximate kNN graphs (FAISS IVF and HNSW behind ``knn_graph(index=...)``): on clustered features
they find nearly all exact neighbours, the recall they record is the recall a brute-force oracle
measures, ``auto`` stays exact below the size threshold, and the choice reaches a model's graphs
through ``data.knn_index`` and the cache key."""
import pytest
import torch
import torch.nn.functional as F

from graphrec.graphs import knn as knn_mod
from graphrec.graphs.knn import knn_graph

pytest.importorskip("faiss")


def _clustered(n=3000, d=32, clusters=60, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(clusters, d, generator=g) * 3
    return centres[torch.randint(0, clusters, (n,), generator=g)] + torch.randn(n, d, generator=g)


def _neighbours(graph, n, k):
    return graph.adj.col_indices().reshape(n, k)


def _true_recall(x, approx, k):
    xn = F.normalize(x, dim=1)
    exact = torch.topk(xn @ xn.T, k, dim=1).indices
    return float((approx.unsqueeze(2) == exact.unsqueeze(1)).any(2).sum()) / approx.numel()


@pytest.mark.parametrize("index", ["ivf", "hnsw"])
def test_an_approximate_index_finds_the_exact_neighbours_and_says_how_many(index):
    x, k = _clustered(), 10
    g = knn_graph(x, k=k, index=index, recall_rows=3000)  # every row: the recorded recall is the true one
    true = _true_recall(x, _neighbours(g, 3000, k), k)
    assert g.meta["params"]["index"] == index and true >= 0.9
    assert abs(g.meta["recall"] - true) < 1e-9
    sampled = knn_graph(x, k=k, index=index, recall_rows=300).meta["recall"]
    assert abs(sampled - true) < 0.05  # a 300-row estimate of the same figure
    assert g.nnz == 3000 * k and g.meta["hash"] != knn_graph(x, k=k, index="exact").meta["hash"]


def test_a_poor_index_reports_a_poor_recall():
    x = torch.randn(3000, 32, generator=torch.Generator().manual_seed(1))  # no structure: IVF struggles
    g = knn_graph(x, k=10, index="ivf", nlist=64, nprobe=1, recall_rows=3000)
    true = _true_recall(x, _neighbours(g, 3000, 10), 10)
    assert true < 0.6 and abs(g.meta["recall"] - true) < 1e-9


def test_auto_is_exact_below_the_threshold_and_ivf_above(monkeypatch):
    x = _clustered(n=500)
    exact = knn_graph(x, k=5, index="exact")
    assert knn_graph(x, k=5).meta["params"]["index"] == "exact"
    assert torch.equal(knn_graph(x, k=5).adj.col_indices(), exact.adj.col_indices())
    monkeypatch.setattr(knn_mod, "EXACT_MAX_ITEMS", 100)
    assert knn_graph(x, k=5).meta["params"]["index"] == "ivf"
    with pytest.raises(ValueError, match="unknown index 'flat'"):
        knn_graph(x, k=5, index="flat")


def test_data_knn_index_reaches_a_models_graphs(tmp_path):
    from graphrec.config import load_config
    from graphrec.experiment import prepare
    ds = {"n_users": 150, "n_items": 200, "n_interactions": 3000, "seed": 3}
    graphs = {}
    for index in ("exact", "hnsw"):
        cfg = load_config(model="freedom", dataset="synthetic", overrides={
            "data": {"dataset_args": ds, "knn_index": index, "cache_dir": str(tmp_path)}})
        graphs[index] = prepare(cfg).graph_meta
    knn = [name for name, m in graphs["hnsw"].items() if m["kind"] == "knn_mix"]
    assert knn and graphs["hnsw"][knn[0]]["params"]["index"] == "hnsw"
    assert 0 < graphs["hnsw"][knn[0]]["recall"] <= 1 and "recall" not in graphs["exact"][knn[0]]
    assert graphs["hnsw"][knn[0]]["hash"] != graphs["exact"][knn[0]]["hash"]  # not one cache entry


def test_data_knn_nprobe_reaches_the_ivf_search_and_the_cache_key(tmp_path):
    from graphrec.config import load_config
    from graphrec.experiment import prepare
    ds = {"n_users": 150, "n_items": 400, "n_interactions": 4000, "seed": 4}
    metas = {}
    for nprobe in (1, 3):
        cfg = load_config(model="freedom", dataset="synthetic", overrides={
            "data": {"dataset_args": ds, "knn_index": "ivf", "knn_nprobe": nprobe, "cache_dir": str(tmp_path)}})
        meta = prepare(cfg).graph_meta
        metas[nprobe] = next(m for m in meta.values() if m["kind"] == "knn_mix")
    assert metas[1]["params"]["nprobe"] == 1 and metas[3]["params"]["nprobe"] == 3
    assert metas[1]["hash"] != metas[3]["hash"]  # each its own cache entry
