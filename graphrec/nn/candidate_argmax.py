r"""The hardest candidate of each group for its query: MixGCF's hop-mixing choice.

For a table :math:`T` [n, d], candidate ids ``ids`` [Q, G, M] and queries ``q`` [Q, d]:

.. math::
    \mathrm{out}[a, g] = \mathrm{ids}[a, g, j^*], \qquad
    j^* = \arg\max_j \langle T[\mathrm{ids}[a, g, j]],\, q_a \rangle

(the first of equal maxima). No gradient: the choice is discrete. On CPU the compiled loop
(`graphrec/native/candidate_argmax.c`) reads each candidate row once and writes nothing of size
Q x G x M; elsewhere (or without a compiler) torch gathers the rows into a reused buffer and takes
a batched matrix-vector product.
"""
from __future__ import annotations

from typing import Optional

import torch

from graphrec import native

#: below this many candidate entries (rows x d) one thread does it (OpenMP start-up costs more)
_ONE_THREAD_WORK = 1 << 16


def _kernel():
    return native.load("candidate_argmax")


class CandidateArgmax:
    """Callable ``(table, ids, q) -> ids [Q, G]`` of the best candidates (module docstring). It keeps
    the torch path's gathered-rows table between calls: a fresh [Q*G*M, d] table (33 MB for
    MixGCF's 2048 x 64 candidates) per call costs its page faults, ten times the gather itself
    (13 ms against 1.3 ms). The compiled path needs no table."""

    def __init__(self):
        self._rows: Optional[torch.Tensor] = None

    def _rows_table(self, n: int, d: int, like: torch.Tensor) -> torch.Tensor:
        buf = self._rows
        if buf is None or buf.numel() < n * d or buf.dtype != like.dtype or buf.device != like.device:
            buf = self._rows = torch.empty(n * d, dtype=like.dtype, device=like.device)
        return buf[: n * d].view(n, d)

    def __call__(self, table: torch.Tensor, ids: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        if ids.dim() != 3 or q.dim() != 2 or ids.shape[0] != q.shape[0] or q.shape[1] != table.shape[1]:
            raise ValueError(f"candidate_argmax: ids [Q, G, M] and q [Q, d] with d = table's {table.shape[1]}; "
                             f"got ids {tuple(ids.shape)}, q {tuple(q.shape)}")
        n_q, n_g, m = ids.shape
        if ids.numel() == 0:
            return ids.new_empty(n_q, n_g)
        lo, hi = int(ids.min()), int(ids.max())
        if lo < 0 or hi >= table.shape[0]:
            raise IndexError(f"candidate_argmax: candidate id {lo if lo < 0 else hi} outside the table's "
                             f"{table.shape[0]} rows")
        with torch.no_grad():
            lib = _kernel() if table.device.type == "cpu" and table.dtype == torch.float32 else None
            if lib is not None:
                t, i = table.contiguous(), ids.to(torch.int64).contiguous()
                qq = q.to(torch.float32).contiguous()
                out = torch.empty(n_q * n_g, dtype=torch.int64)
                threads = native.threads_for(i.numel() * t.shape[1], _ONE_THREAD_WORK)
                lib.graphrec_candidate_argmax(t.data_ptr(), t.shape[1], i.data_ptr(), n_q * n_g, m,
                                              qq.data_ptr(), n_g, out.data_ptr(), threads)
                return out.view(n_q, n_g)
            d = table.shape[1]
            rows = torch.index_select(table, 0, ids.reshape(-1), out=self._rows_table(ids.numel(), d, table))
            scores = torch.bmm(rows.view(n_q, n_g * m, d), q.to(table.dtype).unsqueeze(-1)).view(n_q, n_g, m)
            return ids.gather(2, scores.argmax(2, keepdim=True)).squeeze(2)

