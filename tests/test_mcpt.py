"""MCPT's pre-training network (Liu et al., ICMR 2022): co-interaction graphs against brute force,
the review stand-in and its leakage, the graph encoder against a dense reference, projections,
masked attention, CIMA's reference values and gradient paths, the BCE loss, λ and the ablation
switches (checked by which parameters receive gradient)."""
import math

import numpy as np
import pytest
import torch

from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.split import make_split, per_user_counts
from graphrec.graphs import build, cointeraction_graph
from graphrec.models import ModelContext
from graphrec.models.mcpt import MCPT, cima_loss, content_average_tables, user_mean_table
from graphrec.nn.modality_attention import ModalityAttention
from graphrec.nn.propagation import LightGCNPropagation
from graphrec.train.samplers import sampler_for


def inter(pairs, n_users, n_items):
    u = torch.tensor([p[0] for p in pairs])
    i = torch.tensor([p[1] for p in pairs])
    return Interactions(u, i, IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item"))


def planted(n_users=60, n_items=40, seed=0, d_text=24, d_image=20, per_user=6):
    """Users of 4 clusters, each drawing most items from its own cluster; features from latents."""
    g = torch.Generator().manual_seed(seed)
    item_c = torch.arange(n_items) % 4
    user_c = torch.arange(n_users) % 4
    pairs = set()
    for u in range(n_users):
        own = torch.nonzero(item_c == user_c[u]).flatten()
        pick = own[torch.randperm(own.numel(), generator=g)[:per_user]]
        pairs.update((u, int(i)) for i in pick)
        pairs.add((u, int(torch.randint(n_items, (1,), generator=g))))
    z = torch.randn(4, 8, generator=g)[item_c] + 0.3 * torch.randn(n_items, 8, generator=g)
    feats = {"text": z @ torch.randn(8, d_text, generator=g) + 0.1 * torch.randn(n_items, d_text, generator=g),
             "image": z @ torch.randn(8, d_image, generator=g) + 0.1 * torch.randn(n_items, d_image, generator=g)}
    return inter(sorted(pairs), n_users, n_items), feats


def make(train, feats, **hp):
    specs = MCPT.graph_specs(hp)
    need = MCPT.required_modalities(hp)
    f = ItemFeatures({m: feats[m] for m in need}, train.item_map) if need else None
    graphs = {name: build(spec, train, f) for name, spec in specs.items()}
    ctx = ModelContext(train.n_users, train.n_items, train, graphs=graphs, features=f)
    torch.manual_seed(0)
    return MCPT(ctx, **hp)


def batch_of(model, train, num_neg=1, seed=0, batch_size=64):
    cfg = {"batch_size": batch_size, "num_neg": num_neg, "neg_sampling": "uniform", "neg_alpha": 0.75}
    return next(iter(sampler_for(model, train, cfg, "cpu").epoch(torch.Generator().manual_seed(seed))))


def grads(model, batch):
    model.zero_grad(set_to_none=True)
    sum(model.loss(batch, model.train_forward(batch)).values()).backward()
    return {n: (p.grad is not None and bool(p.grad.abs().sum() > 0)) for n, p in model.named_parameters()}


# -- 1. split -----------------------------------------------------------------------------------
def test_split_per_user_no_overlap_reproducible_and_counts_by_hand():
    pairs = [(u, i) for u in range(6) for i in range(2 + 3 * u)]  # users with 2, 5, 8, 11, 14, 17 rows
    data = inter(pairs, 6, 20)
    s1, s2 = make_split(data, "random", (0.8, 0.1, 0.1), seed=3), make_split(data, "random", (0.8, 0.1, 0.1), seed=3)
    for part in ("train", "valid", "test"):
        assert torch.equal(getattr(s1, part).item, getattr(s2, part).item)
    key = lambda x: set(zip(x.user.tolist(), x.item.tolist()))  # noqa: E731
    assert not key(s1.train) & key(s1.test) and not key(s1.train) & key(s1.valid)
    assert key(s1.train) | key(s1.valid) | key(s1.test) == set(pairs)
    for u in range(6):  # every user with >= 2 rows has >= 1 train and >= 1 test row
        assert int((s1.train.user == u).sum()) >= 1 and int((s1.test.user == u).sum()) >= 1
    # hand counts of the 8:1:1 rule: held = n // 5, valid = held // 2 (small users: 1 valid + 1 test)
    tr, va, te = per_user_counts(np.array([2, 5, 8, 11, 14, 17]))
    assert tr.tolist() == [1, 3, 6, 9, 12, 14] and va.tolist() == [0, 1, 1, 1, 1, 1] and te.tolist() == [1, 1, 1, 1, 1, 2]
    assert torch.bincount(s1.test.user, minlength=6).tolist() == te.tolist()


# -- 2. co-interaction graphs ----------------------------------------------------------------------
TOY = [(0, 0), (0, 1), (1, 1), (1, 2), (2, 3), (3, 4), (3, 0)]  # 4 users x 5 items


def brute(pairs, side):
    sets = {}
    for u, i in pairs:
        a, b = (u, i) if side == "user" else (i, u)
        sets.setdefault(a, set()).add(b)
    return {(a, b) for a in sets for b in sets if a != b and sets[a] & sets[b]}


@pytest.mark.parametrize("side", ["user", "item"])
def test_cointeraction_graph_is_brute_force_symmetric_without_self_loops(side, caplog):
    data = inter(TOY, 4, 5)
    with caplog.at_level("INFO", logger="graphrec"):
        g = cointeraction_graph(data, side=side, weight="binary", norm="none")
    ei = g.edge_index()
    edges = set(zip(ei[0].tolist(), ei[1].tolist()))
    assert edges == brute(TOY, side)
    assert all((b, a) in edges for a, b in edges) and all(a != b for a, b in edges)
    assert torch.all(g.values == 1)
    assert f"{g.nnz} stored entries (nnz)" in caplog.text
    # duplicates change nothing
    dup = cointeraction_graph(inter(TOY + TOY[:3], 4, 5), side=side, weight="binary", norm="none")
    assert torch.equal(dup.to_dense(), g.to_dense())


def test_cointeraction_from_train_only_and_topk_symmetrised():
    data = inter(TOY + [(2, 4)], 4, 5)
    split_train = inter(TOY, 4, 5)  # (2, 4) held out: users 2 and 3 share item 4 only through it
    full = set(zip(*cointeraction_graph(data, side="user", weight="binary").edge_index().tolist()))
    train = set(zip(*cointeraction_graph(split_train, side="user", weight="binary").edge_index().tolist()))
    assert (2, 3) in full and (2, 3) not in train
    # MCPT's memory bound: per-row top-k by co-count, then the union with the transpose
    g = torch.Generator().manual_seed(0)
    pairs = sorted({(int(u), int(i)) for u, i in zip(torch.randint(30, (300,), generator=g),
                                                       torch.randint(12, (300,), generator=g))})
    big = inter(pairs, 30, 12)
    k = 3
    sym = cointeraction_graph(big, side="user", weight="binary", topk=k, symmetrize=True)
    dense = sym.to_dense()
    assert torch.equal(dense, dense.T) and torch.all(dense.diagonal() == 0)
    directed = cointeraction_graph(big, side="user", weight="binary", topk=k).to_dense()
    assert torch.equal(dense, ((directed + directed.T) > 0).float())
    assert sym.nnz <= 2 * 30 * k


# -- 3. features: review stand-in, leakage, masks ----------------------------------------------------
def test_review_table_is_the_mean_of_training_items_and_a_test_only_item_never_contributes():
    train, feats = planted()
    model = make(train, feats)
    u = 5
    items = sorted(set(train.item[train.user == u].tolist()))
    assert torch.allclose(model.x_review[u], feats["text"][items].mean(0), atol=1e-6)
    assert model.x_review.shape == (train.n_users, 24) and model.x_text.shape == (train.n_items, 24)
    # leakage: the full log has a test-only item for user 5 with a huge planted feature; the model
    # is built from the training split (what experiment.prepare hands it) and never sees it
    fresh = next(i for i in range(train.n_items) if i not in items)
    full = inter(sorted(set(zip(train.user.tolist(), train.item.tolist())) | {(u, fresh)}), train.n_users, train.n_items)
    split = make_split(full, "predefined", labels=np.array([2 if (a, b) == (u, fresh) else 0 for a, b in
                                                            zip(full.user.tolist(), full.item.tolist())]))
    poisoned = {**feats, "text": feats["text"].clone()}
    poisoned["text"][fresh] = 1e4
    leak_free = make(split.train, poisoned)
    assert torch.allclose(leak_free.x_review[u], model.x_review[u], atol=1e-5)
    table, mask = user_mean_table(full.user, full.item, full.n_users, poisoned["text"], torch.ones(train.n_items, dtype=torch.bool))
    assert float(table[u].abs().max()) > 100  # the same function fed the full log would leak


def test_missing_modalities_get_mask_zero():
    train, feats = planted()
    feats = {k: v.clone() for k, v in feats.items()}
    feats["image"][3] = 0.0  # an item without image
    user0_items = train.item[train.user == 0].unique()
    feats["text"][user0_items] = 0.0  # user 0's training items have no text: user 0 has no review
    model = make(train, feats)
    assert not bool(model.has_image[3]) and bool(model.has_image[4])
    assert not bool(model.has_review[0]) and bool(model.has_review[1])
    reps = model.propagate()
    im = model.item_mods.index("image")
    assert float(reps.extras["alpha_item"][3, im].detach()) == 0.0
    assert float(reps.extras["alpha_user"][0, model.user_mods.index("review")].detach()) == 0.0
    # an item without an image never enters CIMA
    with_text = torch.nonzero(model.has_text).flatten()
    probe = torch.unique(torch.cat([torch.tensor([3]), with_text[with_text != 3][:4]]))
    t, _ = model._cima_inputs(probe)
    assert t.shape[0] == probe.numel() - 1  # item 3 has text but no image


# -- 4. graph encoder ----------------------------------------------------------------------------------
def test_graph_encoder_against_dense_reference_and_invariants():
    train, feats = planted()
    for norm, name in (("sym", "sym"), ("row", "mean")):
        g = cointeraction_graph(train, side="item", weight="binary", norm=norm)
        a = cointeraction_graph(train, side="item", weight="binary").to_dense().double()
        deg = a.sum(1)
        inv = torch.where(deg > 0, deg.pow(-0.5 if norm == "sym" else -1.0), torch.zeros_like(deg))
        ahat = inv[:, None] * a * inv[None, :] if norm == "sym" else inv[:, None] * a
        e0 = torch.nn.init.xavier_uniform_(torch.empty(train.n_items, 64))
        out = LightGCNPropagation(2, "mean")(g, e0)
        ref = (e0.double() + ahat @ e0.double() + ahat @ ahat @ e0.double()) / 3
        assert out.shape == (train.n_items, 64)
        assert torch.allclose(out.double(), ref, atol=1e-6), name
        assert torch.equal(LightGCNPropagation(0, "mean")(g, e0), e0)
    # an isolated node keeps E0 / (L + 1)
    iso = inter(TOY + [(3, 5)], 4, 7)  # item 6 has no user
    g = cointeraction_graph(iso, side="item", weight="binary", norm="sym")
    e0 = torch.randn(7, 64)
    assert torch.allclose(LightGCNPropagation(2, "mean")(g, e0)[6], e0[6] / 3)
    # sym on a k-regular graph (a 6-cycle of users: each shares one item with either neighbour)
    ring = inter([(u, u) for u in range(6)] + [(u, (u + 1) % 6) for u in range(6)], 6, 6)
    g = cointeraction_graph(ring, side="user", weight="binary", norm="sym")
    assert torch.all(g.degree() == 2)
    c = torch.ones(6, 64) * 0.7
    assert torch.allclose(LightGCNPropagation(2, "mean")(g, c), c, atol=1e-6)


# -- 5. projections --------------------------------------------------------------------------------
def test_projection_shapes_and_parameter_counts_at_the_papers_widths():
    train, feats = planted(d_text=512, d_image=512)
    model = make(train, feats)
    user = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("user_proj", "user_attn")))
    item = sum(p.numel() for n, p in model.named_parameters() if n.startswith(("item_proj", "item_attn")))
    assert user == 512 * 64 + 64 + 64 * 64 + 64 + 64 == 37_056  # ~37 k
    assert item == 2 * (512 * 64 + 64) + 64 * 64 + 64 + 64 == 69_888  # ~70 k
    assert model.user_id.shape == (train.n_users, 64) and model.item_id.shape == (train.n_items, 64)
    reps = model.propagate()
    assert reps.user.shape == (train.n_users, 64) and reps.item.shape == (train.n_items, 64)


