"""PAMD (Han et al., WWW 2022): layers, losses, both stages, the items task, export, attention
analysis, and planted-structure tests (graphrec/models/pamd*.py, graphrec/nn/disentangle.py)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import IdMap, Interactions
from graphrec.models.base import ModelContext
from graphrec.models.pamd import PAMD
from graphrec.models.pamd_pretrain import PAMDPretrain
from graphrec.nn.disentangle import (ComponentAttention, CrossModalMappers, common_specific_shares,
                                     encoder_loss, gaps, infonce_ordering, ranking_loss)


# -- planted worlds -------------------------------------------------------------------------------
def planted_items(n=1000, k=8, dim_v=256, dim_t=128, noise=0.1, seed=0):
    """Latents z_c (shared), z_v, z_t (private) and x_v = A_v[z_c; z_v] + e, x_t = A_t[z_c; z_t] + e."""
    g = torch.Generator().manual_seed(seed)
    zc, zv, zt = (torch.randn(n, k, generator=g) for _ in range(3))
    a_v = torch.randn(2 * k, dim_v, generator=g) / math.sqrt(2 * k)
    a_t = torch.randn(2 * k, dim_t, generator=g) / math.sqrt(2 * k)
    x_v = torch.cat([zc, zv], 1) @ a_v + noise * torch.randn(n, dim_v, generator=g)
    x_t = torch.cat([zc, zt], 1) @ a_t + noise * torch.randn(n, dim_t, generator=g)
    return {"zc": zc, "zv": zv, "zt": zt, "x_t": x_t, "x_v": x_v}


def context(x_t, x_v, n_users=1, train=None):
    n = x_t.shape[0]
    feats = ItemFeatures({"text": x_t, "image": x_v}, IdMap(np.arange(n), "item"))
    return ModelContext(n_users=n_users, n_items=n, train=train, features=feats)


def pretrain(model: PAMDPretrain, epochs: int, batch_size: int = 128, lr: float = 1e-3, seed: int = 0,
             history: bool = False):
    """The items task's loop (shuffled item batches, Adam on the summed terms); held-out loss per epoch."""
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    n = model.n_items
    losses = []
    for _ in range(epochs):
        model.train()
        perm = torch.randperm(n, generator=g)
        for s in range(0, n, batch_size):
            b = {"item": perm[s:s + batch_size].sort().values}
            terms = model.loss(b, model.train_forward(b))
            opt.zero_grad()
            sum(terms.values()).backward()
            opt.step()
        if history:
            with torch.no_grad():
                b = {"item": torch.arange(n)}
                losses.append(float(sum(model.loss(b, model.train_forward(b)).values())))
    model.eval()
    return losses


def ridge_r2(x: torch.Tensor, z: torch.Tensor, lam: float = 1e-2) -> float:
    """R^2 of the ridge regression of z on x (both centred)."""
    x, z = x - x.mean(0), z - z.mean(0)
    w = torch.linalg.solve(x.T @ x + lam * torch.eye(x.shape[1]), x.T @ z)
    return float(1 - (z - x @ w).pow(2).sum() / z.pow(2).sum())


def retrieval_at_1(a: torch.Tensor, b: torch.Tensor) -> float:
    a = torch.nn.functional.normalize(a - a.mean(0), dim=1)
    b = torch.nn.functional.normalize(b - b.mean(0), dim=1)
    return float(((a @ b.T).argmax(1) == torch.arange(a.shape[0])).float().mean())


@pytest.fixture(scope="module")
def world():
    torch.manual_seed(0)
    return planted_items()


