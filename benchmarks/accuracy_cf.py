"""Accuracy of pop / MF-BPR / LightGCN over several seeds (issue 4's acceptance table).

    python benchmarks/accuracy_cf.py --dataset ml-100k --seeds 1,2,3 --out benchmarks/results/accuracy_cf_ml-100k

Selection by valid recall@20 (patience from the config); test read once per run. Writes
<out>.json (every run's result) and <out>.md (mean +- std per model).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile

from graphrec.experiment import run

METRICS = ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]


def summarise(results: list[dict], title: str) -> str:
    models = list(dict.fromkeys(r["model"] for r in results))
    lines = [f"### {title}", "",
             "| model | seeds | " + " | ".join(f"valid {m}" for m in METRICS) + " | "
             + " | ".join(f"test {m}" for m in METRICS) + " | best epoch | s/epoch |",
             "|---|---|" + "---|" * (2 * len(METRICS) + 2)]
    for m in models:
        rs = [r for r in results if r["model"] == m]
        def cell(split, k):
            v = [r[split][k] for r in rs]
            sd = statistics.stdev(v) if len(v) > 1 else 0.0
            return f"{statistics.mean(v):.4f} ± {sd:.4f}"
        lines.append(f"| {m} | {','.join(str(r['seed']) for r in rs)} | "
                     + " | ".join(cell("valid", k) for k in METRICS) + " | "
                     + " | ".join(cell("test", k) for k in METRICS) + " | "
                     + f"{statistics.mean(r['best_epoch'] for r in rs):.0f} | "
                     + f"{statistics.mean(r['train_s_per_epoch'] for r in rs):.3f} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dataset", default="ml-100k")
    ap.add_argument("--models", default="pop,mf,lightgcn")
    ap.add_argument("--seeds", default="1,2,3")
    ap.add_argument("--out", required=True, help="output path without extension")
    ap.add_argument("--set", action="append", default=[], dest="sets")
    args = ap.parse_args()
    from graphrec.config import parse_set
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models.split(","):
            for seed in map(int, args.seeds.split(",")):
                ov = parse_set(args.sets)
                ov.setdefault("train", {})["progress"] = False
                r = run(model=model, dataset=args.dataset, seed=seed, overrides=ov,
                        out=os.path.join(tmp, f"{model}-{seed}"), quiet=True)
                r.pop("phases", None)
                results.append(r)
                print(f"{model} seed {seed}: valid R@20 {r['valid'].get('recall@20', 0):.4f} "
                      f"test R@20 {r['test']['recall@20']:.4f} N@20 {r['test']['ndcg@20']:.4f} "
                      f"(best epoch {r['best_epoch']}, {r['train_s_per_epoch']:.3f} s/epoch)", flush=True)
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    with open(args.out + ".json", "w") as f:
        json.dump(results, f, indent=2, default=str)
    dev = results[0].get("device_name", results[0]["device"])
    md = summarise(results, f"{args.dataset}: {', '.join(dict.fromkeys(r['model'] for r in results))} "
                            f"(device: {dev}, {results[0]['threads']} threads)")
    with open(args.out + ".md", "w") as f:
        f.write(md + "\n")
    print(md)


if __name__ == "__main__":
    main()
