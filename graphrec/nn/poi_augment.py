r"""Demure's user augmentation by point-of-interests (Yao et al., arXiv 2305.01915, Section 3.4,
Eqs. 9-13) and its losses (Eqs. 5-6, 14): position selection, similarity-weighted replacement
sampling, the sampled softmax with accidental-hit masking and the view contrastive loss.

Selection (Eqs. 9, 11, 12), per user with :math:`L_b` valid history positions, item interest
scores :math:`\alpha^{item}_t` and modality interest scores :math:`\alpha^{mod}_{t,m}`:

.. math::

    K_i = \lfloor L_b \gamma_i \rfloor, \qquad K = L_b - K_i, \qquad K_m = \lfloor K M \gamma_m \rfloor

the negative view takes the top-:math:`K_i` positions by :math:`\alpha^{item}` (the item-level
point-of-interests) and then the top-:math:`K_m` (position, modality) slots by
:math:`\alpha^{mod}` among the remaining positions (one ranking over all their slots); the positive
view takes the bottom ones (the potential noises). Padding is never selected.

Replacement (Eqs. 10, 13): for a selected activation :math:`q` and candidates :math:`c` of the pool
(items the user has not interacted with),

.. math::

    D_c = q^\top v_c, \quad P_c = \frac{D_c - \min_{c'} D_{c'}}{\max_{c'} D_{c'} - \min_{c'} D_{c'} + \epsilon}

and the negative view draws :math:`c \propto 1 - P_c` (dissimilar), the positive view
:math:`c \propto P_c` (similar). A row whose weights sum to 0 (constant similarity in the positive
view) falls back to uniform sampling over its allowed candidates.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

EPS = 1e-12


def interest_counts(lengths: torch.Tensor, n_mod: int, gamma_item: float,
                    gamma_mod: float) -> tuple[torch.Tensor, torch.Tensor]:
    r"""(:math:`K_i`, :math:`K_m`) per row (Eqs. 9, 12), in float64 with a tiny guard so that
    e.g. :math:`\lfloor 10 \cdot 0.3 \rfloor = 3` despite rounding."""
    n = lengths.to(torch.float64)
    k_i = torch.floor(n * float(gamma_item) + 1e-9).to(torch.long)
    k_m = torch.floor((n - k_i) * int(n_mod) * float(gamma_mod) + 1e-9).to(torch.long)
    return k_i, k_m


def _rank(key: torch.Tensor, descending: bool) -> torch.Tensor:
    """Rank (0 = first) of every entry of each row of ``key`` under a stable sort."""
    order = torch.sort(key, dim=1, descending=descending, stable=True).indices
    ranks = torch.empty_like(order)
    ranks.scatter_(1, order, torch.arange(key.shape[1], device=key.device).expand_as(order))
    return ranks


def select_positions(alpha_item: torch.Tensor, alpha_mod: torch.Tensor, valid: torch.Tensor,
                     gamma_item: float, gamma_mod: float, top: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(items [B, L] bool, slots [B, L, M] bool) chosen for replacement: ``top=True`` for the
    negative view (point-of-interests, Eqs. 9, 11, 12), ``False`` for the positive view (noises).
    Slots never fall on a chosen item position or on padding."""
    B, L, M = alpha_mod.shape
    k_i, k_m = interest_counts(valid.sum(1), M, gamma_item, gamma_mod)
    fill = float("-inf") if top else float("inf")
    key = torch.where(valid, alpha_item.double(), torch.full_like(alpha_item, fill, dtype=torch.float64))
    items = (_rank(key, descending=top) < k_i.unsqueeze(1)) & valid
    rest = valid & ~items
    key_m = torch.where(rest.unsqueeze(-1), alpha_mod.double(), torch.full_like(alpha_mod, fill, dtype=torch.float64))
    slots = (_rank(key_m.reshape(B, L * M), descending=top) < k_m.unsqueeze(1)).view(B, L, M)
    return items, slots & rest.unsqueeze(-1)


