r"""Demure (Yao, Zhang, Zhao, Zhu, Zhang, Zhang, He, Wu, "Denoising Multi-modal Sequential
Recommenders with Contrastive Learning", arXiv 2305.01915, 2023) and its Base Model.

No official code exists; this follows the paper's equations. Two registered names:

- ``demure-base``: the paper's Base Model (Table 2). Per-modality projections
  :math:`e^m_i = P_m x^m_i + b_m` (Section 3.2; a categorical modality is a multi-hot or
  count-normalised feature, so :math:`P_m` is its embedding table), the modality-wise
  self-attentive encoder (Eqs. 1-3) giving the item vector :math:`i`, the item-wise encoder over the
  history (the same equations with their own weights), :math:`u = \mathrm{FFN}(\mathbf i)` (Eq. 4,
  Linear-ReLU-Linear), the shared content-only item tower :math:`v_i = i` and the dot-product score
  :math:`\psi(u, i) = u^\top v_i`, trained by the sampled softmax of Eqs. 5-6 (``n_neg`` shared
  uniform negatives per batch, drawn without replacement, accidental hits masked; the full softmax
  when ``n_neg`` is 0 or covers the catalogue). No positional encoding (the paper has none): the user
  vector is invariant to the order of the history.
- ``demure``: the Base Model plus the training framework. Per step, the interest scores
  :math:`\alpha^{item}_t = \frac1d \sum_k \partial\psi(u,i^+)/\partial A_{t,k}` (Eq. 7, ``A`` the
  item activations, the modality encoder's outputs) and :math:`\alpha^{mod}_{t,m} = \frac1d \sum_k
  \partial\psi(u,i^+)/\partial E_{t,m,k}` (Eq. 8, ``E`` the projected modality tokens) from ONE
  ``torch.autograd.grad`` call on the positive logits of the batch (each user's logit depends only on
  its own activations, so the sum gives every per-user gradient), detached; J positive and J
  negative views by similarity-weighted replacement (Eqs. 9-13, `graphrec.nn.poi_augment`), re-
  encoded by the same encoders; :math:`L = L_{ssm} + \lambda_1 L^{aug}_{ssm} + \lambda_2 L_{cont}`
  (Eq. 15; :math:`L^{aug}_{ssm}` is Eq. 5 with the positive views' users, averaged over the J views,
  same target and negatives; :math:`L_{cont}` is Eq. 14). With :math:`\lambda_1 = \lambda_2 = 0` no
  augmentation code runs and the model is the Base Model bit for bit.

Training instances (the "common setting" of the paper, read as ComiRec's): every target position of
a shifted training window whose prefix holds at least ``min_prefix`` items becomes one (history =
that prefix, next item); the encoder is not causal, so each instance is encoded on its own.

Replacement pool (the paper's "all non-interacted items" is B x K x N similarities per step): the
batch's sampled negatives (all items under the full softmax) minus the instance's history and
target. Same-modality replacement by default (``cross_modal_replace`` draws from every modality's
tokens, the paper's :math:`U_m \in \mathbb R^{NM \times d_m}`). Gradients flow through the
replacements (nothing is said about stop-gradients).

Non-paper options: ``item_id`` (a learned item-ID token as one more modality), ``attn_scale``,
``pool_axis='col'``, ``score_mode`` (``abs_grad_mean`` = :math:`|\alpha|`, ``grad_x_input`` = the
feature mean of gradient x activation), ``replace='uniform'``, ``cl_normalize``,
``cl_temperature``, and the ablation switches ``use_item_aug`` / ``use_mod_aug``. ``length_buckets``
only changes speed: a step's instances are encoded in that many groups of similar prefix length.

Finding: on planted data (one modality drives each user; `tests/test_demure_planted.py`) the
paper's signed feature-mean of the gradient ranks the driving modality first for fewer users than
chance, while ``grad_x_input`` passes every identification threshold; the default stays the
paper's, ``graphrec explain`` defaults to ``grad_x_input``.
Explanations: :meth:`Demure.interest_scores` and :meth:`Demure.explain`.
"""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from graphrec.models import register_model
from graphrec.models._modalities import ID_MODALITY, feature_matrix
from graphrec.models.base import ModelContext, Recommender, Reps
from graphrec.nn import poi_augment as aug
from graphrec.nn.attentive_pooling import POOL_AXES, AttentivePooling

