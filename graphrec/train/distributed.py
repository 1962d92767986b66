"""Data-parallel training over ``torch.distributed`` processes (``torchrun``, or ``graphrec train
--nproc N``): gloo on CPU, NCCL on CUDA.

Every rank holds the whole model (replicated) and draws the same global batch from the same
seeded generator; rank r keeps its contiguous share of the rows (`ShardedSampler`). After each
backward pass the gradients are averaged with the shares' sizes as weights (`GradientSync`), so a
step applies the gradient of the global batch's mean loss,

    g = sum_r (n_r / N) g_r,    g_r = grad of the mean loss over rank r's n_r rows, N = sum_r n_r,

the same step as one process with the same batch (up to floating-point summation order). The
evaluation users are dealt to ranks (user index mod world size, `shard_split`); each rank's mean
metrics are combined weighted by its user count (`ShardedEvaluator`), so every rank sees the same
numbers and takes the same selection and early-stopping decisions. Rank 0 alone writes the run
directory (config, split, checkpoints, logs, result); the others read ``last.pt`` from it on
resume (one machine, or a shared file system across nodes) and receive the selected weights from
rank 0 by broadcast. A rank that dies or stalls fails its peers' next collective: each reports
`DistributedError` with its rank within ``GRAPHREC_DIST_TIMEOUT`` seconds (default 600).
With ``train.shard_tables`` the id-embedding tables are not replicated but sharded across the
ranks (`graphrec.train.sharding`): `GradientSync` and `World.broadcast_module` leave them out.
"""
from __future__ import annotations

import datetime
import os
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterable, Iterator, Optional

import torch
import torch.distributed as dist

from graphrec.data.split import Split
from graphrec.errors import GraphrecError
from graphrec.train.trainer import Callback

TIMEOUT_ENV = "GRAPHREC_DIST_TIMEOUT"


class DistributedError(GraphrecError):
    """A collective failed: a peer rank died, stalled past the timeout, or could not connect."""


