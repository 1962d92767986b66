r"""Self-attentive pooling of a set of tokens into one vector: Demure's modality-wise and item-wise
encoders (Yao et al., "Denoising Multi-modal Sequential Recommenders with Contrastive Learning",
arXiv 2305.01915, Section 3.2, Eqs. 1-3).

For the valid tokens :math:`x_1, \dots, x_N \in \mathbb{R}^d` of one set (the M modality tokens of
an item, or the history items of a user):

.. math::

    s_{m,n} &= (W_f x_m)^\top (W_g x_n)                                     && \text{(Eq. 1, scores)} \\
    \beta_{m,n} &= \frac{\exp s_{m,n}}{\sum_{k} \exp s_{m,k}}                && \text{(Eq. 1, row softmax)} \\
    \tilde x_m &= \sum_k \beta_{m,k} \, W_h x_k                                && \text{(Eq. 2)} \\
    \beta_m &= \frac{\sum_n \exp s_{m,n}}{\sum_{m'} \sum_n \exp s_{m',n}}
             = \mathrm{softmax}_m\Big(\mathrm{logsumexp}_n\, s_{m,n}\Big)     && \text{(Eq. 3)} \\
    \mathrm{out} &= \sum_m \beta_m \tilde x_m

with sums over valid tokens only (padding gets :math:`-\infty` before both softmaxes, hence zero
weight). Eq. 3 is computed in the stable logsumexp form. The paper names no scaling, heads, residual
or LayerNorm: none are used; ``scale=True`` divides the scores by :math:`\sqrt d` (a non-paper
option). ``pool_axis="col"`` pools :math:`\beta_n \propto \sum_m \exp s_{m,n}` instead (the
prose reading of Eq. 3, "the extent the model attends to the n-th token"). A set without a valid
token pools to the zero vector.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from graphrec.errors import require_one_of

POOL_AXES = ("row", "col")
#: the score of a padding token (finite: see `AttentivePooling.forward`)
NEG = -1e30


class Pooled(NamedTuple):
    """``out`` [..., d]; ``pair`` [..., N, N] (:math:`\\beta_{m,n}`); ``pool`` [..., N] (:math:`\\beta_m`)."""

    out: torch.Tensor
    pair: torch.Tensor
    pool: torch.Tensor


class AttentivePooling(nn.Module):
    r"""One self-attentive pooling (Eqs. 1-3 of Demure) with its own :math:`W_f, W_g, W_h` (d x d,
    no bias). ``forward(x [..., N, d], mask [..., N] or None) -> Pooled``."""

    def __init__(self, dim: int, scale: bool = False, pool_axis: str = "row"):
        super().__init__()
        require_one_of("pool_axis", pool_axis, POOL_AXES)
        self.f = nn.Linear(dim, dim, bias=False)
        self.g = nn.Linear(dim, dim, bias=False)
        self.h = nn.Linear(dim, dim, bias=False)
        self.scale = float(dim) ** -0.5 if scale else 1.0
        self.pool_axis = pool_axis

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> Pooled:
        s = self.f(x) @ self.g(x).transpose(-1, -2)  # [..., N, N]
        if self.scale != 1.0:
            s = s * self.scale
        if mask is not None:
            # a large finite negative, not -inf: exp underflows to exactly 0 for padding, and a set
            # with no valid token gives finite (then zeroed) weights instead of NaN in the backward
            neg = torch.tensor(NEG, dtype=s.dtype, device=s.device)
            key_ok = mask.unsqueeze(-2)                                   # [..., 1, N]
            s = torch.where(key_ok, s, neg)
            s_pool = torch.where(mask.unsqueeze(-1) & key_ok, s, neg)    # padding queries too
        else:
            s_pool = s
        pair = torch.softmax(s, dim=-1)
        mixed = pair @ self.h(x)                                          # Eq. 2, [..., N, d]
        logits = torch.logsumexp(s_pool, dim=-1 if self.pool_axis == "row" else -2)
        pool = torch.softmax(logits, dim=-1)                              # Eq. 3
        if mask is not None:
            mask_f = mask.to(pool.dtype)
            pool = pool * mask_f * (mask_f.sum(-1, keepdim=True) > 0)  # empty set: zero weights
            pair = pair * mask.unsqueeze(-1).to(pair.dtype)
        out = (pool.unsqueeze(-1) * mixed).sum(-2)
        return Pooled(out, pair, pool)
