"""Synthetic multimodal interaction data with planted structure (nothing downloaded).

Generative model (all draws from one seeded ``torch.Generator``):

* Generic latent space (shared by all modalities): ``C`` cluster centres ``G_c ~ N(0, I_kg)``.
  Item ``i`` belongs to generic cluster ``c_i``; its generic factor is ``g_i = G_{c_i} + s * e``.
  User ``u`` belongs to generic cluster ``c_u``; ``p_u = G_{c_u} + s * e``.
* Modality-unique latent spaces, one per modality ``m``: ``C`` centres ``U^m_c ~ N(0, I_ku)`` with an
  item assignment ``c^m_i`` drawn independently of ``c_i`` (and of the other modality), so
  ``u^m_i = U^m_{c^m_i} + s * e`` carries information nothing else carries. Users have an
  independent taste ``q^m_u = U^m_{c^m_u} + s * e`` per modality.
* Preference logit (equation of the sampler)::

      l_ui = b_g <p_u, g_i> / kg + b_m * sum_m <q^m_u, u^m_i> / ku + log pop_i,
      pop_i ∝ rank_i^(-alpha)            (alpha = 0.75; ranks a random permutation of items)

  Each user draws ``n_u`` distinct items without replacement with probability ∝ ``exp(l_ui)``
  (Gumbel top-k, computed in chunks of users so memory stays ``O(chunk * n_items)``).
  ``n_u = 5 + extra``, with ``extra`` a multinomial share of the remaining interactions weighted by
  a log-normal user activity, so every user has at least 5 interactions and the total is exact.
* Item features of modality ``m`` (the part the models see)::

      x^m_i = g_i A_m / sqrt(kg) + u^m_i B_m / sqrt(ku) + sigma * e,     A_m, B_m ~ N(0, 1)

  so both modalities share the generic part and each has its own unique part plus noise.

Items never drawn are given one interaction taken from a row of a very popular item (a new item
for that user, so no duplicate), so every item in the id map has at least one interaction; the
number of such moves is logged.

`generate_sequential` (dataset ``synthetic-seq``) is a separate generator of chronological
sequences with planted item-to-item transitions; its docstring states its equations.
"""
from __future__ import annotations

import math
from functools import partial
import time
from typing import Dict, Optional

import numpy as np
import torch

from graphrec.data.features import ItemFeatures, LazyTable
from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.dataset import Dataset
from graphrec.utils import log

# MMRec's Amazon datasets (5-core): users, items, interactions.
PRESETS: Dict[str, tuple[int, int, int]] = {
    "synthetic-baby": (19_445, 7_050, 160_792),
    "synthetic-sports": (35_598, 18_357, 296_337),
    "synthetic-clothing": (39_387, 23_033, 278_677),
}
PRESET_DIMS = {"image": 4096, "text": 384}
MIN_USER_INTERACTIONS = 5


def _user_degrees(n_users: int, n_interactions: int, cap: int, rng: np.random.Generator,
                  activity_sigma: float) -> np.ndarray:
    """Per-user interaction counts: >= 5 each, <= cap, summing exactly to ``n_interactions``."""
    base = MIN_USER_INTERACTIONS
    if n_interactions < base * n_users:
        raise ValueError(f"synthetic: {n_interactions} interactions cannot give each of {n_users} users "
                         f"at least {base}")
    if n_interactions > cap * n_users:
        raise ValueError(f"synthetic: {n_interactions} interactions exceed {n_users} users x {cap} items "
                         f"each (at most {cap * n_users})")
    weight = rng.lognormal(0.0, activity_sigma, n_users)
    deg = base + rng.multinomial(n_interactions - base * n_users, weight / weight.sum())
    for _ in range(100):  # clip to the cap and hand the overflow to users below it
        over = int(np.clip(deg - cap, 0, None).sum())
        if over == 0:
            break
        deg = np.minimum(deg, cap)
        room = (cap - deg).astype(np.float64) * weight
        deg = deg + np.minimum(rng.multinomial(over, room / room.sum()), cap - deg)
    missing = n_interactions - int(deg.sum())
    if missing:  # the last clipped remainder: give it to the users with most room, one each
        room_users = np.argsort(deg - cap, kind="stable")[:missing]
        deg[room_users] += 1
    return deg.astype(np.int64)


