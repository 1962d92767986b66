"""Demure (graphrec.models.demure) and its layers (graphrec.nn.attentive_pooling, poi_augment).

Oracles: the literal equations of the paper (Eqs. 1-3 ratio form, Eq. 6, Eq. 14 by hand),
``F.cross_entropy``, finite differences of the interest scores, per-user recomputation, exact
selection counts on hand-made scores, empirical sampling frequencies, and bitwise identity of
Demure at λ = 0 with its Base Model.
"""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import IdMap, Interactions
from graphrec.models import ModelContext, get_model
from graphrec.models.demure import Demure, DemureBase
from graphrec.nn import poi_augment as aug
from graphrec.nn.attentive_pooling import AttentivePooling

N_ITEMS, N_USERS, PAD = 40, 6, 40


def context(n_items: int = N_ITEMS, dims=(5, 7, 3), seed: int = 0, dtype=torch.float32) -> ModelContext:
    g = torch.Generator().manual_seed(seed)
    train = Interactions(torch.tensor([0, 1]), torch.tensor([0, 1]), IdMap(np.arange(N_USERS), "user"),
                         IdMap(np.arange(n_items), "item"))
    feats = ItemFeatures({f"m{j}": torch.randn(n_items, d, generator=g) for j, d in enumerate(dims)},
                         IdMap(np.arange(n_items), "item"))
    return ModelContext(n_users=N_USERS, n_items=n_items, train=train, features=feats)


def make(cls=Demure, seed: int = 0, **hp) -> Demure:
    torch.manual_seed(seed)
    kw = dict(embedding_dim=8, modalities=["m0", "m1", "m2"], max_len=8, n_neg=15, min_prefix=1, length_buckets=1)
    kw.update(hp)
    return cls(context(), **kw)


def left_pad(rows, L=8, pad=PAD):
    return torch.tensor([[pad] * (L - len(r)) + list(r) for r in rows])


def shifted(rows, L=8):
    return {"seq": left_pad([r[:-1] for r in rows], L), "target": left_pad([r[1:] for r in rows], L),
            "user": torch.arange(len(rows))}


ROWS = [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10], [11, 12, 13, 14, 15, 16, 17, 18, 19]]


# -- encoders (Eqs. 1-4) -----------------------------------------------------------------------
def test_attention_weights_are_distributions_and_eq3_ratio():
    torch.manual_seed(0)
    pool = AttentivePooling(6).double()
    x = torch.randn(4, 5, 6, dtype=torch.float64)
    out, pair, beta = pool(x)
    assert torch.allclose(pair.sum(-1), torch.ones(4, 5, dtype=torch.float64))
    assert torch.allclose(beta.sum(-1), torch.ones(4, dtype=torch.float64))
    s = pool.f(x) @ pool.g(x).transpose(-1, -2)
    literal = s.exp().sum(-1) / s.exp().sum((-1, -2)).unsqueeze(-1)   # Eq. 3 as written
    assert torch.allclose(beta, literal, atol=1e-6)
    mixed = torch.softmax(s, -1) @ pool.h(x)
    assert torch.allclose(out, (beta.unsqueeze(-1) * mixed).sum(1), atol=1e-12)


def test_padding_gets_zero_attention_and_extra_padding_changes_nothing():
    torch.manual_seed(0)
    pool = AttentivePooling(6).double()
    x = torch.randn(2, 4, 6, dtype=torch.float64)
    mask = torch.tensor([[False, True, True, True], [False, False, True, True]])
    out, pair, beta = pool(x, mask)
    assert (beta[~mask] == 0).all() and (pair[:, :, :][~mask.unsqueeze(1).expand_as(pair)] == 0).all()
    x5 = torch.cat([torch.randn(2, 5, 6, dtype=torch.float64), x], 1)   # 5 more padding columns
    m5 = torch.cat([torch.zeros(2, 5, dtype=torch.bool), mask], 1)
    assert torch.allclose(pool(x5, m5).out, out, atol=1e-12)
    empty = pool(x, torch.zeros(2, 4, dtype=torch.bool))
    assert torch.equal(empty.out, torch.zeros(2, 6, dtype=torch.float64))


