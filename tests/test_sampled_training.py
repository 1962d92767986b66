"""Sampled-subgraph training (``train.sampler: neighbor``): the sampled LightGCN layer is exact when
every neighbour is sampled and unbiased when few are (against whole-graph propagation), and so is
FREEDOM's sampled step with its kNN rows read through sparse lookups; PyG's
LinkNeighborLoader batches train LightGCN to nearly the exact path's accuracy on planted data;
configurations that cannot work are one-line errors. Tests that sample need pyg-lib or
torch_sparse (the 'ext' extra) and skip without them."""
import pytest
import torch

from graphrec.config import load_config
from graphrec.errors import ConfigError, MissingExtraError
from graphrec.experiment import prepare, sampler
from graphrec.train import link_neighbor

TINY = {"n_users": 120, "n_items": 80, "n_interactions": 2400, "seed": 5}
needs_sampler = pytest.mark.skipif(not link_neighbor.available(), reason="needs pyg-lib or torch_sparse (ext extra)")


def _lightgcn(**train):
    cfg = load_config(model="lightgcn", dataset="synthetic", overrides={
        "data": {"dataset_args": TINY}, "model_params": {"n_layers": 2}, "train": {"batch_size": 64, **train}})
    return prepare(cfg)


def _subgraph(p, keep=None, seed=0):
    """All (or ``keep`` random) neighbours of every node, as local-index edges over all nodes."""
    g = torch.Generator().manual_seed(seed)
    tr = p.split.train
    keys = torch.unique(tr.user * tr.n_items + tr.item)
    u, i = keys // tr.n_items, keys % tr.n_items
    if keep is not None:  # per destination, keep a random subset of its in-edges
        def pick(dst, n_dst):
            score = torch.rand(dst.numel(), generator=g)
            order = torch.argsort(dst * 2.0 + score)
            rank = torch.arange(dst.numel()) - torch.searchsorted(dst[order], dst[order])
            out = torch.zeros(dst.numel(), dtype=torch.bool)
            out[order[rank < keep]] = True
            return out
        ui_keep, iu_keep = pick(i, tr.n_items), pick(u, tr.n_users)
    else:
        ui_keep = iu_keep = torch.ones(u.numel(), dtype=torch.bool)
    return torch.stack([u[ui_keep], i[ui_keep]]), torch.stack([i[iu_keep], u[iu_keep]])


def test_every_neighbour_sampled_is_the_exact_propagation():
    p = _lightgcn()
    m = p.model
    ui, iu = _subgraph(p)
    users, items = torch.arange(m.n_users), torch.arange(m.n_items)
    reps = m._sampled_forward({"sub_users": users, "sub_items": items, "sub_ui": ui, "sub_iu": iu})
    exact = m.propagate()
    assert torch.allclose(reps.user, exact.user, atol=1e-6) and torch.allclose(reps.item, exact.item, atol=1e-6)


def _freedom(**train):
    cfg = load_config(model="freedom", dataset="synthetic", overrides={
        "data": {"dataset_args": TINY}, "model_params": {"dropout": 0.0, "n_mm_layers": 2, "reg_weight": 1e-3},
        "train": {"batch_size": 64, **train}})
    return prepare(cfg)


def test_item_graph_rows_read_through_a_lookup_equal_the_full_product():
    from graphrec.nn.item_graph import ItemGraphPropagation
    g = torch.Generator().manual_seed(0)
    n, k = 50, 4
    cols = torch.randint(0, n, (n, k), generator=g)
    s = torch.sparse_coo_tensor(torch.stack([torch.arange(n).repeat_interleave(k), cols.flatten()]),
                                torch.rand(n * k, generator=g), (n, n)).coalesce().to_sparse_csr()
    x = torch.randn(n, 8, generator=g)
    rows = torch.tensor([3, 7, 7, 41, 0])
    for hops in (0, 1, 2, 3):
        prop = ItemGraphPropagation(s, hops)
        read_ids = []
        got = prop.sampled_rows(lambda ids: read_ids.append(ids) or x[ids], rows)
        assert torch.allclose(got, prop(x)[rows], atol=1e-5), hops
        reached = torch.unique(torch.cat(read_ids))  # only the rows' hops-neighbourhood is read
        frontier = rows
        for _ in range(hops):
            frontier = torch.unique(s.to_dense()[frontier].nonzero()[:, 1])
        assert torch.equal(reached, torch.unique(frontier))


