"""A synthetic source/target world for PMMRec (the paper's transfer setting in miniature).

Latent clusters share one sparse transition matrix ("the universal transition pattern") and one
set of cluster centres across domains; each domain has its own disjoint items and its own style.
An item of cluster ``c`` has text: ``n_topic`` tokens drawn from cluster ``c``'s topic tokens
(shared vocabulary) plus ``n_style`` tokens of its domain's style vocabulary; and an "image":
``q`` patch vectors ``A z_i + noise + domain offset`` with ``z_i = mu_c + sigma * eps``. A user's
sequence walks the clusters by the transition matrix (popularity-skewed items within a cluster),
with ~10% uniformly random items as natural noise. Also a small training loop for tests and the
benchmark (the run machinery is not needed to judge a model here).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.split import loo_labels, split_from_labels
from graphrec.eval.sequential import NextItemEvaluator
from graphrec.models.base import ModelContext
from graphrec.train.samplers import SequenceSampler

VOCAB, N_TOPIC, N_STYLE, Q, F_IMG, LATENT = 400, 6, 2, 4, 16, 8


@dataclass
class World:
    n_clusters: int
    trans: np.ndarray      # [C, C] row-stochastic
    mu: np.ndarray         # [C, LATENT]
    topic: np.ndarray      # [C, 12] token ids of each cluster's topic
    proj: np.ndarray       # [LATENT, F_IMG] image "renderer" A


def make_world(seed: int = 0, n_clusters: int = 16) -> World:
    rng = np.random.default_rng(seed)
    trans = np.full((n_clusters, n_clusters), 0.02 / n_clusters)
    for c in range(n_clusters):
        succ = rng.choice(n_clusters, 2, replace=False)
        trans[c, succ] += 0.49
    trans /= trans.sum(1, keepdims=True)
    mu = rng.normal(size=(n_clusters, LATENT)) * 1.5
    topic = 1 + rng.permutation(VOCAB - 101)[: n_clusters * 12].reshape(n_clusters, 12)
    return World(n_clusters, trans, mu, topic, rng.normal(size=(LATENT, F_IMG)))


@dataclass
class Domain:
    inter: Interactions
    cluster: np.ndarray
    features: ItemFeatures
    n_items: int


def make_domain(world: World, n_users: int, n_items: int, domain: int, seed: int,
                min_len: int = 5, max_len: int = 20, noise: float = 0.1, user_seed: int | None = None) -> Domain:
    """Items (and their content) from ``seed``; user sequences from ``user_seed`` (default: ``seed``),
    so that two user samples can share one catalogue."""
    rng = np.random.default_rng(seed)
    C = world.n_clusters
    cluster = rng.integers(0, C, n_items)
    members = [np.flatnonzero(cluster == c) for c in range(C)]
    pop = [1.0 / np.arange(1, len(m) + 1) ** 0.8 for m in members]
    pop = [p / p.sum() for p in pop]
    style_vocab = VOCAB - 100 + 20 * domain + np.arange(20)  # each domain's own style tokens
    text = np.zeros((n_items, N_TOPIC + N_STYLE), dtype=np.int64)
    for i in range(n_items):
        text[i, :N_TOPIC] = rng.choice(world.topic[cluster[i]], N_TOPIC)
        text[i, N_TOPIC:] = rng.choice(style_vocab, N_STYLE)
    z = world.mu[cluster] + 0.5 * rng.normal(size=(n_items, LATENT))
    offset = rng.normal(size=F_IMG) * 2.0
    img = (z @ world.proj)[:, None, :] + 0.5 * rng.normal(size=(n_items, Q, F_IMG)) + offset
    if user_seed is not None:
        rng = np.random.default_rng([seed, user_seed])
    users, items = [], []
    for u in range(n_users):
        n = int(rng.integers(min_len, max_len + 1))
        c = int(rng.integers(0, C))
        for _ in range(n):
            while len(members[c]) == 0:
                c = int(rng.integers(0, C))
            i = int(rng.integers(0, n_items)) if rng.random() < noise else int(rng.choice(members[c], p=pop[c]))
            users.append(u)
            items.append(i)
            c = int(rng.choice(C, p=world.trans[c]))
    inter = Interactions(torch.tensor(users), torch.tensor(items), IdMap(np.arange(n_users), "user"),
                         IdMap(np.arange(n_items), "item"), timestamp=torch.arange(len(users)))
    bow = np.zeros((n_items, VOCAB), dtype=np.float32)  # the text as a bag of words (pooled features)
    np.add.at(bow, (np.repeat(np.arange(n_items), text.shape[1]), text.ravel()), 1.0)
    feats = ItemFeatures({"text_tokens": torch.tensor(text, dtype=torch.float32), "text_bow": torch.from_numpy(bow),
                          "image": torch.tensor(img.reshape(n_items, -1), dtype=torch.float32),
                          "image_mask": torch.ones(n_items, Q)}, inter.item_map)
    return Domain(inter, cluster, feats, n_items)


#: a small PMMRec over the synthetic world: tiny text transformer, token-level frozen image features
MODEL_HP = dict(embedding_dim=32, text_backend="tiny", text_feature="text_tokens", vocab_size=VOCAB,
                image_backend="features", image_feature="image", image_tokens=Q, fusion_heads=2,
                tiny_layers=1, n_layers=2, n_heads=2, max_len=20, dropout=0.1, nicl_tau=0.1)


def split_of(dom: Domain):
    return split_from_labels(dom.inter, loo_labels(dom.inter), method="loo")


def context(dom: Domain, split, seed: int = 0) -> ModelContext:
    return ModelContext(n_users=split.n_users, n_items=split.n_items, train=split.train, features=dom.features,
                        seed=seed)


def train(model, split, epochs: int, lr: float = 1e-3, batch_size: int = 64, seed: int = 0,
          max_steps: int | None = None, evaluate: bool = False) -> list[dict]:
    """Adam steps over the sequence sampler's batches; returns per-epoch records (mean loss terms
    and, with ``evaluate``, test metrics)."""
    sampler = SequenceSampler(split.train, max_len=model.max_len, batch_size=batch_size)
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=lr)
    gen = torch.Generator().manual_seed(seed)
    out, steps = [], 0
    for ep in range(epochs):
        model.train()
        model.pre_epoch(ep, gen)
        sums: dict = {}
        n = 0
        for batch in sampler.epoch(gen):
            terms = model.loss(batch, model.train_forward(batch))
            loss = sum(terms.values())
            opt.zero_grad()
            loss.backward()
            opt.step()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + float(v.detach())
            n += 1
            steps += 1
            if max_steps is not None and steps >= max_steps:
                break
        rec = {k: v / max(n, 1) for k, v in sums.items()}
        if evaluate:
            rec.update(test_metrics(model, split))
        out.append(rec)
        if max_steps is not None and steps >= max_steps:
            break
    return out


def test_metrics(model, split, ks=(10,)) -> dict:
    ev = NextItemEvaluator(split, "test", n_items=split.n_items, max_len=model.max_len, ks=ks,
                           metrics=["ndcg", "hit"])
    return ev.evaluate(model)