def test_user_vector_shape_padding_and_permutation_invariance():
    m = make().double().eval()
    seq = left_pad([[3, 9, 4, 20]])
    u = m.encode(seq)["u"]
    assert u.shape == (1, 8)
    wider = torch.cat([torch.full((1, 5), PAD), seq], 1)
    m.max_len = 13
    assert torch.allclose(m.encode(wider)["u"], u, atol=1e-12)
    # no positional encoding: the paper's encoder ignores the order of the history
    assert torch.allclose(m.encode(left_pad([[20, 4, 3, 9]]))["u"], u, atol=1e-12)


# -- recommendation loss (Eqs. 5-6) --------------------------------------------------------------
def test_sampled_softmax_with_all_items_equals_full_cross_entropy_and_masks_hits():
    torch.manual_seed(0)
    u, items = torch.randn(5, 4, dtype=torch.float64), torch.randn(9, 4, dtype=torch.float64)
    target = torch.tensor([0, 3, 3, 8, 1])
    ids = torch.arange(9)   # every item: the target is an accidental hit in every row, masked
    got = aug.sampled_softmax_loss(u, items[target], items, ids, target)
    assert torch.allclose(got, F.cross_entropy(u @ items.T, target), atol=1e-12)
    # a negative equal to the target is removed: adding it changes nothing
    neg = torch.tensor([2, 5])
    a = aug.sampled_softmax_loss(u[:1], items[target[:1]], items[neg], neg, target[:1])
    b = aug.sampled_softmax_loss(u[:1], items[target[:1]], items[torch.tensor([2, 5, 0])], torch.tensor([2, 5, 0]),
                                 target[:1])
    assert torch.allclose(a, b, atol=1e-12)


@pytest.mark.slow
def test_tiny_model_overfits_32_sequences():
    """32 random histories with random next items: the content-only model memorises them (top-1
    = the target for every one) and its loss falls from ln(40) = 3.7 below 1."""
    torch.manual_seed(1)
    rows = [[int(x) for x in torch.randperm(N_ITEMS)[:6]] for _ in range(32)]
    m = make(n_neg=0, embedding_dim=32)  # full softmax
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    batch = {"seq": left_pad([r[:-1] for r in rows]), "target": left_pad([[PAD] * 4 + [r[-1]] for r in rows]),
             "user": torch.arange(32)}
    for _ in range(600):
        opt.zero_grad()
        loss = sum(m.loss(batch, m.train_forward(batch)).values())
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 1.0
    m.eval()
    top1 = m.score_sequences({"seq": batch["seq"]}, m.propagate()).argmax(1)
    assert (top1 == torch.tensor([r[-1] for r in rows])).float().mean() == 1.0


def test_training_instances_are_the_prefixes():
    m = make(min_prefix=2)
    hist, target = m.instances(shifted([[1, 2, 3, 4]]))
    assert target.tolist() == [3, 4]
    assert hist.tolist() == [[PAD, 1, 2], [1, 2, 3]]


# -- interest scores (Eqs. 7-8) ------------------------------------------------------------------
def _scores(m, seq, target):
    return m.interest_scores({"seq": seq, "target": target})


def test_batched_interest_scores_equal_per_user_scores_and_are_detached():
    m = make().double()
    seq = left_pad([[1, 2, 3], [4, 5, 6, 7, 8], [9, 10]])
    target = torch.tensor([11, 12, 13])
    s = _scores(m, seq, target)
    assert not s["alpha_item"].requires_grad and not s["alpha_mod"].requires_grad
    for b in range(3):
        one = _scores(m, seq[b:b + 1], target[b:b + 1])
        assert torch.allclose(one["alpha_item"], s["alpha_item"][b:b + 1], atol=1e-5)
        assert torch.allclose(one["alpha_mod"], s["alpha_mod"][b:b + 1], atol=1e-5)
    assert (s["alpha_item"][~s["valid"]] == 0).all()


