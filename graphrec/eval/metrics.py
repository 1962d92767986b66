r"""Top-K ranking metrics from a hit matrix, vectorised on the device.

``hits[b, r]`` is True when the item ranked r+1 for user b is one of the user's held-out items
:math:`T_u`; ``n_pos[b] = |T_u|``. Per user, with :math:`h_r` the hit indicator at rank r:

- Recall@K    = :math:`\sum_{r\le K} h_r / |T_u|` (MMRec: denominator is the full :math:`|T_u|`)
- Precision@K = :math:`\sum_{r\le K} h_r / K`
- Hit@K       = :math:`\mathbb{1}[\sum_{r\le K} h_r > 0]`
- NDCG@K      = :math:`\sum_{r\le K} h_r/\log_2(r+1)\; /\; \sum_{r\le \min(|T_u|,K)} 1/\log_2(r+1)`
- MAP@K       = :math:`\frac{1}{\min(|T_u|,K)} \sum_{r\le K} h_r \cdot \mathrm{Precision@}r`
- MRR@K       = :math:`1/\min\{r \le K : h_r\}` (0 when no hit)

MMRec's MAP divides by the number of hits in the top K (its ``map_`` uses the count of relevant
items retrieved so far); we divide by :math:`\min(|T_u|, K)`, the standard AP@K and the one
``torch_geometric.metrics.LinkPredMAP`` uses, so that a list that finds one of ten relevant items
does not score a perfect 1.0. All other definitions equal MMRec's.
Each metric is the mean over evaluated users.
"""
from __future__ import annotations

from typing import Dict, Iterable

import torch

METRICS = ("recall", "ndcg", "precision", "map", "hit", "mrr")


def metrics_from_hits(hits: torch.Tensor, n_pos: torch.Tensor, ks: Iterable[int],
                      metrics: Iterable[str] = METRICS) -> Dict[str, torch.Tensor]:
    """Per-user metric values ``{"recall@20": Tensor[B], ...}`` (sum them across chunks)."""
    hits = hits.to(torch.float32)
    n_pos = n_pos.to(torch.float32).clamp(min=1)
    b, kmax = hits.shape
    ranks = torch.arange(1, kmax + 1, device=hits.device, dtype=torch.float32)
    discount = 1.0 / torch.log2(ranks + 1.0)
    cum_hits = hits.cumsum(1)
    idcg_table = torch.cat([torch.zeros(1, device=hits.device), discount.cumsum(0)])
    out: Dict[str, torch.Tensor] = {}
    metrics = list(metrics)
    for k in ks:
        if k > kmax:
            raise ValueError(f"metric cut-off @{k} exceeds the {kmax} ranked items")
        hk = cum_hits[:, k - 1]
        denom_k = torch.minimum(n_pos, torch.full_like(n_pos, float(k)))
        for m in metrics:
            if m == "recall":
                v = hk / n_pos
            elif m == "precision":
                v = hk / k
            elif m == "hit":
                v = (hk > 0).float()
            elif m == "ndcg":
                dcg = (hits[:, :k] * discount[:k]).sum(1)
                v = dcg / idcg_table[denom_k.long()]
            elif m == "map":
                prec_at_r = cum_hits[:, :k] / ranks[:k]
                v = (prec_at_r * hits[:, :k]).sum(1) / denom_k
            elif m == "mrr":
                first = torch.where(hits[:, :k] > 0, ranks[:k], torch.full_like(ranks[:k], float("inf"))).min(1).values
                v = torch.where(torch.isfinite(first), 1.0 / first, torch.zeros_like(first))
            else:
                raise ValueError(f"unknown metric {m!r}; known: {', '.join(METRICS)}")
            out[f"{m}@{k}"] = v
    return out
