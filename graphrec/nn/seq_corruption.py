r"""Sequence corruption for noised item detection and robustness-aware contrastive learning
(PMMRec, Li et al., ICDE 2024, Section III-D: "shuffle 15% of the items, replace a further 5% with
random in-batch items").

The paper leaves the procedure open; graphrec fixes it as follows. Each real (non-padding) slot of
the input window draws :math:`r \sim U(0, 1)`: :math:`r < p_s` makes it a shuffle candidate,
:math:`p_s \le r < p_s + p_r` a replace candidate, anything else leaves it alone. The shuffle
candidates of a row trade items along a random cycle (a random order of them, each taking the item
of its predecessor), so no candidate keeps its own slot; a row with a single candidate cannot
shuffle. A replace candidate takes a uniform in-batch item that does not occur in the row's own
window (left alone when there is none). Labels: -100 at padding (never touched), 1 where a shuffle
changed the id, 2 where an item was replaced, 0 elsewhere. Items are indices into the batch's
table of unique items, so the corrupted sequence reuses the same (differentiable) item vectors.
"""
from __future__ import annotations

from typing import Optional

import torch

UNCHANGED, SHUFFLED, REPLACED, IGNORE = 0, 1, 2, -100


def corrupt(idx: torch.Tensor, valid: torch.Tensor, member: torch.Tensor, p_shuffle: float = 0.15,
            p_replace: float = 0.05, generator: Optional[torch.Generator] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(corrupted indices [B, L], labels [B, L]) of ``idx`` [B, L] (indices into a table of ``n_u``
    batch items; any value at padding), ``valid`` [B, L] (real slots) and ``member`` [B, n_u]
    (True where the item occurs in the row's window)."""
    if not (0.0 <= p_shuffle and 0.0 <= p_replace and p_shuffle + p_replace <= 1.0):
        raise ValueError(f"corruption rates must be >= 0 and sum to <= 1, got {p_shuffle}, {p_replace}")
    B, L = idx.shape
    dev = idx.device
    r = torch.rand(B, L, generator=generator, device=dev)
    shuf = valid & (r < p_shuffle)
    rep = valid & (r >= p_shuffle) & (r < p_shuffle + p_replace)
    # shuffle: a random order of each row's candidates (candidates first), each taking its predecessor's item
    key = torch.rand(B, L, generator=generator, device=dev).masked_fill(~shuf, 2.0)
    order = key.argsort(1)
    m = shuf.sum(1, keepdim=True)
    rank = torch.arange(L, device=dev).unsqueeze(0)
    src = order.gather(1, (rank - 1).remainder(m.clamp(min=1)))
    moved = torch.where(rank < m, idx.gather(1, src), idx.gather(1, order))
    out = idx.clone().scatter_(1, order, moved)
    # replace: a uniform batch item outside the row's window
    rows, cols = torch.nonzero(rep, as_tuple=True)
    replaced = torch.zeros_like(rep)
    if rows.numel():
        allowed = ~member.index_select(0, rows)
        score = torch.rand(allowed.shape, generator=generator, device=dev).masked_fill(~allowed, -1.0)
        pick = score.argmax(1)
        ok = allowed.any(1)
        out[rows[ok], cols[ok]] = pick[ok]
        replaced[rows[ok], cols[ok]] = True
    labels = torch.full((B, L), IGNORE, dtype=torch.long, device=dev)
    labels[valid] = UNCHANGED
    labels[shuf & (out != idx)] = SHUFFLED
    labels[replaced] = REPLACED
    return out, labels