def test_interest_score_is_the_mean_gradient_finite_difference():
    m = make().double().eval()
    seq, target, d = left_pad([[1, 2, 3, 4]]), torch.tensor([9]), 8
    s = _scores(m, seq, target)
    enc = m.encode(seq)
    pos = m.item_vectors(m.tokens(target))
    delta = 1e-6
    for t in range(4, 8):
        A = enc["A"].detach().clone()
        A[0, t] += delta  # δ·1 on every feature of item t's activation
        psi1 = (m.user_vectors(A, enc["valid"]) * pos).sum()
        psi0 = (m.user_vectors(enc["A"].detach(), enc["valid"]) * pos).sum()
        fd = float((psi1 - psi0).detach()) / delta
        assert fd == pytest.approx(d * float(s["alpha_item"][0, t]), rel=1e-4, abs=1e-7)


def test_padding_is_never_selected():
    m = make(gamma_item=0.9, gamma_mod=0.9)
    s = _scores(m, left_pad([[1, 2], [3, 4, 5]]), torch.tensor([6, 7]))
    for k in ("poi_item", "noise_item"):
        assert not (s[k] & ~s["valid"]).any()
    for k in ("poi_mod", "noise_mod"):
        assert not (s[k] & ~s["valid"].unsqueeze(-1)).any()


# -- augmentation (Eqs. 9-13) --------------------------------------------------------------------
def test_selection_counts_and_directions_on_hand_made_scores():
    valid = torch.tensor([[False, True, True, True, True, True]])
    a_item = torch.tensor([[0.0, 5.0, 1.0, 4.0, 2.0, 3.0]])
    a_mod = torch.arange(18, dtype=torch.float32).view(1, 6, 3)
    for top in (True, False):
        items, slots = aug.select_positions(a_item, a_mod, valid, 0.4, 0.2, top)
        k_i, k_m = 2, math.floor(3 * 3 * 0.2)   # floor(5*0.4)=2 items, floor(3*3*0.2)=1 slot
        assert int(items.sum()) == k_i and int(slots.sum()) == k_m
        assert not (slots & items.unsqueeze(-1)).any()
        chosen = set(torch.nonzero(items[0]).flatten().tolist())
        assert chosen == ({1, 3} if top else {2, 4})
        rest_slots = torch.nonzero(slots[0]).tolist()
        # the remaining items are 2, 4, 5 (top) or 1, 3, 5 (bottom); a_mod grows with position
        assert rest_slots == ([[5, 2]] if top else [[1, 0]])


def test_replacement_frequencies_match_eq10():
    sim = torch.tensor([[0.0, 1.0, 2.0, 3.0, 5.0]])
    allowed = torch.ones_like(sim, dtype=torch.bool)
    p = (sim - 0.0) / 5.0
    for similar, expect in ((True, p / p.sum()), (False, (1 - p) / (1 - p).sum())):
        w = aug.replacement_weights(sim, allowed, similar)
        g = torch.Generator().manual_seed(0)
        draws = aug.sample_replacements(w.expand(20000, 5), 1, g).flatten()
        freq = torch.bincount(draws, minlength=5).double() / 20000
        assert 0.5 * (freq - expect.double()).abs().sum() < 0.02


def test_constant_similarity_row_samples_uniformly_without_nan():
    sim = torch.full((1, 4), 3.0)
    allowed = torch.tensor([[True, True, False, True]])
    for similar in (True, False):
        w = aug.replacement_weights(sim, allowed, similar)
        assert torch.isfinite(w).all()
        assert torch.allclose(w / w.sum(), torch.tensor([[1 / 3, 1 / 3, 0.0, 1 / 3]]))


