"""Embedding tables larger than one process (``train.shard_tables: row_wise | table_wise`` with
``graphrec train --nproc N``): a model's id-embedding tables live sharded across the ranks of a
data-parallel run (`graphrec.train.sharded_table`: each rank holds about 1/N of the rows, a step's
rows are read by all-to-all, each row's gradient is summed and applied by its owner's optimiser),
while the rest of the model stays replicated and averaged by `GradientSync`.

A step is the one-process step on the global batch: the owner receives the share-weighted sum of
its rows' gradients, and its optimiser (Adam, Adagrad, ... over its rows) applies the update one
process would apply to them, since those optimisers act on each row independently. Gradient
clipping by the global norm does not (``train.grad_clip`` is refused).

Only models whose training step reads rows of their tables by id can shard them; a model whose
step needs the whole table (exact LightGCN propagation) is refused. The models that can are listed
in :data:`SHARDABLE` with their sharded step: MF's reads the batch's users and items
(`LookupStep`); LightGCN's, with ``train.sampler: neighbor`` only, the layer-0 rows of the
batch's sampled subgraph (`SampledLightGCNStep`), whose gradients stay row-sparse for
`RowSparseAdam`.

Between training phases the full tables are all-gathered to every rank (evaluation scores with
them; rank 0 saves them: checkpoints hold the unsharded model's keys and shapes, and any number
of processes reads its rows back from them). The optimiser state of the sharded rows (Adam's
moments, Adagrad's sums) is not gathered: after each epoch every rank writes its own rows to
``sharded_optimizer/rank<r>-epoch<e>.pt`` (the one file of the run directory that ranks other
than 0 write), and a resumed rank reads the rows it now holds from those files.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Optional

import torch
import torch.distributed as dist

from graphrec.errors import ConfigError, RunDirError
from graphrec.models.base import Recommender, Reps
from graphrec.train import checkpoint
from graphrec.train.sharded_table import MODES, Layout, ShardedTable
from graphrec.train.trainer import Callback
from graphrec.utils import torch_save_atomic

#: batch keys of the pairwise task and the side whose ids they hold
BATCH_SIDES = {"user": "user", "pos": "item", "neg": "item"}
OPTIMIZER_DIR = "sharded_optimizer"  # per rank and epoch: rank<r>-epoch<e>.pt


class LookupStep:
    """The training step of a model whose loss reads rows of its tables by id: the batch's unique
    ids of each side are looked up in the sharded tables (a batch-local `Reps`), and the model's
    own loss reads them by their positions among those ids (the same values and gradients as
    indexing the whole table)."""

    def __init__(self, model: Recommender, tables: Dict[str, str]):
        self.model, self.tables = model, tables
        self.loss_fn = type(model).loss

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        ids = {side: torch.unique(torch.cat([batch[k].reshape(-1) for k, s in BATCH_SIDES.items()
                                             if s == side and k in batch]))
               for side in set(self.tables.values())}
        rows = {side: getattr(self.model, attr).lookup(ids[side]) for attr, side in self.tables.items()}
        return Reps(user=rows.get("user"), item=rows.get("item"), user_ids=ids.get("user"), item_ids=ids.get("item"))

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        local = {k: torch.searchsorted(getattr(reps, f"{s}_ids"), v) for k, v in batch.items()
                 if (s := BATCH_SIDES.get(k)) is not None}
        return self.loss_fn(self.model, {**batch, **local}, Reps(user=reps.user, item=reps.item))


class SampledLightGCNStep:
    """LightGCN's sampled-subgraph step (`LightGCN._sampled_forward`, the same equations) with the
    layer-0 rows of the subgraph's users and items read from the sharded ``embedding`` table
    (users first, then items, as the model lays it out); the model's own loss reads the result."""

    def __init__(self, model: Recommender, tables: Dict[str, str]):
        self.model = model

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        m = self.model
        if "sub_ui" not in batch:
            raise ConfigError("train.shard_tables: sharded LightGCN trains on sampled subgraphs only "
                              "(train.sampler=neighbor)")
        return m._sampled_forward(batch, rows=m.embedding.lookup)

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        return type(self.model).loss(self.model, batch, reps)


@dataclass(frozen=True)
class Shardable:
    """A model whose tables can shard: its tables (attribute -> side), the step that reads them,
    and the config its step needs (``train.<key>: value``)."""

    tables: Dict[str, str]
    step: Callable[[Recommender, Dict[str, str]], Any]
    needs: Optional[tuple[str, str]] = None


#: models whose training step reads rows of their tables by id
SHARDABLE: Dict[str, Shardable] = {
    "mf": Shardable({"user_emb": "user", "item_emb": "item"}, LookupStep),
    "lightgcn": Shardable({"embedding": "user+item"}, SampledLightGCNStep, needs=("sampler", "neighbor")),
}


def mode_of(cfg: dict) -> str:
    return str(cfg["train"].get("shard_tables") or "none")


