"""Next-item accuracy on one leave-one-out split: sequence models against popularity and pairwise
models, all judged by the same next-item protocol (`eval.protocol=next_item`: full ranking of every
item after each user's history, history items masked), epoch selected by valid NDCG@10.

    python benchmarks/accuracy_seq.py --models pop,mf,lightgcn,freedom,sasrec --seeds 0,1,2

Writes benchmarks/results/accuracy_seq_<dataset>.{json,md}; run directories stay under --runs and
a finished run is re-read, not re-run.
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
DATA = ROOT.parent / "shared" / "data"

# Amazon Scientific with its item text encoded by MiniLM (benchmarks/accuracy_mm.py registers it), so
# that text-using pairwise models (FREEDOM, SAND-a) join the table; the others ignore the features
DATASETS = {"scientific": "scientific-text"}
MODEL_OVERRIDES = {"freedom": {"modalities": ["text"]}, "vbpr": {"modalities": ["text"]},
                   "sand-a": {"modalities": ["text", "id"]}}
METRICS = ["ndcg@10", "recall@10", "ndcg@20", "recall@20", "mrr@10"]
# one protocol for every model: the next-item evaluator, its cut-offs and selection metric
COMMON = {"data": {"split": "loo", "repeated_pairs": "warn"},
          "eval": {"protocol": "next_item", "ks": [10, 20, 50], "metrics": ["recall", "ndcg", "mrr", "hit"]},
          "train": {"valid_metric": "ndcg@10", "progress": False}, "threads": 1}


def run_one(dataset: str, model: str, seed: int, runs: str) -> dict:
    from graphrec.experiment import run
    out = os.path.join(runs, dataset, model, f"seed{seed}")
    if os.path.exists(os.path.join(out, "result.json")):
        with open(os.path.join(out, "result.json")) as f:
            return json.load(f)
    t0 = time.time()
    ov = json.loads(json.dumps(COMMON))
    if model in MODEL_OVERRIDES:
        ov["model_params"] = dict(MODEL_OVERRIDES[model])
    r = run(model=model, dataset=DATASETS[dataset], overrides=ov, seed=seed, out=out, quiet=True)
    print(f"{model} seed {seed}: test ndcg@10 {r['test']['ndcg@10']:.4f} (best epoch {r['best_epoch']}, "
          f"{time.time() - t0:.0f} s)", flush=True)
    return r


def table(dataset: str, results: dict[str, list[dict]]) -> str:
    lines = [f"# Next-item accuracy on {dataset} (leave-one-out)", "",
             "Every model judged by the next-item protocol: full ranking of all items after each user's "
             "history (train items for valid, train + valid for test), history items masked, epoch selected "
             "by valid NDCG@10; test read once. Pairwise models score from their user vectors. Mean ± std "
             "over seeds (popularity has no seed).", "",
             "| model | task | seeds | " + " | ".join(f"test {m}" for m in METRICS) + " | best epoch | s/epoch |",
             "|---|---|---|" + "---|" * len(METRICS) + "---|---|"]
    for model, rs in results.items():
        cells = []
        for m in METRICS:
            v = [r["test"][m] for r in rs]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            cells.append(f"{statistics.mean(v):.4f} ± {sd:.4f}")
        lines.append(f"| {model} | {rs[0]['task']} | {len(rs)} | " + " | ".join(cells) +
                     f" | {statistics.mean(r['best_epoch'] for r in rs):.0f} | "
                     f"{statistics.mean(r['train_s_per_epoch'] for r in rs):.2f} |")
    mean = {m: statistics.mean(r["test"]["ndcg@10"] for r in rs) for m, rs in results.items()}
    seq = [m for m, rs in results.items() if rs[0]["task"] == "next_item"]
    pair = [m for m, rs in results.items() if rs[0]["task"] != "next_item" and m != "pop"]
    if seq and pair:
        s, p = max(seq, key=mean.get), max(pair, key=mean.get)
        lines += ["", f"Test NDCG@10: {s} {mean[s]:.4f} against the best pairwise model, {p}, {mean[p]:.4f} "
                      f"({mean[s] / mean[p]:.2f}x)" + (f", and popularity {mean['pop']:.4f}" if "pop" in mean else "")
                  + ". A history-aware model ranks the next item from the order of the latest items, which a "
                    "user vector learnt from the whole training history cannot express."]
    r0 = next(iter(results.values()))[0]
    lines += ["", f"Split {r0['split_method']} {r0['split']} (hash {r0['split_hash']}); device {r0['device_name']} "
                  f"({r0['threads']} threads), torch {r0['torch']}, commit {r0.get('git_commit', '?')}, "
                  f"{time.strftime('%Y-%m-%d', time.localtime(os.path.getmtime(os.path.join(r0['run_dir'], 'result.json'))))}."]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="scientific", choices=sorted(DATASETS))
    ap.add_argument("--models", default="pop,mf,lightgcn,freedom,sasrec")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "accuracy_seq"))
    args = ap.parse_args()
    if not (DATA / "amazon_scientific_seq").exists():
        print(f"skipped: {DATA / 'amazon_scientific_seq'} is absent")
        return 0
    from accuracy_mm import register_scientific_text
    register_scientific_text()
    seeds = [int(s) for s in args.seeds.split(",")]
    results = {m: [run_one(args.dataset, m, s, args.runs) for s in (seeds[:1] if m == "pop" else seeds)]
               for m in args.models.split(",")}
    out = ROOT / "benchmarks" / "results" / f"accuracy_seq_{args.dataset}"
    with open(f"{out}.json", "w") as f:
        json.dump({m: [{k: r[k] for k in ("seed", "task", "best_epoch", "epochs_run", "valid", "test",
                                          "train_s_per_epoch", "split_hash")} for r in rs]
                   for m, rs in results.items()}, f, indent=1)
    md = table(args.dataset, results)
    with open(f"{out}.md", "w") as f:
        f.write(md)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
