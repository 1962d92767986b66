"""Training speed with and without mixed precision (issue 22): seconds per training epoch of each
model in float32 (``train.amp=false``) and bf16 (``train.amp=bf16``), A/B interleaved in one process
per model: the data, graphs and model are built once (as the bench worker builds them), then the
trainer's own epochs (`Trainer.train_epoch`) alternate float32, bf16, float32, bf16, ... (the
trainer's precision switched between epochs), so both precisions see the same machine load and the
same model; medians over the repeats. Each epoch is also split into the trainer's regions (forward,
loss, backward, optimiser step, the auxiliary estimator's steps: `graphrec.bench.profile`), which
says where the time goes in each precision.

    python benchmarks/bf16_speed.py [--models freedom,vbpr,sand-a] [--dataset synthetic-clothing]
        [--repeat 3] [--threads 1] [--steps sand-a=3] [--label TEXT]

Writes benchmarks/results/bf16_speed.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "benchmarks" / "results" / "bf16_speed"


def load_average() -> str:
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def measure(model: str, dataset: str, repeat: int, steps: int | None, threads: int) -> dict:
    """A/B epochs of one model (module docstring)."""
    import torch
    torch.set_num_threads(threads)
    from graphrec import config as config_mod
    from graphrec.bench.profile import _Regions
    from graphrec.bench.worker import bench_overrides
    from graphrec.environment import environment
    from graphrec.experiment import evaluators, prepare, sampler
    from graphrec.nn import precision
    from graphrec.train.trainer import Trainer

    with tempfile.TemporaryDirectory(prefix="graphrec-bf16-") as tmp:
        sets = [f"train.max_steps_per_epoch={steps}"] if steps else []
        cfg = config_mod.load_config(model, dataset, (), bench_overrides(1, None, sets, "cpu", os.path.join(tmp, "c")))
        t0 = time.perf_counter()
        p = prepare(cfg)
        setup_s = time.perf_counter() - t0
        valid, _ = evaluators(p)
        regions = _Regions(p.device)
        trainer = Trainer(p.model, sampler(p), valid, cfg["train"], tmp, p.device, int(cfg["seed"]),
                          callbacks=[regions], checkpoints=False)
        full_steps = len(trainer.sampler)
        modes = {"float32": None, "bf16": torch.bfloat16}
        trainer.amp_dtype = None
        trainer.train_epoch()  # warm-up (float32), then one bf16 warm-up: the bf16 feature copies are made once
        trainer.amp_dtype = torch.bfloat16
        trainer.train_epoch()
        out = {k: {"epoch_s": [], "regions": []} for k in modes}
        for _ in range(repeat):
            for name, dt in modes.items():
                trainer.amp_dtype, trainer.precision = dt, precision.precision_name(dt)
                regions.seconds.clear()
                t1 = time.perf_counter()
                trainer.train_epoch()
                out[name]["epoch_s"].append(time.perf_counter() - t1)
                out[name]["regions"].append(dict(regions.seconds))
                out[name]["steps"] = trainer.last_steps
        env = environment(p.device)
    res = {"model": model, "dataset": dataset, "threads": threads, "setup_s": round(setup_s, 2),
           "full_steps_per_epoch": full_steps, **env}
    for name, o in out.items():
        per_step = [s / o["steps"] for s in o["epoch_s"]]
        res[name] = {"epoch_s_runs": [round(x, 4) for x in o["epoch_s"]], "steps": o["steps"],
                     "s_per_step": statistics.median(per_step),
                     "s_per_epoch": statistics.median(per_step) * full_steps,
                     "regions_median_per_step": {k: statistics.median(r.get(k, 0.0) for r in o["regions"]) / o["steps"]
                                                 for k in o["regions"][0]}}
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default="freedom,vbpr,sand-a")
    ap.add_argument("--dataset", default="synthetic-clothing")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", default="sand-a=3", help="batches per timed epoch, e.g. sand-a=3 (others: full epochs)")
    ap.add_argument("--label", default="")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    steps = {k: int(v) for k, v in (kv.split("=") for kv in a.steps.split(",") if kv)}
    results = []
    if os.path.exists(a.out + ".json"):  # models measured by an earlier call are kept
        with open(a.out + ".json") as f:
            results = [r for r in json.load(f).get("results", []) if r["model"] not in a.models.split(",")]
    for m in [m for m in a.models.split(",") if m]:
        load0 = load_average()
        r = measure(m, a.dataset, a.repeat, steps.get(m), a.threads)
        r.update({"load_before": load0, "load_after": load_average(), "label": a.label})
        results.append(r)
        print(f"[{time.strftime('%H:%M:%S')}] {m}: float32 {r['float32']['s_per_step']:.4f} s/step, "
              f"bf16 {r['bf16']['s_per_step']:.4f} s/step (load {load0} -> {r['load_after']})", flush=True)
        write(a, results)
    return 0


def write(a, results: list[dict]) -> None:
    lines = ["# Mixed precision: training speed, float32 against bf16", "",
             "Per model: data, graphs and model built once; then the trainer's epochs alternate float32 and bf16 "
             "(`train.amp`), after one warm-up epoch of each; medians over the repeats (benchmarks/bf16_speed.py). "
             "s/epoch = median s/step x the full epoch's batches (marked (p) where the timed epochs were cut to a "
             "few batches).", "",
             "| model | dataset | threads | float32 s/epoch | bf16 s/epoch | speed-up | float32 s/step | bf16 s/step | "
             "repeats | load (1-min avg) before, after | label |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        f, b = r["float32"], r["bf16"]
        proj = " (p)" if f["steps"] < r["full_steps_per_epoch"] else ""
        lines.append(f"| {r['model']} | {r['dataset']} | {r['threads']} | {f['s_per_epoch']:.2f}{proj} | "
                     f"{b['s_per_epoch']:.2f}{proj} | {f['s_per_epoch'] / b['s_per_epoch']:.2f}x | {f['s_per_step']:.4f} | "
                     f"{b['s_per_step']:.4f} | {len(f['epoch_s_runs'])} | {r['load_before']}; {r['load_after']} | "
                     f"{r.get('label', '')} |")
    lines += ["", "Where a step's time goes (median seconds per step, by trainer region):", ""]
    for r in results:
        keys = list(r["float32"]["regions_median_per_step"])
        lines += [f"{r['model']}:", "", "| region | float32 s/step | bf16 s/step |", "|---|---|---|"]
        for k in keys:
            lines.append(f"| {k} | {r['float32']['regions_median_per_step'][k]:.4f} | "
                         f"{r['bf16']['regions_median_per_step'].get(k, 0.0):.4f} |")
        lines.append("")
    if results:
        r0 = results[0]
        lines.append(f"Device: {r0.get('device_name')} ({r0.get('device')}, native bf16 products: "
                     f"{r0.get('native_bf16')}), torch {r0.get('torch')}, commit {r0.get('git_commit')}.")
    with open(a.out + ".json", "w") as f:
        json.dump({"results": results}, f, indent=1, default=str)
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    sys.exit(main())
