"""Planted-noise identification: Demure's interest scores (Eqs. 7-8 of Yao et al., arXiv 2305.01915)
must find the modality that drives each user and the items that do not belong.

Generator: 600 items, M = 3 modalities of raw width 16, 10 clusters per modality; each item draws
an independent cluster per modality and its feature is the cluster's prototype plus N(0, 0.1²)
noise. A user of group m* has a preferred cluster k of modality m*: every clean history item and the
target have cluster_{m*} = k, so the other two modalities carry nothing about that user. 20% of each
history (2 of 10 positions) are replaced by random "noise items". The model is trained on (history,
target) instances, then judged on fresh users towards a fresh clean target:

- the per-user mean interest score per modality (over the clean items) is highest for m* for >= 70%
  of the users;
- the modality most often among the positive view's noise slots (R_m+) is not m* for >= 70% of the
  users, and the one most often among the negative view's point-of-interest slots (R_m-) is m*;
- injected noise items get lower item interest scores than clean items: AUC >= 0.7.

Finding (recorded, not hidden): the paper's signed mean gradient (``score_mode='grad_mean'``,
Eqs. 7-8 as written) does NOT pass on this data: it ranks the driving modality first for only
16-31% of the users (below the 33% of chance: a feature-mean of a gradient is the derivative along
the all-ones direction, which says nothing about relevance), AUC 0.50-0.56; ``abs_grad_mean`` does
not pass either (32-45%). The gradient x activation score (``score_mode='grad_x_input'``, the
first-order contribution of each activation to the logit) passes for the Base Model and for Demure
(87-90%, R_m+ / R_m- 95% / 86-89%, AUC 0.78-0.79 with scaled attention; 72% / 93% / 67% / 0.78
unscaled). The tests therefore judge ``grad_x_input``; the model keeps the paper's default for
training. 3,000 training users (600 gave a model too weak to attribute anything: Hit@10 7-12%).
"""
from __future__ import annotations

import numpy as np
import pytest
import torch

from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import IdMap, Interactions
from graphrec.models import ModelContext
from graphrec.models.demure import Demure, DemureBase

N_ITEMS, M, RAW, K, HIST, N_NOISE = 600, 3, 16, 10, 10, 2


def planted(seed: int = 0):
    g = np.random.default_rng(seed)
    proto = g.normal(size=(M, K, RAW)).astype(np.float32)
    cluster = g.integers(0, K, size=(N_ITEMS, M))
    feats = {f"m{m}": proto[m][cluster[:, m]] + 0.1 * g.normal(size=(N_ITEMS, RAW)).astype(np.float32)
             for m in range(M)}
    return cluster, feats


def users(cluster: np.ndarray, n: int, seed: int):
    """(histories [n, HIST], targets [n], group m* [n], noise mask [n, HIST])."""
    g = np.random.default_rng(seed)
    group = np.arange(n) % M
    hist = np.empty((n, HIST), dtype=np.int64)
    noise = np.zeros((n, HIST), dtype=bool)
    target = np.empty(n, dtype=np.int64)
    for u in range(n):
        k = g.integers(K)
        pool = np.flatnonzero(cluster[:, group[u]] == k)
        picks = g.choice(pool, HIST + 1, replace=False)
        hist[u], target[u] = picks[:HIST], picks[HIST]
        where = g.choice(HIST, N_NOISE, replace=False)
        outside = np.flatnonzero(cluster[:, group[u]] != k)
        hist[u, where] = g.choice(outside, N_NOISE, replace=False)
        noise[u, where] = True
    return torch.from_numpy(hist), torch.from_numpy(target), group, torch.from_numpy(noise)


def train_model(cls, feats, cluster, seed=0, epochs=30, n_users=600, **hp):
    torch.manual_seed(seed)
    ids = IdMap(np.arange(N_ITEMS), "item")
    ctx = ModelContext(n_users=1, n_items=N_ITEMS, features=ItemFeatures(dict(feats), ids),
                       train=Interactions(torch.tensor([0]), torch.tensor([0]), IdMap(np.arange(1), "user"), ids))
    kw = dict(embedding_dim=32, modalities=[f"m{m}" for m in range(M)], max_len=HIST, n_neg=200, min_prefix=HIST)
    kw.update(hp)
    model = cls(ctx, **kw)
    hist, target, _, _ = users(cluster, n_users, seed=seed + 1)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    pad = torch.full((hist.shape[0], HIST - 1), N_ITEMS)
    tgt = torch.cat([pad, target.unsqueeze(1)], 1)   # one instance per user: the full history
    for _ in range(epochs):
        for s in range(0, hist.shape[0], 200):
            b = {"seq": hist[s:s + 200], "target": tgt[s:s + 200]}
            opt.zero_grad()
            sum(model.loss(b, model.train_forward(b)).values()).backward()
            opt.step()
    return model.eval()


def auc(neg_scores: torch.Tensor, pos_scores: torch.Tensor) -> float:
    """P(a clean item scores above a noise item), ties count half."""
    d = pos_scores.unsqueeze(1) - neg_scores.unsqueeze(0)
    return float((d > 0).double().mean() + 0.5 * (d == 0).double().mean())


def identification(model, cluster, seed=99):
    hist, target, group, noise = users(cluster, 300, seed)
    s = model.interest_scores({"seq": hist, "target": target})
    clean = (~noise).unsqueeze(-1).float()
    per_user = (s["alpha_mod"] * clean).sum(1) / clean.sum(1)             # [n, M]
    top_mod = (per_user.argmax(1).numpy() == group).mean()
    noise_pick = s["noise_mod"].sum(1).float().argmax(1).numpy()          # R_m+ most often
    poi_pick = s["poi_mod"].sum(1).float().argmax(1).numpy()              # R_m- most often
    return {"top_modality": float(top_mod), "noise_slots_not_m*": float((noise_pick != group).mean()),
            "poi_slots_m*": float((poi_pick == group).mean()),
            "noise_item_auc": auc(s["alpha_item"][noise], s["alpha_item"][~noise])}


@pytest.fixture(scope="module")
def data():
    return planted(0)


TRAIN = dict(epochs=8, n_users=3000, attn_scale=True)


@pytest.fixture(scope="module")
def base_model(data):
    cluster, feats = data
    m = train_model(DemureBase, feats, cluster, **TRAIN)
    m.score_mode = "grad_x_input"
    return m


def check(r: dict) -> None:
    assert r["top_modality"] >= 0.7, r
    assert r["noise_slots_not_m*"] >= 0.7, r
    assert r["poi_slots_m*"] >= 0.7, r
    assert r["noise_item_auc"] >= 0.7, r


@pytest.mark.slow
def test_planted_noise_is_identified_by_the_base_model(data, base_model):
    check(identification(base_model, data[0]))


@pytest.mark.slow
def test_planted_noise_is_identified_by_demure(data):
    cluster, feats = data
    model = train_model(Demure, feats, cluster, score_mode="grad_x_input", **TRAIN)
    check(identification(model, cluster))


@pytest.mark.slow
def test_explain_names_the_planted_modality(data, base_model):
    cluster, _ = data
    hist, target, group, noise = users(cluster, 30, seed=7)
    agree = []
    for u in range(30):
        ex = base_model.explain(hist[u], int(target[u]))
        dom = [it["dominant_modality"] for it, n in zip(ex["items"], noise[u].tolist()) if not n]
        agree.append(np.mean([d == f"m{group[u]}" for d in dom]))
    assert np.mean(agree) > 0.5
