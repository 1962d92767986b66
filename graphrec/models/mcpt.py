r"""MCPT: multi-modal contrastive pre-training for recommendation (Liu, Ma, Schubert, Ouyang and
Xiong, "Multi-Modal Contrastive Pre-training for Recommendation", ICMR 2022; the paper names no
model, its tables say "OURS"; MCPT is graphrec's name).

Stage 1 (this model) learns one vector per user and per item from their modalities and the
training interactions; stage 2 starts LightGCN + MixGCF (`graphrec.models.mixgcf`) from those
vectors (``graphrec export`` then ``train.init_from=<export dir>``, `graphrec.train.checkpoint`)
and fine-tunes it on the interactions alone.

Modalities (fixed order inside the model):

* users: ``review`` (mean of the user's review features, Eqs. 3-4) and ``graph`` (LightGCN on the
  user-user co-interaction graph, Eqs. 1-2);
* items: ``text``, ``image`` (frozen content features) and ``graph`` (LightGCN on the item-item
  co-interaction graph, Eqs. 5, 9).

Review stand-in: graphrec's datasets carry no per-interaction review text, so the user's
``review`` feature is the mean of the text features of the user's *training* items (the model
only ever sees ``ctx.train``: a held-out interaction never contributes).

Missing modalities: an all-zero feature row (features loaded with ``missing='zeros'``) is a
missing text/image; a user none of whose training items has text has no ``review``. Missing
modalities get attention weight 0 (`graphrec.nn.modality_attention`) and are left out of CIMA.
"""
from __future__ import annotations

import math
from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from graphrec import losses
from graphrec.errors import require_one_of
from graphrec.graphs.bipartite import unique_edges
from graphrec.models import register_model
from graphrec.models._modalities import feature_matrix
from graphrec.models.base import ModelContext, Recommender, Reps, rows_of
from graphrec.nn.batch_propagation import batch_readout
from graphrec.nn.modality_attention import ModalityAttention
from graphrec.nn.propagation import LightGCNPropagation
from graphrec.utils import log

USER_MODALITIES = ("review", "graph")
ITEM_MODALITIES = ("text", "image", "graph")
CIMA_VARIANTS = ("infonce", "bce")
GRAPH_NORMS = {"sym": "sym", "mean": "row"}  # MCPT option -> graphrec.graphs.normalize name
EXPORTS = ("fused", "content_average")
EXPORT_SCALES = ("none", "match_xavier")


def cima_loss(text: torch.Tensor, image: torch.Tensor, tau: float = 0.1, variant: str = "infonce") -> torch.Tensor:
    r"""CIMA, contrastive inter-modal alignment (MCPT Eq. 11) over N items' (text, image) pairs.

    With :math:`S_{pq} = \cos(t_p, v_q)/\tau` (the paper's scaled cosine similarity s):

    * ``"infonce"`` (default): CLIP's symmetric cross-entropy
      :math:`\frac12[\mathrm{CE}(S, \mathrm{diag}) + \mathrm{CE}(S^\top, \mathrm{diag})]`.
      Deviation: Eq. 11 as printed takes :math:`\log s` and :math:`\log(1-s)` of a scaled cosine
      in [-1/τ, 1/τ], which is undefined; the prose ("predict which of the N x N pairings
      occurred", copied from CLIP) describes this form.
    * ``"bce"``: the literal reading with the sigmoid made explicit,
      :math:`\frac{1}{N^2}\sum_{p,q} \mathrm{BCE}(\sigma(S_{pq}), C_{pq})`, C = I_N.

    Both are means (the paper sums), so λ in Eq. 16 does not depend on the batch size.
    """
    if variant == "infonce":
        return losses.infonce(text, image, float(tau))
    if variant == "bce":
        s = F.normalize(text, dim=-1) @ F.normalize(image, dim=-1).T / float(tau)
        return F.binary_cross_entropy_with_logits(s, torch.eye(s.shape[0], dtype=s.dtype, device=s.device))
    raise ValueError(f"cima_variant must be one of {CIMA_VARIANTS}, got {variant!r}")