# -- 6. attention ----------------------------------------------------------------------------------
def test_attention_weights_masks_uniform_and_equivariance():
    torch.manual_seed(0)
    att = ModalityAttention(16)
    h = torch.randn(50, 3, 16)
    e, a = att(h)
    assert torch.all(a >= 0) and torch.allclose(a.sum(1), torch.ones(50))
    assert torch.allclose(e, (a.unsqueeze(-1) * h).sum(1))
    perm = torch.tensor([2, 0, 1])
    e2, a2 = att(h[:, perm])
    assert torch.allclose(a2, a[:, perm], atol=1e-6) and torch.allclose(e2, e, atol=1e-6)
    mask = torch.ones(50, 3, dtype=torch.bool)
    mask[:10, 1] = False
    mask[10:20, :2] = False
    _, am = att(h, mask)
    assert torch.all(am[:10, 1] == 0) and torch.allclose(am[:10].sum(1), torch.ones(10))
    assert torch.all(am[10:20, 2] == 1.0)  # one available modality: alpha = 1
    none = torch.zeros(2, 3, dtype=torch.bool)
    e0, a0 = att(h[:2], none)
    assert torch.all(a0 == 0) and torch.all(e0 == 0) and torch.isfinite(e0).all()
    with torch.no_grad():
        att.a.zero_()
    _, au = att(h, mask)
    assert torch.allclose(au[20:], torch.full((30, 3), 1 / 3)) and torch.allclose(au[:10, 0], torch.full((10,), 0.5))
    # scores are ReLU'd inside the softmax: all negative scores give uniform weights
    with torch.no_grad():
        att.a.fill_(1.0)
    _, an = att(-h.abs())
    assert torch.allclose(an, torch.full_like(an, 1 / 3))