def check(cfg: dict, world_size: int) -> None:
    """Refuse, before any data loads, a ``train.shard_tables`` the run cannot do (one line)."""
    mode = mode_of(cfg)
    if mode == "none":
        return
    if mode not in MODES:
        raise ConfigError(f"train.shard_tables={mode!r}: expected none, {' or '.join(MODES)}")
    name = str(cfg["model"])
    spec = SHARDABLE.get(name)
    if spec is None:
        raise ConfigError(f"train.shard_tables={mode}: model {name!r} cannot shard its tables (a training step "
                          f"reads whole tables, e.g. exact propagation); models that can: {', '.join(SHARDABLE)}")
    if spec.needs is not None and str(cfg["train"].get(spec.needs[0])) != spec.needs[1]:
        key, value = spec.needs
        raise ConfigError(f"train.shard_tables={mode}: model {name!r} reads its whole table in a train.{key}="
                          f"{cfg['train'].get(key)} step; its tables shard with train.{key}={value} only")
    if cfg["train"].get("grad_clip"):
        raise ConfigError(f"train.shard_tables={mode}: train.grad_clip clips by the norm over every rank's rows, "
                          f"which sharded tables do not compute; set train.grad_clip=null")
    if world_size < 2:
        raise ConfigError(f"train.shard_tables={mode} shards tables across the processes of a data-parallel run; "
                          f"run with --nproc N (N >= 2) or set train.shard_tables=none")


class ShardedModel:
    """The sharded tables of one rank's model and what keeps them consistent (the trainer
    callback, optimiser state, checkpoints)."""

    def __init__(self, model: Recommender, mode: str, tables: Dict[str, ShardedTable]):
        self.model, self.mode, self.tables = model, mode, tables
        self.sampler: Any = None  # the data-parallel sampler: its weight scales the rows' gradients

    def parameters(self) -> list[torch.nn.Parameter]:
        return [t.shard for t in self.tables.values()]

    def scale(self) -> float:
        return float(self.sampler.weight) if self.sampler is not None else 1.0

    def gather(self) -> None:
        for t in self.tables.values():
            t.gather()

    def drop(self) -> None:
        for t in self.tables.values():
            t.drop()

    def describe(self) -> Dict[str, Any]:
        """Rows and bytes each rank holds per table (measured: one all-reduce of the shards' sizes)."""
        world, rank = dist.get_world_size(), dist.get_rank()
        device = next(iter(self.tables.values())).shard.device  # NCCL reduces CUDA tensors only
        held = torch.zeros(world, len(self.tables), dtype=torch.float64, device=device)
        held[rank] = torch.tensor([float(t.shard.shape[0]) for t in self.tables.values()], dtype=torch.float64)
        dist.all_reduce(held)
        held = held.cpu()
        return {"mode": self.mode, "backend": "torch.distributed",
                "tables": {name: {"rows": t.n, "dim": t.dim, "rows_per_rank": [int(x) for x in held[:, i]],
                                  "bytes_per_rank": [int(x) * t.dim * t.shard.element_size() for x in held[:, i]]}
                           for i, (name, t) in enumerate(self.tables.items())}}

    # -- optimiser state of the sharded rows -----------------------------------------------------
    def save_optimizer(self, opt: torch.optim.Optimizer, run_dir: str, epoch: int) -> None:
        """This rank's rows of the optimiser state (Adam's moments, Adagrad's sums; scalars such as
        step counts as they are) to ``<run_dir>/sharded_optimizer/rank<r>-epoch<e>.pt``. The
        previous epoch's file stays until the next one is written: the ranks do not wait for
        each other here, so a rank may write epoch e before rank 0's ``last.pt`` of epoch e
        exists (a run stopped then resumes from epoch e - 1's files)."""
        folder = os.path.join(run_dir, OPTIMIZER_DIR)
        os.makedirs(folder, exist_ok=True)
        some = next(iter(self.tables.values()))
        rank, world = some.rank, some.layout.world
        tables = {name: {"lo": t.lo, "rows": int(t.shard.shape[0]), "n": t.n,
                         "state": {k: v for k, v in opt.state.get(t.shard, {}).items()}}
                  for name, t in self.tables.items()}
        # a checkpoint without model components: read back by checkpoint.load_file (weights only)
        torch_save_atomic(checkpoint.plain({"components": {}, "epoch": int(epoch), "world": world,
                                            "tables": tables}),
                          os.path.join(folder, f"rank{rank}-epoch{int(epoch)}.pt"))
        for old in os.listdir(folder):
            m = re.fullmatch(rf"rank{rank}-epoch(\d+)\.pt", old)
            if m and int(m.group(1)) < int(epoch) - 1:
                os.remove(os.path.join(folder, old))

    def restore_optimizer(self, opt: torch.optim.Optimizer, run_dir: str, epoch: int) -> None:
        """This rank's rows of the optimiser state saved at ``epoch`` (after `Trainer.resume`,
        which loaded rank 0's own rows into every rank), from the files of every rank that
        wrote them, whatever the number of ranks then."""
        folder = os.path.join(run_dir, OPTIMIZER_DIR)
        first = os.path.join(folder, f"rank0-epoch{int(epoch)}.pt")
        if not os.path.exists(first):
            raise RunDirError(f"{first}: missing; the optimiser state of the sharded tables at epoch {epoch} "
                              f"(last.pt's) is saved there")
        saved = [checkpoint.load_file(first)]
        for r in range(1, int(saved[0]["world"])):
            path = os.path.join(folder, f"rank{r}-epoch{int(epoch)}.pt")
            if not os.path.exists(path):
                raise RunDirError(f"{path}: missing; rank {r}'s optimiser rows of epoch {epoch} are saved there")
            saved.append(checkpoint.load_file(path))
        for name, t in self.tables.items():
            group = next(g for g in opt.param_groups if any(q is t.shard for q in g["params"]))
            on_device = bool(group.get("fused") or group.get("capturable"))  # else step counts stay on the CPU
            hi = t.lo + int(t.shard.shape[0])
            mine: Dict[str, Any] = {}
            for part in saved:
                part = part["tables"][name]
                lo, rows = int(part["lo"]), int(part["rows"])
                a, b = max(lo, t.lo), min(lo + rows, hi)  # the saved rows that are ours
                for k, v in part["state"].items():
                    if not _per_row(v, rows, t.shard):
                        mine.setdefault(k, v.to(t.shard.device) if torch.is_tensor(v) and on_device else v)
                        continue
                    dst = mine.setdefault(k, torch.zeros_like(t.shard))
                    if a < b:
                        dst[a - t.lo:b - t.lo] = v[a - lo:b - lo].to(dst.device)
            opt.state[t.shard] = mine

    def callback(self, run_dir: str) -> "ShardCallback":
        return ShardCallback(self, run_dir)


