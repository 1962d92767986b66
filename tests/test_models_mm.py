"""VBPR, FREEDOM, SAND (a-d) and the SAND plug-ins built directly from a ModelContext on tiny data."""
import pytest
import torch

from graphrec import losses
from graphrec.config import load_config
from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import IdMap, Interactions
from graphrec.graphs import build
from graphrec.models import ModelContext, get_model

MM_MODELS = ["vbpr", "freedom", "sand", "sand-a", "sand-b", "sand-c", "sand-d", "vbpr+sand", "freedom+sand"]


def tiny(n_users=30, n_items=24, seed=0, modalities=("image", "text")):
    g = torch.Generator().manual_seed(seed)
    u = torch.arange(n_users).repeat_interleave(4)
    i = torch.stack([torch.randperm(n_items, generator=g)[:4] for _ in range(n_users)]).flatten()
    train = Interactions(u, i, IdMap(list(range(n_users)), "user"), IdMap(list(range(n_items)), "item"))
    dims = {"image": 16, "text": 8}
    feats = ItemFeatures({m: torch.randn(n_items, dims[m], generator=g) for m in modalities}, train.item_map)
    return train, feats


def make(name, train, feats, **over):
    cls = get_model(name)
    hp = {**load_config(name, "synthetic")["model_params"], **over}
    graphs = {k: build(s, train, feats, None) for k, s in cls.graph_specs(hp).items()}
    ctx = ModelContext(train.n_users, train.n_items, train, graphs, feats.select(cls.required_modalities(hp)))
    torch.manual_seed(0)
    return cls(ctx, **hp), graphs


def batch_of(train, b=16, seed=1):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, len(train), (b,), generator=g)
    return {"user": train.user[idx], "pos": train.item[idx], "neg": torch.randint(0, train.n_items, (b,), generator=g)}


@pytest.mark.parametrize("name", MM_MODELS)
def test_contract_scores_are_dot_products_and_loss_is_finite(name):
    train, feats = tiny()
    model, _ = make(name, train, feats)
    model.eval()
    with torch.no_grad():
        reps = model.propagate()
        users = torch.tensor([0, 3, 7])
        s = model.score(users, reps)
    assert s.shape == (3, train.n_items)
    torch.testing.assert_close(s, reps.user[users] @ reps.item.T)
    model.train()
    model.pre_epoch(0, torch.Generator().manual_seed(0))
    terms = model.loss(batch_of(train), model.propagate())
    assert "bpr" in terms and all(torch.isfinite(v) for v in terms.values())
    sum(terms.values()).backward()
    aux = {id(p) for p in model.auxiliary_parameters()}
    assert not aux & {id(p) for p in model.main_parameters()}


def test_freedom_forward_equals_dense_oracle_and_pruning_is_train_only():
    train, feats = tiny()
    model, graphs = make("freedom", train, feats, dropout=0.5)
    a = graphs["ui"].adj.to_dense()
    s = graphs["mm"].adj.to_dense()
    e = torch.cat([model.user_emb, model.item_emb]).detach()
    mean = (e + a @ e + a @ a @ e) / 3
    model.eval()
    with torch.no_grad():
        reps = model.propagate()
    torch.testing.assert_close(reps.user, mean[:train.n_users])
    torch.testing.assert_close(reps.item, mean[train.n_users:] + s @ model.item_emb.detach())
    # kNN mix: rows sum to 1 (0.1 image + 0.9 text, 1/k each)
    torch.testing.assert_close(s.sum(1), torch.ones(train.n_items))
    model.train()
    model.pre_epoch(0, torch.Generator().manual_seed(0))
    with torch.no_grad():
        pruned = model.propagate()
    kept = model.train_graph.adj._nnz()
    assert kept < graphs["ui"].adj._nnz()
    assert not torch.allclose(pruned.user, reps.user)
    model.pre_epoch(1, torch.Generator().manual_seed(1))
    assert model.train_graph is not None


def test_freedom_feature_tables_follow_reg_weight_and_train_features():
    train, feats = tiny()
    m0, _ = make("freedom", train, feats, reg_weight=0.0)
    assert len(m0.proj) == 0 and not any(n.startswith("feat_") for n, _ in m0.named_buffers())
    assert "modal_bpr" not in m0.loss(batch_of(train), m0.propagate())
    m1, _ = make("freedom", train, feats, reg_weight=1e-3, train_features=False)
    assert not any(n.startswith("feat_") for n, _ in m1.named_parameters())
    m2, _ = make("freedom", train, feats, reg_weight=1e-3, train_features=True)
    assert {n for n, _ in m2.named_parameters() if n.startswith("feat_")} == {"feat_image", "feat_text"}
    b = batch_of(train)
    terms = m2.loss(b, m2.propagate())
    sum(terms.values()).backward()
    assert m2.feat_text.grad is not None and m2.feat_text.grad.abs().sum() > 0
    # modality BPR = λ Σ_m BPR(u · W_m x_pos, u · W_m x_neg) with the final user embedding
    reps = m1.propagate()
    u = reps.user[b["user"]]
    want = sum(losses.bpr_loss((u * m1.proj[m](feats[m][b["pos"]])).sum(-1), (u * m1.proj[m](feats[m][b["neg"]])).sum(-1))
               for m in ("image", "text"))
    torch.testing.assert_close(m1.loss(b, reps)["modal_bpr"], 1e-3 * want)


