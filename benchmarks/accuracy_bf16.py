"""Accuracy parity of mixed precision (issue 22): every model trained with ``train.amp=false``
(float32) and ``train.amp=bf16`` for the same epochs and seeds; the table puts the two side by side
with each one's seed spread, and calls a model at parity when the means differ by less than the
larger of the two standard deviations (the difference two seed sets of one precision show).

    python benchmarks/accuracy_bf16.py --dataset ml100k [--seeds 0,1,2] [--runs runs/bf16]
    python benchmarks/accuracy_bf16.py --dataset scientific
    python benchmarks/accuracy_bf16.py --table          # the table of every finished run

Pairwise models (LightGCN, FREEDOM, SAND-a) are set up as in ``benchmarks/accuracy_mm.py`` (ml100k_mm
with MMRec's split; Amazon Scientific with a per-user 8:1:1 split and MiniLM item text) and judged
by full ranking, valid Recall@20 selecting the epoch; SASRec as in ``benchmarks/accuracy_seq.py``
(leave-one-out, next-item protocol, valid NDCG@10 selecting). Runs are short (``EPOCHS``, the same
for both precisions) and single-threaded: the table measures whether bf16 changes what the same
training reaches, not the models' converged accuracy. Finished runs are re-read, not re-run.
Writes benchmarks/results/accuracy_bf16.{json,md}.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import accuracy_mm  # noqa: E402  (dataset definitions shared with the multimodal table)
import accuracy_seq  # noqa: E402  (the next-item protocol shared with the sequential table)

MODELS = ["lightgcn", "freedom", "sand-a", "sasrec"]
PRECISIONS = [False, "bf16"]
#: epochs per run (both precisions): short enough for 48 single-threaded runs on a shared 2-core machine
EPOCHS = {"ml100k": {"lightgcn": 15, "freedom": 15, "sand-a": 3, "sasrec": 10},
          "scientific": {"lightgcn": 40, "freedom": 40, "sand-a": 15, "sasrec": 15}}
SELECT = {"pairwise": "recall@20", "next_item": "ndcg@10"}
OUT = ROOT / "benchmarks" / "results" / "accuracy_bf16"


def overrides(dataset: str, model: str, amp) -> tuple[str, dict]:
    """(dataset name, config overrides) of one run."""
    if model == "sasrec":
        name = accuracy_mm.DATASETS[dataset]["name"] if dataset == "ml100k" else accuracy_seq.DATASETS[dataset]
        ov = json.loads(json.dumps(accuracy_seq.COMMON))
    else:
        ds = accuracy_mm.DATASETS[dataset]
        name, ov = ds["name"], json.loads(json.dumps(ds["overrides"]))
        mp = accuracy_mm.model_overrides(ds, model)
        if mp:
            ov["model_params"] = mp
        ov["threads"] = 1
    ov.setdefault("train", {}).update({"amp": amp, "progress": False, "patience": -1})
    return name, ov


def run_dir(runs: str, dataset: str, model: str, amp, seed: int) -> str:
    return os.path.join(runs, dataset, model, "bf16" if amp else "float32", f"seed{seed}")


def run_one(runs: str, dataset: str, model: str, amp, seed: int) -> dict:
    from graphrec.experiment import run
    out = run_dir(runs, dataset, model, amp, seed)
    res = os.path.join(out, "result.json")
    if os.path.exists(res):
        with open(res) as f:
            return json.load(f)
    if os.path.isdir(out):  # interrupted: start again (short runs)
        import shutil
        shutil.rmtree(out)
    name, ov = overrides(dataset, model, amp)
    t0 = time.time()
    r = run(model=model, dataset=name, overrides=ov, seed=seed, out=out, quiet=True,
            epochs=EPOCHS[dataset][model])
    key = SELECT[r["task"]] if model != "sasrec" else "ndcg@10"
    print(f"[{time.strftime('%H:%M:%S')}] {dataset} {model} {r.get('precision')} seed {seed}: test {key} "
          f"{r['test'][key]:.4f} (best epoch {r['best_epoch']}/{r['epochs_run']}, {time.time() - t0:.0f} s)", flush=True)
    return r


def _finished(runs: str) -> dict:
    out: dict = {}
    for dataset in EPOCHS:
        for model in MODELS:
            for amp in PRECISIONS:
                base = os.path.dirname(run_dir(runs, dataset, model, amp, 0))
                if not os.path.isdir(base):
                    continue
                for s in sorted(os.listdir(base)):
                    p = os.path.join(base, s, "result.json")
                    if os.path.exists(p):
                        with open(p) as f:
                            out.setdefault((dataset, model), {}).setdefault("bf16" if amp else "float32", []).append(
                                json.load(f))
    return out


def _ms(v: list[float]) -> tuple[float, float]:
    return statistics.mean(v), (statistics.stdev(v) if len(v) > 1 else 0.0)


def table(runs: str, extra_bf16: str | None = None) -> tuple[str, dict]:
    """Markdown and JSON of the finished runs. ``extra_bf16``: a second runs directory whose bf16
    runs (the same seeds and epochs, a later code state) are tabled against the float32 runs of
    ``runs`` as extra rows labelled "(later bf16 code)"."""
    res = _finished(runs)
    if extra_bf16:
        for (d, m), by in _finished(extra_bf16).items():
            if "bf16" in by and (d, m) in res and "float32" in res[(d, m)]:
                res[(d, m + " (later bf16 code)")] = {"float32": res[(d, m)]["float32"], "bf16": by["bf16"]}
    lines = ["# Mixed precision (bf16) against float32: accuracy parity", "",
             "Each model trained for the same epochs in float32 (`train.amp=false`) and in bf16 "
             "(`train.amp=bf16`: each model's marked regions run bfloat16 products, everything else float32; "
             "graphrec/nn/precision.py), 3 seeds each, 1 thread. Short runs: the question is whether bf16 "
             "changes what the same training reaches, not the converged accuracy (see accuracy_mm_*.md, "
             "accuracy_seq_*.md). Metric: test Recall@20 (pairwise, full ranking, epoch selected by valid "
             "Recall@20) or test NDCG@10 (SASRec, leave-one-out next-item protocol, selected by valid NDCG@10). "
             "Parity: |mean difference| < the larger seed standard deviation.", "",
             "| dataset | model | epochs | bf16 regions | float32 test | bf16 test | difference | seed std (max) | "
             "parity | float32 s/epoch | bf16 s/epoch |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    record = {}
    regions = {"lightgcn": "none (propagation + dot products only: bf16 run = float32 run)",
               "freedom": "feature projections (only with reg_weight > 0; default 0: none)",
               "sand-a": "content projections (all consumers of Z_m), SoloSim N x N blocks; CLUB's fitting steps "
                         "ran in float32 in these runs (its bf16 path landed after they started; "
                         "tests/test_bf16_losses.py checks it against float64)",
               "sasrec": "attention, feed-forward, item logits"}
    for (dataset, model), by in sorted(res.items()):
        if "float32" not in by or "bf16" not in by:
            continue
        key = "ndcg@10" if model.startswith("sasrec") else "recall@20"
        f = [r["test"][key] for r in by["float32"]]
        b = [r["test"][key] for r in by["bf16"]]
        (mf, sf), (mb, sb) = _ms(f), _ms(b)
        spread = max(sf, sb)
        ok = abs(mb - mf) <= spread if len(f) > 1 and len(b) > 1 else None
        tf = statistics.median(r["train_s_per_epoch"] for r in by["float32"])
        tb = statistics.median(r["train_s_per_epoch"] for r in by["bf16"])
        region = regions.get(model, "content projections, SoloSim N x N blocks and CLUB's 50 fitting steps per "
                             "batch (all of SAND's bf16 regions)")
        lines.append(f"| {dataset} | {model} | {by['float32'][0]['epochs_run']} | {region} | "
                     f"{mf:.4f} ± {sf:.4f} (n={len(f)}) | {mb:.4f} ± {sb:.4f} (n={len(b)}) | {mb - mf:+.4f} | "
                     f"{spread:.4f} | {'yes' if ok else ('no' if ok is False else '-')} | {tf:.2f} | {tb:.2f} |")
        record[f"{dataset}/{model}"] = {"metric": f"test {key}", "float32": f, "bf16": b,
                                        "float32_seeds": [r["seed"] for r in by["float32"]],
                                        "bf16_seeds": [r["seed"] for r in by["bf16"]],
                                        "precision_recorded": sorted({r.get("precision") for r in by["bf16"]}),
                                        "parity": ok, "epochs": by["float32"][0]["epochs_run"],
                                        "train_s_per_epoch": {"float32": tf, "bf16": tb}}
    any_r = next((rs[0] for by in res.values() for rs in by.values()), None)
    if any_r:
        lines += ["", f"Device: {any_r.get('device_name')} ({any_r.get('device')}, native bf16 products: "
                      f"{any_r.get('native_bf16')}), torch {any_r.get('torch')}, commit {any_r.get('git_commit')}. "
                      "s/epoch on a shared machine (other jobs running): indicative only; speed is measured in "
                      "bf16_speed.md."]
    return "\n".join(lines) + "\n", record


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=sorted(EPOCHS))
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "bf16"))
    ap.add_argument("--table", action="store_true", help="only write the table of the finished runs")
    ap.add_argument("--precisions", default="float32,bf16", help="which precisions to run (default both)")
    ap.add_argument("--no-write", action="store_true", help="run only; leave the committed table alone")
    ap.add_argument("--extra-bf16", help="runs directory of later bf16 runs to table against --runs' float32 runs")
    a = ap.parse_args()
    import torch
    torch.set_num_threads(1)
    accuracy_mm.register_scientific_text()
    if not a.table:
        if not a.dataset:
            ap.error("--dataset is required unless --table")
        for model in a.models.split(","):
            for seed in [int(s) for s in a.seeds.split(",")]:
                for amp in PRECISIONS:  # interleaved: both precisions see the same machine load
                    if ("bf16" if amp else "float32") in a.precisions.split(","):
                        run_one(a.runs, a.dataset, model, amp, seed)
        if a.no_write:
            return 0
    md, record = table(a.runs, a.extra_bf16)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{OUT}.json", "w") as f:
        json.dump(record, f, indent=2)
    with open(f"{OUT}.md", "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