def _per_row(v: Any, rows: int, shard: torch.Tensor) -> bool:
    """Whether optimiser state ``v`` holds one row per row of a ``rows``-row part of ``shard``'s
    table (Adam's moments)."""
    return torch.is_tensor(v) and v.dim() >= 1 and tuple(v.shape) == (rows,) + tuple(shard.shape[1:])


class ShardCallback(Callback):
    """Gathers the full tables after each training phase, so that evaluation and the checkpoints
    see them, and drops them when training resumes; after each epoch's ``last.pt`` every rank
    saves the optimiser state of its own rows."""

    def __init__(self, sharded: ShardedModel, run_dir: str):
        self.sharded, self.run_dir = sharded, run_dir

    def on_phase_start(self, trainer, phase: str) -> None:
        if phase == "train":
            self.sharded.drop()  # the rows change from here on

    def on_phase_end(self, trainer, phase: str) -> None:
        if phase == "train":
            self.sharded.gather()

    def on_epoch_end(self, trainer, record) -> None:
        self.sharded.save_optimizer(trainer.opt, self.run_dir, trainer.epoch)


def shard(model: Recommender, mode: str, world_size: int, rank: int, sparse: bool = False) -> ShardedModel:
    """Replace ``model``'s shardable tables by this rank's shards, in place (a collective: rank
    0's initial tables are broadcast first, so every rank slices the same values). Table-wise
    places the largest tables first, each on the rank holding the fewest bytes so far.
    ``sparse``: the shards' gradients hold the rows read only (sampled-subgraph steps)."""
    spec = SHARDABLE.get(model.name)
    if spec is None:
        raise ConfigError(f"train.shard_tables={mode}: model {model.name!r} cannot shard its tables; "
                          f"models that can: {', '.join(SHARDABLE)}")
    tables = spec.tables
    load = [0] * world_size
    out: Dict[str, ShardedTable] = {}
    sharded = ShardedModel(model, mode, out)
    for attr in sorted(tables, key=lambda a: -getattr(model, a).weight.numel()):
        full = getattr(model, attr).weight.detach()
        dist.broadcast(full, src=0)
        owner = min(range(world_size), key=lambda r: load[r])
        layout = Layout(int(full.shape[0]), world_size, mode, owner)
        load[owner] += full.numel()
        table = ShardedTable(full, layout, rank, sharded.scale, sparse=sparse)
        setattr(model, attr, table)  # the unsharded table is freed here
        out[attr] = table
    step = spec.step(model, tables)
    # the model's own step reads whole tables: a sharded model's step reads the batch's rows
    model.train_forward = step.train_forward
    model.loss = step.loss
    sharded.gather()
    return sharded


def local_parameters(sharded: Optional[ShardedModel]) -> Iterable[torch.nn.Parameter]:
    """Parameters every rank holds its own part of (not averaged, not broadcast)."""
    return sharded.parameters() if sharded is not None else []