@dataclass(frozen=True)
class World:
    """This process's place among the ranks of one training run."""

    rank: int
    size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def _call(self, what: str, fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except (RuntimeError, dist.DistBackendError) as e:  # gloo/NCCL: connection closed, timeout
            raise DistributedError(f"rank {self.rank}/{self.size}: {what} failed; another rank died or stalled "
                                   f"({' '.join(str(e).split())[:200]})") from None

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum of ``t`` over ranks, in place."""
        self._call("all_reduce", dist.all_reduce, t)
        return t

    def broadcast_object(self, obj: Any) -> Any:
        """Rank 0's ``obj`` on every rank (small Python values: a run directory's name)."""
        box = [obj if self.is_main else None]
        self._call("broadcast", dist.broadcast_object_list, box, src=0)
        return box[0]

    def broadcast_module(self, module: torch.nn.Module, skip: Iterable[torch.Tensor] = ()) -> None:
        """Rank 0's parameters and buffers into every rank's ``module``, in place; ``skip``: those
        each rank holds its own part of (sharded tables, `graphrec.train.sharding`)."""
        skip_ids = {id(t) for t in skip}
        with torch.no_grad():
            for t in list(module.parameters()) + list(module.buffers()):
                if id(t) not in skip_ids:
                    self._call("broadcast", dist.broadcast, t.data, src=0)

    def barrier(self) -> None:
        self._call("barrier", dist.barrier)


def from_env(device: Any) -> Optional[World]:
    """The world ``torchrun`` describes (``WORLD_SIZE`` > 1 in the environment), its process
    group initialised (gloo on CPU, NCCL on CUDA: ``device`` is the run's, ``"auto"`` or a
    name); None for a single process."""
    size = int(os.environ.get("WORLD_SIZE", "1") or 1)
    if size <= 1:
        return None
    from graphrec.utils import resolve_device
    device = resolve_device(device)
    if not dist.is_available():
        raise DistributedError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    if not dist.is_initialized():
        timeout = datetime.timedelta(seconds=float(os.environ.get(TIMEOUT_ENV, "600")))
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
        try:
            dist.init_process_group(backend, timeout=timeout)
        except (RuntimeError, ValueError) as e:
            raise DistributedError(f"cannot join the {size}-process group ({' '.join(str(e).split())[:200]})") from None
    return World(dist.get_rank(), dist.get_world_size())


def device_for(device: torch.device) -> torch.device:
    """One CUDA device per rank on a machine (``LOCAL_RANK``); the CPU as it is."""
    if device.type == "cuda" and int(os.environ.get("WORLD_SIZE", "1") or 1) > 1:
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))
    return device


def shard_split(split: Split, world: World) -> Split:
    """``split`` with its valid and test rows kept for this rank's users (index mod world size);
    training rows stay whole (evaluation masks them)."""
    def mine(inter):
        return inter.subset(torch.nonzero(inter.user % world.size == world.rank).flatten())
    return replace(split, valid=mine(split.valid), test=mine(split.test))


class ShardedSampler:
    """Rank r's contiguous share of each global batch of ``inner`` (every rank draws the same
    batches from the same generator state). Sets ``world_weight`` = n_r / N of the latest batch."""

    def __init__(self, inner, world: World):
        self.inner, self.world = inner, world
        self.weight = 1.0 / world.size

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def row_sparse(self) -> bool:
        return getattr(self.inner, "row_sparse", False)

    def epoch(self, generator: torch.Generator) -> Iterator[Dict[str, torch.Tensor]]:
        shares = getattr(self.inner, "epoch_shares", None)
        if shares is not None:  # batches not made of per-pair rows alone (sampled subgraphs): the
            # inner sampler splits the seeds and samples around this rank's share
            for self.weight, batch in shares(generator, self.world.rank, self.world.size):
                yield batch
            return
        for batch in self.inner.epoch(generator):
            n = next(iter(batch.values())).shape[0]
            bounds = torch.linspace(0, n, self.world.size + 1).round().long().tolist()
            lo, hi = bounds[self.world.rank], bounds[self.world.rank + 1]
            self.weight = (hi - lo) / max(1, n)
            yield {k: v[lo:hi] for k, v in batch.items()}


class GradientSync(Callback):
    """After each backward pass: every parameter's gradient becomes the share-weighted average
    over ranks (one flat all-reduce per step). ``local``: parameters each rank holds its own rows
    of (sharded tables), whose gradients their lookups already summed on the owner."""

    def __init__(self, world: World, sampler: ShardedSampler, local: Iterable[torch.Tensor] = ()):
        self.world, self.sampler = world, sampler
        self.local = {id(p) for p in local}

    def on_gradients(self, trainer, params) -> None:
        params = [p for p in params if p.requires_grad and id(p) not in self.local]
        for p in params:  # tables read with sparse gradients (sampled subgraphs): their rows only
            if p.grad is not None and p.grad.is_sparse:
                p.grad = self.world.all_reduce(p.grad.coalesce() * self.sampler.weight).coalesce()
        params = [p for p in params if p.grad is None or not p.grad.is_sparse]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        if not grads:
            return
        flat = torch.cat([g.reshape(-1) for g in grads]).mul_(self.sampler.weight)
        self.world.all_reduce(flat)
        off = 0
        for p, g in zip(params, grads):
            n = g.numel()
            p.grad = flat[off:off + n].view_as(g).to(g.dtype)
            off += n


class ShardedEvaluator:
    """An evaluator over this rank's users whose metrics are combined over ranks: the mean over
    all users, each rank's mean weighted by its user count."""

    def __init__(self, inner, world: World):
        self.inner, self.world = inner, world
        self.lower_is_better = inner.lower_is_better
        self.last_seconds = 0.0
        counts = world.all_reduce(torch.tensor([float(len(inner.users)), float(inner.n_cold_users)],
                                               dtype=torch.float64))
        self.n_users, self.n_cold_users = int(counts[0]), int(counts[1])
        self.users = inner.users

    def evaluate(self, model, reps=None) -> Dict[str, float]:
        local = self.inner.evaluate(model, reps)  # an evaluator without users returns zeros
        keys = self.world.broadcast_object(sorted(local) if self.world.is_main else None)
        n = float(len(self.inner.users))
        vals = torch.tensor([float(local.get(k, 0.0)) * n for k in keys] + [self.inner.last_seconds],
                            dtype=torch.float64).nan_to_num_(0.0)
        secs = vals[-1:].clone()
        self.world.all_reduce(vals)
        self.last_seconds = float(self.world_max(secs))
        return {k: float(vals[i]) / max(1, self.n_users) for i, k in enumerate(keys)}

    def world_max(self, t: torch.Tensor) -> torch.Tensor:
        self.world._call("all_reduce", dist.all_reduce, t, op=dist.ReduceOp.MAX)
        return t
