"""FREEDOM (Zhou & Shen, ACM MM 2023): frozen multimodal kNN item graph + denoised user-item graph."""
from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import torch
from torch import nn
import torch.nn.functional as F

from graphrec import losses
from graphrec.models import register_model
from graphrec.models._modalities import FrozenItemGraphSpecs, content_modalities, feature_matrix
from graphrec.models.base import ModelContext, Recommender, Reps, rows_of
from graphrec.nn import precision
from graphrec.nn.batch_propagation import batch_readout
from graphrec.nn.item_graph import ItemGraphPropagation
from graphrec.nn.propagation import LightGCNPropagation
from graphrec.nn.sampled_propagation import subgraph_readout
from graphrec.utils import log


@register_model("freedom")
class FREEDOM(FrozenItemGraphSpecs, Recommender):
    r"""FREEDOM (Zhou & Shen 2023, Eq. 1-12, and the official code):

    .. math::
        H = S^{L_{mm}} E_I, \qquad
        [U; I] = \mathrm{mean}_{l=0..L_{ui}} \tilde A^l [E_U; E_I], \qquad
        e_u = U_u,\; e_i = I_i + H_i,\; \hat y_{ui} = e_u^\top e_i

    - S: frozen kNN item graph, per-modality top-``knn_k`` with value 1/k, mixed
      ``mm_image_weight``·S^image + (1-w)·S^text (built once by `graphrec.graphs`).
    - :math:`\tilde A`: in training, a degree-sensitive pruned subgraph keeping (1-``dropout``)
      of the edges, resampled each epoch in :meth:`pre_epoch`; in eval, the full graph.
    - Loss: :math:`L_{bpr} + \lambda (L^t_{bpr} + L^v_{bpr})` with :math:`L^m_{bpr}` the BPR of
      :math:`e_u^\top (W_m x^m_i)` and λ = ``reg_weight``; no weight decay.

    ``train_features`` (MMRec: True) keeps the raw features as a trainable table updated by the
    modality BPR. Default False: at λ ≤ 1e-3 the features only reach the score through the user
    embeddings' λ-weighted gradient, while Adam on a 4096-d table is about half of MMRec's epoch
    at Clothing scale. With λ = 0 neither the projections nor the tables are allocated.

    Training steps compute the batch's rows only (``batch_local``, `graphrec.nn.batch_propagation`;
    exact); evaluation propagates the whole graph once. With ``train.sampler: neighbor`` a step
    propagates over a sampled user-item subgraph (`graphrec.nn.sampled_propagation`, an unbiased
    estimate of the full graph's layers) and reads H for its scored items through their kNN rows
    only, with sparse gradients throughout. Departure (logged): the degree-sensitive pruning is not
    applied there; the sampled subgraph, at most ``num_neighbors`` neighbours per node and hop, is
    the step's random edge subset instead.
    """

    name = "freedom"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, feat_embed_dim: int = 64, knn_k: int = 10,
                 mm_image_weight: float = 0.1, n_mm_layers: int = 1, n_ui_layers: int = 2, dropout: float = 0.8,
                 reg_weight: float = 0.0, train_features: bool = False,
                 modalities: Sequence[str] = ("image", "text"), batch_local: bool = True, **hp: Any):
        super().__init__(ctx)
        d = int(embedding_dim)
        if reg_weight > 0 and int(feat_embed_dim) != d:
            raise ValueError(f"FREEDOM's modality BPR scores users against projected features: "
                             f"feat_embed_dim ({feat_embed_dim}) must equal embedding_dim ({d})")
        self.user_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_users, d)))
        self.item_emb = nn.Parameter(nn.init.xavier_uniform_(torch.empty(self.n_items, d)))
        self.modalities = content_modalities(modalities)
        self.dropout = float(dropout)
        self.reg_weight = float(reg_weight)
        self.batch_local = bool(batch_local)
        self.ui = LightGCNPropagation(int(n_ui_layers), "mean")
        self.mm = ItemGraphPropagation(ctx.graphs["mm"], int(n_mm_layers))
        self.full_graph = ctx.graphs["ui"]
        self.train_graph: Any = self.full_graph
        self.pruner = None
        if self.dropout > 0:
            from graphrec.graphs import DegreeSensitivePruner
            self.pruner = DegreeSensitivePruner(ctx.train, keep_ratio=1.0 - self.dropout, device=ctx.device)
        self._sampled = False
        self._on_subgraphs = False
        self.proj = nn.ModuleDict()
        if self.reg_weight > 0:
            for m in self.modalities:
                x = feature_matrix(ctx, m)
                if train_features:
                    setattr(self, f"feat_{m}", nn.Parameter(x.clone()))
                else:
                    self.register_buffer(f"feat_{m}", x, persistent=False)
                self.proj[m] = nn.Linear(x.shape[1], int(feat_embed_dim))

    def pre_epoch(self, epoch: int, generator: torch.Generator) -> None:
        if self.pruner is not None and not self._on_subgraphs:
            self.train_graph = self.pruner.sample(generator)
            self._sampled = True

    def _graph(self) -> Any:
        if self.training and self.pruner is not None and not self._sampled:
            self.pre_epoch(0, torch.Generator(device="cpu").manual_seed(0))
        return self.train_graph if self.training else self.full_graph

    def subgraph_hops(self) -> int:
        return self.ui.num_layers

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        if "sub_ui" in batch:  # train.sampler=neighbor: a sampled subgraph around the batch
            return self._sampled_forward(batch)
        if not self.batch_local:
            return self.propagate()
        users = torch.unique(batch["user"])
        items = torch.unique(torch.cat([batch["pos"], batch["neg"]]))
        out = batch_readout(self._graph(), torch.cat([self.user_emb, self.item_emb]),
                            torch.cat([users, self.n_users + items]), self.ui.num_layers, "mean")
        user, item = torch.split(out, [users.numel(), items.numel()])
        return Reps(user=user, user_ids=users, item=item + self.mm.rows(self.item_emb, items), item_ids=items)

    def _sampled_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        if not self._on_subgraphs:
            self._on_subgraphs = True
            if self.pruner is not None:
                log.info("freedom: training on sampled subgraphs, which replace the degree-sensitive pruning "
                         "(dropout=%g is not applied)", self.dropout)
        n_sub = batch["sub_users"].numel()

        def read(ids: torch.Tensor) -> torch.Tensor:  # [subgraph users; n_users + subgraph items]
            return torch.cat([F.embedding(ids[:n_sub], self.user_emb, sparse=True),
                              F.embedding(ids[n_sub:] - self.n_users, self.item_emb, sparse=True)])

        r = subgraph_readout(read, self.full_graph, batch, self.n_users, self.ui.num_layers, "mean")
        scored = torch.unique(torch.cat([batch["pos"], batch["neg"]]))
        h = self.mm.sampled_rows(lambda ids: F.embedding(ids, self.item_emb, sparse=True), scored)
        item = r["out_item"].index_select(0, torch.searchsorted(r["items"], scored)) + h
        return Reps(user=r["out_user"], user_ids=r["users"], item=item, item_ids=scored)

    def propagate(self) -> Reps:
        graph = self._graph()
        h = self.mm(self.item_emb)
        out = self.ui(graph, torch.cat([self.user_emb, self.item_emb]))
        user, item = torch.split(out, [self.n_users, self.n_items])
        return Reps(user=user, item=item + h)

    def modality_projections(self, items: Optional[torch.Tensor] = None) -> Dict[str, torch.Tensor]:
        """:math:`W_m x^m` for ``items`` (all when None); empty when ``reg_weight`` = 0."""
        out = {}
        for m, lin in self.proj.items():
            x = getattr(self, f"feat_{m}")
            with precision.region():  # train.amp: the feature projection in bf16, returned as float32
                if not isinstance(x, nn.Parameter):
                    x = precision.lowered(self, f"feat_{m}", x)
                out[m] = lin(x if items is None else x[items]).float()
        return out

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        u = rows_of(reps, "user", batch["user"])
        p, n = rows_of(reps, "item", batch["pos"]), rows_of(reps, "item", batch["neg"])
        terms = {"bpr": losses.bpr_loss((u * p).sum(-1), (u * n).sum(-1))}
        if self.reg_weight > 0:
            nb = batch["pos"].shape[0]
            z = self.modality_projections(torch.cat([batch["pos"], batch["neg"]]))
            mm = sum(losses.bpr_loss((u * zm[:nb]).sum(-1), (u * zm[nb:]).sum(-1)) for zm in z.values())
            terms["modal_bpr"] = self.reg_weight * mm
        return terms
