"""An embedding table whose rows live sharded across the ranks of a data-parallel run, read by
all-to-all exchanges of ids and rows over plain ``torch.distributed`` collectives (gloo on CPU,
NCCL on CUDA; nothing beyond torch).

Layouts (TorchRec's names and row blocks): ``row_wise`` gives rank r the contiguous rows
``[r * b, min((r + 1) * b, n))`` with ``b = ceil(n / W)``; ``table_wise`` gives one rank all ``n``
rows and the others none. A lookup of the (unique) ids ``x`` a rank's step reads is

    rows(x) = S_{o(x)}[x - lo_{o(x)}],

``o(x)`` the owner of row ``x`` and ``S_r`` rank r's shard: the ids go to their owners, the owners
return the rows (two ``all_to_all_single`` after one of the counts). Backward returns each row's
gradient to its owner, scaled by the rank's share of the global batch (``n_r / N``, as
`graphrec.train.distributed.GradientSync` weights replicated parameters), and the owner sums them:

    dL/dS_r[j] = sum_q (n_q / N) dL_q/d rows_q(lo_r + j),

the gradient one process computes for the global batch's mean loss. The owner's optimiser then
steps its rows only (its shard is an ordinary parameter of its own optimiser).

The full table exists only between training phases: :meth:`ShardedTable.gather` all-gathers it
to every rank after each training epoch (evaluation scores with it, rank 0 saves it), and it is
dropped when the next training epoch starts. A checkpoint stores the full table under the
unsharded key (``<module>.weight``), so it loads into an unsharded model, and any world size
reads back its own rows from it.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Optional

import torch
import torch.distributed as dist
from torch import nn

MODES = ("row_wise", "table_wise")


@dataclass(frozen=True)
class Layout:
    """Which rows of an ``n``-row table each of ``world`` ranks holds."""

    n: int
    world: int
    mode: str
    owner: int = 0  # table_wise: the rank that holds every row

    def bounds(self, rank: int) -> tuple[int, int]:
        """Rows ``[lo, hi)`` of ``rank``."""
        if self.mode == "table_wise":
            return (0, self.n) if rank == self.owner else (0, 0)
        block = math.ceil(self.n / self.world)
        return min(rank * block, self.n), min((rank + 1) * block, self.n)

    def owner_of(self, ids: torch.Tensor) -> torch.Tensor:
        if self.mode == "table_wise":
            return torch.full_like(ids, self.owner)
        return torch.div(ids, math.ceil(self.n / self.world), rounding_mode="floor")

    def rows(self, rank: int) -> int:
        lo, hi = self.bounds(rank)
        return hi - lo


def _exchange(x: torch.Tensor, send: list[int], recv: list[int]) -> torch.Tensor:
    """``all_to_all_single``: rank r's rows ``x`` split by ``send``, received split by ``recv``."""
    out = x.new_empty((sum(recv),) + tuple(x.shape[1:]))
    dist.all_to_all_single(out, x.contiguous(), recv, send)
    return out


class _Lookup(torch.autograd.Function):
    """Rows of global ``ids`` from their owners' shards; backward sends each row's scaled
    gradient to its owner (see the module docstring)."""

    @staticmethod
    def forward(ctx, shard: torch.Tensor, ids: torch.Tensor, layout: Layout, lo: int, scale: float, sparse: bool):
        owner = layout.owner_of(ids)
        order = torch.argsort(owner, stable=True)
        send = torch.bincount(owner, minlength=layout.world)
        recv = torch.empty_like(send)
        dist.all_to_all_single(recv, send)
        send_l, recv_l = send.tolist(), recv.tolist()
        local = _exchange(ids[order], send_l, recv_l) - lo  # the rows this rank serves
        rows = _exchange(shard.detach().index_select(0, local), recv_l, send_l)
        out = torch.empty_like(rows)
        out[order] = rows
        ctx.save_for_backward(order, local)
        ctx.send, ctx.recv, ctx.scale, ctx.shard_shape, ctx.sparse = send_l, recv_l, scale, shard.shape, sparse
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        order, local = ctx.saved_tensors
        back = _exchange(grad.index_select(0, order) * ctx.scale, ctx.send, ctx.recv)
        if ctx.sparse:  # the rows read only (a row read by several ranks: its entries are summed)
            g = torch.sparse_coo_tensor(local.unsqueeze(0), back, ctx.shard_shape)
        else:
            g = grad.new_zeros(ctx.shard_shape).index_add_(0, local, back)
        return g, None, None, None, None, None


