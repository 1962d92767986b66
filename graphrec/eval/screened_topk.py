r"""Exact top-K of inner-product scores through a certified bfloat16 screen.

Full ranking scores every user against every item: a (users x items x d) product, then a top-K
over each row. On a CPU with AVX512-BF16 (or AMX) the bfloat16 product runs about 5x faster than
the float32 one, and a block maximum plus a short top-K is cheaper than a top-K over all items.
The screen below uses both and still returns the float32 top-K exactly:

1. :math:`\tilde s_{ui}` = bf16(u) . bf16(i), accumulated in float32 and stored in bfloat16.
   With unit roundoff :math:`2^{-8}` for each rounding,
   :math:`|\tilde s_{ui} - u^\top i| \le \varepsilon_{ui} = c\,\|u\|\,\|i\|`, :math:`c = 2^{-7}
   + 2^{-8} + O(2^{-16} + d\,2^{-24})`; we use :math:`c = 1/80` (> 0.01173 for d <= 4096).
2. Items are sorted by norm and grouped in blocks of ``block`` items of consecutive norm rank, so
   a block's largest norm bounds each of its items' :math:`\varepsilon` tightly. Masked items get :math:`-\infty`. A
   block's upper bound is :math:`\max_{i \in b} \tilde s_{ui} + c\|u\|\max_{i \in b}\|i\|`; the
   ``k + extra_blocks`` blocks with the largest upper bounds are kept.
3. :math:`L_u` = the k-th largest :math:`\tilde s_{ui} - \varepsilon_{ui}` over the kept items is
   a lower bound on the row's k-th largest float32 score, so only items with
   :math:`\tilde s_{ui} + \varepsilon_{ui} \ge L_u` can be in the float32 top-K. A row is
   *certified* when the best block left out has an upper bound below :math:`L_u`: then every
   such candidate lies in the kept blocks.
4. The candidates are re-scored in float32 and the top-K is taken among them. Rows not
   certified (many near-ties, or :math:`\|u\|\max\|i\| > 10^{30}`, where a bf16 product could
   overflow) are scored again in full float32 (``last_fallback_rows``).

Steps 2-4 run in one compiled pass per row (`graphrec/native/screen_topk.c`, rows in parallel)
where `graphrec.native` can build it, else as torch operations; both give the same ranking
(tests run both). At Clothing scale the compiled pass took a trained LightGCN's valid evaluation
from 1.16-1.24 s to 0.74-0.79 s (2 threads).

Ties between exactly equal float32 scores may resolve to a different item than a full
``torch.topk`` would (as they may between two chunk sizes of the plain path).
"""
from __future__ import annotations

import ctypes
from typing import Optional

import torch

from graphrec import native
from graphrec.environment import native_bf16

#: bound on |bf16 score - float32 score| / (|u| |i|) (module docstring, step 1), with margin
BF16_SCORE_BOUND = 1.0 / 80.0
# beyond this |u||i| a bf16 product may overflow to inf; such rows are ranked in float32
_HUGE_SCORE = 1e30


def _select_kernel() -> Optional[ctypes.CDLL]:
    """The compiled selection (`graphrec/native/screen_topk.c`), or None (torch does it)."""
    return native.load("screen_topk")


def bf16_matmul_is_fast(device: torch.device) -> bool:
    """True on CPUs whose oneDNN runs bfloat16 GEMMs natively (AVX512-BF16 or AMX): the detection
    is `graphrec.environment.native_bf16`, shared with mixed-precision training; the screen itself
    is for CPUs only (its selection pass is compiled for the host)."""
    return device.type == "cpu" and native_bf16(device)


