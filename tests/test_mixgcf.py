"""MixGCF (LightGCN with synthesised hard negatives): the hardest-candidate choice against brute
force on the compiled and the torch path, the loss and its gradients against a literal transcription
of the reference algorithm (every mixture formed, scored and pooled), the K-negative BPR, the
sampler's candidates, a LightGCN table loaded as MixGCF's start (MCPT's fine-tuning), and planted
structure recovered end to end."""
import pytest
import torch
from conftest import run_on_kernel_and_torch

import graphrec.nn.candidate_argmax as ca
from graphrec import losses
from graphrec.data.interactions import IdMap, Interactions
from graphrec.graphs import bipartite_adjacency
from graphrec.models import ModelContext, get_model
from graphrec.experiment import run
from graphrec.train.samplers import sampler_for


@pytest.fixture(params=["native", "torch"])
def path(request, monkeypatch):
    return run_on_kernel_and_torch(request, monkeypatch, ca, "_kernel")


def test_candidate_argmax_matches_brute_force(path):
    g = torch.Generator().manual_seed(0)
    table = torch.randn(300, 24, generator=g)
    table[7] = table[11]  # equal rows: the first candidate of the two must win
    ids = torch.randint(0, 300, (50, 3, 9), generator=g)
    ids[0, 0] = torch.tensor([5, 7, 11, 7, 3, 2, 1, 0, 4])
    q = torch.randn(50, 24, generator=g)
    q[0] = table[7] * 10  # row 7 (and 11, equal) is the best of group (0, 0)
    scorer = ca.CandidateArgmax()
    for _ in range(2):  # the second call reuses the torch path's row table
        got = scorer(table, ids, q)
        want = torch.empty(50, 3, dtype=torch.long)
        for a in range(50):
            for b in range(3):
                s = [float(table[i] @ q[a]) for i in ids[a, b].tolist()]
                want[a, b] = ids[a, b, s.index(max(s))]
        assert torch.equal(got, want)
    assert int(got[0, 0]) == 7
    with pytest.raises(IndexError, match="300"):
        scorer(table, torch.full((2, 1, 3), 300), q[:2])
    with pytest.raises(ValueError, match=r"ids \[Q, G, M\]"):
        scorer(table, ids[:, 0], q)


def test_candidate_argmax_is_identical_for_every_thread_count(path):
    g = torch.Generator().manual_seed(1)
    table, q = torch.randn(5000, 64, generator=g), torch.randn(2048, 64, generator=g)
    ids = torch.randint(0, 5000, (2048, 1, 64), generator=g)
    before = torch.get_num_threads()
    try:
        outs = []
        for t in (1, 2, 3):
            torch.set_num_threads(t)
            outs.append(ca.CandidateArgmax()(table, ids, q))
    finally:
        torch.set_num_threads(before)
    assert all(torch.equal(o, outs[0]) for o in outs[1:])


def test_multi_negative_bpr_is_bpr_for_one_negative_and_stable():
    g = torch.Generator().manual_seed(2)
    pos, neg = torch.randn(40, generator=g), torch.randn(40, 3, generator=g)
    naive = torch.log(1 + torch.exp(neg - pos[:, None]).sum(1)).mean()
    torch.testing.assert_close(losses.multi_negative_bpr(pos, neg), naive)
    torch.testing.assert_close(losses.multi_negative_bpr(pos, neg[:, :1]), losses.bpr_loss(pos, neg[:, 0]))
    big = losses.multi_negative_bpr(torch.zeros(2), torch.tensor([[1e4, 0.0], [-1e4, -1e4]]))
    torch.testing.assert_close(big, torch.tensor((1e4 + 0.0) / 2), rtol=1e-6, atol=1e-3)


def _tiny(n_users=20, n_items=30, seed=0):
    g = torch.Generator().manual_seed(seed)
    m = torch.rand(n_users, n_items, generator=g) < 0.2
    m[:, 0] = True
    u, i = m.nonzero(as_tuple=True)
    return Interactions(u, i, IdMap(list(range(n_users))), IdMap(list(range(n_items))))


def _model(train, **hp):
    ctx = ModelContext(train.n_users, train.n_items, train, graphs={"ui": bipartite_adjacency(train)})
    torch.manual_seed(0)
    return get_model("mixgcf")(ctx, embedding_dim=8, **hp)