# -- 7. CIMA ---------------------------------------------------------------------------------------
def test_cima_reference_values_invariances_and_symmetry():
    g = torch.Generator().manual_seed(0)
    n = 32
    t, v = torch.randn(n, 64, generator=g), torch.randn(n, 64, generator=g)
    # random features: about log N (cosines near 0 against tau = 0.1 still spread the logits a little)
    assert abs(float(cima_loss(t, v, 0.1)) - math.log(n)) < 0.6
    q = torch.linalg.qr(torch.randn(64, 64, generator=g))[0][:n]  # orthonormal rows
    want = math.log(1 + (n - 1) * math.exp(-1 / 0.1))
    assert float(cima_loss(q, q, 0.1)) == pytest.approx(want, rel=1e-3)
    scale = torch.rand(n, 1, generator=g) * 10 + 0.1
    assert float(cima_loss(t * scale, v, 0.1)) == pytest.approx(float(cima_loss(t, v, 0.1)), rel=1e-5)
    assert float(cima_loss(v, t, 0.1)) == pytest.approx(float(cima_loss(t, v, 0.1)), rel=1e-5)
    # the literal BCE reading: sigmoid on the scaled cosine, identity targets, mean over N x N
    s = torch.nn.functional.normalize(t, dim=1) @ torch.nn.functional.normalize(v, dim=1).T / 0.1
    ref = -(torch.eye(n) * torch.log(torch.sigmoid(s)) + (1 - torch.eye(n)) * torch.log(1 - torch.sigmoid(s))).mean()
    assert float(cima_loss(t, v, 0.1, "bce")) == pytest.approx(float(ref), rel=1e-5)
    with pytest.raises(ValueError, match="cima_variant"):
        cima_loss(t, v, 0.1, "mse")