def generate(n_users: int = 1500, n_items: int = 800, n_interactions: int = 48_000, *,
             n_clusters: int = 20, dims: Optional[Dict[str, int]] = None, latent_dim: int = 32,
             unique_dim: int = 16, seed: int = 0, scale: float = 1.0, popularity_exponent: float = 0.75,
             generic_weight: float = 6.0, unique_weight: float = 3.5, latent_noise: float = 0.35,
             feature_noise: float = 1.0, activity_sigma: float = 0.6, features: bool = True,
             name: str = "synthetic") -> Dataset:
    """Generate a synthetic multimodal dataset; see the module docstring for the model.

    ``scale`` multiplies users, items and interactions (for scaling benchmarks). ``dims`` maps each
    modality to its feature dimension (default ``{'image': 128, 'text': 64}``). ``features=False``
    skips the feature matrices (a fast path for size checks). ``ground_truth`` of the result holds
    the planted clusters and latent factors.
    """
    t0 = time.perf_counter()
    if scale != 1.0:
        if scale <= 0:
            raise ValueError(f"synthetic: scale must be positive, got {scale}")
        n_users, n_items = max(1, round(n_users * scale)), max(1, round(n_items * scale))
        n_interactions = round(n_interactions * scale)
    dims = dict(dims) if dims is not None else {"image": 128, "text": 64}
    if n_users < 1 or n_items < MIN_USER_INTERACTIONS:
        raise ValueError(f"synthetic: need >= 1 user and >= {MIN_USER_INTERACTIONS} items, got "
                         f"{n_users} users, {n_items} items")
    n_clusters = max(1, min(n_clusters, n_items))
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=gen)

    # planted structure
    item_cluster = torch.randint(0, n_clusters, (n_items,), generator=gen)
    user_cluster = torch.randint(0, n_clusters, (n_users,), generator=gen)
    centres = randn(n_clusters, latent_dim)
    item_g = centres[item_cluster] + latent_noise * randn(n_items, latent_dim)
    user_g = centres[user_cluster] + latent_noise * randn(n_users, latent_dim)
    modalities = list(dims)
    item_uc, user_uc, item_u, user_u = {}, {}, {}, {}
    for m in modalities:
        cent_m = randn(n_clusters, unique_dim)
        item_uc[m] = torch.randint(0, n_clusters, (n_items,), generator=gen)
        user_uc[m] = torch.randint(0, n_clusters, (n_users,), generator=gen)
        item_u[m] = cent_m[item_uc[m]] + latent_noise * randn(n_items, unique_dim)
        user_u[m] = cent_m[user_uc[m]] + latent_noise * randn(n_users, unique_dim)

    # one concatenated factor per side makes the logit a single matmul
    wg, wu = generic_weight / latent_dim, unique_weight / unique_dim
    user_f = torch.cat([user_g * wg] + [user_u[m] * wu for m in modalities], 1)
    item_f = torch.cat([item_g] + [item_u[m] for m in modalities], 1)
    rank = torch.randperm(n_items, generator=gen) + 1
    popularity = rank.double().pow(-popularity_exponent)
    popularity = (popularity / popularity.sum()).float()
    log_pop = popularity.log()

    cap = max(MIN_USER_INTERACTIONS, n_items // 2)
    deg = _user_degrees(n_users, n_interactions, cap, rng, activity_sigma)
    order = np.argsort(-deg, kind="stable")  # similar degrees per chunk keep top-k small
    chunk = max(1, min(n_users, (1 << 24) // n_items))
    users_out, items_out = [], []
    for s in range(0, n_users, chunk):
        us = torch.from_numpy(order[s:s + chunk])
        d = torch.from_numpy(deg[order[s:s + chunk]])
        logits = user_f[us] @ item_f.T + log_pop
        u01 = torch.rand(logits.shape, generator=gen).clamp_(min=1e-12)
        logits -= torch.log(-torch.log(u01))  # Gumbel top-k = sampling without replacement
        top = torch.topk(logits, int(d.max()), dim=1).indices
        keep = torch.arange(top.shape[1]).unsqueeze(0) < d.unsqueeze(1)
        users_out.append(us.unsqueeze(1).expand_as(top)[keep])
        items_out.append(top[keep])
    user = torch.cat(users_out)
    item = torch.cat(items_out)

    # give never-drawn items one row each, taken from rows of the most popular items
    item_deg = torch.bincount(item, minlength=n_items)
    empty = torch.nonzero(item_deg == 0).flatten()
    if empty.numel():
        donors_ok = item_deg[item] > 20
        cand = torch.nonzero(donors_ok).flatten()
        if cand.numel() < empty.numel():
            raise ValueError(f"synthetic: {empty.numel()} items were never drawn and too few rows can be "
                             f"moved to them; raise n_interactions")
        pick = cand[torch.randperm(cand.numel(), generator=gen)[:empty.numel()]]
        item[pick] = empty
        log.info("synthetic: %d never-drawn items got one interaction moved from a popular item", empty.numel())

    # rows sorted by user then a random time; timestamps give temporal rules something to order by
    ts = torch.randint(0, 10**9, (user.numel(),), generator=gen)
    perm = np.lexsort((ts.numpy(), user.numpy()))
    user, item, ts = user[perm], item[perm], ts[perm]
    umap, imap = IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item")
    inter = Interactions(user, item, umap, imap, timestamp=ts, source=name)

    feats = None
    if features:
        # the tables are the generator's last draws: made (all at once, in order, from the state
        # saved here: the same values) only when a model asks for a modality, so a run that reads
        # none (LightGCN) does not hold 0.38 GB of image rows at Clothing scale
        state, made = gen.get_state(), {}

        def table(m: str) -> torch.Tensor:
            if not made:
                g = torch.Generator().set_state(state)
                for mm in modalities:
                    a = torch.randn(latent_dim, dims[mm], generator=g) / math.sqrt(latent_dim)
                    b = torch.randn(unique_dim, dims[mm], generator=g) / math.sqrt(unique_dim)
                    x = torch.randn(n_items, dims[mm], generator=g).mul_(feature_noise)
                    made[mm] = x.addmm_(item_g, a).addmm_(item_u[mm], b)
            return made[m]

        feats = ItemFeatures({m: LazyTable((n_items, dims[m]), partial(table, m)) for m in modalities}, imap,
                             {m: f"{name}:{m}" for m in modalities})

    gt = {"item_cluster": item_cluster, "user_cluster": user_cluster,
          "item_unique_cluster": item_uc, "user_unique_cluster": user_uc,
          "item_generic": item_g, "user_generic": user_g, "item_unique": item_u, "user_unique": user_u,
          "popularity": popularity}
    params = dict(n_users=n_users, n_items=n_items, n_interactions=n_interactions, n_clusters=n_clusters,
                  dims=dims, latent_dim=latent_dim, unique_dim=unique_dim, seed=seed,
                  popularity_exponent=popularity_exponent, generic_weight=generic_weight,
                  unique_weight=unique_weight, latent_noise=latent_noise, feature_noise=feature_noise)
    log.info("%s: %d users, %d items, %d interactions generated in %.2fs", name, n_users, n_items,
             len(inter), time.perf_counter() - t0)
    return Dataset(name, inter, features=feats, ground_truth=gt, meta={"generator": params})


def load_synthetic(**kwargs) -> Dataset:
    """The embedded default: ~1,500 users, ~800 items, ~48k interactions, 'image' and 'text'."""
    return generate(**kwargs)


def load_preset(preset: str, **kwargs) -> Dataset:
    """MMRec-sized preset (exact user/item/interaction counts, 50 clusters, 4096-d image and 384-d
    text features); ``scale`` multiplies all three counts."""
    n_users, n_items, n_inter = PRESETS[preset]
    opts = {"n_clusters": 50, "dims": dict(PRESET_DIMS), "name": preset}
    opts.update(kwargs)
    return generate(n_users, n_items, n_inter, **opts)


def generate_sequential(n_users: int = 1000, n_items: int = 500, *, min_len: int = 10, max_len: int = 40,
                        follow_prob: float = 0.8, popularity_exponent: float = 0.75, seed: int = 0,
                        name: str = "synthetic-seq") -> Dataset:
    r"""Chronological sequences with a planted successor for every item (``synthetic-seq``).

    Generative model (all draws from one seeded ``torch.Generator``):

    * Successor: a random cyclic order :math:`o` of the items gives
      :math:`\mathrm{succ}(o_k) = o_{(k+1) \bmod I}`, one permutation with a single cycle, so a
      chain of successors never returns to an item before visiting all the others.
    * Popularity: :math:`\pi_i \propto \mathrm{rank}_i^{-\alpha}` (ranks a random permutation,
      :math:`\alpha` = ``popularity_exponent``).
    * Length: :math:`n_u \sim \mathcal{U}\{\text{min\_len}, \dots, \text{max\_len}\}`.
    * Sequence :math:`s_u = (i_1, \dots, i_{n_u})` without repeats (:math:`C_t` = items consumed
      before step t)::

          i_1     ~ Categorical(pi)
          i_{t+1} = succ(i_t)                        with probability p, if succ(i_t) not in C_t
                  ~ Categorical(pi restricted to items not in C_t)   otherwise

      (``p`` = ``follow_prob``). Timestamps are positions ``0..n_u - 1``.

    ``ground_truth``: ``successor`` (LongTensor[I], ``succ(i)``), ``popularity`` (:math:`\pi`) and
    ``followed`` (BoolTensor per row: the row's item is its predecessor's successor by the
    ``p``-branch). An oracle that ranks ``succ(last item)`` first finds about ``p`` of the next
    items; popularity finds few. ``meta['sequences']`` is the `Sequences` view. No features.
    """
    from graphrec.data.sequences import Sequences

    t0 = time.perf_counter()
    if not 1 <= min_len <= max_len:
        raise ValueError(f"{name}: need 1 <= min_len <= max_len, got {min_len}, {max_len}")
    if max_len > n_items:
        raise ValueError(f"{name}: sequences of up to {max_len} distinct items need at least that many items, "
                         f"got {n_items}")
    if n_users < 1:
        raise ValueError(f"{name}: need at least one user, got {n_users}")
    if not 0.0 <= follow_prob <= 1.0:
        raise ValueError(f"{name}: follow_prob must be in [0, 1], got {follow_prob}")
    gen = torch.Generator().manual_seed(seed)
    order = torch.randperm(n_items, generator=gen)
    successor = torch.empty(n_items, dtype=torch.long)
    successor[order] = order.roll(-1)
    rank = torch.randperm(n_items, generator=gen) + 1
    popularity = rank.double().pow(-popularity_exponent)
    popularity = (popularity / popularity.sum()).float()
    log_pop = popularity.log()
    lengths = torch.randint(min_len, max_len + 1, (n_users,), generator=gen)

    seq = torch.empty(n_users, max_len, dtype=torch.long)
    followed = torch.zeros(n_users, max_len, dtype=torch.bool)
    chunk = max(1, min(n_users, (1 << 22) // n_items))
    for s in range(0, n_users, chunk):  # loops over user chunks and positions; users are vectorised
        e = min(n_users, s + chunk)
        rows = torch.arange(e - s)
        consumed = torch.zeros(e - s, n_items, dtype=torch.bool)
        prev = None
        for t in range(max_len):
            u01 = torch.rand(e - s, n_items, generator=gen).clamp_(min=1e-12)
            logits = (log_pop - torch.log(-torch.log(u01))).masked_fill_(consumed, float("-inf"))
            nxt = logits.argmax(1)  # Gumbel-max: a draw from pi over the unconsumed items
            coin = torch.rand(e - s, generator=gen) < follow_prob
            if prev is not None:
                succ = successor[prev]
                follow = coin & ~consumed[rows, succ]
                nxt = torch.where(follow, succ, nxt)
                followed[s:e, t] = follow
            consumed[rows, nxt] = True
            seq[s:e, t] = nxt
            prev = nxt
    keep = torch.arange(max_len).unsqueeze(0) < lengths.unsqueeze(1)
    user = torch.arange(n_users).unsqueeze(1).expand(-1, max_len)[keep]
    item = seq[keep]
    ts = torch.arange(max_len).unsqueeze(0).expand(n_users, -1)[keep]
    umap, imap = IdMap(np.arange(n_users), "user"), IdMap(np.arange(n_items), "item")
    inter = Interactions(user, item, umap, imap, timestamp=ts, source=name)
    params = dict(n_users=n_users, n_items=n_items, min_len=min_len, max_len=max_len, follow_prob=follow_prob,
                  popularity_exponent=popularity_exponent, seed=seed)
    gt = {"successor": successor, "popularity": popularity, "followed": followed[keep]}
    log.info("%s: %d users, %d items, %d interactions generated in %.2fs", name, n_users, n_items, len(inter),
             time.perf_counter() - t0)
    return Dataset(name, inter, ground_truth=gt,
                   meta={"generator": params, "sequences": Sequences.from_interactions(inter)})


def load_synthetic_seq(**kwargs) -> Dataset:
    """The sequential default: 1,000 users, 500 items, sequences of 10-40 items whose next item is
    the last one's planted successor with probability 0.8 (`generate_sequential`)."""
    return generate_sequential(**kwargs)