def user_mean_table(user: torch.Tensor, item: torch.Tensor, n_users: int, x: torch.Tensor,
                    has: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Intra-modal aggregation, average pooling (MCPT Eqs. 3-4):
    :math:`e_u = \frac{1}{k_u}\sum_{j} x_{i_j}` over the distinct pairs (u, i_j) given whose item
    has the modality (``has``); returns (table [n_users, d], mask [n_users]: k_u > 0).
    One sparse product, no per-user loop."""
    keep = has[item]
    user, item = user[keep], item[keep]
    cnt = torch.bincount(user, minlength=n_users).to(x.dtype)
    w = (1.0 / cnt.clamp_min(1))[user]
    r = torch.sparse_coo_tensor(torch.stack([user, item]), w, (n_users, x.shape[0])).coalesce()
    return torch.sparse.mm(r, x), cnt > 0


def present(x: torch.Tensor) -> torch.Tensor:
    """Rows that hold a feature vector (an all-zero row is a missing modality)."""
    return x.abs().sum(dim=1) > 0


def content_average_tables(features: Dict[str, torch.Tensor], train_items: torch.Tensor, dim: int) -> torch.Tensor:
    r"""The paper's CLIP baseline initialiser (Appendix B: "average pooling" of each item's text and
    image embeddings), mapped to ``dim`` by PCA fitted on the items that occur in training.

    Each modality's rows are L2-normalised; modalities of equal width (CLIP's joint space) are
    averaged over the ones an item has, as the paper does; modalities of different widths (e.g.
    MiniLM text and EfficientNet images, which share no space) are concatenated instead
    (deviation: an average is undefined there). The paper does not say how 512-d becomes 64-d;
    PCA is graphrec's choice. Returns [n_items, dim] (scaled by `scale_table` later)."""
    mats = [F.normalize(x.float(), dim=1) for x in features.values()]  # zero rows stay zero
    if len({m.shape[1] for m in mats}) == 1:
        have = torch.stack([present(m) for m in mats], 1).float()
        x = sum(mats) / have.sum(1, keepdim=True).clamp_min(1)
    else:
        x = torch.cat(mats, dim=1)
    fit = x[torch.unique(train_items)]
    mean = fit.mean(0, keepdim=True)
    # right singular vectors of the centred training rows (deterministic LAPACK SVD)
    _, _, vh = torch.linalg.svd(fit - mean, full_matrices=False)
    comps = vh[: int(dim)]
    # SVD signs are arbitrary: fix each component's sign so that its largest loading is positive
    sign = torch.sign(comps.gather(1, comps.abs().argmax(1, keepdim=True)))
    out = (x - mean) @ (comps * sign).T
    if out.shape[1] < int(dim):  # fewer components than dim (tiny data): pad with zeros
        out = F.pad(out, (0, int(dim) - out.shape[1]))
    return out


def scale_table(x: torch.Tensor, how: str) -> torch.Tensor:
    r"""``"none"``: as is. ``"match_xavier"``: rescaled so that its entries' standard deviation is
    Xavier-uniform's for a table of its shape, :math:`\sqrt{2/(n + d)}` (MixGCF's code initialises
    the user and the item table separately, so each side is matched to its own)."""
    if how == "none":
        return x
    if how != "match_xavier":
        raise ValueError(f"export_scale must be one of {EXPORT_SCALES}, got {how!r}")
    target = math.sqrt(2.0 / (x.shape[0] + x.shape[1]))
    return x * (target / max(float(x.std()), 1e-12))


