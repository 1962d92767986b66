r"""Merge-attention fusion of text tokens and image patches (PMMRec, Li et al., ICDE 2024, Eq. 3).

.. math::

    (e^{cls}, \dots) = \mathrm{Fuse}\big([m^{cls};\ t^1 + \tau_T, \dots, t^p + \tau_T;\ v^1 + \tau_V,
    \dots, v^q + \tau_V]\big)

``Fuse`` is ``n_layers`` bidirectional `graphrec.nn.bert_layer.BertLayer` s over the concatenation;
padded text tokens are masked as keys, so they change nothing. :math:`m^{cls}` is a learnable
token (N(0, 0.02)) and :math:`e^{cls}` its output: the item vector. :math:`\tau_T, \tau_V` are
modality-type embeddings. Departures kept as options (the official code): ``pool="mean"`` reads
the masked mean over the fused text and image positions instead of :math:`m^{cls}`;
``type_embeddings=False`` adds no type embedding (the code defines one but never adds it).
The modalities' own CLS states enter when the caller prepends them to the token lists. Pooled
features (one token per modality) degenerate to three positions :math:`[m^{cls}; t; v]`.
"""
from __future__ import annotations

import torch
from torch import nn

from graphrec.nn.bert_layer import BertLayer
from graphrec.nn.item_encoders import masked_mean


class MergeAttentionFusion(nn.Module):
    """``forward(text, text_mask, vision, vision_mask)`` -> item vectors [N, d]."""

    def __init__(self, dim: int, n_heads: int = 4, n_layers: int = 1, inner_dim: int | None = None,
                 dropout: float = 0.1, pool: str = "cls", type_embeddings: bool = True):
        super().__init__()
        if pool not in ("cls", "mean"):
            raise ValueError(f"fusion pool must be 'cls' or 'mean', got {pool!r}")
        self.dim, self.n_heads, self.n_layers, self.pool = int(dim), int(n_heads), int(n_layers), pool
        self.mm_cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.type_emb = nn.Parameter(torch.randn(2, dim) * 0.02) if type_embeddings else None
        self.layers = nn.ModuleList(BertLayer(dim, n_heads, int(inner_dim or 4 * dim), dropout, dropout)
                                    for _ in range(self.n_layers))
        for layer in self.layers:
            layer.reset_parameters()

    def forward(self, text: torch.Tensor, text_mask: torch.Tensor, vision: torch.Tensor,
                vision_mask: torch.Tensor) -> torch.Tensor:
        if self.type_emb is not None:
            text, vision = text + self.type_emb[0], vision + self.type_emb[1]
        N = text.shape[0]
        x = torch.cat([self.mm_cls.expand(N, -1, -1), text, vision], 1)
        m = torch.cat([text_mask.new_ones(N, 1), text_mask, vision_mask], 1).bool()
        for layer in self.layers:
            x = layer(x, m)
        if self.pool == "cls":
            return x[:, 0]
        return masked_mean(x[:, 1:], m[:, 1:])

    def config(self) -> dict:
        return {"dim": self.dim, "n_heads": self.n_heads, "n_layers": self.n_layers, "pool": self.pool,
                "type_embeddings": self.type_emb is not None}
