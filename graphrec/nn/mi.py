"""Mutual-information upper bound estimator: CLUB (Cheng et al., ICML 2020), as used by SAND."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from graphrec import losses


class CLUB(nn.Module):
    r"""Variational Gaussian :math:`q_\phi(y\mid x) = \mathcal N(\mu_\phi(x), \mathrm{diag}\,e^{s_\phi(x)})`
    and the CLUB bound it yields (SAND Eq. 11-13):

    .. math::
        \mu_\phi(x) = W_2\,\mathrm{ReLU}(W_1 x), \qquad
        s_\phi(x) = \tanh(W_4\,\mathrm{ReLU}(W_3 x))

    with hidden width ``hidden // 2`` per branch (SAND code: hidden 16 -> 8). φ is fitted by
    maximum likelihood on detached codes (:meth:`learning_loss`, SAND Eq. 12 written as a KL fit);
    :meth:`bound` is the upper bound minimised by the model (:func:`graphrec.losses.club_bound`).
    In SAND's code x is the generic code and y the unique code (the paper writes q(E^g|E^q)).
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 16, estimator: str = "sample",
                 half: bool = True, clamp: bool = True):
        super().__init__()
        h = max(1, hidden // 2)
        self.mu = nn.Sequential(nn.Linear(x_dim, h), nn.ReLU(), nn.Linear(h, y_dim))
        self.logvar = nn.Sequential(nn.Linear(x_dim, h), nn.ReLU(), nn.Linear(h, y_dim), nn.Tanh())
        if estimator not in ("sample", "all"):
            raise ValueError(f"CLUB estimator must be 'sample' or 'all', got {estimator!r}")
        self.estimator, self.half, self.clamp = estimator, half, clamp

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ(x), s(x)) with both branches in one pass: their first layers stacked, their second
        layers block-diagonal, so the N-row work is two products, one ReLU and one tanh instead of
        four, two and one (the estimator runs 50 times per batch on every item's codes)."""
        m1, m2, v1, v2 = self.mu[0], self.mu[2], self.logvar[0], self.logvar[2]
        h = F.relu(F.linear(x, torch.cat([m1.weight, v1.weight]), torch.cat([m1.bias, v1.bias])))
        out = F.linear(h, torch.block_diag(m2.weight, v2.weight), torch.cat([m2.bias, v2.bias]))
        mu, s = out.split([m2.out_features, v2.out_features], dim=-1)
        return mu, torch.tanh(s)

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over rows of log q_φ(y_i | x_i) (without the 2π constant)."""
        return losses.gaussian_log_likelihood(*self.heads(x), y).mean()

    def learning_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood for fitting φ; callers pass detached codes."""
        return -self.log_likelihood(x, y)

    def bound(self, x: torch.Tensor, y: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return losses.club_bound(*self.heads(x), y, estimator=self.estimator,
                                 generator=generator, half=self.half, clamp=self.clamp)