# -- C3-C4: projections and the disentangled encoder -----------------------------------------------
def test_primitive_projections_and_parts_add_up(world):
    m = PAMDPretrain(context(world["x_t"], world["x_v"]), embedding_dim=16)
    z = m.encode(torch.arange(10))
    for k in ("e_t", "e_v", "c_t", "c_v", "s_t", "s_v"):
        assert z[k].shape == (10, 16)
    torch.testing.assert_close(z["c_t"] + z["s_t"], z["e_t"], atol=1e-6, rtol=0)
    torch.testing.assert_close(z["c_v"] + z["s_v"], z["e_v"], atol=1e-6, rtol=0)
    enc = m.encoder.disentangle
    assert enc.theta_t is not enc.theta_v and enc.theta_t.weight is not enc.theta_v.weight
    # L_pre reaches every pretraining parameter, the primitive projections included
    b = {"item": torch.arange(64)}
    sum(m.loss(b, m.train_forward(b)).values()).backward()
    for name, p in m.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_features_are_frozen_buffers_outside_checkpoints(world):
    m = PAMDPretrain(context(world["x_t"], world["x_v"]), embedding_dim=16)
    assert not m.x_t.requires_grad and not m.x_v.requires_grad
    assert all(p.data_ptr() != m.x_t.data_ptr() for p in m.parameters())
    assert not any(k.startswith(("x_t", "x_v")) for k in m.state_dict())


# -- C5: L_en ---------------------------------------------------------------------------------------
def test_encoder_loss_is_zero_for_aligned_commons_and_orthogonal_specifics():
    c = torch.randn(5, 4)
    s_t = torch.tensor([[1.0, 0, 0, 0]]).repeat(5, 1)
    s_v = torch.tensor([[0, 2.0, 0, 0]]).repeat(5, 1)
    out = encoder_loss(c, c.clone(), s_t, s_v)
    assert torch.all(out["align"] == 0) and torch.all(out["orth"] == 0)


def test_encoder_loss_matches_a_numpy_reference():
    g = np.random.default_rng(0)
    c_t, c_v, s_t, s_v = (g.normal(size=(7, 5)) for _ in range(4))
    out = encoder_loss(*(torch.from_numpy(a) for a in (c_t, c_v, s_t, s_v)))
    np.testing.assert_allclose(out["align"].numpy(), ((c_t - c_v) ** 2).sum(1), rtol=1e-12)  # Eq. 3's squared norm
    mean = encoder_loss(*(torch.from_numpy(a) for a in (c_t, c_v, s_t, s_v)), align="mean")["align"]
    np.testing.assert_allclose(mean.numpy(), ((c_t - c_v) ** 2).mean(1), rtol=1e-12)      # the authors' MSE
    np.testing.assert_allclose(out["orth"].numpy(), np.einsum("ij,ij->i", s_t, s_v) ** 2, rtol=1e-12)
    assert torch.all(out["align"] >= 0) and torch.all(out["orth"] >= 0)
    frob = encoder_loss(*(torch.from_numpy(a) for a in (c_t, c_v, s_t, s_v)), ortho="frobenius")["orth"]
    np.testing.assert_allclose(frob.numpy(), np.full(7, ((s_t.T @ s_v) ** 2).sum() / 49), rtol=1e-12)


# -- C6: the two shared mappers ----------------------------------------------------------------------
def test_exactly_two_mappers_shared_by_the_three_inputs():
    mp = CrossModalMappers(8, out_t=12, out_v=20)
    assert sorted(n for n, _ in mp.named_children()) == ["phi_t", "phi_v"]
    z = {k: torch.randn(6, 8) for k in ("e_t", "e_v", "c_t", "c_v", "s_t", "s_v")}
    hat = mp(z)
    assert hat["hat_t_c"].shape == (6, 12) and hat["hat_v_s"].shape == (6, 20)  # anchor widths
    anchors = (torch.randn(6, 12), torch.randn(6, 20))

    def grads(part):
        mp.zero_grad()
        gaps(*anchors, mp(z))[part].sum().backward()
        return {n: p.grad.clone() for n, p in mp.named_parameters()}
    g_s, g_c = grads("s"), grads("c")
    assert set(g_s) == set(g_c) == {"phi_v.weight", "phi_v.bias", "phi_t.weight", "phi_t.bias"}
    assert all(g_s[n].abs().sum() > 0 and g_c[n].abs().sum() > 0 for n in g_s)
    # each output is the one network applied to that input
    torch.testing.assert_close(hat["hat_t_s"], mp.phi_v(z["s_v"]))
    torch.testing.assert_close(hat["hat_v_c"], mp.phi_t(z["c_t"]))