@register_model("mcpt")
class MCPT(Recommender):
    r"""MCPT's pre-training network (Liu et al. 2022, §3).

    Graph modality (Eqs. 1-2, 5, 9): :math:`G = \frac{1}{L+1}\sum_{l=0}^{L} \hat A^l E^{(0)}` on the
    user-user graph :math:`A_u = 1[RR^\top > 0] - I` (items: :math:`A_i = 1[R^\top R>0]-I`), built
    from the training interactions; :math:`\hat A = D^{-1/2}AD^{-1/2}` (``graph_norm="sym"``, the
    cited LightGCN's) or :math:`D^{-1}A` (``"mean"``, the garbled printed weight's likeliest
    reading); :math:`E^{(0)}` Xavier-initialised, L = ``n_layers`` = 2.

    Projections (Eqs. 6, 12): :math:`\hat e^m = W^m e^m + b^m`, one ``nn.Linear(d_m, d)`` per side
    and modality (W Xavier, b zero). Fusion (Eqs. 7-8, 13-14): `ModalityAttention`, one attention
    vector per side, masked softmax over the modalities a node has.

    Losses (Eq. 16): :math:`L = \lambda L_1 + (1-\lambda) L_2` with

    * :math:`L_1` = CIMA (`cima_loss`) between the *projected* text and image of the batch's
      distinct positive items that have both (``cima_on="projected"``; Eq. 11 names the raw
      features, which carry no trainable parameter once the encoders are frozen, so λ would do
      nothing; ``"raw"`` keeps the literal reading);
    * :math:`L_2` = Eq. 15, BCE on :math:`e_u^\top e_i` (the sigmoid made explicit) over the
      batch's observed pairs (y = 1) and ``train.num_neg`` uniform negatives per pair (y = 0),
      mean reduction (the paper's sum over all of R is infeasible; its source, GCN-P, samples).

    ``use_cima=False`` is λ = 0 ("w/o CIMA"), ``use_bce=False`` is λ = 1 ("w/o BCE"); CIMA is off
    unless both text and image are item modalities. The logged terms ``cima`` and ``bce`` are the
    weighted ones.

    Evaluation (zero-shot): :math:`\hat y_{ui} = e_u^\top e_i` of the fused vectors, so the
    pairwise task's ranking evaluator selects the epoch (valid Recall@20). ``export_tables()``
    returns the fused tables ``user/mcpt``, ``item/mcpt``, or with ``export="content_average"``
    the CLIP-average baseline initialiser ``item/content`` (`content_average_tables`; users then
    keep the fine-tuned model's random initialisation, as in the paper's baseline).

    Training steps compute the graph readout of the batch's rows only (``batch_local``, exact:
    `graphrec.nn.batch_propagation`); evaluation propagates both graphs in full.
    """

    name = "mcpt"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, n_layers: int = 2, graph_norm: str = "sym",
                 graph_topk: Optional[int] = None, graph_min_common: int = 1,
                 user_modalities: Sequence[str] = USER_MODALITIES, item_modalities: Sequence[str] = ITEM_MODALITIES,
                 text_modality: str = "text", image_modality: str = "image",
                 lam: float = 0.2, use_cima: bool = True, use_bce: bool = True, cima_variant: str = "infonce",
                 cima_on: str = "projected", tau: float = 0.1, batch_local: bool = True,
                 export: str = "fused", export_scale: str = "none", **hp: Any):
        super().__init__(ctx)
        self.user_mods = _ordered(user_modalities, USER_MODALITIES, "user_modalities")
        self.item_mods = _ordered(item_modalities, ITEM_MODALITIES, "item_modalities")
        require_one_of("graph_norm", graph_norm, GRAPH_NORMS)
        require_one_of("cima_variant", cima_variant, CIMA_VARIANTS)
        if cima_on not in ("projected", "raw"):
            raise ValueError(f"cima_on must be 'projected' or 'raw', got {cima_on!r}")
        require_one_of("export", export, EXPORTS)
        require_one_of("export_scale", export_scale, EXPORT_SCALES)
        if not 0.0 <= float(lam) <= 1.0:
            raise ValueError(f"lam (the CIMA weight λ of Eq. 16) must lie in [0, 1], got {lam}")
        d = int(embedding_dim)
        self.dim = d
        self.tau = float(tau)
        self.cima_variant, self.cima_on = cima_variant, cima_on
        self.export, self.export_scale = export, export_scale
        self.batch_local = bool(batch_local)
        # Eq. 16 with the ablation switches: w/o CIMA is λ = 0, w/o BCE is λ = 1
        self.cima_possible = "text" in self.item_mods and "image" in self.item_mods
        use_cima = bool(use_cima) and self.cima_possible
        if not use_cima and not use_bce:
            raise ValueError("mcpt: nothing to train: CIMA is off (use_cima=False, or text and image are not both "
                             "item modalities) and use_bce=False")
        lam = float(lam) if use_cima and use_bce else (1.0 if use_cima else 0.0)
        self.w_cima, self.w_bce = lam, 1.0 - lam

        # frozen content features (buffers, not saved: they come from the dataset)
        need_text = "text" in self.item_mods or "review" in self.user_mods
        if need_text:
            self.register_buffer("x_text", feature_matrix(ctx, text_modality), persistent=False)
            self.register_buffer("has_text", present(self.x_text), persistent=False)
        if "image" in self.item_mods:
            self.register_buffer("x_image", feature_matrix(ctx, image_modality), persistent=False)
            self.register_buffer("has_image", present(self.x_image), persistent=False)
        if cima_on == "raw" and use_cima and self.x_text.shape[1] != self.x_image.shape[1]:
            raise ValueError(f"cima_on='raw' compares raw text ({self.x_text.shape[1]}-d) and image "
                             f"({self.x_image.shape[1]}-d) features: they need one width")
        if cima_on == "raw" and use_cima and not use_bce:
            raise ValueError("mcpt: cima_on='raw' with use_bce=False trains nothing (frozen features have no "
                             "parameters); use cima_on='projected'")
        if "review" in self.user_mods:
            # the review stand-in from the TRAINING interactions only (ctx.train)
            u, i = unique_edges(ctx.train, device=self.x_text.device)
            table, mask = user_mean_table(u, i, self.n_users, self.x_text, self.has_text)
            self.register_buffer("x_review", table, persistent=False)
            self.register_buffer("has_review", mask, persistent=False)
            if int((~mask).sum()):
                log.info("mcpt: %d of %d users have no review feature (no training item with text)",
                         int((~mask).sum()), self.n_users)

        # graph modality: ID tables + LightGCN on the homogeneous co-interaction graphs
        self.prop = LightGCNPropagation(int(n_layers), "mean")
        if "graph" in self.user_mods:
            self.user_graph = ctx.graphs["uu"]
            self.user_id = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        if "graph" in self.item_mods:
            self.item_graph = ctx.graphs["ii"]
            self.item_id = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))

        def linear(d_in: int) -> nn.Linear:
            lin = nn.Linear(d_in, d)
            nn.init.xavier_uniform_(lin.weight)
            nn.init.zeros_(lin.bias)
            return lin

        self.user_proj = nn.ModuleDict({m: linear(self._width(m, "user")) for m in self.user_mods})
        self.item_proj = nn.ModuleDict({m: linear(self._width(m, "item")) for m in self.item_mods})
        self.user_attn = ModalityAttention(d)
        self.item_attn = ModalityAttention(d)
        if export == "content_average":
            mods = {m: getattr(self, f"x_{m}") for m in ("text", "image") if m in self.item_mods}
            if not mods:
                raise ValueError("export='content_average' needs 'text' or 'image' among item_modalities")
            self.register_buffer("content", content_average_tables(mods, ctx.train.item, d), persistent=False)
        #: mean attention per modality over the last training step's rows (diagnostics, no grad)
        self.last_attention: Dict[str, float] = {}

    # -- declared needs ------------------------------------------------------------------------
    @classmethod
    def graph_specs(cls, hp: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
        norm = GRAPH_NORMS.get(hp.get("graph_norm", "sym"), "sym")
        base = {"kind": "cointeraction", "weight": "binary", "norm": norm,
                "min_count": int(hp.get("graph_min_common", 1))}
        if hp.get("graph_topk") is not None:
            # per-row top-k by co-count, then the union with its transpose keeps the graph undirected
            base.update(topk=int(hp["graph_topk"]), symmetrize=True)
        specs = {}
        if "graph" in hp.get("user_modalities", USER_MODALITIES):
            specs["uu"] = {**base, "side": "user"}
        if "graph" in hp.get("item_modalities", ITEM_MODALITIES):
            specs["ii"] = {**base, "side": "item"}
        return specs

    @classmethod
    def required_modalities(cls, hp: Dict[str, Any]) -> list[str]:
        items = hp.get("item_modalities", ITEM_MODALITIES)
        need = []
        if "text" in items or "review" in hp.get("user_modalities", USER_MODALITIES):
            need.append(hp.get("text_modality", "text"))
        if "image" in items:
            need.append(hp.get("image_modality", "image"))
        return need

    def negatives_per_pair(self, configured: int) -> int:
        """Eq. 15's negatives: ``train.num_neg`` uniform ones per observed pair (any number)."""
        return int(configured)

    def trainable(self) -> bool:
        # the content-average initialiser is computed, not trained
        return self.export != "content_average" and super().trainable()

    # -- pieces --------------------------------------------------------------------------------
    def _width(self, modality: str, side: str) -> int:
        if modality == "graph":
            return self.dim
        return int(getattr(self, {"review": "x_review", "text": "x_text", "image": "x_image"}[modality]).shape[1])

    def _graph_rows(self, side: str, rows: Optional[torch.Tensor]) -> torch.Tensor:
        graph = self.user_graph if side == "user" else self.item_graph
        table = self.user_id if side == "user" else self.item_id
        if rows is None:
            return self.prop(graph, table)
        if self.batch_local and torch.is_grad_enabled():
            return batch_readout(graph, table, rows, self.prop.num_layers, "mean")
        return self.prop(graph, table).index_select(0, rows)

    def _fuse(self, side: str, rows: Optional[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(fused vectors, attention [n, M]) of ``rows`` (None: every node of the side)."""
        mods = self.user_mods if side == "user" else self.item_mods
        proj = self.user_proj if side == "user" else self.item_proj
        parts, masks = [], []
        for m in mods:
            if m == "graph":
                parts.append(proj[m](self._graph_rows(side, rows)))
                n = parts[-1].shape[0]
                masks.append(torch.ones(n, dtype=torch.bool, device=parts[-1].device))
                continue
            x, has = getattr(self, f"x_{m}"), getattr(self, f"has_{m}")
            if rows is not None:
                x, has = x.index_select(0, rows), has.index_select(0, rows)
            parts.append(proj[m](x))
            masks.append(has)
        return (self.user_attn if side == "user" else self.item_attn)(torch.stack(parts, 1), torch.stack(masks, 1))

    def _cima_inputs(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(text, image) of the distinct ``items`` that have both: projected (default) or raw."""
        both = items[self.has_text[items] & self.has_image[items]]
        t, v = self.x_text.index_select(0, both), self.x_image.index_select(0, both)
        if self.cima_on == "raw":
            return t, v
        return self.item_proj["text"](t), self.item_proj["image"](v)

    # -- the contract --------------------------------------------------------------------------
    def propagate(self) -> Reps:
        user, a_u = self._fuse("user", None)
        item, a_i = self._fuse("item", None)
        return Reps(user=user, item=item, extras={"alpha_user": a_u, "alpha_item": a_i})

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        extras: Dict[str, torch.Tensor] = {}
        reps = Reps(extras=extras)
        if self.w_bce > 0:
            users = torch.unique(batch["user"])
            items = torch.unique(torch.cat([batch["pos"], batch["neg"].flatten()]))
            reps.user, extras["alpha_user"] = self._fuse("user", users)
            reps.item, extras["alpha_item"] = self._fuse("item", items)
            reps.user_ids, reps.item_ids = users, items
        if self.w_cima > 0:
            # CIMA's batch: the distinct positive items (a repeated item would be its own negative)
            extras["cima_text"], extras["cima_image"] = self._cima_inputs(torch.unique(batch["pos"]))
        return reps

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        terms: Dict[str, torch.Tensor] = {}
        if self.w_bce > 0:
            u = rows_of(reps, "user", batch["user"])
            p = rows_of(reps, "item", batch["pos"])
            neg = batch["neg"].reshape(u.shape[0], -1)
            n = rows_of(reps, "item", neg.flatten()).view(neg.shape[0], neg.shape[1], -1)
            logits = torch.cat([(u * p).sum(-1), (u.unsqueeze(1) * n).sum(-1).flatten()])
            labels = torch.cat([torch.ones(u.shape[0], device=u.device), torch.zeros(neg.numel(), device=u.device)])
            terms["bce"] = self.w_bce * losses.bce_loss(logits, labels)
            self._note_attention(reps)
        if self.w_cima > 0:
            t, v = reps.extras["cima_text"], reps.extras["cima_image"]
            if t.shape[0] >= 2:  # one pair has no negative: nothing to contrast
                terms["cima"] = self.w_cima * cima_loss(t, v, self.tau, self.cima_variant)
        if not terms:  # e.g. a CIMA-only batch whose items lack an image: a zero that keeps the graph
            terms["cima"] = sum(p.sum() * 0.0 for p in self.item_proj.parameters())
        return terms

    def pre_epoch(self, epoch: int, generator: torch.Generator) -> None:
        # the loss terms (cima, bce) go to epochs.jsonl; the attention per modality is logged here
        if self.last_attention:
            log.info("mcpt epoch %d: mean attention %s", epoch,
                     ", ".join(f"{k} {v:.3f}" for k, v in self.last_attention.items()))

    def _note_attention(self, reps: Reps) -> None:
        with torch.no_grad():
            self.last_attention = self.attention_means(reps)

    def attention_means(self, reps: Reps) -> Dict[str, float]:
        """Mean attention weight per modality (``"user/review"``, ``"item/image"``, ...) over the
        rows of ``reps`` (the paper's Fig. 3 reading of which modality a side relies on)."""
        out = {}
        for side, mods in (("user", self.user_mods), ("item", self.item_mods)):
            a = reps.extras.get(f"alpha_{side}")
            if a is not None:
                out.update({f"{side}/{m}": float(v) for m, v in zip(mods, a.detach().mean(0).tolist())})
        return out

    def export_tables(self) -> Dict[str, torch.Tensor]:
        """``{"user/mcpt": [n_users, d], "item/mcpt": [n_items, d]}``: the fused vectors, in eval
        mode without gradients (or ``{"item/content": ...}`` for ``export="content_average"``),
        scaled by ``export_scale``; their mean row norms are logged."""
        was = self.training
        self.eval()
        try:
            with torch.no_grad():
                if self.export == "content_average":
                    tables = {"item/content": self.content.clone()}
                else:
                    reps = self.propagate()
                    tables = {"user/mcpt": reps.user.clone(), "item/mcpt": reps.item.clone()}
                tables = {k: scale_table(v, self.export_scale) for k, v in tables.items()}
        finally:
            self.train(was)
        for k, v in tables.items():
            log.info("mcpt export %s: shape %s, mean row norm %.4f", k, tuple(v.shape), float(v.norm(dim=1).mean()))
        return tables


def _ordered(given: Sequence[str], known: Sequence[str], what: str) -> list[str]:
    """``given`` in the fixed order of ``known``; unknown or no modality raises."""
    if isinstance(given, str):
        given = [given]
    bad = [m for m in given if m not in known]
    if bad:
        raise ValueError(f"mcpt {what}: unknown modality {bad}; choose from {list(known)}")
    out = [m for m in known if m in given]
    if not out:
        raise ValueError(f"mcpt {what}: at least one modality is needed (from {list(known)})")
    return out