class ShardedTable(nn.Module):
    """This rank's rows of an ``[n, d]`` table (``shard``, a parameter) and, between training
    phases, the gathered full table (``weight``). ``scale``: the rank's share of the current
    global batch (the data-parallel sampler's weight), read at each lookup. ``sparse``: the
    shard's gradient holds the rows read only (for `RowSparseAdam`'s lazy rows), as
    ``F.embedding(..., sparse=True)`` gives."""

    def __init__(self, full: torch.Tensor, layout: Layout, rank: int, scale: Callable[[], float],
                 sparse: bool = False):
        super().__init__()
        self.layout, self.rank, self._scale, self.sparse = layout, rank, scale, bool(sparse)
        self.lo, hi = layout.bounds(rank)
        self.n, self.dim = int(full.shape[0]), int(full.shape[1])
        self.shard = nn.Parameter(full.detach()[self.lo:hi].clone())
        self._full: Optional[torch.Tensor] = None

    def extra_repr(self) -> str:
        return f"{self.n}x{self.dim}, {self.layout.mode}, rows [{self.lo}, {self.lo + self.shard.shape[0]}) here"

    def lookup(self, ids: torch.Tensor) -> torch.Tensor:
        """Rows ``ids`` (global ids) of the table, differentiable into the owners' shards. Every
        rank must call it in the same order (it is a collective)."""
        return _Lookup.apply(self.shard, ids, self.layout, self.lo, float(self._scale()), self.sparse)

    @property
    def weight(self) -> torch.Tensor:
        """The full table gathered after the latest training phase (evaluation, checkpoints)."""
        if self._full is None:
            raise RuntimeError(f"sharded table ({self.extra_repr()}): the full table is gathered between training "
                               f"phases only; a training step reads rows with lookup()")
        return self._full

    @torch.no_grad()
    def gather(self) -> torch.Tensor:
        """The full table on every rank (a collective), kept as :attr:`weight`."""
        self._full = gather_rows(self.shard, self.layout)
        return self._full

    def drop(self) -> None:
        self._full = None

    # checkpoints hold the full table under the unsharded key
    def _save_to_state_dict(self, destination, prefix, keep_vars):
        destination[prefix + "weight"] = self.weight.detach()

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        key = prefix + "weight"
        if key not in state_dict:
            if strict:
                missing_keys.append(key)
            return
        full = state_dict[key]
        if tuple(full.shape) != (self.n, self.dim):
            error_msgs.append(f"size mismatch for {key}: copying a param with shape {tuple(full.shape)}, "
                              f"the sharded table is {(self.n, self.dim)}")
            return
        with torch.no_grad():
            self.shard.copy_(full[self.lo:self.lo + self.shard.shape[0]])
            self._full = full.detach().to(self.shard.device, self.shard.dtype).clone()


@torch.no_grad()
def gather_rows(local: torch.Tensor, layout: Layout) -> torch.Tensor:
    """The full ``[n, ...]`` tensor from each rank's rows ``local`` of ``layout`` (a collective):
    a broadcast from the owner (table-wise) or an all-gather of the row blocks, padded to the
    largest (row-wise)."""
    shape = (layout.n,) + tuple(local.shape[1:])
    if layout.mode == "table_wise":
        full = local.detach().clone() if dist.get_rank() == layout.owner else local.new_empty(shape)
        dist.broadcast(full, src=layout.owner)
        return full
    block = layout.rows(0)
    padded = local.new_zeros((block,) + shape[1:])
    padded[:local.shape[0]] = local
    out = local.new_empty((block * layout.world,) + shape[1:])  # received in place: no second copy
    dist.all_gather(list(out.split(block)), padded)
    return out[:layout.n]  # the blocks are contiguous: only the last may be short
