r"""PMMRec's pre-training objectives (Li et al., "Multi-Modality is All You Need for Transferable
Recommender Systems", ICDE 2024): DAP (Eq. 5), VCL / ICL / NICL (Eq. 6-9), NID (Eq. 10), RCL
(Eq. 11). Every candidate set is the batch's table of unique items (``n_u`` rows): an item in
several slots is encoded once and counts once (``dedup``), and the items of a row's own window are
never its negatives (the paper's "items of other users", :math:`N_u`).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

NEG_INF = float("-inf")


def dap_loss(h: torch.Tensor, target: torch.Tensor, table: torch.Tensor, member: torch.Tensor,
             log_pop: Optional[torch.Tensor] = None, slot_counts: Optional[torch.Tensor] = None) -> torch.Tensor:
    r"""Dense autoregressive next-item prediction, Eq. 5:

    .. math:: L^{DAP}_{u,l} = -\log \frac{\exp(h_{u,l}^\top e_{i_{l+1}})}{\exp(h_{u,l}^\top e_{i_{l+1}})
              + \sum_{j \in N_u} \exp(h_{u,l}^\top e_j)}

    averaged over the target positions. ``h`` [N, d] states at positions with a target,
    ``target`` [N] its row in ``table`` [n_u, d], ``member`` [N, n_u] the items of that position's
    window (excluded but for the target). ``log_pop`` [n_u] (the official code's popularity
    correction, not in the paper): every logit minus :math:`\log p_j`. ``slot_counts`` [n_u]
    (``dedup=False``, the code's form): a negative counts once per batch slot it fills,
    :math:`+\log c_j` on its logit."""
    logits = h @ table.T
    if log_pop is not None:
        logits = logits - log_pop
    is_target = F.one_hot(target, table.shape[0]).bool()
    if slot_counts is not None:
        logits = logits + torch.where(is_target, 0.0, slot_counts.clamp(min=1).log())
    logits = logits.masked_fill(member & ~is_target, NEG_INF)
    return F.cross_entropy(logits, target)


def nicl_loss(t: torch.Tensor, v: torch.Tensor, anchor: torch.Tensor, nxt: torch.Tensor, member: torch.Tensor,
              tau: float = 1.0, intra_neg: bool = True, next_pos: bool = True,
              literal_denominator: bool = False) -> torch.Tensor:
    r"""Next-item-enhanced cross-modal contrastive loss, Eq. 8-9, and its ablations. With
    :math:`t_l, v_l` the L2-normalised text / vision CLS vectors and :math:`\delta(a,b) = \exp(a^\top b / \tau)`:

    .. math:: L^{T,V}_{u,l} = -\log \frac{\delta(t_l,v_l) + \delta(t_l,v_{l+1}) + \delta(t_l,t_{l+1})}
              {\delta(t_l,v_l) + [\text{next}] + \sum_{j \in N_u} \delta(t_l,v_j) + \sum_{j \in N_u} \delta(t_l,t_j)}

    and :math:`L^{V,T}` with the modalities swapped; the loss is their mean over anchors
    (Eq. 9). Flags: ``next_pos`` (the two next-item positives; off: Eq. 6/7), ``intra_neg`` (the
    intra-modality negatives; off: Eq. 6, VCL), ``literal_denominator`` (Eq. 8 as printed: the
    next-item positives only in the numerator, so the loss can be negative; default: also in the
    denominator, the standard multi-positive InfoNCE), ``tau`` (the paper has none: 1). VCL =
    (intra_neg, next_pos) = (F, F), ICL = (T, F), NICL = (T, T). Anchors: ``anchor`` [N] rows of
    ``t``/``v`` [n_u, d]; ``nxt`` [N] the next item's row or -1 (the last item: no next-item term);
    ``member`` [N, n_u] the anchor's window items (neither positive nor negative)."""
    t, v = F.normalize(t, dim=-1), F.normalize(v, dim=-1)
    has_next = nxt >= 0
    nx = nxt.clamp(min=0).unsqueeze(1)
    neg = ~member

    def one(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        A = a.index_select(0, anchor)
        cross, intra = A @ b.T / tau, A @ a.T / tau
        pos = [cross.gather(1, anchor.unsqueeze(1))]
        if next_pos:
            pos += [cross.gather(1, nx).masked_fill(~has_next.unsqueeze(1), NEG_INF),
                    intra.gather(1, nx).masked_fill(~has_next.unsqueeze(1), NEG_INF)]
        den = [pos[0] if literal_denominator else torch.cat(pos, 1), cross.masked_fill(~neg, NEG_INF)]
        if intra_neg:
            den.append(intra.masked_fill(~neg, NEG_INF))
        return torch.logsumexp(torch.cat(den, 1), 1) - torch.logsumexp(torch.cat(pos, 1), 1)

    return 0.5 * (one(t, v) + one(v, t)).mean()


def nid_loss(logits: torch.Tensor, labels: torch.Tensor, relu: bool = False) -> torch.Tensor:
    r"""Noised item detection, Eq. 10: 3-way classification (unchanged / shuffled / replaced) of
    every real position of the corrupted sequence, :math:`\hat y = [\mathrm{ReLU}](\tilde h W + b)`.
    Eq. 10 takes the log of ReLU outputs, which are no distribution; graphrec applies softmax
    cross-entropy to them (``relu=True``, closest to the printed form) or to the plain logits.
    Labels -100 (padding) are ignored."""
    if relu:
        logits = F.relu(logits)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=-100)


def pool_states(h: torch.Tensor, valid: torch.Tensor, how: str = "mean") -> torch.Tensor:
    """[B, d] from [B, L, d]: masked mean over real positions, or the last column (``last``)."""
    if how == "last":
        return h[:, -1]
    w = valid.to(h.dtype).unsqueeze(-1)
    return (h * w).sum(1) / w.sum(1).clamp(min=1.0)


def rcl_loss(h: torch.Tensor, h_tilde: torch.Tensor, valid: torch.Tensor, pool: str = "mean",
             normalize: bool = False, tau: float = 1.0) -> torch.Tensor:
    r"""Robustness-aware contrastive learning, Eq. 11: with pooled :math:`h_u, \tilde h_u`,

    .. math:: L^{RCL} = -\frac{1}{B}\sum_u \log \frac{\exp(h_u^\top \tilde h_u)}{\sum_k \exp(h_u^\top \tilde h_k)}

    computed as cross-entropy over the B x B logits with diagonal labels (stable for raw dot
    products of large norm). Pooling (unspecified in the paper): masked mean (default) or last.
    ``normalize``/``tau``: optional cosine similarity and temperature (not in the paper)."""
    a, b = pool_states(h, valid, pool), pool_states(h_tilde, valid, pool)
    if normalize:
        a, b = F.normalize(a, dim=-1), F.normalize(b, dim=-1)
    logits = a @ b.T / tau
    return F.cross_entropy(logits, torch.arange(h.shape[0], device=h.device))
