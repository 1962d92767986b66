"""Sampled-subgraph training (``train.sampler=neighbor``, PyG's LinkNeighborLoader) against exact
training of LightGCN: accuracy at the same epochs on ml100k_mm and synthetic-clothing (3 seeds),
and the growth of the seconds per epoch with the interactions (synthetic-clothing at scales
0.25-4, `graphrec bench`). Needs torch_sparse or pyg-lib (the 'ext' extra).

    python benchmarks/sampled_training.py [--epochs 30] [--seeds 0,1,2] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

ML100K = "/work/shared/data/mmrec_format/ml100k_mm"
HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLED = {"sampler": "neighbor", "num_neighbors": [10, 10]}


def accuracy(dataset: str, seeds: list[int], epochs: int, runs: str) -> dict:
    from graphrec.experiment import read_result, run
    out: dict = {"exact": [], "sampled": []}
    for mode in out:
        for s in seeds:
            d = os.path.join(runs, dataset.replace(":", "_").replace("/", "_"), mode, f"seed{s}")
            if os.path.exists(os.path.join(d, "result.json")):
                out[mode].append(read_result(d))
                continue
            train = {"progress": False, "patience": -1, **(SAMPLED if mode == "sampled" else {})}
            out[mode].append(run(model="lightgcn", dataset=dataset, overrides={"threads": 1, "train": train},
                                 seed=s, epochs=epochs, out=d, quiet=True))
            print(dataset, mode, s, out[mode][-1]["test"]["recall@20"], flush=True)
    return out


def _ms(v: list[float]) -> str:
    return f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--runs", default=os.path.join(os.path.dirname(HERE), "runs", "sampled_training"))
    ap.add_argument("--scales", default="0.25,0.5,1,2,4")
    ap.add_argument("--datasets", default="ml100k_mm,synthetic-clothing")
    a = ap.parse_args()
    from graphrec.train.link_neighbor import available
    if not available():
        print("needs torch_sparse or pyg-lib (pip install 'graphrec[ext]')", file=sys.stderr)
        return 2
    seeds = [int(x) for x in a.seeds.split(",")]
    acc = {}
    for name, ds in (("ml100k_mm", f"mmrec:{ML100K}"), ("synthetic-clothing", "synthetic-clothing")):
        if name in a.datasets.split(","):
            acc[name] = accuracy(ds, seeds, a.epochs, a.runs)
    scaling = os.path.join(a.out, "sampled_scaling.json")
    from graphrec.cli import main as cli
    if not os.path.exists(scaling):
        rc = cli(["bench", "--models", "lightgcn", "--dataset", "synthetic-clothing", "--scale", a.scales,
                  "--epochs", "2", "--warmup", "1", "--threads", "1", "--set", "train.sampler=neighbor",
                  "--set", "train.num_neighbors=[10, 10]", "--label", "sampled (neighbor, [10, 10])",
                  "--json", scaling])
        if rc:
            return rc
    exact_path = os.path.join(a.out, "sampled_scaling_exact.json")
    if not os.path.exists(exact_path):
        rc = cli(["bench", "--models", "lightgcn", "--dataset", "synthetic-clothing", "--scale", a.scales,
                  "--epochs", "2", "--warmup", "1", "--threads", "1", "--label", "exact", "--json", exact_path])
        if rc:
            return rc
    recs = {lab: {r["scale"]: r for r in json.load(open(p))["records"]}
            for lab, p in (("sampled", scaling), ("exact", exact_path))}
    lines = ["## Sampled-subgraph training of LightGCN against exact training", "",
             f"`python benchmarks/sampled_training.py` ({time.strftime('%Y-%m-%d')}; AMD EPYC, 2 cores, "
             f"torch 2.13.0+cpu, torch_sparse 0.6.18). Sampled: `train.sampler=neighbor`, "
             f"`train.num_neighbors=[10, 10]` (PyG's LinkNeighborLoader); exact: the batch's whole 2-hop "
             f"neighbourhood. Same {a.epochs} epochs, no early stop, seeds {a.seeds}; test metrics of the "
             f"best-valid epoch.", "",
             "| data | training | test recall@20 | test ndcg@20 | s/epoch |", "|---|---|---|---|---|"]
    for name, res in acc.items():
        for mode, rs in res.items():
            lines.append(f"| {name} | {mode} | {_ms([r['test']['recall@20'] for r in rs])} | "
                         f"{_ms([r['test']['ndcg@20'] for r in rs])} | "
                         f"{statistics.median(r['train_s_per_epoch'] for r in rs):.2f} |")
    lines += ["", "Seconds per training epoch on synthetic-clothing by scale (`graphrec bench`, 1 thread, "
              "median of the epochs after a warm-up one):", "",
              "| scale | train pairs | exact s/epoch | sampled s/epoch | sampled growth per x2 |", "|---|---|---|---|---|"]
    prev = None
    for sc in sorted(recs["sampled"]):
        e, s = recs["exact"].get(sc), recs["sampled"][sc]
        growth = f"{s['train_s_per_epoch'] / prev:.2f}x" if prev else "-"
        lines.append(f"| {sc} | {s.get('train_pairs') or '-'} | {e['train_s_per_epoch']:.2f} | "
                     f"{s['train_s_per_epoch']:.2f} | {growth} |" if e else
                     f"| {sc} | {s.get('train_pairs') or '-'} | - | {s['train_s_per_epoch']:.2f} | {growth} |")
        prev = s["train_s_per_epoch"]
    sc = sorted(recs["sampled"])
    lines += ["", f"Over scales {sc[0]}-{sc[-1]} ({sc[-1] / sc[0]:.0f}x the interactions) sampled epochs grow "
              f"{recs['sampled'][sc[-1]]['train_s_per_epoch'] / recs['sampled'][sc[0]]['train_s_per_epoch']:.1f}x "
              f"and exact ones "
              f"{recs['exact'][sc[-1]]['train_s_per_epoch'] / recs['exact'][sc[0]]['train_s_per_epoch']:.1f}x."]
    with open(os.path.join(a.out, "sampled_training.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    with open(os.path.join(a.out, "sampled_training.json"), "w") as f:
        json.dump({"accuracy": {n: {m: [{"seed": r["seed"], "test": r["test"], "train_s_per_epoch":
                                        r["train_s_per_epoch"]} for r in rs] for m, rs in res.items()}
                                for n, res in acc.items()}}, f, indent=1)
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