def test_freedom_sampled_step_with_every_neighbour_is_the_exact_step():
    """Same scores and the same gradients as FREEDOM's exact (unpruned) step, the gradients of the
    ID tables sparse: the optimiser then touches only the rows the step read."""
    p = _freedom()
    m = p.model
    ui, iu = _subgraph(p)
    g = torch.Generator().manual_seed(1)
    batch = {"user": torch.randint(0, m.n_users, (32,), generator=g),
             "pos": torch.randint(0, m.n_items, (32,), generator=g),
             "neg": torch.randint(0, m.n_items, (32,), generator=g)}
    full = {**batch, "sub_users": torch.arange(m.n_users), "sub_items": torch.arange(m.n_items),
            "sub_ui": ui, "sub_iu": iu}
    m.train()
    grads = []
    for b in (batch, full):
        m.zero_grad()
        loss = sum(m.loss(b, m.train_forward(b)).values())
        loss.backward()
        grads.append({n: (q.grad.to_dense() if q.grad.is_sparse else q.grad).clone()
                      for n, q in m.named_parameters() if q.grad is not None})
    assert m.user_emb.grad.is_sparse and m.item_emb.grad.is_sparse
    assert grads[0].keys() == grads[1].keys() and {"user_emb", "item_emb"} <= grads[0].keys()
    for name in grads[0]:
        assert torch.allclose(grads[0][name], grads[1][name], atol=1e-6), name


def test_few_neighbours_sampled_are_unbiased():
    p = _lightgcn()
    m = p.model
    users, items = torch.arange(m.n_users), torch.arange(m.n_items)
    deg = m.graph.adj.crow_indices().diff()
    assert float(deg[m.n_users:].float().median()) > 10  # 3 of them sampled: a real subsample
    m.prop.num_layers = 1  # one layer: the estimate of each row averages to the exact row
    with torch.no_grad():
        exact = m.propagate().item
        acc = torch.zeros_like(exact)
        draws = 300
        for s in range(draws):
            ui, iu = _subgraph(p, keep=3, seed=s)
            acc += m._sampled_forward({"sub_users": users, "sub_items": items, "sub_ui": ui, "sub_iu": iu}).item
    err = (acc / draws - exact).norm(dim=1) / exact.norm(dim=1)
    # sampling noise only; the subgraph's own normalisation (no d/s correction) is off by ~(1 - 3/d)/2
    assert float(err.median()) < 0.05


@needs_sampler
def test_link_neighbor_batches_cover_the_pairs_and_carry_their_subgraph():
    p = _lightgcn(sampler="neighbor", num_neighbors=[5, 5])
    s = sampler(p)
    seen = 0
    for b in s.epoch(torch.Generator().manual_seed(0)):
        seen += b["user"].numel()
        for key in ("user", "pos", "neg"):  # the seeds are nodes of their subgraph
            nodes = b["sub_users"] if key == "user" else b["sub_items"]
            assert torch.isin(b[key], nodes).all()
        assert int(b["sub_ui"][0].max()) < b["sub_users"].numel() and int(b["sub_ui"][1].max()) < b["sub_items"].numel()
    tr = p.split.train
    assert seen == torch.unique(tr.user * tr.n_items + tr.item).numel() and len(s) * 64 >= seen


@needs_sampler
def test_sampled_training_nearly_reaches_exact_training(tmp_path):
    from graphrec.experiment import run
    common = {"data": {"dataset_args": {"n_users": 400, "n_items": 200, "n_interactions": 9000, "seed": 2}},
              "model_params": {"n_layers": 2}, "train": {"batch_size": 256, "lr": 0.01, "progress": False},
              "threads": 1}
    exact = run(model="lightgcn", dataset="synthetic", overrides=common, epochs=8, seed=0, quiet=True,
                out=str(tmp_path / "exact"))
    ov = {**common, "train": {**common["train"], "sampler": "neighbor", "num_neighbors": [10, 10]}}
    sampled = run(model="lightgcn", dataset="synthetic", overrides=ov, epochs=8, seed=0, quiet=True,
                  out=str(tmp_path / "sampled"))
    assert sampled["test"]["recall@20"] > 0.85 * exact["test"]["recall@20"]


