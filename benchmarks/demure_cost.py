"""Where Demure's extra training time goes, over its Base Model (issue 16): per-step region timings,
both models interleaved in one process on the same batches.

Per dataset (the accuracy tables' settings, `benchmarks/accuracy_demure.py`: same modalities,
``max_len``, batch 256, 1,000 shared negatives, one thread), ``demure-base`` and ``demure`` are
built once from the same seed (so with the same initial weights), and each timed step feeds the
SAME batch to both trainers, alternating which goes first (A B, B A, ...), so that both see the
same machine load. Each step is split by the trainer's own regions (``forward``, ``loss``,
``backward``, ``optimizer_step``: the `Callback.region` hook, `graphrec.bench.profile._Regions`),
and Demure's ``loss`` region further by timing its parts in this script (wrappers around the
model's methods; the model is not changed):

- ``interest_scores``: Eqs. 7-8, the one ``torch.autograd.grad`` call (`Demure._alphas`);
- ``views``: Section 3.4, the positive and negative views (`Demure.views`), of which
  ``views.draws`` (similarities to the replacement pool and the inverse-CDF draws, Eqs. 10, 13,
  `Demure._draw`), ``views.pool_mask`` (`Demure._allowed`) and ``views.re_encode`` (the modality
  and item encoders and the FFN on the 2J views); the rest is the position and slot selections
  and the index work;
- ``ssm_aug``: Eq. 5 on the positive views' users (`Demure._ssm` after the views);
- ``contrastive``: Eq. 14 (`poi_augment.view_contrastive_loss`);
- ``ssm``: the main sampled softmax (both models).

Medians over the timed steps (after warm-up steps), and the 1-minute load average before, during
and after. ``backward`` of Demure also runs through the views' re-encodings.

    python benchmarks/demure_cost.py [--datasets scientific,ml100k] [--steps 8] [--warmup 2]

Writes benchmarks/results/demure_cost.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections import OrderedDict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
OUT = ROOT / "benchmarks" / "results" / "demure_cost"
MODELS = ("demure-base", "demure")
TRAINER_REGIONS = ("zero_grad", "forward", "loss", "backward", "optimizer_step")
#: Demure's parts of the loss region (inclusive seconds; ``views.*`` are inside ``views``)
PARTS = ("ssm", "interest_scores", "views", "views.pool_mask", "views.draws", "views.re_encode", "ssm_aug",
         "contrastive")


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


class PartClock:
    """Inclusive seconds per named part of one model's steps (single thread: no synchronisation)."""

    def __init__(self) -> None:
        self.seconds: OrderedDict[str, float] = OrderedDict()
        self.after_views = False  # set by the first views() call of a step: later _ssm calls are L_ssm^aug

    def wrap(self, obj, attr: str, name) -> None:
        fn = getattr(obj, attr)

        def timed(*a, **k):
            key = name() if callable(name) else name
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.seconds[key] = self.seconds.get(key, 0.0) + time.perf_counter() - t0
        setattr(obj, attr, timed)


def instrument(model, clock: PartClock) -> None:
    """Time the model's loss parts (module docstring) by wrapping its bound methods."""
    from graphrec.nn import poi_augment

    loss = model.loss

    def loss_reset(*a, **k):
        clock.after_views = False
        return loss(*a, **k)
    model.loss = loss_reset
    clock.wrap(model, "_ssm", lambda: "ssm_aug" if clock.after_views else "ssm")
    clock.wrap(model, "_alphas", "interest_scores")
    clock.wrap(model, "_allowed", "views.pool_mask")
    clock.wrap(model, "_draw", "views.draws")
    views = model.views

    def views_flag(*a, **k):
        clock.after_views = True
        # the re-encoding of the views: the modality encoder on replaced items, the item encoder + FFN
        uv, iv = model.user_vectors, model.item_vectors
        clock.wrap(model, "user_vectors", "views.re_encode")
        clock.wrap(model, "item_vectors", "views.re_encode")
        try:
            return views(*a, **k)
        finally:
            model.user_vectors, model.item_vectors = uv, iv
    model.views = views_flag
    clock.wrap(model, "views", "views")
    if not getattr(poi_augment.view_contrastive_loss, "_timed", False):
        orig = poi_augment.view_contrastive_loss
        active: dict = {}

        def cont(*a, **k):
            t0 = time.perf_counter()
            try:
                return orig(*a, **k)
            finally:
                c = active.get("clock")
                if c is not None:
                    c.seconds["contrastive"] = c.seconds.get("contrastive", 0.0) + time.perf_counter() - t0
        cont._timed = True
        cont._active = active
        poi_augment.view_contrastive_loss = cont
    poi_augment.view_contrastive_loss._active["clock"] = clock


