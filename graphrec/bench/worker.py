"""Measure one (model, dataset, scale) in THIS process and print one JSON record.

Run as ``python -m graphrec.bench.worker --model M --dataset D [--epochs N] [--scale S]
[--set key=value ...] [--device DEV] [--threads T]``: `graphrec bench` starts one such process per
(model, scale, repeat) so that allocator caches, peak-memory marks and thread pools never leak from
one measurement into the next.

What is measured (phases of `graphrec.train.probe.PhaseProbe`):

- ``graph_build``: `graphrec.experiment.prepare` building the model's graphs, always from an
  empty, temporary graph cache (a cached graph would time a file read);
- ``train``: ``epochs`` epochs of the trainer's own loop (`Trainer.fit` without checkpoints or
  early stopping: sampling, forward, loss, backward, optimiser step), timed by a `PhaseClock`
  callback; the first ``warmup`` epochs are excluded from the per-epoch median (first-touch
  allocations, Adam state creation, lazy thread-pool start);
- ``eval``: one full-ranking valid evaluation after every epoch (one propagation + all valid users);
  the median after warm-up is reported. Test is never evaluated.

Memory: on CUDA ``torch.cuda.max_memory_allocated`` per phase (reset at each phase start). On CPU
the phase's resident-set high-water mark (``VmHWM``, reset per phase through
``/proc/self/clear_refs``) minus the process's baseline RSS, taken after imports and before the
dataset is loaded: the memory graphrec's data, graphs, model, optimiser and temporaries add to an
idle Python + torch process. ``peak_rss_mb`` is the absolute high-water mark (comparable with a
whole-process figure such as MMRec's peak RSS).

``GRAPHREC_BENCH_EVAL_USERS=N`` times each epoch's valid evaluation on a seeded sample of N users
(pairwise ranking only; recorded as ``eval_users_sampled``): at 10x Clothing, one full evaluation
ranks 230k items for 394k users, and the training-time measurement does not need its metrics.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from typing import Any, Dict, Iterable, Optional

from graphrec.train.trainer import Callback

MARKER = "GRAPHREC_BENCH_RECORD "
MEASURED_PHASES = ("graph_build", "train", "eval")


def _knn_recall(meta: Any, path: str = "") -> Dict[str, Any]:
    """Neighbour recall of each approximate kNN graph against exact search (with its index), by
    the path of its record in the graphs' metadata; empty when every kNN graph is exact."""
    out: Dict[str, Any] = {}
    if isinstance(meta, dict):
        if "recall" in meta:
            out[path or "graph"] = {"recall": meta["recall"], "index": (meta.get("params") or {}).get("index")}
        for k, v in meta.items():
            out.update(_knn_recall(v, f"{path}/{k}" if path else str(k)))
    return out


def _median(v: list[float]) -> Optional[float]:
    if not v:
        return None
    s = sorted(v)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


class PhaseClock(Callback):
    """Wall and process-CPU seconds (all threads; less sensitive to other load) of every train and
    eval phase of a `Trainer`, with CUDA synchronisation before each reading."""

    def __init__(self, device: Any):
        self.device = device
        self.wall: Dict[str, list] = {"train": [], "eval": []}
        self.cpu: Dict[str, list] = {"train": [], "eval": []}
        self._start = (0.0, 0.0)

    def _sync(self) -> None:
        if self.device.type == "cuda":
            import torch
            torch.cuda.synchronize(self.device)

    def on_phase_start(self, trainer: Any, phase: str) -> None:
        self._sync()
        self._start = (time.perf_counter(), time.process_time())

    def on_phase_end(self, trainer: Any, phase: str) -> None:
        self._sync()
        self.wall[phase].append(time.perf_counter() - self._start[0])
        self.cpu[phase].append(time.process_time() - self._start[1])