def replacement_weights(sim: torch.Tensor, allowed: torch.Tensor, similar: bool,
                        uniform: bool = False) -> torch.Tensor:
    """Unnormalised sampling weights [S, C] from similarities ``sim`` [S, C] (Eqs. 10, 13): min-max
    normalised over each row's ``allowed`` candidates, ``P`` (``similar``, positive view) or
    ``1 - P`` (negative view); 0 outside ``allowed``. ``uniform`` ignores the similarities (the
    "randomly sampled" reading of Section 3.6, an ablation)."""
    allowed_f = allowed.to(sim.dtype)
    if uniform:
        w = allowed_f
    else:
        inf = torch.tensor(float("inf"), dtype=sim.dtype, device=sim.device)
        lo = torch.where(allowed, sim, inf).min(1, keepdim=True).values
        hi = torch.where(allowed, sim, -inf).max(1, keepdim=True).values
        lo, hi = torch.nan_to_num(lo, posinf=0.0), torch.nan_to_num(hi, neginf=0.0)
        p = ((sim - lo) / (hi - lo + EPS)).clamp(0.0, 1.0)
        w = (p if similar else 1.0 - p) * allowed_f
    empty = w.sum(1, keepdim=True) <= 0
    w = torch.where(empty, allowed_f, w)               # constant row: uniform over the allowed
    empty = w.sum(1, keepdim=True) <= 0
    return torch.where(empty, torch.ones_like(w), w)   # nothing allowed: any pool candidate


def sample_replacements(weights: torch.Tensor, n_views: int,
                        generator: Optional[torch.Generator] = None) -> torch.Tensor:
    """[S, J] candidate indices, J independent draws per row with probability proportional to
    ``weights`` (with replacement, across positions too): inverse-CDF sampling, one cumulative sum
    per row and one binary search per draw (``torch.multinomial`` with replacement costs an
    exponential variate per weight)."""
    S, C = weights.shape
    if S == 0:
        return torch.zeros(0, n_views, dtype=torch.long, device=weights.device)
    cdf = weights.to(torch.float64).cumsum(1)
    r = torch.rand(S, int(n_views), generator=generator, dtype=torch.float64, device=weights.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, r, right=True).clamp(max=C - 1)


def sampled_softmax_loss(u: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor, neg_ids: torch.Tensor,
                         target: torch.Tensor) -> torch.Tensor:
    r"""Eqs. 5-6: :math:`-\log \frac{\exp \psi(u,i^+)}{\exp \psi(u,i^+) + \sum_{i^-} \exp \psi(u,i^-)}`
    averaged over rows, :math:`\psi` the dot product. ``u`` [N, d], ``pos`` [N, d] the targets'
    vectors, ``neg`` [K, d] the shared negatives ``neg_ids`` [K]; a negative equal to a row's
    ``target`` (an accidental hit) is masked out of that row."""
    pos_logit = (u * pos).sum(-1, keepdim=True)
    neg_logit = u @ neg.T
    neg_logit = neg_logit.masked_fill(neg_ids.unsqueeze(0) == target.unsqueeze(1), float("-inf"))
    logits = torch.cat([pos_logit, neg_logit], 1)
    return (torch.logsumexp(logits, 1) - pos_logit.squeeze(1)).mean()


def view_contrastive_loss(u: torch.Tensor, u_pos: torch.Tensor, u_neg: torch.Tensor,
                          normalize: bool = False, temperature: float = 1.0) -> torch.Tensor:
    r"""Eq. 14: :math:`-\log \frac{\sum_j e^{\phi(u^+_j, u)}}{\sum_j e^{\phi(u^+_j, u)} + \sum_k e^{\phi(u^-_k, u)}}`
    with :math:`\phi` the dot product (no temperature, the paper); each user contrasts only with its
    own J positive and J negative views. ``u`` [N, d], ``u_pos`` / ``u_neg`` [J, N, d].
    ``normalize`` (cosine) and ``temperature`` are non-paper options."""
    if normalize:
        u, u_pos, u_neg = F.normalize(u, dim=-1), F.normalize(u_pos, dim=-1), F.normalize(u_neg, dim=-1)
    sp = (u_pos * u).sum(-1) / temperature  # [J, N]
    sn = (u_neg * u).sum(-1) / temperature
    return (torch.logsumexp(torch.cat([sp, sn], 0), 0) - torch.logsumexp(sp, 0)).mean()