def test_cima_gradients_reach_only_the_item_text_and_image_projections():
    train, feats = planted()
    model = make(train, feats, use_bce=False)
    got = grads(model, batch_of(model, train))
    assert {n for n, g in got.items() if g} == {"item_proj.text.weight", "item_proj.text.bias",
                                                "item_proj.image.weight", "item_proj.image.bias"}


# -- 8. BCE and its sampler -------------------------------------------------------------------------
def test_bce_negatives_zero_embeddings_and_gradient_sign():
    train, feats = planted()
    model = make(train, feats, use_cima=False)
    seen = set(zip(train.user.tolist(), train.item.tolist()))
    b = batch_of(model, train, num_neg=3)
    assert b["neg"].shape == (b["user"].numel(), 3)
    assert not any((u, i) in seen for u, row in zip(b["user"].tolist(), b["neg"].tolist()) for i in row)
    reps = model.train_forward(b)
    zero = type(reps)(user=torch.zeros_like(reps.user), item=torch.zeros_like(reps.item),
                      user_ids=reps.user_ids, item_ids=reps.item_ids)
    assert float(model.loss(b, zero)["bce"]) == pytest.approx(math.log(2), rel=1e-6)
    # one gradient step on the fused vectors raises positive scores and lowers negative ones
    u = reps.user.detach().requires_grad_()
    i = reps.item.detach().requires_grad_()
    leaf = type(reps)(user=u, item=i, user_ids=reps.user_ids, item_ids=reps.item_ids)
    model.loss(b, leaf)["bce"].backward()
    from graphrec.models.base import rows_of
    step = type(reps)(user=u - 1.0 * u.grad, item=i - 1.0 * i.grad, user_ids=reps.user_ids, item_ids=reps.item_ids)
    before = (rows_of(leaf, "user", b["user"]) * rows_of(leaf, "item", b["pos"])).sum(-1)
    after = (rows_of(step, "user", b["user"]) * rows_of(step, "item", b["pos"])).sum(-1)
    assert float((after - before).mean()) > 0