# -- C7: L_de ---------------------------------------------------------------------------------------
def test_ranking_loss_values():
    eq = torch.full((4,), 0.7)
    torch.testing.assert_close(ranking_loss(eq, eq, eq), torch.full((4,), 2 * math.log(2)))
    ordered = ranking_loss(torch.tensor([0.0]), torch.tensor([30.0]), torch.tensor([60.0]))
    assert float(ordered) < 1e-12
    x = torch.randn(3, 1000) * 5
    assert torch.all(ranking_loss(x[0], x[1], x[2]) >= 0)
    # the printed Eq. (10) has no lower bound: it keeps falling as the gaps spread in the intended order
    lit = [float(ranking_loss(torch.tensor([0.0]), torch.tensor([float(t)]), torch.tensor([2.0 * t]), "literal")) for t in (1, 10, 100)]
    assert lit[0] > lit[1] > lit[2] and lit[2] < -99


def test_infonce_ordering_of_identical_similarities_is_ln6():
    a = torch.randn(5, 9)
    out = infonce_ordering(a, a * 2.0, a * 3.0, a * 0.5)  # all cosines 1
    torch.testing.assert_close(out, torch.full((5,), math.log(6.0)))


# -- C8: pretraining, modes, monitor, ordering --------------------------------------------------------
@pytest.mark.parametrize("mode,keys", [("full", {"en_align", "en_orth", "de"}), ("con", {"en_align", "en_orth", "de_c"}),
                                       ("en", {"en_align", "en_orth"}), ("de", {"de"})])
def test_each_mode_returns_only_its_terms(world, mode, keys):
    m = PAMDPretrain(context(world["x_t"], world["x_v"]), embedding_dim=8, mode=mode)
    b = {"item": torch.arange(32)}
    terms = m.loss(b, m.train_forward(b))
    assert set(terms) == keys and all(float(v.detach()) > 0 for v in terms.values())
    if mode == "en":  # Eq. 3 alone never maps across: the mappers get no gradient
        sum(terms.values()).backward()
        assert all(p.grad is None for p in m.mapper.parameters())


def test_pretraining_lowers_the_loss_and_orders_the_gaps(world):
    """Planted test 2 (ordering): after pretraining, median(L^p - L^c) > 0 and median(L^s - L^p) > 0,
    the ordered fraction rises towards 1, and nothing collapses."""
    torch.manual_seed(0)
    n = 600
    m = PAMDPretrain(context(world["x_t"][:n], world["x_v"][:n]), embedding_dim=16)
    before = m.monitor(torch.arange(n))
    hist = pretrain(m, epochs=20, history=True)
    after = m.monitor(torch.arange(n))
    assert hist[-1] < 0.5 * hist[0]
    assert after["median_p_minus_c"] > 0 and after["median_s_minus_p"] > 0
    assert after["order_frac"] > max(0.9, before["order_frac"])
    assert after["std_min_t"] > 1e-3 and after["std_min_v"] > 1e-3
    assert after["norm_common"] > 0.1 and after["norm_specific"] > 0.1


def test_literal_eq10_diverges_where_the_bounded_form_settles(world):
    """Planted test 4 (collapse guard, diagnostic): with learnable primitive anchors (no stop-grad)
    the printed Eq. (10) runs off towards minus infinity; the bounded form stays >= 0."""
    torch.manual_seed(0)
    n = 300
    ctx = context(world["x_t"][:n], world["x_v"][:n])
    lit = PAMDPretrain(ctx, embedding_dim=8, mode="de", contrastive="literal", anchor_space="primitive",
                       anchor_stop_grad=False)
    hist = pretrain(lit, epochs=15, history=True)
    assert hist[-1] < hist[0] - 5 and hist[-1] < -5
    ok = PAMDPretrain(ctx, embedding_dim=8, mode="de", anchor_space="primitive", anchor_stop_grad=False)
    assert min(pretrain(ok, epochs=15, history=True)) >= 0


