r"""Causal user encoder over content item vectors (PMMRec, Li et al., ICDE 2024, Eq. 4):

.. math::

    (h_1, \dots, h_L) = \mathrm{Trm}(e_1 + p_1, \dots, e_L + p_L)

with learned absolute positions :math:`p` (``max_len`` rows, counted from the oldest item of the
left-padded window, as graphrec's SASRec counts them) and the SASRec-style causal transformer of
`graphrec.nn.transformer` (input LayerNorm + dropout, post-LN blocks). :math:`h_l` depends only on
:math:`e_1..e_l`; padded slots are masked as keys, so their contents change nothing. Departures
from the official code (2 blocks, 2 heads, ReLU FFN, bias-free projections, LayerNorm eps 1e-6,
positions counted over the padded window): graphrec's transformer uses a GELU FFN with biases and
eps 1e-12, and counts positions from the oldest real item so that extra padding changes nothing.
"""
from __future__ import annotations

import torch
from torch import nn

from graphrec.nn.transformer import CausalTransformerEncoder


class UserEncoder(nn.Module):
    """``forward(x [B, L, d], valid [B, L])`` -> [B, L, d]; no parameter depends on the catalogue."""

    def __init__(self, dim: int, max_len: int = 20, n_layers: int = 2, n_heads: int = 2,
                 inner_dim: int | None = None, dropout: float = 0.1):
        super().__init__()
        self.dim, self.max_len, self.n_layers, self.n_heads = int(dim), int(max_len), int(n_layers), int(n_heads)
        self.inner_dim = int(inner_dim or 4 * dim)
        self.pos = nn.Embedding(self.max_len, dim)
        self.encoder = CausalTransformerEncoder(dim, n_layers, n_heads, self.inner_dim, dropout, dropout)
        nn.init.normal_(self.pos.weight, 0.0, 0.02)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if x.shape[1] > self.max_len:
            raise ValueError(f"user encoder: {x.shape[1]} positions exceed max_len={self.max_len}")
        pos = (valid.long().cumsum(1) - 1).clamp(min=0)
        return self.encoder(x + self.pos(pos), valid)

    def config(self) -> dict:
        return {"dim": self.dim, "max_len": self.max_len, "n_layers": self.n_layers, "n_heads": self.n_heads,
                "inner_dim": self.inner_dim}