# -- 9 / 14. lambda and the ablation switches ---------------------------------------------------------
def test_lambda_zero_is_use_cima_false_and_lambda_one_leaves_users_untouched():
    train, feats = planted()
    b = batch_of(make(train, feats), train)
    outs = []
    for hp in ({"lam": 0.0}, {"use_cima": False}):
        m = make(train, feats, **hp)
        opt = torch.optim.Adam(m.parameters(), lr=0.01)
        for _ in range(3):
            opt.zero_grad()
            sum(m.loss(b, m.train_forward(b)).values()).backward()
            opt.step()
        outs.append(m.propagate())
    assert torch.equal(outs[0].user, outs[1].user) and torch.equal(outs[0].item, outs[1].item)
    m = make(train, feats, lam=1.0)
    got = grads(m, b)
    user_side = [n for n in got if n.startswith(("user_id", "user_proj", "user_attn"))]
    assert user_side and not any(got[n] for n in user_side)
    assert not got["item_id"] and not any(got[n] for n in got if n.startswith("item_attn"))


def test_each_switch_changes_only_its_path():
    train, feats = planted()
    b = batch_of(make(train, feats), train)
    full = grads(make(train, feats, lam=0.5), b)
    assert all(full.values())  # every parameter trains in the full model
    no_cima = grads(make(train, feats, use_cima=False), b)
    assert all(no_cima.values())  # BCE reaches every parameter through the fused vectors
    m = make(train, feats, user_modalities=["graph"])  # Sharee-like: users have no review text
    assert "review" not in m.user_proj and not hasattr(m, "x_review")
    assert torch.all(m.propagate().extras["alpha_user"] == 1.0)
    got = grads(m, b)  # one user modality: its weight is 1 whatever a_u is, so a_u alone has no gradient
    assert not got["user_attn.a"] and all(g for n, g in got.items() if n != "user_attn.a")
    m = make(train, feats, item_modalities=["text", "graph"])  # CIMA off automatically
    assert m.w_cima == 0.0 and "cima" not in m.loss(b, m.train_forward(b))
    assert not hasattr(m, "x_image")
    m = make(train, feats, user_modalities=["review"], item_modalities=["text", "image"])
    assert "uu" not in MCPT.graph_specs({"user_modalities": ["review"], "item_modalities": ["text", "image"]})
    assert not any(n.endswith("_id") for n, _ in m.named_parameters())
    with pytest.raises(ValueError, match="nothing to train"):
        make(train, feats, use_cima=False, use_bce=False)
    with pytest.raises(ValueError, match="unknown modality"):
        make(train, feats, item_modalities=["audio"])