@pytest.mark.slow
def test_planted_disentanglement(world):
    """Planted test 1. Common parts predict the shared factor z_c better than their own private
    factor; the shared factor explains more of a common part's variance than of the specific part
    of the same modality; common parts retrieve the other modality's item (recall@1 far above
    chance) where specific parts are at chance; full PAMD aligns the commons at least as well as
    PAMD_en. Not asserted, and reported: a linear probe finds z_c in the specific parts as well as
    in the common ones (with a linear Theta, e^c = W e and e^s = (I - W) e are both invertible
    images of e; nothing in Eq. 3-10 makes e^s shed the shared factor, only shrink it)."""
    n = world["zc"].shape[0]
    res = {}
    for mode in ("full", "en"):
        torch.manual_seed(0)
        m = PAMDPretrain(context(world["x_t"], world["x_v"]), embedding_dim=16, mode=mode)
        pretrain(m, epochs=20)
        with torch.no_grad():
            res[mode] = m.encode(None)
    z = res["full"]
    zc, zv, zt = world["zc"], world["zv"], world["zt"]
    assert ridge_r2(z["c_v"], zc) > ridge_r2(z["c_v"], zv) + 0.3
    assert ridge_r2(z["c_t"], zc) > ridge_r2(z["c_t"], zt) + 0.2
    assert ridge_r2(zc, z["c_v"]) > ridge_r2(zc, z["s_v"])   # share of variance from the shared factor
    assert ridge_r2(zc, z["c_t"]) > ridge_r2(zc, z["s_t"])
    assert ridge_r2(z["s_v"], zv) > ridge_r2(z["c_v"], zv) - 0.02 and ridge_r2(z["s_t"], zt) > ridge_r2(z["c_t"], zt) - 0.02
    chance = 1.0 / n
    assert retrieval_at_1(z["c_v"], z["c_t"]) > 20 * chance
    assert retrieval_at_1(z["s_v"], z["s_t"]) < 5 * chance
    assert retrieval_at_1(z["c_v"], z["c_t"]) >= retrieval_at_1(res["en"]["c_v"], res["en"]["c_t"])
    assert ridge_r2(z["c_v"], zc) >= ridge_r2(res["en"]["c_v"], zc)


# -- C9: attention fusion ------------------------------------------------------------------------------
def test_attention_weights_are_a_distribution_and_d_must_match():
    att = ComponentAttention(6)
    mix, w = att(torch.randn(5, 6), torch.randn(5, 4, 6))
    assert w.shape == (5, 4) and torch.all(w >= 0)
    torch.testing.assert_close(w.sum(-1), torch.ones(5))
    with pytest.raises(ValueError, match="share one size"):
        att(torch.randn(5, 6), torch.randn(5, 4, 7))


