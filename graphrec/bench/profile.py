"""Where an epoch's time goes: sampling, propagation, loss, backward, optimiser step, evaluation.

`profile_model` builds a model as `graphrec.bench.worker` does, runs one warm-up epoch, then one
epoch whose steps are timed region by region (wall clock, with CUDA synchronisation on a GPU),
then one epoch under ``torch.profiler`` for the operator table, and one valid evaluation split
into propagation, scoring and the rest (masking, top-k, metrics). The epochs are the trainer's
own (`Trainer.train_epoch`), timed region by region through its `Callback.region` hook:
``sample``, ``aux_steps``, ``zero_grad``, ``forward``, ``loss``, ``backward``, ``optimizer_step``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import OrderedDict
from contextlib import contextmanager
from typing import Callable, Iterable, Optional, Sequence

from graphrec.train.trainer import Callback

MARKER = "GRAPHREC_PROFILE_MD "


class _Regions(Callback):
    """Seconds per named region of the trainer's steps (wall clock, CUDA-synchronised), each
    region also a ``record_function`` range for the operator profile."""

    def __init__(self, device):
        self.device = device
        self.seconds: "OrderedDict[str, float]" = OrderedDict()
        self.on = True

    @contextmanager
    def _timed(self, name: str):
        import torch
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        t0 = time.perf_counter()
        with torch.profiler.record_function(name):
            yield
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
        self.seconds[name] = self.seconds.get(name, 0.0) + time.perf_counter() - t0

    def region(self, name: str):
        return self._timed(name) if self.on else None

    __call__ = _timed


def profile_model(model: str, dataset: str, scale: Optional[float] = None, sets: Iterable[str] = (),
                  device: Optional[str] = None, threads: Optional[int] = None, top: int = 15) -> str:
    """Markdown: region table of one epoch and one evaluation, then the top operators."""
    import torch

    if threads:
        torch.set_num_threads(int(threads))
    import tempfile

    from graphrec import config as config_mod
    from graphrec.environment import environment
    from graphrec.bench.worker import bench_overrides
    from graphrec.experiment import evaluators, prepare, sampler
    from graphrec.train.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="graphrec-prof-") as tmp:
        cfg = config_mod.load_config(model, dataset, (), bench_overrides(1, scale, sets, device,
                                                                        os.path.join(tmp, "cache")))
        p = prepare(cfg)
        t = cfg["train"]
        valid, _ = evaluators(p)
        m = p.model
        batches = sampler(p)
        if batches is None:
            raise ValueError(f"profile: model {model!r} is not trained by SGD")
        regions = _Regions(p.device)
        trainer = Trainer(m, batches, valid, t, tmp, p.device, int(cfg["seed"]), callbacks=[regions],
                          checkpoints=False)
    trainer.train_epoch()  # warm-up
    regions.seconds.clear()
    t0 = time.perf_counter()
    trainer.train_epoch()
    epoch_s = time.perf_counter() - t0
    n_batches = trainer.last_steps

    # evaluation: time propagate and score by wrapping them on this instance only
    ev = _Regions(p.device)
    orig_prop, orig_score = m.propagate, m.score

    def prop():
        with ev("eval_propagate"):
            return orig_prop()

    def score(users, reps):
        with ev("eval_score"):
            return orig_score(users, reps)

    m.propagate, m.score = prop, score
    try:
        valid.evaluate(m)  # warm
        ev.seconds.clear()
        t1 = time.perf_counter()
        valid.evaluate(m)
        eval_s = time.perf_counter() - t1
    finally:
        del m.propagate, m.score
    ev.seconds["eval_mask_topk_metrics"] = eval_s - sum(ev.seconds.values())

    acts = [torch.profiler.ProfilerActivity.CPU]
    if p.device.type == "cuda":
        acts.append(torch.profiler.ProfilerActivity.CUDA)
    timed = dict(regions.seconds)
    with torch.profiler.profile(activities=acts) as prof:
        trainer.train_epoch()
    regions.seconds = timed
    sort = "self_cuda_time_total" if p.device.type == "cuda" else "self_cpu_time_total"
    ops = prof.key_averages().table(sort_by=sort, row_limit=top, max_name_column_width=48)

    env = environment(p.device)
    lines = [f"### {model} on {dataset}" + (f" (scale {scale:g})" if scale else ""),
             "",
             f"{p.split.n_users:,} users, {p.split.n_items:,} items, {len(p.split.train):,} training pairs, "
             f"{n_batches} batches of {t['batch_size']}; {env['device_name']} ({env['device']}, torch threads: "
             f"{env['threads']}), torch {env['torch']}, commit {env['git_commit']}.",
             "",
             f"One training epoch (after a warm-up epoch): {epoch_s:.3f} s; one valid evaluation "
             f"({int(valid.users.numel()):,} users): {eval_s:.3f} s.",
             "",
             "| region | seconds | share |", "|---|---|---|"]
    accounted = sum(regions.seconds.values())
    for name, s in regions.seconds.items():
        lines.append(f"| train: {name} | {s:.3f} | {100 * s / epoch_s:.1f}% of epoch |")
    rest = epoch_s - accounted
    lines.append(f"| train: loop overhead | {rest:.3f} | {100 * rest / epoch_s:.1f}% of epoch |")
    for name, s in ev.seconds.items():
        lines.append(f"| {name.replace('_', ' ', 1)} | {s:.3f} | {100 * s / eval_s:.1f}% of evaluation |")
    lines += ["", "Top operators of one profiled epoch (torch.profiler, by self time; the profiler adds "
                  "overhead, so use the region table for shares):", "", "```", ops.rstrip(), "```", ""]
    return "\n".join(lines)


def profile_models(models: Sequence[str], dataset: str, out: str, scale: Optional[float] = None,
                   sets: Iterable[str] = (), device: Optional[str] = None, threads: Optional[int] = None,
                   echo: Callable[[str], None] = print) -> str:
    """Profile each model in its own process; write the markdown to ``out`` and return it."""
    from graphrec.bench.runner import common_args
    from graphrec.utils import atomic_write_bytes

    parts = ["# Where the time goes\n"]
    for model in models:
        echo(f"profile: {model} on {dataset} ...")
        cmd = [sys.executable, "-m", "graphrec.bench.profile", model, dataset]
        cmd += common_args(scale, sets, device, threads)
        env = dict(os.environ)
        env.setdefault("GRAPHREC_LOG", "WARNING")
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        if proc.returncode != 0:
            msg = " | ".join(proc.stderr.strip().splitlines()[-6:])
            echo(f"profile: {model} FAILED: {msg}")
            parts.append(f"### {model} on {dataset}\n\nfailed: {msg}\n")
            continue
        md = proc.stdout.split(MARKER, 1)[-1]
        parts.append(md)
    text = "\n".join(parts)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    atomic_write_bytes(out, text.encode())
    return text


def main(argv: Optional[list[str]] = None) -> int:
    import argparse
    ap = argparse.ArgumentParser(prog="python -m graphrec.bench.profile")
    ap.add_argument("model")
    ap.add_argument("dataset")
    ap.add_argument("--scale", type=float)
    ap.add_argument("--set", action="append", default=[], dest="sets")
    ap.add_argument("--device")
    ap.add_argument("--threads", type=int)
    a = ap.parse_args(argv)
    md = profile_model(a.model, a.dataset, a.scale, a.sets, a.device, a.threads)
    sys.stdout.write(MARKER + md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