def test_batch_local_training_rows_equal_whole_graph_propagation():
    train, feats = planted()
    b = batch_of(make(train, feats), train)
    for norm in ("sym", "mean"):
        ms = [make(train, feats, graph_norm=norm, batch_local=bl) for bl in (True, False)]
        gs = []
        for m in ms:
            loss = sum(m.loss(b, m.train_forward(b)).values())
            loss.backward()
            gs.append((float(loss), m.item_id.grad.clone(), m.user_id.grad.clone()))
        assert gs[0][0] == pytest.approx(gs[1][0], rel=1e-5)
        assert torch.allclose(gs[0][1], gs[1][1], atol=1e-6) and torch.allclose(gs[0][2], gs[1][2], atol=1e-6)


# -- 15. content-average initialiser -------------------------------------------------------------------
def test_content_average_is_pca_of_the_averaged_normalised_features():
    g = torch.Generator().manual_seed(0)
    t, v = torch.randn(50, 16, generator=g), torch.randn(50, 16, generator=g)
    out = content_average_tables({"text": t, "image": v}, torch.arange(50), 4)
    x = (torch.nn.functional.normalize(t, dim=1) + torch.nn.functional.normalize(v, dim=1)) / 2
    xc = x - x.mean(0)
    # the columns are uncorrelated, with the top-4 principal variances
    cov = out.T @ out / 50
    assert torch.allclose(cov, torch.diag(cov.diagonal()), atol=1e-5)
    ev = torch.linalg.eigvalsh(xc.T @ xc / 50).flip(0)[:4]
    assert torch.allclose(cov.diagonal(), ev, atol=1e-5)
    assert torch.equal(out, content_average_tables({"text": t, "image": v}, torch.arange(50), 4))
    # different widths: concatenated instead of averaged
    assert content_average_tables({"text": t, "image": torch.randn(50, 9, generator=g)}, torch.arange(50), 4).shape == (50, 4)


def test_cima_on_raw_features_is_the_literal_reading_and_trains_nothing():
    train, feats = planted(d_text=20, d_image=20)
    m = make(train, feats, cima_on="raw", lam=0.5)
    b = batch_of(m, train)
    reps = m.train_forward(b)
    items = torch.unique(b["pos"])
    assert torch.equal(reps.extras["cima_text"], feats["text"][items])
    terms = m.loss(b, reps)
    assert float(terms["cima"]) == pytest.approx(0.5 * float(cima_loss(feats["text"][items], feats["image"][items])))
    assert not terms["cima"].requires_grad  # frozen features: no parameter on this path
    with pytest.raises(ValueError, match="trains nothing"):
        make(train, feats, cima_on="raw", use_bce=False)
    with pytest.raises(ValueError, match="one width"):
        make(*planted(d_text=20, d_image=24), cima_on="raw")