def test_configurations_that_cannot_work_are_refused(monkeypatch):
    monkeypatch.setattr(link_neighbor, "available", lambda: False)
    with pytest.raises(MissingExtraError, match="pyg-lib or torch_sparse"):
        sampler(_lightgcn(sampler="neighbor"))
    monkeypatch.setattr(link_neighbor, "available", lambda: True)
    with pytest.raises(ConfigError, match=r"train.num_neighbors=\[5\] gives 1 hop\(s\); model 'lightgcn' propagates 2"):
        sampler(_lightgcn(sampler="neighbor", num_neighbors=[5]))
    cfg = load_config(model="mf", dataset="synthetic", overrides={"data": {"dataset_args": TINY},
                                                                  "train": {"sampler": "neighbor"}})
    with pytest.raises(ConfigError, match="model 'mf' does not train on sampled subgraphs"):
        sampler(prepare(cfg))


@needs_sampler
def test_a_sampled_step_updates_only_its_subgraphs_rows(tmp_path):
    """Rows outside the batch's subgraph keep their weights (lazy Adam): a step costs its
    subgraph, not the table (`graphrec.train.row_sparse`)."""
    from graphrec.experiment import evaluators, trainer_for
    p = _lightgcn(sampler="neighbor", num_neighbors=[2, 2], batch_size=8, progress=False)
    tr = trainer_for(p, evaluators(p)[0], str(tmp_path))
    batch = next(iter(tr.sampler.epoch(torch.Generator().manual_seed(0))))
    before = p.model.embedding.weight.detach().clone()
    tr.step(batch)
    moved = (p.model.embedding.weight.detach() != before).any(1).nonzero().flatten()
    read = torch.cat([batch["sub_users"], p.model.n_users + batch["sub_items"]])
    assert moved.numel() > 0 and torch.isin(moved, read).all()
    assert read.numel() < before.shape[0] / 2  # a real subset of the table


@needs_sampler
def test_a_sampled_freedom_step_updates_only_the_rows_it_read(tmp_path):
    from graphrec.experiment import evaluators, trainer_for
    p = _freedom(sampler="neighbor", num_neighbors=[2, 2], batch_size=8, progress=False)
    m = p.model
    m.mm.num_layers = 1
    tr = trainer_for(p, evaluators(p)[0], str(tmp_path))
    batch = next(iter(tr.sampler.epoch(torch.Generator().manual_seed(0))))
    before = m.item_emb.detach().clone()
    tr.step(batch)
    moved = (m.item_emb.detach() != before).any(1).nonzero().flatten()
    scored = torch.unique(torch.cat([batch["pos"], batch["neg"]]))
    knn = m.mm.s.to_dense()[scored].nonzero()[:, 1]
    read = torch.unique(torch.cat([batch["sub_items"], knn]))
    assert moved.numel() > 0 and torch.isin(moved, read).all() and read.numel() < m.n_items


@needs_sampler
def test_rank_shares_split_each_global_batch_of_seeds():
    p = _lightgcn(sampler="neighbor", num_neighbors=[3, 3])
    s = sampler(p)
    def pairs(rank, size):
        torch.manual_seed(0)
        return [(w, torch.stack([b["user"], b["pos"]])) for w, b in s.epoch_shares(torch.Generator().manual_seed(3),
                                                                                   rank, size)]
    whole, r0, r1 = pairs(0, 1), pairs(0, 2), pairs(1, 2)
    assert len(whole) == len(r0) == len(r1)
    for (w, a), (w0, b0), (w1, b1) in zip(whole, r0, r1):
        assert w == 1.0 and abs(w0 + w1 - 1) < 1e-12
        assert torch.equal(torch.cat([b0, b1], 1), a)


@needs_sampler
def test_two_processes_train_on_sampled_subgraphs(tmp_path):
    import json
    import subprocess
    import sys
    args = ["--model", "lightgcn", "--dataset", "synthetic", "--epochs", "4", "--seed", "0", "--quiet",
            "--set", "data.dataset_args={n_users: 400, n_items: 200, n_interactions: 9000, seed: 2}",
            "--set", "threads=1", "--set", "train.batch_size=256", "--set", "train.lr=0.01",
            "--set", "train.sampler=neighbor", "--set", "train.num_neighbors=[10, 10]"]
    res = {}
    for n in (1, 2):
        out = subprocess.run([sys.executable, "-m", "graphrec", "train", *args, "--nproc", str(n),
                              "--out", str(tmp_path / str(n))], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        res[n] = json.loads((tmp_path / str(n) / "result.json").read_text())
    assert res[2]["world_size"] == 2
    # different neighbour draws, the same global batches: the same accuracy up to sampling noise
    assert abs(res[2]["test"]["recall@20"] - res[1]["test"]["recall@20"]) < 0.15 * res[1]["test"]["recall@20"]