def measure(dataset: str, protocol: str, steps: int, warmup: int, seed: int, cache: Path) -> dict:
    """Interleaved per-step timings of both models on one dataset (module docstring)."""
    import torch
    torch.set_num_threads(1)
    import accuracy_demure as acc

    from graphrec import config as config_mod
    from graphrec.bench.profile import _Regions
    from graphrec.environment import environment
    from graphrec.experiment import evaluators, prepare, sampler
    from graphrec.train.trainer import Trainer

    name, common, per = acc.setting(dataset, protocol, cache)
    t0 = time.perf_counter()
    built = {}
    with tempfile.TemporaryDirectory(prefix="graphrec-demure-cost-") as tmp:
        for m in MODELS:
            ov = acc.merge(common, per[m])
            ov["seed"] = seed
            cfg = config_mod.load_config(m, name, (), ov)
            p = prepare(cfg)
            valid, _ = evaluators(p)
            regions = _Regions(p.device)
            tr = Trainer(p.model, sampler(p), valid, cfg["train"], os.path.join(tmp, m), p.device, seed,
                         callbacks=[regions], checkpoints=False)
            clock = PartClock()
            instrument(p.model, clock)
            p.model.train()
            built[m] = (p, tr, regions, clock)
        setup_s = time.perf_counter() - t0
        p0, tr0 = built[MODELS[0]][0], built[MODELS[0]][1]
        full_steps = len(tr0.sampler)
        gen = torch.Generator().manual_seed(seed)
        batches = []
        for b in tr0.sampler.epoch(gen):  # the same batches for both models
            batches.append(b)
            if len(batches) == warmup + steps:
                break
        n_inst = [int(built["demure"][0].model.instances(b)[0].shape[0]) for b in batches]
        rec = {m: {"step_s": [], "regions": [], "parts": []} for m in MODELS}
        loads = [load_average()]
        for i, b in enumerate(batches):
            order = MODELS if i % 2 == 0 else MODELS[::-1]
            for m in order:
                _, tr, regions, clock = built[m]
                regions.seconds.clear()
                clock.seconds.clear()
                t1 = time.perf_counter()
                tr.step(b)
                dt = time.perf_counter() - t1
                if i >= warmup:
                    rec[m]["step_s"].append(dt)
                    rec[m]["regions"].append(dict(regions.seconds))
                    rec[m]["parts"].append(dict(clock.seconds))
            loads.append(load_average())
        env = environment(p0.device)
    out = {"dataset": dataset, "protocol": protocol, "seed": seed, "threads": 1, "setup_s": round(setup_s, 1),
           "full_steps_per_epoch": full_steps, "timed_steps": steps, "warmup_steps": warmup,
           "instances_per_step_median": statistics.median(n_inst[warmup:]),
           "load_1min": {"before": loads[0], "during_median": statistics.median(loads[1:-1] or loads),
                         "max": max(loads), "after": loads[-1]},
           "environment": {k: env.get(k) for k in ("device_name", "torch", "git_commit", "cpu_count")}}
    for m in MODELS:
        r = rec[m]
        med = lambda xs: statistics.median(xs) if xs else 0.0
        out[m] = {"step_s_median": med(r["step_s"]), "step_s_runs": [round(x, 4) for x in r["step_s"]],
                  "regions_median": {k: med([x.get(k, 0.0) for x in r["regions"]]) for k in TRAINER_REGIONS},
                  "parts_median": {k: med([x.get(k, 0.0) for x in r["parts"]]) for k in PARTS
                                   if any(k in x for x in r["parts"])}}
    ratios = [d / b for d, b in zip(rec["demure"]["step_s"], rec["demure-base"]["step_s"])]
    out["ratio_median"] = statistics.median(ratios)  # paired per step (same batch)
    return out


