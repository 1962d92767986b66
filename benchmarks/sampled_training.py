"""Sampled-subgraph training (``train.sampler=neighbor``, PyG's LinkNeighborLoader) against exact
training of LightGCN: accuracy at the same epochs on ml100k_mm and synthetic-clothing (3 seeds),
tabled with the growth of the CPU seconds per epoch with the interactions that
`benchmarks/scale_out.py` and `benchmarks/subgraph_sizes.py` measure (read from ``--out``). Needs
torch_sparse or pyg-lib (the 'ext' extra).

    python benchmarks/sampled_training.py [--epochs 30] [--seeds 0,1,2] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys

ML100K = "/work/shared/data/mmrec_format/ml100k_mm"
HERE = os.path.dirname(os.path.abspath(__file__))
SAMPLED = {"sampler": "neighbor", "num_neighbors": [10, 10]}


def accuracy(dataset: str, seeds: list[int], epochs: int, runs: str, eval_every: int = 1) -> dict:
    from graphrec.experiment import read_result, run
    out: dict = {"exact": [], "sampled": []}
    for mode in out:
        for s in seeds:
            d = os.path.join(runs, dataset.replace(":", "_").replace("/", "_"), mode, f"seed{s}")
            if os.path.exists(os.path.join(d, "result.json")):
                out[mode].append(read_result(d))
                continue
            train = {"progress": False, "patience": -1, "eval_every": eval_every,
                     **(SAMPLED if mode == "sampled" else {})}
            out[mode].append(run(model="lightgcn", dataset=dataset, overrides={"threads": 1, "train": train},
                                 seed=s, epochs=epochs, out=d, quiet=True))
            print(dataset, mode, s, out[mode][-1]["test"]["recall@20"], flush=True)
    return out


def _ms(v: list[float]) -> str:
    return f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"


HEADER = ("`train.sampler=neighbor`: PyG's LinkNeighborLoader samples a subgraph around each batch; the step "
          "reads the embedding table with sparse gradients and Adam updates only the rows read (lazy Adam, "
          "`graphrec/train/row_sparse.py`). Exact: each step reads the batch's whole 2-hop neighbourhood and Adam "
          "updates the whole table. AMD EPYC, 2 cores shared with other jobs (load 2-13), 1 thread per run, torch "
          "2.13.0+cpu, torch_sparse 0.6.18 built from source, 2026-12-05.")
ACCURACY_NOTE = ("With lazy row updates, sampled training matches exact training on ml100k_mm (-0.1% Recall@20, inside "
                 "the seeds' spread) and is ahead on synthetic-clothing after 10 epochs (+2.9%; neither converged: rows "
                 "a step does not read keep their Adam moments instead of decaying). Before the lazy updates, with Adam "
                 "stepping every row at every step, it cost 1.9% of ml100k_mm's Recall@20.")
COST_SOURCE = ("`python benchmarks/scale_out.py` (its growth runs: `graphrec bench --models lightgcn --dataset "
               "synthetic-clothing --scale 0.25,1,4 --threads 1 --set train.max_steps_per_epoch=40`, sampled with "
               "`--set train.sampler=neighbor --set 'train.num_neighbors=[5, 5]' --set train.batch_size=512`, exact "
               "with the default 2,048; `GRAPHREC_BENCH_EVAL_USERS=20000`). CPU seconds (the load inflates them less "
               "than wall seconds): 40 timed steps per epoch x the epoch's batches. Subgraph sizes: "
               "`benchmarks/subgraph_sizes.py` (median of 10 batches).")
COST_NOTE = ("Exact epochs grow 13-16x per 4x the interactions (quadratic: 4x the steps, each over a 4x larger "
             "neighbourhood and table). Sampled epochs grow 6.4x (0.25 to 1) and 5.8x (1 to 4): the target of at most "
             "4.4x per 4x is not met. Why: a step's cost follows its subgraph, and at these sizes the subgraph still "
             "grows (its 3 x 512 seeds with 5 + 25 neighbours each reach 65% of the nodes at scale 0.25, 29% at 1 and "
             "9% at 4: 1.8x then 1.3x more nodes per batch), and the table's rows, gathered at random, fall out of the "
             "32 MB cache as the table grows (a step at scale 4 costs 1.46x one at scale 1 for 1.3x the nodes). Once "
             "the subgraph is a small part of the graph the step cost stops growing with it, and the epoch grows with "
             "the steps alone (linear). Sampled epochs are slower than exact ones up to scale 4 on this CPU (PyG's "
             "sampler alone is 16-22 ms of a 44-70 ms step); extrapolating both growth rates, they cross near scale "
             "11. The cost runs use [5, 5] neighbours and 512 pairs per batch (a subgraph that becomes a small part of "
             "the graph sooner than [10, 10] around 2,048 pairs); their accuracy was not measured.")


def accuracy_rows(acc: dict) -> list[str]:
    return [f"| {name} | {mode} | {len(rs)} | {_ms([r['test']['recall@20'] for r in rs])} | "
            f"{_ms([r['test']['ndcg@20'] for r in rs])} |"
            for name, res in acc.items() for mode in ("exact", "sampled") for rs in [res.get(mode)] if rs]


def _records(path: str) -> dict:
    return {r["scale"]: r for r in json.load(open(path))["records"]}


def cost_rows(results: str) -> list[str]:
    """One row per scale from `benchmarks/scale_out.py`'s growth runs and the subgraph sizes of
    `benchmarks/subgraph_sizes.py` for the same sampled batches."""
    sampled = _records(os.path.join(results, "scale_sampled_growth.json"))
    exact = _records(os.path.join(results, "scale_exact_growth.json"))
    batch = next(iter(sampled.values()))["batch_size"]
    sub = {r["scale"]: r for r in json.load(open(os.path.join(results, "scale_sampled_subgraphs.json")))["records"]
           if r["batch_size"] == batch}

    def cost(r, prev):  # CPU ms/step, CPU s/epoch, growth against the previous scale
        s = r["train_cpu_s_per_epoch"]
        return [f"{1000 * s / r['full_steps_per_epoch']:.0f}", f"{s:.1f}", f"{s / prev:.1f}x" if prev else "-"]

    rows, prev = [], {}
    for sc in sorted(sampled):
        r, x = sampled[sc], exact.get(sc)
        cells = [f"{sc:g}", f"{r['n_train']:,}", f"{r['n_users'] + r['n_items']:,}",
                 f"{sub[sc]['sub_nodes']:,.0f} / {sub[sc]['sub_edges']:,.0f}", *cost(r, prev.get("s"))]
        cells += cost(x, prev.get("x")) if x else ["-"] * 3
        rows.append("| " + " | ".join(cells) + " |")
        prev = {"s": r["train_cpu_s_per_epoch"], "x": x["train_cpu_s_per_epoch"] if x else None}
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--clothing-epochs", type=int, default=10, help="synthetic-clothing: epochs (evaluated every 5)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--runs", default=os.path.join(os.path.dirname(HERE), "runs", "sampled_training"))
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
            clothing = name == "synthetic-clothing"
            acc[name] = accuracy(ds, seeds, a.clothing_epochs if clothing else a.epochs, a.runs, 5 if clothing else 1)
    with open(os.path.join(a.out, "sampled_training.json"), "w") as f:
        json.dump({"accuracy": {name: {m: [{k: r[k] for k in ("seed", "test", "train_s_per_epoch")} for r in rs]
                                       for m, rs in res.items()} for name, res in acc.items()}}, f, indent=1)
    lines = ["## Sampled-subgraph training of LightGCN against exact training", "", HEADER, "",
             "### Accuracy at the same epochs", "",
             "`python benchmarks/sampled_training.py --datasets ml100k_mm,synthetic-clothing` ([10, 10] neighbours, "
             "2,048 pairs per batch, no early stop; test metrics of the best-valid epoch; ml100k_mm 30 epochs "
             "evaluated every epoch, synthetic-clothing 10 epochs evaluated every 5).", "",
             "| data | training | seeds | test recall@20 | test ndcg@20 |", "|---|---|---|---|---|",
             *accuracy_rows(acc), "", ACCURACY_NOTE, "", "### Cost per epoch by size", "", COST_SOURCE, "",
             "| scale | train pairs | graph nodes | sampled: subgraph nodes / edges per batch | sampled CPU ms/step | "
             "sampled CPU s/epoch | growth per 4x | exact CPU ms/step | exact CPU s/epoch | growth per 4x |",
             "|---|---|---|---|---|---|---|---|---|---|", *cost_rows(a.out), "", COST_NOTE]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "sampled_training.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