def _views(m, batch, seed=0):
    """(the step's single instance group, α_item, α_mod) with ``length_buckets=1``."""
    torch.manual_seed(seed)
    ex = m._groups(m.train_forward(batch).extras)[0]
    psi = (ex["u"] * ex["pos"]).sum(-1)
    (a_item, a_mod), = m._alphas(psi, [ex["A"]], [ex["E"]], retain_graph=True)
    return ex, a_item, a_mod


def test_views_replace_from_the_pool_never_from_the_users_items():
    m = make(gamma_item=0.5, gamma_mod=0.5, n_views=3, n_neg=20)
    batch = shifted(ROWS)
    ex, a_item, a_mod = _views(m, batch)
    hist, target, pool = ex["hist"], ex["target"], ex["cand"]
    allowed = m._allowed(hist, target, pool)
    for n in range(hist.shape[0]):
        own = set(hist[n][hist[n] != PAD].tolist()) | {int(target[n])}
        ok = set(pool[allowed[n]].tolist())
        assert not (own & ok) and ok | (own & set(pool.tolist())) == set(pool.tolist())
    # spy on the draws: item-level replacements are rows of the pool's item vectors, not the user's
    torch.manual_seed(3)
    u_pos, u_neg = m.views(ex, a_item, a_mod)
    assert u_pos.shape == u_neg.shape == (3, hist.shape[0], 8)


def test_same_modality_replacement_and_shapes(monkeypatch):
    m = make(gamma_item=0.0, gamma_mod=0.5, n_views=1)
    ex, a_item, a_mod = _views(m, shifted(ROWS))
    captured = []
    orig = m.item_vectors

    def spy(tokens):
        captured.append(tokens)
        return orig(tokens)
    monkeypatch.setattr(m, "item_vectors", spy)
    u_pos, u_neg = m.views(ex, a_item, a_mod)
    assert u_pos.shape == u_neg.shape == (1,) + ex["u"].shape
    _, slots = aug.select_positions(a_item, a_mod, ex["valid"], m.gamma_item, m.gamma_mod, top=False)
    toks = captured[0]            # [R, M, d]: the re-encoded items of the positive view
    r_n, r_t = slots.any(-1).nonzero(as_tuple=True)
    assert toks.shape == (r_n.numel(), 3, 8)
    pool_E = ex["cand_E"]
    for r in range(toks.shape[0]):
        for mm in range(3):
            same = torch.equal(toks[r, mm], ex["E"][r_n[r], r_t[r], mm])
            assert same != bool(slots[r_n[r], r_t[r], mm])   # exactly the selected slots change
            if not same:   # ... into the same modality's token of a pool item
                assert any(torch.equal(toks[r, mm], pool_E[c, mm]) for c in range(pool_E.shape[0]))


def test_zero_rates_give_identical_views():
    m = make(gamma_item=0.0, gamma_mod=0.0, n_views=2).double()
    ex, a_item, a_mod = _views(m, shifted(ROWS))
    u_pos, u_neg = m.views(ex, a_item, a_mod)
    for v in (u_pos, u_neg):
        assert torch.allclose(v, ex["u"].unsqueeze(0).expand_as(v), atol=1e-12)


def test_negative_views_draw_less_similar_replacements_than_positive_views():
    q = torch.randn(200, 8, generator=torch.Generator().manual_seed(0))
    cands = torch.randn(50, 8, generator=torch.Generator().manual_seed(1))
    sim = q @ cands.T
    allowed = torch.ones_like(sim, dtype=torch.bool)
    g = torch.Generator().manual_seed(2)
    pos = aug.sample_replacements(aug.replacement_weights(sim, allowed, True), 5, g)
    neg = aug.sample_replacements(aug.replacement_weights(sim, allowed, False), 5, g)
    assert sim.gather(1, pos).mean() > sim.gather(1, neg).mean() + 0.5