class ScreenedTopK:
    """Exact top-K of ``user_vecs @ item_vecs.T`` for many user chunks against one item table."""

    def __init__(self, item_vecs: torch.Tensor, block: int = 8, extra_blocks: int = 24):
        items = item_vecs.detach().float()
        self.n_items, self.d = items.shape
        self.block, self.extra_blocks = int(block), int(extra_blocks)
        n_pad = -self.n_items % self.block
        self.n_blocks = (self.n_items + n_pad) // self.block
        self.items = items.contiguous()
        norms = items.norm(dim=1)
        # block j holds the items of norm rank j*block .. j*block+block-1 (so its first norm is its
        # largest) in the strided columns j, j+n_blocks, ...: a block maximum is then a reduction
        # over the middle axis of [B, block, n_blocks], which is ~7x faster than over an inner 16
        ranked = torch.cat([torch.argsort(norms, descending=True),
                            torch.full((n_pad,), -1, dtype=torch.long, device=items.device)])
        rank_of_col = torch.arange(self.n_blocks * self.block, device=items.device)
        rank_of_col = (rank_of_col % self.n_blocks) * self.block + rank_of_col // self.n_blocks
        self.col_item = ranked[rank_of_col]  # item in each screened column, -1 = padding
        self.pad_cols = (self.col_item < 0).nonzero(as_tuple=True)[0]
        self.position = torch.empty(self.n_items, dtype=torch.long, device=items.device)
        real = self.col_item >= 0
        self.position[self.col_item[real]] = real.nonzero(as_tuple=True)[0]
        padded = torch.cat([items, items.new_zeros(1, self.d)])  # index -1 -> the zero row
        self.items_bf16 = padded[self.col_item].to(torch.bfloat16)
        self.col_norm = torch.cat([norms, norms.new_zeros(1)])[self.col_item]
        self.block_norm = self.col_norm[:self.n_blocks]  # slot 0 of each block: its largest norm
        self.max_norm = float(norms.max()) if norms.numel() else 0.0
        self.slot_offsets = torch.arange(self.block, device=items.device) * self.n_blocks
        self.last_fallback_rows = 0

    def topk(self, user_vecs: torch.Tensor, k: int, mask_rows: torch.Tensor, mask_cols: torch.Tensor
             ) -> tuple[torch.Tensor, torch.Tensor]:
        """(item indices [B, k], finite flag [B, k]) ranked by the float32 scores, the
        ``(mask_rows, mask_cols)`` entries excluded; ``k`` <= n_items."""
        u = user_vecs.detach().float()
        b, k = u.shape[0], int(k)
        n_keep = k + self.extra_blocks
        if b == 0 or n_keep >= self.n_blocks:  # too few blocks for the screen to pay
            return self._exact(u, k, mask_rows, mask_cols)
        s = u.to(torch.bfloat16) @ self.items_bf16.T  # [B, block * n_blocks], screened columns
        unorm = u.norm(dim=1)
        in_range = unorm * self.max_norm < _HUGE_SCORE
        if u.device.type == "cpu" and self.items.device.type == "cpu" and _select_kernel() is not None:
            idx, certified = self._select_native(s, u, unorm, k, n_keep, mask_rows, mask_cols)
            return self._fall_back(u, k, idx, torch.ones_like(idx, dtype=torch.bool), certified & in_range,
                                   mask_rows, mask_cols)
        s[mask_rows, self.position[mask_cols]] = float("-inf")
        s[:, self.pad_cols] = float("-inf")
        cu = BF16_SCORE_BOUND * unorm[:, None]  # eps_ui = cu * |i|
        bmax = s.view(b, self.block, self.n_blocks).amax(dim=1).float()
        upper, bidx = (bmax + cu * self.block_norm).topk(n_keep + 1, dim=1)
        cols = (bidx[:, :n_keep, None] + self.slot_offsets).flatten(1)  # [B, n_keep * block]
        kept = s.gather(1, cols).float()
        eps = cu * self.col_norm[cols]
        low = (kept - eps).topk(k, dim=1).values[:, -1]  # L_u
        certified = torch.isfinite(low) & (upper[:, n_keep] < low) & in_range
        cand = (kept + eps >= low[:, None]) & certified[:, None]
        r, c = cand.nonzero(as_tuple=True)
        exact = torch.full(cand.shape, float("-inf"), device=s.device)
        exact[r, c] = (u[r] * self.items[self.col_item[cols[r, c]]]).sum(dim=1)
        vals, pos = exact.topk(k, dim=1)
        idx = self.col_item[cols.gather(1, pos)].clamp(min=0)  # -inf entries may sit on padding
        return self._fall_back(u, k, idx, torch.isfinite(vals), certified, mask_rows, mask_cols)

    def _select_native(self, s: torch.Tensor, u: torch.Tensor, unorm: torch.Tensor, k: int, n_keep: int,
                       mask_rows: torch.Tensor, mask_cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Steps 2-4 of the module docstring in one compiled pass per row: (item indices [B, k],
        certified [B]); uncertified rows' indices are left unset."""
        b = u.shape[0]
        if mask_rows.numel() > 1 and bool((mask_rows[1:] < mask_rows[:-1]).any()):
            order = torch.argsort(mask_rows, stable=True)
            mask_rows, mask_cols = mask_rows[order], mask_cols[order]
        mask_ptr = torch.zeros(b + 1, dtype=torch.long)
        torch.cumsum(torch.bincount(mask_rows, minlength=b), 0, out=mask_ptr[1:])
        mask_col = self.position.index_select(0, mask_cols)
        cu = BF16_SCORE_BOUND * unorm
        s, u = s.contiguous(), u.contiguous()
        idx = torch.empty(b, k, dtype=torch.long)
        certified = torch.empty(b, dtype=torch.uint8)
        _select_kernel().graphrec_screen_select(
            s.data_ptr(), b, s.shape[1], self.n_blocks, self.block, mask_ptr.data_ptr(), mask_col.data_ptr(),
            self.pad_cols.data_ptr(), self.pad_cols.numel(), cu.data_ptr(), self.block_norm.data_ptr(),
            self.col_norm.data_ptr(), self.col_item.data_ptr(), u.data_ptr(), self.d, self.items.data_ptr(), k,
            n_keep, idx.data_ptr(), certified.data_ptr(), torch.get_num_threads())
        return idx, certified.bool()

    def _fall_back(self, u: torch.Tensor, k: int, idx: torch.Tensor, ok: torch.Tensor, certified: torch.Tensor,
                   mask_rows: torch.Tensor, mask_cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows the screen could not certify, ranked in full float32 into ``idx``/``ok``."""
        bad = (~certified).nonzero(as_tuple=True)[0]
        self.last_fallback_rows = int(bad.numel())
        if bad.numel():
            keep = torch.isin(mask_rows, bad)
            remap = torch.full((u.shape[0],), -1, dtype=torch.long, device=u.device)
            remap[bad] = torch.arange(bad.numel(), device=u.device)
            idx[bad], ok[bad] = self._exact(u[bad], k, remap[mask_rows[keep]], mask_cols[keep])
        return idx, ok

    def _exact(self, u: torch.Tensor, k: int, mask_rows: torch.Tensor, mask_cols: torch.Tensor
               ) -> tuple[torch.Tensor, torch.Tensor]:
        scores = u @ self.items.T
        scores[mask_rows, mask_cols] = float("-inf")
        vals, idx = torch.topk(scores, k, dim=1)
        return idx, torch.isfinite(vals)

