"""Row-wise top-k with a deterministic tie-break: among equal scores the lower column index wins.

``torch.topk`` and FAISS leave the order of tied scores unspecified, so a neighbour set could change
between runs, devices or backends. Rows whose k-th score is tied with an unselected entry are
re-selected exactly: every entry strictly above the threshold, then the lowest-index entries equal
to it until k are taken. Extra memory is a few ``[rows, n]`` masks (rows = one chunk).
"""
from __future__ import annotations

import torch


def topk_low_ties(scores: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``(values, indices)`` of shape ``[rows, min(k, n)]``: the k largest scores per row, ties to
    the lower index. Order within a row is unspecified (callers sort columns when building CSR)."""
    n = scores.shape[1]
    k = min(int(k), n)
    if k <= 0:
        empty = scores.new_empty((scores.shape[0], 0))
        return empty, empty.to(torch.long)
    vals, idx = torch.topk(scores, k, dim=1, sorted=False)
    thr = vals.min(dim=1, keepdim=True).values
    tie = (scores >= thr).sum(dim=1) > k
    if bool(tie.any()):
        rows = torch.nonzero(tie).squeeze(1)
        s, t = scores[rows], thr[rows]
        above = s > t
        at = s == t
        need = k - above.sum(dim=1, keepdim=True)
        sel = above | (at & (torch.cumsum(at.to(torch.int32), dim=1) <= need))
        cols = torch.nonzero(sel)[:, 1].view(-1, k)
        idx[rows] = cols
        vals[rows] = s.gather(1, cols)
    return vals, idx
