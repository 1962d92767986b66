r"""ComiRec's Recall@K and NDCG@K (Cen et al., KDD 2020, ``src/train.py`` of THUDM/ComiRec), the
metrics Demure (Yao et al., arXiv 2305.01915, Table 2) reports under its user-level protocol.

For one evaluated user with top-K list :math:`T` and ordered target list :math:`G` (duplicates
count separately):

.. math::

    \mathrm{hits} &= |\{j : G_j \in T\}|, \qquad \mathrm{Recall@K} = \mathrm{hits} / |G| \\
    \mathrm{DCG} &= \sum_{j: G_j \in T} \frac{1}{\log_2(j + 2)}, \qquad
    \mathrm{IDCG} = \sum_{j=0}^{\mathrm{hits}-1} \frac{1}{\log_2(j + 2)}, \qquad
    \mathrm{NDCG@K} = \mathrm{DCG} / \mathrm{IDCG} \;(0 \text{ without hits})

with :math:`j` the 0-based index of the target in :math:`G` (not its rank in :math:`T`): this NDCG
rewards recovering the earliest targets and equals 1 whenever the first ``hits`` targets are found,
so it is far above rank-based NDCG. Reported as ``comirec_recall@K`` / ``comirec_ndcg@K`` beside
graphrec's standard keys (`graphrec.eval.metrics`).
"""
from __future__ import annotations

from typing import Dict, Iterable

import torch

from graphrec.data.sequences import Sequences, segment_index

PREFIX = "comirec_"


def comirec_metrics(ranked: torch.Tensor, ok: torch.Tensor, targets: Sequences, rows: torch.Tensor,
                    ks: Iterable[int]) -> Dict[str, torch.Tensor]:
    """Per-row ``comirec_recall@K`` and ``comirec_ndcg@K`` [B] of ranked lists ``ranked`` [B, Kmax]
    (``ok`` [B, Kmax]: the rank holds a real item) against the target lists ``targets`` rows ``rows``."""
    B, kmax = ranked.shape
    starts = targets.indptr.index_select(0, rows)
    counts = targets.lengths().index_select(0, rows)
    seg, src = segment_index(starts, counts)
    j = src - starts.index_select(0, seg)                       # index of the target in its list G
    g = targets.items.index_select(0, src)
    match = (ranked.index_select(0, seg) == g.unsqueeze(1)) & ok.index_select(0, seg)
    big = torch.full_like(match, kmax, dtype=torch.long)
    first = torch.where(match, torch.arange(kmax, device=ranked.device).expand_as(match), big).min(1).values
    disc = 1.0 / torch.log2(j.to(torch.float64) + 2.0)
    idcg_table = torch.cat([torch.zeros(1, dtype=torch.float64, device=ranked.device),
                            (1.0 / torch.log2(torch.arange(int(counts.max()) if counts.numel() else 0,
                                                           dtype=torch.float64, device=ranked.device) + 2.0)).cumsum(0)])
    out: Dict[str, torch.Tensor] = {}
    n_t = counts.to(torch.float64).clamp(min=1)
    for k in sorted(set(int(k) for k in ks)):
        if k > kmax:
            raise ValueError(f"metric cut-off @{k} exceeds the {kmax} ranked items")
        hit = (first < k).to(torch.float64)
        hits = torch.zeros(B, dtype=torch.float64, device=ranked.device).index_add_(0, seg, hit)
        dcg = torch.zeros(B, dtype=torch.float64, device=ranked.device).index_add_(0, seg, hit * disc)
        idcg = idcg_table.index_select(0, hits.long())
        out[f"{PREFIX}recall@{k}"] = hits / n_t
        out[f"{PREFIX}ndcg@{k}"] = torch.where(hits > 0, dcg / idcg.clamp(min=1e-300), torch.zeros_like(dcg))
    return out