def bench_overrides(epochs: int, scale: Optional[float], sets: Iterable[str] = (),
                    device: Optional[str] = None, cache_dir: Optional[str] = None) -> dict:
    """Config overrides of one measurement: ``--set`` items, then what the bench itself fixes."""
    from graphrec.config import merge, parse_set

    ov = parse_set(list(sets))
    fixed: Dict[str, Any] = {"train": {"epochs": int(epochs), "progress": False}}
    if scale is not None:
        fixed["data"] = {"dataset_args": {"scale": float(scale)}}
    if cache_dir is not None:
        fixed.setdefault("data", {})["cache_dir"] = cache_dir
    if device:
        fixed["device"] = device
    return merge(ov, fixed, "bench", strict=False)


def measure(model: str, dataset: str, epochs: int = 3, scale: Optional[float] = None,
            sets: Iterable[str] = (), device: Optional[str] = None, threads: Optional[int] = None,
            warmup: int = 1) -> dict:
    """Build, train ``epochs`` epochs and evaluate ``model`` on ``dataset``; return the record."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    from graphrec import config as config_mod
    from graphrec.environment import environment
    from graphrec.eval.ranking import RankingEvaluator
    from graphrec.experiment import evaluators, prepare, sampler
    from graphrec.train.probe import PhaseProbe, current_rss_mb
    from graphrec.train.trainer import Trainer
    from graphrec.utils import resolve_device

    if epochs < 1:
        raise ValueError(f"bench: epochs must be >= 1, got {epochs}")
    warmup = max(0, min(int(warmup), epochs - 1))  # one epoch only: it is also the timed one
    tmp = tempfile.mkdtemp(prefix="graphrec-bench-")
    try:
        ov = bench_overrides(epochs, scale, sets, device, cache_dir=os.path.join(tmp, "cache"))
        cfg = config_mod.load_config(model, dataset, (), ov)
        dev = resolve_device(cfg.get("device", "auto"))
        probe = PhaseProbe(dev)
        baseline = current_rss_mb()
        probe.baseline_rss_mb = baseline
        p = prepare(cfg, probe=probe)
        valid, _ = evaluators(p)
        eval_users = int(os.environ.get("GRAPHREC_BENCH_EVAL_USERS", "0") or 0)
        if eval_users and isinstance(valid, RankingEvaluator) and valid.users.numel() > eval_users:
            # very large benchmarks (10x Clothing): each epoch's evaluation timed on a seeded sample of
            # the valid users, recorded as eval_users; its metrics are not the full ones
            pick = torch.randperm(valid.users.numel(), generator=torch.Generator().manual_seed(0))[:eval_users]
            valid.users = valid.users[pick.sort().values.to(valid.users.device)]
        t = cfg["train"]
        clock = PhaseClock(p.device)
        # every epoch evaluated, none stops early, nothing written: the trainer's own loop, measured
        trainer = Trainer(p.model, sampler(p), valid, dict(t, eval_every=1, patience=-1, max_time_s=None),
                          tmp, p.device, int(cfg["seed"]), probe, callbacks=[clock], checkpoints=False)
        steps_run = full_steps = None
        if trainer.sampler is not None and p.model.trainable():
            full_steps = len(trainer.sampler)
            trainer.fit()
            steps_run = trainer.last_steps
        else:  # nothing trained by SGD (pop): evaluation only
            for _ in range(max(1, epochs)):
                trainer.evaluate()
        train_s, train_cpu = clock.wall["train"], clock.cpu["train"]
        eval_s, eval_cpu = trainer.eval_seconds, clock.cpu["eval"]
        per_step = _median(train_s[warmup:]) / steps_run if train_s and steps_run else None
        truncated = bool(steps_run and full_steps and steps_run < full_steps)
        epoch_per_run = full_steps / steps_run if truncated else 1.0  # a truncated epoch's projection factor
        ph = probe.phases
        cuda = p.device.type == "cuda"
        phase_mem = {}
        for name in MEASURED_PHASES:
            if name in ph:
                phase_mem[name] = round(ph[name]["peak_cuda_mb"] if cuda else ph[name]["peak_rss_mb"] - baseline, 1)
        rss_abs = {n: round(ph[n]["peak_rss_mb"], 1) for n in ph}
        hp = cfg.get("model_params") or {}
        rec = {
            "model": model, "dataset": dataset, "scale": scale if scale is not None else 1.0,
            "n_users": p.split.n_users, "n_items": p.split.n_items, "n_train": len(p.split.train),
            "n_valid_users": int(valid.users.numel()),
            "eval_users_sampled": bool(eval_users and valid.users.numel() == eval_users),
            "params": sum(q.numel() for q in p.model.parameters()),
            "trainable_params": sum(q.numel() for q in p.model.parameters() if q.requires_grad),
            "data_s": round(ph.get("data", {}).get("seconds", 0.0), 4),
            "graph_build_s": round(ph.get("graph_build", {}).get("seconds", 0.0), 4),
            "knn_recall": _knn_recall(p.graph_meta),
            "epochs": epochs, "warmup_epochs": warmup,
            "train_s_epochs": [round(x, 4) for x in train_s],
            # a truncated epoch (train.max_steps_per_epoch) is projected to the full one: s/step x steps
            # (wall and CPU seconds alike)
            "train_s_per_epoch": (round(per_step * full_steps if truncated else _median(train_s[warmup:]), 4)
                                  if train_s else None),
            "train_s_per_epoch_projected": truncated,
            "steps_per_epoch": steps_run, "full_steps_per_epoch": full_steps,
            "train_s_per_step": round(per_step, 5) if per_step is not None else None,
            "train_cpu_s_per_epoch": (round(_median(train_cpu[warmup:]) * epoch_per_run, 4) if train_cpu else None),
            "eval_s_runs": [round(x, 4) for x in eval_s],
            "eval_cpu_s": (round(_median(eval_cpu[warmup:] or eval_cpu), 4) if eval_cpu else None),
            "eval_s": round(_median(eval_s[warmup:] or eval_s), 4),
            "peak_mem_mb": max(phase_mem.values()) if phase_mem else 0.0,
            "mem_method": "cuda_max_memory_allocated" if cuda else "rss_hwm_over_baseline",
            "phase_mem_mb": phase_mem,
            # what the phase added on top of the RSS it started from (memory kept from an earlier
            # phase, e.g. Adam state during eval, is in phase_mem_mb but not here)
            "phase_increment_mb": {n: round(ph[n]["peak_rss_mb"] - ph[n]["start_rss_mb"], 1)
                                   for n in MEASURED_PHASES if n in ph},
            "baseline_rss_mb": round(baseline, 1),
            "peak_rss_mb": max((rss_abs[n] for n in MEASURED_PHASES if n in rss_abs), default=0.0),
            "process_peak_rss_mb": max(rss_abs.values(), default=0.0),
            "phase_peak_rss_mb": rss_abs,
            "rss_reset": all(ph[n].get("rss_reset", False) for n in ph),
            "batch_size": int(t["batch_size"]), "embedding_dim": hp.get("embedding_dim"),
            "n_layers": hp.get("n_layers", hp.get("n_ui_layers")),
            "config_hash": config_mod.config_hash(_without_cache_dir(cfg)),
            "graphs": {k: {kk: v.get(kk) for kk in ("kind", "shape", "nnz") if kk in v}
                       for k, v in p.graph_meta.items()},
            "sets": list(sets),
            "precision": trainer.precision,  # train.amp as resolved on this device (float32 | bf16)
            **environment(p.device),
        }
        return rec
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _without_cache_dir(cfg: dict) -> dict:
    """The config minus the bench's temporary cache path, so equal settings hash equal."""
    out = dict(cfg)
    out["data"] = {k: v for k, v in cfg["data"].items() if k != "cache_dir"}
    return out


def parse_record(stdout: str) -> dict:
    """The record printed by a worker (the last marker line of its stdout)."""
    for line in reversed(stdout.splitlines()):
        if line.startswith(MARKER):
            return json.loads(line[len(MARKER):])
    raise ValueError("bench worker printed no record")


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m graphrec.bench.worker", description=__doc__.split("\n")[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--scale", type=float)
    ap.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE")
    ap.add_argument("--device")
    ap.add_argument("--threads", type=int)
    args = ap.parse_args(argv)
    rec = measure(args.model, args.dataset, args.epochs, args.scale, args.sets, args.device, args.threads,
                  args.warmup)
    sys.stdout.write(MARKER + json.dumps(rec, default=str) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