def test_j_views_differ_only_in_sampled_replacements():
    m = make(gamma_item=0.4, gamma_mod=0.3, n_views=2).double()
    ex, a_item, a_mod = _views(m, shifted(ROWS))
    items, slots = aug.select_positions(a_item, a_mod, ex["valid"], m.gamma_item, m.gamma_mod, top=True)
    # the selected positions are a function of the scores only: the same for every view
    items2, slots2 = aug.select_positions(a_item, a_mod, ex["valid"], m.gamma_item, m.gamma_mod, top=True)
    assert torch.equal(items, items2) and torch.equal(slots, slots2)
    torch.manual_seed(0)
    u_pos, u_neg = m.views(ex, a_item, a_mod)
    assert not torch.allclose(u_pos[0], u_pos[1])
    assert not torch.allclose(u_neg[0], u_neg[1])  # different draws, different views


# -- losses and training (Eqs. 14-15) ------------------------------------------------------------
def test_contrastive_loss_hand_values():
    torch.manual_seed(0)
    u, up, un = torch.randn(4, 3, dtype=torch.float64), torch.randn(1, 4, 3, dtype=torch.float64), \
        torch.randn(1, 4, 3, dtype=torch.float64)
    got = aug.view_contrastive_loss(u, up, un)
    assert torch.allclose(got, F.softplus((u * un[0]).sum(-1) - (u * up[0]).sum(-1)).mean(), atol=1e-12)
    up2, un2 = torch.randn(2, 4, 3, dtype=torch.float64), torch.randn(2, 4, 3, dtype=torch.float64)
    sp, sn = (up2 * u).sum(-1).exp(), (un2 * u).sum(-1).exp()
    hand = (-torch.log(sp.sum(0) / (sp.sum(0) + sn.sum(0)))).mean()
    assert torch.allclose(aug.view_contrastive_loss(u, up2, un2), hand, atol=1e-12)


def test_one_step_on_the_contrastive_loss_increases_the_margin():
    torch.manual_seed(0)
    u = torch.randn(8, 4, requires_grad=True)
    up, un = torch.randn(1, 8, 4), torch.randn(1, 8, 4)
    margin = lambda: float(((u * up[0]).sum(-1) - (u * un[0]).sum(-1)).mean().detach())
    before = margin()
    aug.view_contrastive_loss(u, up, un).backward()
    with torch.no_grad():
        u -= 0.1 * u.grad
    assert margin() > before


def test_lambda_zero_is_bit_identical_to_the_base_model(monkeypatch):
    batch = shifted(ROWS)
    base = make(DemureBase, seed=5, length_buckets=2)
    dem = make(Demure, seed=5, lambda_aug=0.0, lambda_cl=0.0, length_buckets=2)

    def boom(*a, **k):
        raise AssertionError("augmentation ran at lambda = 0")
    monkeypatch.setattr(aug, "select_positions", boom)
    monkeypatch.setattr(Demure, "views", boom)
    opts = [torch.optim.Adam(x.parameters(), lr=1e-2, weight_decay=1e-7) for x in (base, dem)]
    for step in range(3):
        losses, grads = [], []
        for model, opt in zip((base, dem), opts):
            torch.manual_seed(100 + step)   # the same negatives for both
            opt.zero_grad()
            terms = model.loss(batch, model.train_forward(batch))
            loss = sum(terms.values())
            loss.backward()
            losses.append(loss.detach())
            grads.append([p.grad.clone() for p in model.parameters()])
            opt.step()
        assert torch.equal(losses[0], losses[1])
        assert all(torch.equal(a, b) for a, b in zip(*grads))
    assert all(torch.equal(a, b) for a, b in zip(base.parameters(), dem.parameters()))


def test_demure_terms_decrease_over_training():
    torch.manual_seed(0)
    rows = [[int(x) for x in torch.randperm(N_ITEMS)[:7]] for _ in range(24)]
    m = make(n_neg=20, embedding_dim=16, lambda_aug=0.5, lambda_cl=0.1, n_views=2)
    opt = torch.optim.Adam(m.parameters(), lr=5e-3)
    batch = shifted(rows)
    hist = []
    for _ in range(60):
        opt.zero_grad()
        terms = m.loss(batch, m.train_forward(batch))
        sum(terms.values()).backward()
        opt.step()
        hist.append({k: float(v.detach()) for k, v in terms.items()})
    for k in ("ssm", "ssm_aug", "cont"):
        first = sum(h[k] for h in hist[:10]) / 10
        last = sum(h[k] for h in hist[-10:]) / 10
        assert last < first, (k, first, last)


