r"""Inter-modal attention fusion with masks for missing modalities (MCPT, Liu et al. ICMR 2022,
Eqs. 7-8 for users and 13-14 for items).

For a node with projected modality vectors :math:`\hat e^m \in \mathbb{R}^d`, m = 1..M, and the
set :math:`\mathcal{M}` of modalities it has:

.. math::
    s^m = \mathrm{ReLU}(a^\top \hat e^m), \qquad
    \alpha^m = \frac{\exp(s^m)}{\sum_{j \in \mathcal{M}} \exp(s^j)} \;(m \in \mathcal{M}),\;
    \alpha^m = 0 \;(m \notin \mathcal{M}), \qquad
    e = \sum_{m} \alpha^m \hat e^m

with one attention vector :math:`a` shared by every modality of a side. The ReLU sits inside the
softmax, so scores are non-negative and a = 0 gives uniform weights over the available
modalities. A node without any available modality gets :math:`\alpha = 0` and e = 0.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class ModalityAttention(nn.Module):
    """``forward(h [N, M, d], mask [N, M] bool or None) -> (e [N, d], alpha [N, M])``."""

    def __init__(self, dim: int):
        super().__init__()
        # Xavier on a (1, d) row: the paper leaves the initialisation of a unspecified
        self.a = nn.Parameter(nn.init.xavier_uniform_(torch.empty(1, int(dim))).squeeze(0))

    def forward(self, h: torch.Tensor, mask: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
        if h.dim() != 3:
            raise ValueError(f"ModalityAttention expects [nodes, modalities, dim], got shape {tuple(h.shape)}")
        s = torch.relu(h @ self.a)  # [N, M]
        if mask is None:
            alpha = torch.softmax(s, dim=1)
        else:
            mask = mask.to(torch.bool)
            # a node with no modality at all: finite scores (no NaN anywhere), then weights 0
            none = ~mask.any(dim=1, keepdim=True)
            s = s.masked_fill(~mask & ~none, float("-inf"))
            alpha = torch.softmax(s, dim=1) * mask
        return (alpha.unsqueeze(-1) * h).sum(1), alpha