def _pairs(n_users=60, n_items=80, per_user=8, seed=0):
    g = np.random.default_rng(seed)
    rows = [(u, int(i)) for u in range(n_users) for i in g.choice(n_items, per_user, replace=False)]
    u = torch.tensor([r[0] for r in rows])
    i = torch.tensor([r[1] for r in rows])
    return Interactions(u, i, IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item"))


def _rec(world, n_items=80, **hp):
    train = _pairs(n_items=n_items)
    ctx = context(world["x_t"][:n_items], world["x_v"][:n_items], n_users=60, train=train)
    return PAMD(ctx, embedding_dim=8, **hp), train


def test_specific_parts_change_full_pamd_scores_but_not_the_common_only_variant(world):
    torch.manual_seed(1)
    for comp, changes in (("all", True), ("common", False)):
        m, _ = _rec(world, components=comp)
        m.eval()
        users = torch.arange(6)
        # a map whose common part is kept exactly but whose specific part moves: e -> e + delta with
        # Theta delta = 0 (delta in Theta's null space)
        with torch.no_grad():
            th = m.encoder.disentangle.theta_t.weight  # [d, d], e^c = e @ th.T
            th.copy_(torch.diag(torch.tensor([1.0] * 4 + [0.0] * 4)))
            base = m.score(users, m.propagate()).clone()
            z0 = m.encoder(m.x_t, m.x_v)
            m.encoder.proj_t.net.bias[4:] += 3.0   # moves e_t only along Theta's null space: e^s_t moves, e^c_t not
            z1 = m.encoder(m.x_t, m.x_v)
            after = m.score(users, m.propagate())
        assert torch.equal(z0["c_t"], z1["c_t"]) and not torch.equal(z0["s_t"], z1["s_t"])
        assert (not torch.allclose(base, after)) == changes


# -- C10: fine-tuning --------------------------------------------------------------------------------
def _fit(m, train, epochs=5, lr=0.01):
    from graphrec.train.samplers import BPRSampler
    groups = m.param_groups(lr, 0.0) or [{"params": [p for p in m.parameters() if p.requires_grad]}]
    opt = torch.optim.Adam([g for g in groups if g["params"]], lr=lr)  # the trainer's groups: encoder at its ratio
    sampler = BPRSampler(train, batch_size=128)
    g = torch.Generator().manual_seed(0)
    hist = []
    for _ in range(epochs):
        m.train()
        tot = 0.0
        for b in sampler.epoch(g):
            assert not bool(((train.user * train.n_items + train.item).unsqueeze(0)
                             == (b["user"] * train.n_items + b["neg"]).unsqueeze(1)).any())
            terms = m.loss(b, m.train_forward(b))
            opt.zero_grad()
            sum(terms.values()).backward()
            opt.step()
            tot += float(terms["bpr"].detach())
        hist.append(tot)
    return hist


def test_fine_tuning_trains_the_encoder_and_lowers_bpr(world):
    torch.manual_seed(0)
    m, train = _rec(world, encoder_lr_ratio=1.0)
    w0 = m.encoder.proj_t.net.weight.detach().clone()
    hist = _fit(m, train)
    assert hist[-1] < hist[0]
    assert not torch.equal(w0, m.encoder.proj_t.net.weight)


def test_encoder_learning_rate_zero_keeps_the_vectors_bit_identical(world):
    torch.manual_seed(0)
    m, train = _rec(world, encoder_lr_ratio=0.0)
    before = {k: v.detach().clone() for k, v in m.encoder(m.x_t, m.x_v).items()}
    e0 = m.item_emb.weight.detach().clone()
    _fit(m, train, epochs=2)
    after = m.encoder(m.x_t, m.x_v)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(e0, m.item_emb.weight)  # the embeddings did learn


def test_the_trainer_steps_the_encoder_at_its_own_learning_rate(world):
    """SGD from the same start and batch: the encoder moves by exactly ratio x its full-rate step,
    the embeddings by their full step (the trainer builds the model's param_groups)."""
    from graphrec.train.samplers import BPRSampler
    from graphrec.train.trainer import Trainer
    cfg = {"optimizer": "sgd", "lr": 0.05, "weight_decay": 0.0, "valid_metric": "recall@20", "lr_decay": 1.0,
           "lr_decay_step": 50}

    class NoEval:
        lower_is_better = frozenset()

    deltas = {}
    for ratio in (1.0, 0.1):
        torch.manual_seed(0)
        m, train = _rec(world, encoder_lr_ratio=ratio)
        t = Trainer(m, None, NoEval(), cfg, "", torch.device("cpu"), 0, checkpoints=False)
        assert [g["lr"] for g in t.opt.param_groups] == pytest.approx([0.05 * ratio, 0.05])
        batch = next(iter(BPRSampler(train, batch_size=64).epoch(torch.Generator().manual_seed(0))))
        w_enc, w_emb = m.encoder.proj_t.net.weight.detach().clone(), m.item_emb.weight.detach().clone()
        m.train()
        t.step(batch)
        deltas[ratio] = (m.encoder.proj_t.net.weight.detach() - w_enc, m.item_emb.weight.detach() - w_emb)
    # (deltas are differences of float32 weights: equal up to their rounding, ~1e-8)
    torch.testing.assert_close(deltas[0.1][0], 0.1 * deltas[1.0][0], rtol=1e-3, atol=1e-7)
    assert float(deltas[1.0][0].abs().max()) > 1e-4  # and the step is far above that
    torch.testing.assert_close(deltas[0.1][1], deltas[1.0][1], rtol=1e-3, atol=1e-7)


def test_param_groups_that_leave_out_a_parameter_are_refused(world):
    from graphrec.train.trainer import param_groups
    m, _ = _rec(world)
    main = [q for q in m.main_parameters() if q.requires_grad]
    m.param_groups = lambda lr, wd: [{"params": list(m.encoder.parameters()), "lr": lr}]
    with pytest.raises(ValueError, match="param_groups must hold each trainable parameter once"):
        param_groups(m, main, 0.1, 0.0)


def test_user_query_variant_scores_match_its_pairwise_form(world):
    torch.manual_seed(0)
    m, _ = _rec(world, attention_query="user")
    m.eval()
    reps = m.propagate()
    users = torch.tensor([0, 3, 5])
    full = m.score(users, reps)
    items = torch.arange(80)
    for r, u in enumerate(users.tolist()):
        uu = m.user_emb.weight[u].expand(80, -1)
        ref = m._pair_scores(uu, m.item_emb.weight, reps.extras["values"])
        torch.testing.assert_close(full[r], ref, atol=1e-5, rtol=1e-5)
    assert m.score_factors(reps) is None
    w = m.attention_weights(torch.tensor([0, 1]), items[:2])
    assert w.shape == (2, 4)


# -- C12: export -------------------------------------------------------------------------------------
def test_export_tables_shape_order_and_round_trip(world, tmp_path):
    m = PAMDPretrain(context(world["x_t"][:50], world["x_v"][:50]), embedding_dim=8)
    table = m.export_tables()["item/pamd"]
    assert table.shape == (50, 32) and table.dtype == torch.float32
    z = m.encode(None)
    for j, k in enumerate(("c_t", "c_v", "s_t", "s_v")):
        torch.testing.assert_close(table[:, 8 * j:8 * (j + 1)], z[k].detach())
    np.save(tmp_path / "item_pamd.npy", table.numpy())
    assert np.array_equal(np.load(tmp_path / "item_pamd.npy"), table.numpy())
    assert m.training  # export leaves the mode as it was


# -- C13: attention analysis ----------------------------------------------------------------------------
def test_common_specific_shares_follow_the_argmax_of_each_pair():
    common = torch.tensor([True, True, False, False])
    w = torch.tensor([[0.7, 0.1, 0.1, 0.1], [0.1, 0.1, 0.2, 0.6], [0.1, 0.4, 0.3, 0.2], [0.2, 0.2, 0.35, 0.25]])
    c, s = common_specific_shares(w, common)
    assert c == pytest.approx(0.5) and s == pytest.approx(0.5) and c + s == pytest.approx(1.0)
    # the sum rule (the authors' script) would call row 2 common (0.5 > 0.5 is false) and row 3 specific
    assert common_specific_shares(w[:1], common) == (1.0, 0.0)


def test_attention_rows_are_indexed_by_the_recommended_item(world):
    torch.manual_seed(0)
    m, _ = _rec(world)
    m.eval()
    items = torch.tensor([5, 2, 9])
    w = m.attention_weights(torch.tensor([0, 0, 0]), items)
    full = m.propagate().extras["attention"]
    torch.testing.assert_close(w, full[items])


# -- the items task and the two stages end to end -----------------------------------------------------
def test_item_split_is_seeded_disjoint_and_covers_every_item():
    from graphrec.train.task_items import item_split
    tr, va, te = item_split(100, 0.1, seed=3)
    assert len(va) == len(te) == 10 and len(tr) == 80
    assert sorted(torch.cat([tr, va, te]).tolist()) == list(range(100))
    assert all(torch.equal(a, b) for a, b in zip((tr, va, te), item_split(100, 0.1, seed=3)))
    assert not torch.equal(va, item_split(100, 0.1, seed=4)[1])


def test_item_loss_evaluator_is_the_batch_weighted_mean(world):
    from graphrec.train.task_items import ItemLossEvaluator, ItemSampler
    m = PAMDPretrain(context(world["x_t"][:90], world["x_v"][:90]), embedding_dim=8)
    items = torch.arange(0, 90, 2)
    ev = ItemLossEvaluator(items, batch_size=16, device=torch.device("cpu"))
    assert ev.lower_is_better == frozenset({"loss"})
    got = ev.evaluate(m)
    with torch.no_grad():
        ref = {k: float(v) for k, v in m.loss({"item": items}, m.train_forward({"item": items})).items()}
    assert got["loss"] == pytest.approx(sum(ref.values()), rel=1e-5)
    assert {"order_frac", "std_min_t", "std_min_v"} <= set(got)
    batches = list(ItemSampler(items, 16, torch.device("cpu")).epoch(torch.Generator().manual_seed(0)))
    assert sorted(torch.cat([b["item"] for b in batches]).tolist()) == items.tolist()
    assert all(torch.equal(b["item"], b["item"].sort().values) for b in batches)


def test_pretrain_then_fine_tune_runs(tmp_path):
    import json
    from graphrec.experiment import run
    from graphrec.train import checkpoint
    common = {"threads": 1, "data": {"dataset_args": {"scale": 0.15}}}
    pre = run(model="pamd-pretrain", dataset="synthetic", overrides={**common, "train": {"progress": False}},
              epochs=3, out=str(tmp_path / "pre"), quiet=True)
    assert set(pre["valid"]) >= {"loss", "order_frac", "std_min_t"} and "loss" in pre["test"]
    with open(tmp_path / "pre" / "epochs.jsonl") as f:
        recs = [json.loads(line) for line in f]
    assert all("order_frac" in r["valid"] for r in recs)      # the monitor is in the epoch log
    best = min(recs, key=lambda r: r["valid"]["loss"])
    assert pre["best_epoch"] == best["epoch"]                  # selected by the held-out loss
    ov = {**common, "train": {"progress": False, "init_from": str(tmp_path / "pre")}}
    ft = run(model="pamd", dataset="synthetic", overrides=ov, epochs=1, out=str(tmp_path / "ft"), quiet=True)
    assert ft["test"]["recall@20"] > 0
    # the fine-tuning run started from the pretrained encoder
    pre_enc = checkpoint.load_file(str(tmp_path / "pre" / "best.pt"))["components"]["encoder"]
    assert set(checkpoint.load_file(str(tmp_path / "ft" / "best.pt"))["components"]["encoder"]) == set(pre_enc)


# -- planted test 3: a preference on a modality-specific factor -----------------------------------------
def planted_preference(world, n_users=500, per_user=10, strength=3.0, seed=0) -> Interactions:
    r"""Users prefer items by :math:`p_u \cdot (M z_v)`: a factor only the visual modality carries.
    Each user draws ``per_user`` distinct items with probability ∝ exp(strength * logit) (Gumbel top-k)."""
    g = torch.Generator().manual_seed(seed)
    zv = world["zv"]
    k = zv.shape[1]
    m = torch.randn(k, k, generator=g) / math.sqrt(k)
    p = torch.randn(n_users, k, generator=g)
    logits = strength * (p @ (zv @ m).T) / math.sqrt(k)
    gumbel = -torch.log(-torch.log(torch.rand(logits.shape, generator=g).clamp(min=1e-12)))
    top = torch.topk(logits + gumbel, per_user, dim=1).indices
    user = torch.arange(n_users).repeat_interleave(per_user)
    n_items = zv.shape[0]
    return Interactions(user, top.flatten(), IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item"))


#: Theta of Eq. (1): "linear" (the authors' code: a bias-free d x d map) or "mlp" (the paper's "MLP":
#: two layers with a ReLU between them)
THETA = {"linear": {}, "mlp": {"theta_layers": 2, "activation": "relu"}}


@pytest.fixture(scope="module", params=sorted(THETA))
def planted_preference_scores(world, request):
    """Test Recall@10 (mean of two seeds, same budget) of PAMD, PAMD_¬s and ID-only BPR on a
    preference that lives in the visual-specific factor, for a linear and an MLP Theta (both stages
    built alike; fine-tuning at the default encoder_lr_ratio, as the trainer's parameter groups)."""
    from graphrec.data.split import make_split
    from graphrec.eval.ranking import RankingEvaluator
    from graphrec.models.mf import MF
    theta = THETA[request.param]
    split = make_split(planted_preference(world), "random", (0.6, 0.2, 0.2), seed=0)
    ctx = ModelContext(n_users=split.n_users, n_items=split.n_items, train=split.train,
                       features=context(world["x_t"], world["x_v"]).features)
    torch.manual_seed(0)
    pre = PAMDPretrain(ctx, embedding_dim=16, **theta)
    pretrain(pre, epochs=20)
    ev = RankingEvaluator(split.test, [split.train], ks=[10], metrics=["recall"])
    z = pre.encode(torch.arange(split.n_items))
    scores = {"theta": request.param, "r2_zv_common": ridge_r2(z["c_v"].detach(), world["zv"]),
              "r2_zv_specific": ridge_r2(z["s_v"].detach(), world["zv"])}
    for label, make in (("pamd", lambda: PAMD(ctx, embedding_dim=16, components="all", **theta)),
                        ("not_s", lambda: PAMD(ctx, embedding_dim=16, components="common", **theta)),
                        ("mf", lambda: MF(ctx, embedding_dim=16))):
        r = []
        for seed in (0, 1):
            torch.manual_seed(seed)
            m = make()
            if label != "mf":
                m.encoder.load_state_dict(pre.encoder.state_dict())
            _fit(m, split.train, epochs=30, lr=0.005)
            r.append(ev.evaluate(m)["recall@10"])
        scores[label] = sum(r) / len(r)
    return scores


@pytest.mark.slow
def test_planted_specific_preference_pamd_beats_id_only_bpr(planted_preference_scores):
    """Planted test 3, first half: the content vectors recover a preference that ID-only BPR learns
    from sparse data only (measured, linear / MLP Theta: PAMD 0.227 / 0.237 against BPR 0.125)."""
    s = planted_preference_scores
    assert s["pamd"] > 1.3 * s["mf"], s


@pytest.mark.slow
def test_planted_specific_preference_pamd_beats_common_only(planted_preference_scores, request):
    """Planted test 3, second half (the paper's Table 3 direction): PAMD over all four vectors beats
    PAMD_¬s when the preference lives in a modality-specific factor.

    With the paper's MLP Theta (Eq. 1) the pretrained specific part carries the visual-only factor
    and the common part does not (ridge R^2 of z_v: 0.56 from e^s_v against 0.22 from e^c_v;
    measured PAMD 0.237 against PAMD_¬s 0.197). With the authors' linear Theta both parts hold
    it alike (R^2 0.27 and 0.27: e^c = W e and e^s = (I - W) e are both invertible images of e),
    so dropping e^s removes no information (measured 0.227 against 0.231): expected to fail."""
    s = planted_preference_scores
    if s["theta"] == "linear":
        request.applymarker(pytest.mark.xfail(reason="linear Theta: e^c = W e keeps the specific factor "
                                              "(see the docstring)", strict=False))
    else:  # the disentanglement the comparison rests on
        assert s["r2_zv_specific"] > s["r2_zv_common"] + 0.1, s
    assert s["pamd"] > s["not_s"], s