def test_registered_names_and_bad_values():
    assert get_model("demure") is Demure and get_model("demure-base") is DemureBase
    with pytest.raises(ValueError, match="gamma_item"):
        make(gamma_item=1.5)
    with pytest.raises(ValueError, match="score_mode"):
        make(score_mode="gradcam")
    with pytest.raises(KeyError, match="nope"):
        make(modalities=["nope"])


def test_explain_is_json_serialisable_and_names_every_position():
    import json
    m = make()
    out = m.explain(torch.tensor([3, 4, 5, 6]))
    json.dumps(out)
    assert len(out["items"]) == 4 and set(out["modality_profile"]) == {"m0", "m1", "m2"}
    assert out["target"] not in (3, 4, 5, 6)   # the default target is the top-1 unseen item
    assert m.explain(torch.tensor([3, 4]), target=7)["target"] == 7


# -- ComiRec's metrics (the paper's Recall/NDCG) -------------------------------------------------
def test_comirec_metrics_hand_examples():
    from graphrec.data.sequences import Sequences
    from graphrec.eval.comirec import comirec_metrics
    a, b, c = 1, 2, 3
    targets = Sequences.from_lengths(torch.tensor([3, 2, 3]), torch.tensor([a, b, c, 5, 6, a, a, 9]), 10)
    ranked = torch.tensor([[c, 7, a, 8], [0, 4, 7, 8], [a, 0, 4, 7]])
    ok = torch.ones_like(ranked, dtype=torch.bool)
    out = comirec_metrics(ranked, ok, targets, torch.arange(3), [4])
    r, n = out["comirec_recall@4"], out["comirec_ndcg@4"]
    assert float(r[0]) == pytest.approx(2 / 3)
    assert float(n[0]) == pytest.approx((1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3)))
    assert float(r[1]) == 0 and float(n[1]) == 0
    # duplicate targets count separately (ComiRec): a, a found -> 2 of 3; DCG of indices 0, 1
    assert float(r[2]) == pytest.approx(2 / 3) and float(n[2]) == pytest.approx(1.0)


def test_user_split_history_and_targets_for_ten_items():
    from graphrec.data.split import make_split
    from graphrec.eval.sequential import next_item_targets
    n_users, n = 30, 10
    user = torch.arange(n_users).repeat_interleave(n)
    item = torch.arange(n_users * n) % 25
    inter = Interactions(user, item, IdMap(np.arange(n_users), "user"), IdMap(np.arange(25), "item"),
                         timestamp=torch.arange(n_users * n))
    sp = make_split(inter, "user", seed=0)
    sets = next_item_targets(sp, "test")
    for r in range(len(sets.users)):
        u = int(sets.users[r])
        full = item[user == u].tolist()
        assert sets.histories[r].tolist() == full[:8] and sets.targets[r].tolist() == full[8:]
    parts = [set(getattr(sp, p).user.unique().tolist()) for p in ("train", "valid", "test")]
    assert not (parts[0] & parts[1]) and not (parts[0] & parts[2]) and not (parts[1] & parts[2])
    assert [len(p) for p in parts] == [24, 3, 3]


def test_histories_longer_than_max_len_keep_the_latest_items():
    m = make(max_len=4).eval()
    long = torch.tensor([[1, 2, 3, 4, 5, 6, 7]])
    reps = m.propagate()
    assert torch.allclose(m.score_sequences({"seq": long}, reps), m.score_sequences({"seq": long[:, -4:]}, reps))
    assert not torch.allclose(m.score_sequences({"seq": long}, reps),
                              m.score_sequences({"seq": long[:, :4]}, reps))