def _reference_loss(model, batch, alpha, reg_weight):
    """MixGCF's negative_sampling + create_bpr_loss, transcribed literally: all B x K x M x (L+1)
    mixtures are formed and scored with the pooled user vector."""
    e0 = model.embedding.weight
    layers = [e0]
    dense = model.graph.adj.to_dense()
    for _ in range(model.prop.num_layers):
        layers.append(dense @ layers[-1])
    stack = torch.stack(layers, 1)  # [N, L+1, d]
    pool = (lambda x: x.mean(-2)) if model.prop.readout == "mean" else (lambda x: x.sum(-2))
    U = model.n_users
    b, k, m = batch["user"].numel(), model.n_negatives, model.n_candidates
    u_e, p_e = stack[batch["user"]], stack[U + batch["pos"]]  # [B, L+1, d]
    s_e = pool(u_e)
    cand = batch["neg"].view(b, k, m)
    negs = []
    for kk in range(k):
        seed = alpha[:, kk][:, None, :, None]  # [B, 1, L+1, 1]
        n_e = stack[U + cand[:, kk]]  # [B, M, L+1, d]
        n_e_ = seed * p_e[:, None] + (1 - seed) * n_e
        scores = (s_e[:, None, None, :] * n_e_).sum(-1)  # [B, M, L+1]
        idx = scores.max(dim=1)[1].detach()
        n_perm = n_e_.permute(0, 2, 1, 3)  # [B, L+1, M, d]
        negs.append(n_perm[torch.arange(b)[:, None], torch.arange(n_perm.shape[1])[None], idx])
    neg_gcn = torch.stack(negs, 1)  # [B, K, L+1, d]
    pos_s = (s_e * pool(p_e)).sum(-1)
    neg_s = (s_e[:, None] * pool(neg_gcn)).sum(-1)
    mf = torch.log(1 + torch.exp(neg_s - pos_s[:, None]).sum(1)).mean()
    reg = (u_e[:, 0].norm() ** 2 + p_e[:, 0].norm() ** 2 + neg_gcn[:, :, 0].norm() ** 2) / 2
    return mf + reg_weight * reg / b


@pytest.mark.parametrize("readout", ["mean", "sum"])
def test_mixgcf_loss_and_gradient_equal_the_reference_algorithm(path, readout):
    train = _tiny()
    model = _model(train, n_layers=2, readout=readout, n_candidates=5, n_negatives=2, reg_weight=0.1)
    sampler = sampler_for(model, train, {"batch_size": 16, "num_neg": 1, "neg_sampling": "uniform",
                                         "neg_alpha": 0.75}, "cpu")
    batch = next(sampler.epoch(torch.Generator().manual_seed(3)))
    assert batch["neg"].shape == (16, 10)
    alpha = torch.rand(16, 2, 3, generator=torch.Generator().manual_seed(4))
    model.mixing_weights = lambda n, device: alpha
    terms = model.loss(batch, model.train_forward(batch))
    got = sum(terms.values())
    got_grad, = torch.autograd.grad(got, model.embedding.weight)
    want = _reference_loss(model, batch, alpha, 0.1)
    want_grad, = torch.autograd.grad(want, model.embedding.weight)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(got_grad, want_grad, rtol=1e-4, atol=1e-6)
    # the synthesised negatives are harder than their candidates on average (the point of MixGCF)
    with torch.no_grad():
        u, _, n, _, chosen = model.synthesise(batch, model.train_forward(batch), alpha)
        reps = model.propagate()
        uniform = float((reps.user[batch["user"]][:, None] * reps.item[batch["neg"]]).sum(-1).mean())
        hard = float((u[:, None] * n).sum(-1).mean())
    assert chosen.shape == (16, 2, 3) and bool(((chosen >= 0) & (chosen < train.n_items)).all()), chosen
    assert hard > uniform, (hard, uniform)


def test_sampler_draws_candidates_outside_the_users_items_and_checks_num_neg():
    train = _tiny()
    model = _model(train, n_layers=1, n_candidates=7, n_negatives=2)
    cfg = {"batch_size": 32, "num_neg": 1, "neg_sampling": "uniform", "neg_alpha": 0.75}
    seen = set(zip(train.user.tolist(), train.item.tolist()))
    batches = list(sampler_for(model, train, cfg, "cpu").epoch(torch.Generator().manual_seed(0)))
    assert sum(b["user"].numel() for b in batches) == len(seen)
    for b in batches:
        assert b["neg"].shape == (b["user"].numel(), 14)
        assert not any((u, i) in seen for u, row in zip(b["user"].tolist(), b["neg"].tolist()) for i in row)
    with pytest.raises(ValueError, match="leave train.num_neg at 1"):
        sampler_for(model, train, {**cfg, "num_neg": 5}, "cpu")
    lgcn = get_model("lightgcn")(ModelContext(train.n_users, train.n_items, train,
                                              graphs={"ui": bipartite_adjacency(train)}))
    with pytest.raises(ValueError, match="train.num_neg=3 is not supported"):
        sampler_for(lgcn, train, {**cfg, "num_neg": 3}, "cpu")


def test_mixgcf_starts_from_a_lightgcn_run_and_recovers_planted_structure(tmp_path):
    quiet = {"progress": False}
    pop = run(model="pop", dataset="synthetic", overrides={"train": quiet}, out=str(tmp_path / "pop"), quiet=True)
    lg = run(model="lightgcn", dataset="synthetic", overrides={"train": {**quiet, "epochs": 3}},
             out=str(tmp_path / "lg"), quiet=True)
    # MCPT's fine-tuning: another run's layer-0 tables as the start; no training, same propagation
    # depth, so the same valid metrics
    start = run(model="mixgcf", dataset="synthetic", out=str(tmp_path / "start"), quiet=True,
                overrides={"train": {**quiet, "epochs": 0, "init_from": lg["run_dir"]},
                           "model": {"n_layers": 2}})
    assert start["valid"] == pytest.approx(lg["valid"])
    mx = run(model="mixgcf", dataset="synthetic", out=str(tmp_path / "mx"), quiet=True,
             overrides={"train": {**quiet, "epochs": 10, "eval_every": 2}})
    assert mx["test"]["recall@20"] >= 3 * pop["test"]["recall@20"]
    assert mx["epochs_run"] == 10