def write(results: list[dict], out: Path) -> None:
    lines = ["# Demure's training cost over its Base Model", "",
             "benchmarks/demure_cost.py: both models built once from the same seed, then each timed step feeds the "
             "same batch to both trainers, alternating which runs first; one thread; medians over the timed steps "
             "after warm-up. Settings as the accuracy tables (`accuracy_demure.py`): batch 256 windows (every "
             "prefix is an instance), 1,000 shared negatives, J = 1, γ_i = 0.4, γ_m = 0.2, λ1 = 0.5, λ2 = 0.1.", ""]
    lines += ["| data | steps/epoch | instances/step | timed steps | Base s/step | Demure s/step | ratio (paired median) | "
              "load 1-min: before / during (median) / max |", "|---|---|---|---|---|---|---|---|"]
    for r in results:
        b, d, ld = r["demure-base"], r["demure"], r["load_1min"]
        lines.append(f"| {r['dataset']} ({r['protocol']}) | {r['full_steps_per_epoch']} | "
                     f"{r['instances_per_step_median']:.0f} | {r['timed_steps']} | {b['step_s_median']:.3f} | "
                     f"{d['step_s_median']:.3f} | {r['ratio_median']:.2f}x | {ld['before']} / {ld['during_median']} / "
                     f"{ld['max']} |")
    for r in results:
        b, d = r["demure-base"], r["demure"]
        extra = d["step_s_median"] - b["step_s_median"]
        lines += ["", f"## {r['dataset']} ({r['protocol']}): where the time goes (median s/step)", "",
                  "| region | Base Model | Demure | Demure − Base | share of Demure's extra time |", "|---|---|---|---|---|"]
        for k in TRAINER_REGIONS:
            x, y = b["regions_median"][k], d["regions_median"][k]
            lines.append(f"| {k} | {x:.4f} | {y:.4f} | {y - x:+.4f} | {100 * (y - x) / extra:.0f}% |"
                         if extra > 0 else f"| {k} | {x:.4f} | {y:.4f} | {y - x:+.4f} | – |")
        lines.append(f"| whole step | {b['step_s_median']:.4f} | {d['step_s_median']:.4f} | {extra:+.4f} | 100% |")
        lines += ["", "Inside the loss region (inclusive; `views.*` are parts of `views`):", "",
                  "| part | Base Model | Demure | share of Demure's extra time |", "|---|---|---|---|"]
        for k in PARTS:
            x, y = b["parts_median"].get(k), d["parts_median"].get(k)
            if x is None and y is None:
                continue
            share = f"{100 * (y or 0.0) / extra:.0f}%" if (extra > 0 and k != "ssm") else "–"
            lines.append(f"| {k} | {'–' if x is None else f'{x:.4f}'} | {'–' if y is None else f'{y:.4f}'} | {share} |")
    if results:
        e = results[0]["environment"]
        lines += ["", f"CPU {e.get('device_name')} ({e.get('cpu_count')} cores shared with other work), one thread, "
                      f"torch {e.get('torch')}, commit {e.get('git_commit')}."]
    out.with_suffix(".json").write_text(json.dumps({"results": results}, indent=1, default=str))
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--datasets", default="scientific,ml100k")
    ap.add_argument("--protocol", default="user")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cache", default="/work/cache/demure")
    ap.add_argument("--out", default=str(OUT))
    a = ap.parse_args()
    results = []
    for ds in a.datasets.split(","):
        r = measure(ds, a.protocol, a.steps, a.warmup, a.seed, Path(a.cache))
        results.append(r)
        print(f"[{time.strftime('%H:%M:%S')}] {ds}: base {r['demure-base']['step_s_median']:.3f} s/step, demure "
              f"{r['demure']['step_s_median']:.3f} s/step, ratio {r['ratio_median']:.2f}x (load {r['load_1min']})",
              flush=True)
        write(results, Path(a.out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