def test_vbpr_batch_projection_equals_full_table():
    train, feats = tiny()
    model, _ = make("vbpr", train, feats)
    b = batch_of(train)
    model.train()
    got = model.loss(b, model.propagate())
    model.eval()
    with torch.no_grad():
        full = model.propagate()
    u, p, n = full.user[b["user"]], full.item[b["pos"]], full.item[b["neg"]]
    torch.testing.assert_close(got["bpr"], losses.bpr_loss((u * p).sum(-1), (u * n).sum(-1)))
    # the per-modality maps sum to one linear map of the concatenated features (MMRec's item_linear)
    w = torch.cat([model.proj["image"].weight, model.proj["text"].weight], dim=1)
    content = torch.cat([feats["image"], feats["text"]], 1) @ w.T + model.bias
    torch.testing.assert_close(full.item[:, 64:], content)


def test_sand_shapes_user_weights_and_variants():
    train, feats = tiny()
    model, _ = make("sand-a", train, feats)
    model.eval()
    with torch.no_grad():
        reps = model.propagate()
    assert reps.user.shape == (train.n_users, 128) and reps.item.shape == (train.n_items, 128)
    torch.testing.assert_close(model.user_weights.weight.sum(1).squeeze(-1), torch.ones(train.n_users))
    # full-width projection split in halves: cat(generic, unique) == Z
    z = model.modality_projections()["image"]
    g, q = model.sand.split("image", z)
    assert g.shape[1] == q.shape[1] == 8
    torch.testing.assert_close(torch.cat([g, q], 1), z)
    kinds = {v: (make(v, train, feats)[0].sand.align, make(v, train, feats)[0].sand.distance)
             for v in ("sand-a", "sand-b", "sand-c", "sand-d")}
    assert kinds == {"sand-a": ("solosim", "club"), "sand-b": ("solosim", "l2"),
                     "sand-c": ("infonce", "club"), "sand-d": ("infonce", "l2")}
    assert make("sand-a", train, feats)[0].auxiliary_steps == 50
    ablate, _ = make("sand-a", train, feats, distance="none")
    assert ablate.auxiliary_parameters() == [] and ablate.sand.club is None
    assert "distance" not in ablate.loss(batch_of(train), ablate.propagate())


def test_sand_text_only_dataset_uses_id_modality():
    train, feats = tiny(modalities=("text",))
    model, _ = make("sand-a", train, feats, modalities=["text", "id"])
    terms = model.loss(batch_of(train), model.propagate())
    assert {"bpr", "align", "distance"} <= set(terms)
    with pytest.raises((KeyError, ValueError), match="image"):
        make("sand-a", train, ItemFeatures({"text": feats["text"]}, train.item_map), modalities=["image", "text"])


def test_sand_one_batch_overfit_and_club_steps():
    train, feats = tiny()
    model, _ = make("sand-a", train, feats, club_steps=3)
    opt = torch.optim.Adam(model.main_parameters(), lr=1e-2)
    aopt = torch.optim.Adam(model.auxiliary_parameters(), lr=1e-2)
    b = batch_of(train, b=32)
    first = None
    for _ in range(30):
        for _ in range(model.auxiliary_steps):
            aopt.zero_grad()
            sum(model.auxiliary_loss(b).values()).backward()
            aopt.step()
        opt.zero_grad()
        terms = model.loss(b, model.propagate())
        sum(terms.values()).backward()
        opt.step()
        first = first if first is not None else float(terms["bpr"].detach())
    assert float(terms["bpr"].detach()) < 0.5 * first


def test_plugins_compose_sand_heads():
    train, feats = tiny()
    vs, _ = make("vbpr+sand", train, feats)
    assert vs.sand.n_generic == {"image": 32, "text": 32} and vs.sand.club is not None
    terms = vs.loss(batch_of(train), vs.propagate())
    assert {"bpr", "reg", "align", "distance"} <= set(terms)
    fs, _ = make("freedom+sand", train, feats)
    assert {"bpr", "modal_bpr", "align", "distance"} <= set(fs.loss(batch_of(train), fs.propagate()))
    with pytest.raises(ValueError, match="reg_weight"):
        make("freedom+sand", train, feats, reg_weight=0.0)