SCORE_MODES = ("grad_mean", "abs_grad_mean", "grad_x_input")
REPLACE_MODES = ("similarity", "uniform")


@register_model("demure")
class Demure(Recommender):
    """Demure: the Base Model trained with gradient-localised point-of-interest augmentation and
    contrastive learning (module docstring)."""

    name = "demure"
    task = "next_item"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, modalities: Sequence[str] = ("image", "text"),
                 item_id: bool = False, max_len: int = 50, n_neg: int = 1000, min_prefix: int = 4,
                 attn_scale: bool = False, pool_axis: str = "row",
                 lambda_aug: float = 0.5, lambda_cl: float = 0.1, gamma_item: float = 0.4,
                 gamma_mod: float = 0.2, n_views: int = 1, score_mode: str = "grad_mean",
                 replace: str = "similarity", cross_modal_replace: bool = False, use_item_aug: bool = True,
                 use_mod_aug: bool = True, cl_normalize: bool = False, cl_temperature: float = 1.0,
                 length_buckets: int = 4, **hp: Any):
        super().__init__(ctx)
        who = self.name
        mods = [m for m in modalities if m != ID_MODALITY]
        if not mods and not item_id:
            raise ValueError(f"{who}: model.modalities names no content modality and model.item_id is off")
        checks = [(int(max_len) >= 1, f"model.max_len must be >= 1, got {max_len}"),
                  (int(min_prefix) >= 1, f"model.min_prefix must be >= 1, got {min_prefix}"),
                  (int(n_neg) >= 0, f"model.n_neg must be >= 0 (0: full softmax), got {n_neg}"),
                  (int(n_views) >= 1, f"model.n_views must be >= 1, got {n_views}"),
                  (0.0 <= float(gamma_item) <= 1.0, f"model.gamma_item must be in [0, 1], got {gamma_item}"),
                  (0.0 <= float(gamma_mod) <= 1.0, f"model.gamma_mod must be in [0, 1], got {gamma_mod}"),
                  (float(lambda_aug) >= 0 and float(lambda_cl) >= 0, "model.lambda_aug and model.lambda_cl must be >= 0"),
                  (float(cl_temperature) > 0, f"model.cl_temperature must be > 0, got {cl_temperature}"),
                  (score_mode in SCORE_MODES, f"model.score_mode must be one of {SCORE_MODES}, got {score_mode!r}"),
                  (replace in REPLACE_MODES, f"model.replace must be one of {REPLACE_MODES}, got {replace!r}"),
                  (pool_axis in POOL_AXES, f"model.pool_axis must be one of {POOL_AXES}, got {pool_axis!r}")]
        for ok, msg in checks:
            if not ok:
                raise ValueError(f"{who}: {msg}")
        d = int(embedding_dim)
        self.dim = d
        self.pad = self.n_items
        self.max_len = int(max_len)
        self.min_prefix = int(min_prefix)
        self.n_neg = int(n_neg)
        self.length_buckets = max(1, int(length_buckets))
        self.modalities = mods + ([ID_MODALITY] if item_id else [])
        self.lambda_aug, self.lambda_cl = float(lambda_aug), float(lambda_cl)
        self.gamma_item = float(gamma_item) if use_item_aug else 0.0
        self.gamma_mod = float(gamma_mod) if use_mod_aug else 0.0
        self.n_views = int(n_views)
        self.score_mode = score_mode
        self.replace = replace
        self.cross_modal = bool(cross_modal_replace)
        self.cl_normalize, self.cl_temperature = bool(cl_normalize), float(cl_temperature)
        feats = {m: feature_matrix(ctx, m) for m in mods}
        for m, x in feats.items():
            self.register_buffer(f"feat_{m}", x, persistent=False)
        self.proj = nn.ModuleList([nn.Linear(x.shape[1], d) for x in feats.values()])  # P_m, b_m
        self.id_emb = nn.Embedding(self.n_items, d) if item_id else None
        if self.id_emb is not None:
            nn.init.normal_(self.id_emb.weight, 0.0, d ** -0.5)
        self.mod_enc = AttentivePooling(d, attn_scale, pool_axis)    # Eqs. 1-3 over modalities
        self.item_enc = AttentivePooling(d, attn_scale, pool_axis)   # the same over history items
        self.ffn = nn.Sequential(nn.Linear(d, d), nn.ReLU(), nn.Linear(d, d))  # Eq. 4

    @classmethod
    def required_modalities(cls, hp: Dict[str, Any]) -> list[str]:
        return [m for m in hp.get("modalities", ("image", "text")) if m != ID_MODALITY]

    @property
    def augments(self) -> bool:
        """Whether training runs the interest scores and the views (λ1 or λ2 > 0)."""
        return self.lambda_aug > 0 or self.lambda_cl > 0

    # -- encoders ------------------------------------------------------------------------------
    def tokens(self, items: torch.Tensor) -> torch.Tensor:
        """Projected modality tokens :math:`e^m_i` [..., M, d] of ``items`` (PAD gives item 0's
        tokens: padding positions are masked downstream). Each distinct item is projected once."""
        uniq, inv = torch.unique(items.reshape(-1).clamp(max=self.n_items - 1), return_inverse=True)
        return self._project(uniq).index_select(0, inv).view(*items.shape, len(self.modalities), self.dim)

    def _project(self, items: torch.Tensor) -> torch.Tensor:
        """[n, M, d] tokens of distinct ``items``."""
        toks = [p(getattr(self, f"feat_{m}").index_select(0, items))
                for p, m in zip(self.proj, [m for m in self.modalities if m != ID_MODALITY])]
        if self.id_emb is not None:
            toks.append(self.id_emb(items))
        return torch.stack(toks, 1)

    def item_vectors(self, tokens: torch.Tensor) -> torch.Tensor:
        """Item vectors :math:`i` [..., d] from tokens [..., M, d] (Eqs. 1-3)."""
        return self.mod_enc(tokens).out

    def user_vectors(self, acts: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """:math:`u = \\mathrm{FFN}(\\mathrm{ItemEnc}(A))` [B, d] from item activations [B, L, d]."""
        return self.ffn(self.item_enc(acts, valid).out)

    def item_table(self) -> torch.Tensor:
        return self.item_vectors(self.tokens(torch.arange(self.n_items, device=self._device())))

    def _device(self) -> torch.device:
        return next(self.parameters()).device

    def _latest(self, t: torch.Tensor) -> torch.Tensor:
        return t[:, -self.max_len:] if t.shape[1] > self.max_len else t

    def encode(self, seq: torch.Tensor, E: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """``E`` [B, L, M, d], ``A`` [B, L, d], ``valid`` [B, L] and ``u`` [B, d] of a left-padded
        batch. The modality encoder runs on the valid positions only (``A`` is 0 at padding)."""
        valid = seq != self.pad
        E = self.tokens(seq) if E is None else E
        A = E.new_zeros(E.shape[:-2] + (self.dim,)).index_put(valid.nonzero(as_tuple=True), self.item_vectors(E[valid]))
        return {"E": E, "A": A, "valid": valid, "u": self.user_vectors(A, valid)}

    # -- training instances --------------------------------------------------------------------
    def instances(self, batch: Dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(histories [N, W] left-padded, targets [N]): one per target position of the shifted
        batch whose prefix holds >= ``min_prefix`` items, shortest prefix first; W = the longest."""
        seq, target = self._latest(batch["seq"]), self._latest(batch["target"])
        valid = seq != self.pad
        plen = valid.long().cumsum(1)
        b, c = torch.nonzero((target != self.pad) & valid & (plen >= self.min_prefix), as_tuple=True)
        if b.numel() == 0:
            return seq.new_empty(0, 1), seq.new_empty(0)
        order = torch.sort(plen[b, c], stable=True).indices  # shortest first: length buckets
        b, c = b[order], c[order]
        W = int(plen[b[-1], c[-1]])
        cols = c.unsqueeze(1) - W + 1 + torch.arange(W, device=seq.device)
        hist = torch.where(cols >= 0, seq[b.unsqueeze(1), cols.clamp(min=0)], torch.full_like(cols, self.pad))
        return hist, target[b, c]

    def _candidates(self, device: torch.device) -> tuple[torch.Tensor, bool]:
        """(candidate ids, full softmax?): every item, or ``n_neg`` uniform ones without replacement."""
        if self.n_neg == 0 or self.n_neg >= self.n_items - 1:
            return torch.arange(self.n_items, device=device), True
        return torch.randperm(self.n_items, device=device)[: self.n_neg], False

    # -- the contract --------------------------------------------------------------------------
    def propagate(self) -> Reps:
        return Reps(item=self.item_table())

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        """Encodes the step's instances in ``length_buckets`` groups of similar prefix length (each
        only as wide as its longest prefix: the item encoder is quadratic in the width); the
        extras of group ``g`` are keyed ``"<name>/<g>"``."""
        hist, target = self.instances(batch)
        cand, full = self._candidates(hist.device)
        # every distinct item of the step is projected once; E, the candidates' and the targets'
        # tokens are rows of that table (E is still one graph node per position, for Eq. 8)
        ids = torch.cat([hist.reshape(-1), cand, target]).clamp(max=self.n_items - 1)
        uniq, inv = torch.unique(ids, return_inverse=True)
        table = self._project(uniq)
        n_h, n_c = hist.numel(), cand.numel()
        cand_E = table.index_select(0, inv[n_h:n_h + n_c])
        cand_V = self.item_vectors(cand_E)
        ex = {"cand": cand, "cand_E": cand_E, "cand_V": cand_V, "full": torch.tensor(full),
              "n_instances": torch.tensor(hist.shape[0])}
        if hist.shape[0] == 0:
            ex["n_groups"] = torch.tensor(0)
            return Reps(extras=ex)
        E_all = table.index_select(0, inv[:n_h]).view(*hist.shape, len(self.modalities), self.dim)
        pos_all = (cand_V.index_select(0, target) if full
                   else self.item_vectors(table.index_select(0, inv[n_h + n_c:])))
        bounds = torch.linspace(0, hist.shape[0], min(self.length_buckets, hist.shape[0]) + 1).round().long().tolist()
        groups = 0
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            if hi <= lo:
                continue
            h = hist[lo:hi]
            W = int((h != self.pad).sum(1).max())  # rows are left-padded: keep the last W columns
            g = {"hist": h[:, -W:], "target": target[lo:hi], "pos": pos_all[lo:hi]}
            g.update(self.encode(g["hist"], E_all[lo:hi, -W:]))
            ex.update({f"{k}/{groups}": v for k, v in g.items()})
            groups += 1
        ex["n_groups"] = torch.tensor(groups)
        return Reps(extras=ex)

    @staticmethod
    def _groups(ex: Dict[str, torch.Tensor]) -> list[Dict[str, torch.Tensor]]:
        shared = {k: v for k, v in ex.items() if "/" not in k}
        out = []
        for g in range(int(ex["n_groups"])):
            d = dict(shared)
            d.update({k.split("/")[0]: v for k, v in ex.items() if k.endswith(f"/{g}")})
            out.append(d)
        return out

    def _ssm(self, u: torch.Tensor, ex: Dict[str, torch.Tensor]) -> torch.Tensor:
        if bool(ex["full"]):
            return F.cross_entropy(u @ ex["cand_V"].T, ex["target"])
        return aug.sampled_softmax_loss(u, ex["pos"], ex["cand_V"], ex["cand"], ex["target"])

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        ex = reps.extras
        groups = self._groups(ex)
        if not groups:  # no instance with a long enough prefix: a zero, still a graph
            return {"ssm": sum(p.sum() for p in self.parameters()) * 0.0}
        n = float(ex["n_instances"])
        share = [g["hist"].shape[0] / n for g in groups]  # group means -> the mean over instances
        terms = {"ssm": sum(w * self._ssm(g["u"], g) for w, g in zip(share, groups))}
        if not self.augments:
            return terms
        psi = torch.cat([(g["u"] * g["pos"]).sum(-1) for g in groups])
        alphas = self._alphas(psi, [g["A"] for g in groups], [g["E"] for g in groups], retain_graph=True)
        aug_terms, cont_terms = [], []
        for w, g, (a_item, a_mod) in zip(share, groups, alphas):
            u_pos, u_neg = self.views(g, a_item, a_mod)
            if self.lambda_aug > 0:
                aug_terms.append(w * torch.stack([self._ssm(u, g) for u in u_pos]).mean())
            if self.lambda_cl > 0:
                cont_terms.append(w * aug.view_contrastive_loss(g["u"], u_pos, u_neg, self.cl_normalize,
                                                                self.cl_temperature))
        if aug_terms:
            terms["ssm_aug"] = self.lambda_aug * sum(aug_terms)
        if cont_terms:
            terms["cont"] = self.lambda_cl * sum(cont_terms)
        return terms

    def score_sequences(self, batch: Dict[str, torch.Tensor], reps: Reps) -> torch.Tensor:
        return self.encode(self._latest(batch["seq"]))["u"] @ reps.item.T

    def score(self, users: torch.Tensor, reps: Reps) -> torch.Tensor:
        raise TypeError(f"{self.name} scores sequences (score_sequences), not user ids: use the next_item task")

    def score_factors(self, reps: Reps) -> None:
        return None

    def export_tables(self) -> Dict[str, torch.Tensor]:
        with torch.no_grad():
            return {"item/demure": self.item_table()}

    # -- interest scores (Eqs. 7-8) ------------------------------------------------------------
    def _alphas(self, psi: torch.Tensor, A: list[torch.Tensor], E: list[torch.Tensor],
                retain_graph: bool) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """[(α_item [N, L], α_mod [N, L, M])] per group of activations ``A``/``E``, detached, from
        ONE ``autograd.grad`` call on ``psi.sum()`` (Eqs. 7-8)."""
        grads = torch.autograd.grad(psi.sum(), [t for pair in zip(A, E) for t in pair], retain_graph=retain_graph)
        out = []
        for gA, gE, a, e in zip(grads[0::2], grads[1::2], A, E):
            if self.score_mode == "grad_x_input":
                out.append(((gA * a.detach()).mean(-1), (gE * e.detach()).mean(-1)))
                continue
            a_item, a_mod = gA.mean(-1), gE.mean(-1)
            if self.score_mode == "abs_grad_mean":
                a_item, a_mod = a_item.abs(), a_mod.abs()
            out.append((a_item, a_mod))
        return out

    def interest_scores(self, batch: Dict[str, torch.Tensor], reps: Optional[Reps] = None) -> Dict[str, torch.Tensor]:
        """Interest scores and attention weights of histories ``batch["seq"]`` [B, L] (left-padded)
        towards ``batch["target"]`` [B] (default: each history's top-1 next item, its own items
        excluded). Returns detached ``alpha_item`` [B, L] and ``alpha_mod`` [B, L, M] (0 at padding),
        ``beta_mod`` [B, L, M] (Eq. 3's :math:`\\beta_m` of each item), ``beta_item`` [B, L]
        (:math:`\\beta_t`), ``target`` [B], ``valid`` [B, L], and the positions and slots the
        augmentation would replace: ``poi_item``/``poi_mod`` (negative view: the point-of-interests)
        and ``noise_item``/``noise_mod`` (positive view: the potential noises)."""
        seq = self._latest(batch["seq"])
        if reps is None:
            with torch.no_grad():
                reps = self.propagate()
        table = reps.item.detach()
        with torch.enable_grad():
            valid = seq != self.pad
            E = self.tokens(seq)
            pooled_mod = self.mod_enc(E)
            A = pooled_mod.out
            pooled_item = self.item_enc(A, valid)
            u = self.ffn(pooled_item.out)
            target = batch.get("target")
            if target is None:
                scores = (u.detach() @ table.T).clone()
                rows = torch.arange(seq.shape[0], device=seq.device).unsqueeze(1).expand_as(seq)
                scores[rows[valid], seq[valid]] = float("-inf")
                target = scores.argmax(1)
            pos = self.item_vectors(self.tokens(target))
            (a_item, a_mod), = self._alphas((u * pos).sum(-1), [A], [E], retain_graph=False)
        zero = torch.zeros((), dtype=a_item.dtype, device=a_item.device)
        a_item = torch.where(valid, a_item, zero)
        a_mod = torch.where(valid.unsqueeze(-1), a_mod, zero)
        noise_item, noise_mod = aug.select_positions(a_item, a_mod, valid, self.gamma_item, self.gamma_mod, top=False)
        poi_item, poi_mod = aug.select_positions(a_item, a_mod, valid, self.gamma_item, self.gamma_mod, top=True)
        return {"alpha_item": a_item, "alpha_mod": a_mod, "beta_mod": pooled_mod.pool.detach(),
                "beta_item": pooled_item.pool.detach(), "target": target, "valid": valid,
                "poi_item": poi_item, "poi_mod": poi_mod, "noise_item": noise_item, "noise_mod": noise_mod}

    def explain(self, history: torch.Tensor, target: Optional[int] = None) -> Dict[str, Any]:
        """JSON-serialisable explanation of one history (item indices, oldest first; the latest
        ``max_len`` are read): per item its interest score, per (item, modality) the interest score
        and its per-item share (a softmax over the item's modalities) and per-user min-max
        normalisation, the dominant modality, :math:`\\beta_m`, :math:`\\beta_t`, point-of-interest /
        noise flags (the augmentation's selections), and the user's modality profile (the mean
        normalised modality score over the history)."""
        hist = torch.as_tensor(history, dtype=torch.long, device=self._device()).flatten()[-self.max_len:]
        batch = {"seq": hist.unsqueeze(0)}
        if target is not None:
            batch["target"] = torch.tensor([int(target)], device=hist.device)
        was = self.training
        self.eval()
        try:
            s = self.interest_scores(batch)
        finally:
            self.train(was)
        a_mod = s["alpha_mod"][0]
        lo, hi = a_mod.min(), a_mod.max()
        norm = (a_mod - lo) / (hi - lo) if float(hi - lo) > 0 else torch.zeros_like(a_mod)
        share = torch.softmax(a_mod, dim=-1)
        items = []
        for t in range(hist.numel()):
            items.append({
                "position": t, "item": int(hist[t]), "alpha_item": float(s["alpha_item"][0, t]),
                "alpha_mod": {m: float(a_mod[t, j]) for j, m in enumerate(self.modalities)},
                "alpha_mod_norm": {m: float(norm[t, j]) for j, m in enumerate(self.modalities)},
                "modality_share": {m: float(share[t, j]) for j, m in enumerate(self.modalities)},
                "dominant_modality": self.modalities[int(a_mod[t].argmax())],
                "beta_mod": {m: float(s["beta_mod"][0, t, j]) for j, m in enumerate(self.modalities)},
                "beta_item": float(s["beta_item"][0, t]),
                "poi": bool(s["poi_item"][0, t]), "noise": bool(s["noise_item"][0, t]),
                "poi_modalities": [m for j, m in enumerate(self.modalities) if bool(s["poi_mod"][0, t, j])],
                "noise_modalities": [m for j, m in enumerate(self.modalities) if bool(s["noise_mod"][0, t, j])],
            })
        profile = norm.mean(0) if hist.numel() else torch.zeros(len(self.modalities))
        return {"target": int(s["target"][0]), "target_given": target is not None, "modalities": list(self.modalities),
                "score_mode": self.score_mode, "gamma_item": self.gamma_item, "gamma_mod": self.gamma_mod,
                "items": items, "modality_profile": {m: float(profile[j]) for j, m in enumerate(self.modalities)}}

    # -- augmentation (Eqs. 9-13) --------------------------------------------------------------
    def _allowed(self, hist: torch.Tensor, target: torch.Tensor, pool: torch.Tensor) -> torch.Tensor:
        """[N, C]: pool candidates that are neither in the instance's history nor its target."""
        where = torch.full((self.n_items + 1,), -1, dtype=torch.long, device=pool.device)
        where[pool] = torch.arange(pool.numel(), device=pool.device)
        C = pool.numel()
        seen = torch.cat([hist, target.unsqueeze(1)], 1)
        col = where[seen]
        col = torch.where(col >= 0, col, torch.full_like(col, C))  # not in the pool: a spare column
        member = torch.zeros(hist.shape[0], C + 1, dtype=torch.bool, device=pool.device)
        member.scatter_(1, col, True)
        return ~member[:, :C]

    def _draw(self, q: torch.Tensor, cands: torch.Tensor, allowed: torch.Tensor, similar: bool) -> torch.Tensor:
        """[S, J] draws among ``cands`` [C, d] for queries ``q`` [S, d] (Eqs. 10, 13)."""
        sim = q @ cands.T
        w = aug.replacement_weights(sim, allowed, similar, uniform=self.replace == "uniform")
        return aug.sample_replacements(w, self.n_views)

    def views(self, ex: Dict[str, torch.Tensor], a_item: torch.Tensor,
              a_mod: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(u⁺ [J, N, d], u⁻ [J, N, d]) of the J positive and J negative views (Section 3.4)."""
        A, E, valid = ex["A"], ex["E"], ex["valid"]
        pool, pool_E, pool_V = ex["cand"], ex["cand_E"], ex["cand_V"]
        allowed = self._allowed(ex["hist"], ex["target"], pool)
        N, L, M, d = E.shape
        acts = []
        for similar in (True, False):  # positive view: noises -> similar; negative: PoIs -> dissimilar
            items, slots = aug.select_positions(a_item, a_mod, valid, self.gamma_item, self.gamma_mod,
                                                top=not similar)
            i_n, i_t = items.nonzero(as_tuple=True)
            i_draw = self._draw(A.detach()[i_n, i_t], pool_V.detach(), allowed[i_n], similar)
            s_n, s_t, s_m = slots.nonzero(as_tuple=True)
            if self.cross_modal:
                flat = pool_E.reshape(-1, d)
                s_draw = self._draw(E.detach()[s_n, s_t, s_m], flat.detach(),
                                    allowed[s_n].repeat_interleave(M, 1), similar)
                s_tok = [flat.index_select(0, s_draw[:, j]) for j in range(self.n_views)]
            else:
                s_draw = torch.zeros(s_n.numel(), self.n_views, dtype=torch.long, device=E.device)
                for m in range(M):  # one similarity block per modality (M is small)
                    sel = s_m == m
                    if bool(sel.any()):
                        s_draw[sel] = self._draw(E.detach()[s_n[sel], s_t[sel], m], pool_E[:, m].detach(),
                                                 allowed[s_n[sel]], similar)
                s_tok = [pool_E[s_draw[:, j], s_m] for j in range(self.n_views)]
            # items with at least one replaced slot are re-encoded by the modality encoder
            r_n, r_t = slots.any(-1).nonzero(as_tuple=True)
            row_of = torch.full((N, L), -1, dtype=torch.long, device=E.device)
            row_of[r_n, r_t] = torch.arange(r_n.numel(), device=E.device)
            for j in range(self.n_views):
                a = A
                if r_n.numel():
                    toks = E[r_n, r_t].index_put((row_of[s_n, s_t], s_m), s_tok[j])
                    a = a.index_put((r_n, r_t), self.item_vectors(toks))
                if i_n.numel():
                    a = a.index_put((i_n, i_t), pool_V.index_select(0, i_draw[:, j]))
                acts.append(a)
        J = self.n_views
        u = self.user_vectors(torch.cat(acts, 0), valid.repeat(2 * J, 1)).view(2 * J, N, d)
        return u[:J], u[J:]


@register_model("demure-base")
class DemureBase(Demure):
    """Demure's Base Model (Table 2 of the paper): Demure with λ1 = λ2 = 0, so that the interest
    scores, the augmentation and the contrastive loss never run (module docstring)."""

    name = "demure-base"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, modalities: Sequence[str] = ("image", "text"),
                 item_id: bool = False, max_len: int = 50, n_neg: int = 1000, min_prefix: int = 4,
                 attn_scale: bool = False, pool_axis: str = "row", length_buckets: int = 4, **hp: Any):
        hp.update(lambda_aug=0.0, lambda_cl=0.0)
        super().__init__(ctx, embedding_dim=embedding_dim, modalities=modalities, item_id=item_id, max_len=max_len,
                         n_neg=n_neg, min_prefix=min_prefix, attn_scale=attn_scale, pool_axis=pool_axis,
                         length_buckets=length_buckets, **hp)
