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
import math
import os
import shutil
import statistics
import sys

from scale_out import GROWTH_BATCHES, growth_path, sampled  # benchmarks/ is the script's folder, first on sys.path

ML100K = "/work/shared/data/mmrec_format/ml100k_mm"
HERE = os.path.dirname(os.path.abspath(__file__))
#: training settings compared: "sampled" is the accuracy comparison's; "small batches" the growth
#: runs' linear setting (`scale_out.GROWTH_BATCHES`), run on ml100k_mm for LightGCN (``SMALL_BATCHES``)
MODES = {"exact": {}, "sampled": {"sampler": "neighbor", "num_neighbors": [10, 10]},
         "exact, 64 pairs": {"batch_size": 64},
         "sampled, [5, 5] around 64 pairs": {"sampler": "neighbor", "num_neighbors": [5, 5], "batch_size": 64}}
SLUGS = {"exact, 64 pairs": "exact-b64", "sampled, [5, 5] around 64 pairs": "sampled-5x5-b64"}
SMALL_BATCHES = ("lightgcn", "ml100k_mm")


def accuracy(dataset: str, seeds: list[int], epochs: int, runs: str, eval_every: int = 1,
             model: str = "lightgcn", modes: tuple = ("exact", "sampled")) -> dict:
    from graphrec.experiment import read_result, run
    out: dict = {m: [] for m in modes}
    for mode in out:
        for s in seeds:
            d = os.path.join(runs, dataset.replace(":", "_").replace("/", "_"), model, SLUGS.get(mode, mode), f"seed{s}")
            if os.path.exists(os.path.join(d, "result.json")):
                out[mode].append(read_result(d))
                continue
            if os.path.isdir(d):  # an interrupted run: start it again
                shutil.rmtree(d)
            train = {"progress": False, "patience": -1, "eval_every": eval_every, **MODES[mode]}
            out[mode].append(run(model=model, dataset=dataset, overrides={"threads": 1, "train": train},
                                 seed=s, epochs=epochs, out=d, quiet=True))
            print(model, dataset, mode, s, out[mode][-1]["test"]["recall@20"], flush=True)
    return out


def _ms(v: list[float]) -> str:
    return f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"


HEADER = ("`train.sampler=neighbor`: PyG's LinkNeighborLoader samples a subgraph around each batch; the step "
          "reads the embedding table with sparse gradients and Adam updates only the rows read (lazy Adam, "
          "`graphrec/train/row_sparse.py`). Exact: each step reads the batch's whole 2-hop neighbourhood and Adam "
          "updates the whole table. AMD EPYC, 2 cores shared with other jobs (load 2-13), 1 thread per run, torch "
          "2.13.0+cpu, torch_sparse 0.6.18 built from source, 2026-12-05.")
def accuracy_note(acc: dict) -> str:
    """Sampled against exact test Recall@20 per model and dataset (relative change of the means), and
    each small-batch setting against exact training at the same batch, from the table's runs."""
    def r20(rs):
        return statistics.mean(r["test"]["recall@20"] for r in rs)

    pairs = [("sampled", "exact"), ("sampled, [5, 5] around 64 pairs", "exact, 64 pairs")]
    found = [f"{model} on {name}, {mode} against {base}: {100 * (r20(res[mode]) / r20(res[base]) - 1):+.1f}%"
             for model, by_data in acc.items() for name, res in by_data.items()
             for mode, base in pairs if res.get(mode) and res.get(base)]
    return ("Test Recall@20, sampled against exact (relative change of the means): " + "; ".join(found) + ". "
            "Rows a sampled step does not read keep their Adam moments instead of decaying (lazy Adam); before "
            "the lazy updates, with Adam stepping every row at every step, sampled LightGCN lost 1.9% of "
            "ml100k_mm's Recall@20. Neither kind of run has converged on synthetic-clothing after 10 epochs. "
            "FREEDOM's exact rows prune 80% of the user-item edges each epoch (its default `dropout`), its sampled "
            "rows do not. At 64 pairs an epoch takes 32x the steps of one at 2,048, which is why both 64-pair "
            "rows are far above the 2,048-pair ones after the same 30 epochs.")


COST_SOURCE = ("`python benchmarks/scale_out.py --only growth` (`graphrec bench --models lightgcn --dataset "
               "synthetic-clothing --scale ... --threads 1`, each sampled batch size with `--set train.sampler=neighbor "
               "--set 'train.num_neighbors=[5, 5]' --set train.batch_size=B`, exact with the default 2,048; "
               "`GRAPHREC_BENCH_EVAL_USERS=20000`). CPU seconds: the timed steps of an epoch (each record's "
               "`train.max_steps_per_epoch`) x the epoch's batches. Subgraph sizes: `benchmarks/subgraph_sizes.py` "
               "(median of 10 batches; share = subgraph nodes / graph nodes).")


def cost_note(c: dict) -> str:
    """What the cost table says, its figures read from the same records (`load_costs`)."""
    exact, sub = c["exact"], c["sub"]
    small, large = min(c["sampled"]), max(c["sampled"])
    rs, big = c["sampled"][small], c["sampled"][large]
    ms = step_ms

    def share(g):
        return g["sub_nodes"] / (g["n_users"] + g["n_items"])

    def quarters(recs):  # growth over each 4x of the scales that have it
        sc = sorted(recs)
        return [(a, a * 4) for a in sc if a * 4 in recs]

    xs = sorted(exact)
    ex = [per4(exact[a], exact[b]) for a, b in zip(xs, xs[1:])]
    lo, hi = min(rs), max(rs)
    ends = [sub.get((small, x)) for x in (lo, hi)]
    text = (f"Exact epochs grow {min(ex):.0f}-{max(ex):.0f}x per 4x the interactions (quadratic: 4x the steps, each over "
            f"a 4x larger neighbourhood and table). Sampled at {small} pairs per step the epoch grows "
            + ", ".join(f"{per4(rs[a], rs[b]):.2f}x from scale {a:g} to {b:g}" for a, b in quarters(rs))
            + f"; the least-squares slope over all {len(rs)} scales is {slope(rs):.2f} (log-log), "
            f"{4 ** slope(rs):.2f}x per 4x: linear within the target of 4.4x. A step costs "
            f"{min(map(ms, rs.values())):.1f}-{max(map(ms, rs.values())):.1f} CPU ms at every scale")
    if all(ends):
        text += (f", its subgraph {ends[0]['sub_nodes']:,.0f} nodes at scale {lo:g} ({share(ends[0]):.0%} of the graph) "
                 f"and {ends[1]['sub_nodes']:,.0f} at {hi:g} ({share(ends[1]):.0%})")
    text += ". What growth is left comes from random reads into a table and a graph that outgrow the CPU's caches"
    if all(ends) and all("sample_cpu_s" in g for g in ends):
        text += (f": PyG's sampler alone takes {1000 * ends[0]['sample_cpu_s']:.1f} ms per batch at scale {lo:g} and "
                 f"{1000 * ends[1]['sample_cpu_s']:.1f} ms at {hi:g} for about the same "
                 f"{ends[1]['sub_edges']:,.0f} sampled edges")
    text += (f". At {large} pairs per step (the 10x runs' batch) the epoch grows "
             + ", ".join(f"{per4(big[a], big[b]):.1f}x from {a:g} to {b:g}" for a, b in quarters(big))
             + ": its subgraph covers "
             + ", ".join(f"{share(g):.0%}" for x in sorted(big) for g in [sub.get((large, x))] if g)
             + f" of the nodes at scales {', '.join(f'{x:g}' for x in sorted(big))}, so its steps are cheap on the small "
             "graphs and grow until the subgraph is a small part of the graph")
    ten = [r for r in c["ten"] if sampled(r)]
    if ten:
        text += (f"; a step costs {ms(big[max(big)]):.0f} CPU ms at scale {max(big):g} and {ms(ten[0]):.0f} at 10x "
                 f"(`scale10.md`; that run shared the machine)")
    text += ". "
    runs = "; ".join(f"{name}: {', '.join(dict.fromkeys(r.get('label') or 'unlabelled' for r in recs.values()))}"
                     for name, recs in (("exact", exact), (f"{small} pairs", rs), (f"{large} pairs", big)))
    return (text + crossing(c) + f" The accuracy of the {small}-pair setting is measured on ml100k_mm above "
            f"(LightGCN). Runs: {runs}.")


def crossing(c: dict) -> str:
    """Sampled against exact CPU seconds per epoch at the largest growth scale and at 10x."""
    exact = c["exact"]
    top = max(exact)
    parts = [f"{b} pairs {recs[top]['train_cpu_s_per_epoch']:.0f}" for b, recs in c["sampled"].items() if top in recs]
    out = (f"At scale {top:g} an epoch costs {exact[top]['train_cpu_s_per_epoch']:.0f} CPU s exact and "
           f"{', '.join(parts)} sampled")
    ex10 = [r for r in c["ten"] if not sampled(r)]
    sa10 = [r for r in c["ten"] if sampled(r)]
    if ex10 and sa10:
        out += (f"; at 10x, {ex10[0]['train_cpu_s_per_epoch']:.0f} exact and {sa10[0]['train_cpu_s_per_epoch']:.0f} "
                f"sampled ({sa10[0]['batch_size']} pairs)")
    return out + "."


def accuracy_rows(acc: dict) -> list[str]:
    """``acc``: {model: {dataset: {mode: [run records]}}}."""
    return [f"| {model} | {name} | {mode} | {len(rs)} | {_ms([r['test']['recall@20'] for r in rs])} | "
            f"{_ms([r['test']['ndcg@20'] for r in rs])} |"
            for model, by_data in acc.items() for name, res in by_data.items()
            for mode in MODES for rs in [res.get(mode)] if rs]


def _records(path: str) -> dict:
    return {r["scale"]: r for r in json.load(open(path))["records"]}


def load_costs(results: str) -> dict:
    """The cost runs, read once: ``exact`` and ``sampled`` ({batch: ...}) growth records by scale,
    ``sub`` subgraph sizes by (batch, scale), ``ten`` LightGCN's 10x records (exact and sampled)."""
    ten = [r for f in ("scale10_exact.json", "scale10_sampled.json") if os.path.exists(os.path.join(results, f))
           for r in json.load(open(os.path.join(results, f)))["records"] if r["model"] == "lightgcn" and not r.get("error")]
    return {"exact": _records(os.path.join(results, "scale_exact_growth.json")),
            "sampled": {b: _records(growth_path(results, b)) for b in GROWTH_BATCHES
                        if os.path.exists(growth_path(results, b))},
            "sub": {(r["batch_size"], r["scale"]): r
                    for r in json.load(open(os.path.join(results, "scale_sampled_subgraphs.json")))["records"]},
            "ten": ten}


def step_ms(r: dict) -> float:
    """CPU milliseconds per training step of a bench record."""
    return 1000 * r["train_cpu_s_per_epoch"] / r["full_steps_per_epoch"]


def per4(a: dict, b: dict) -> float:
    """Growth of the CPU seconds per epoch from record ``a`` to ``b``, per 4x the training pairs."""
    f = b["train_cpu_s_per_epoch"] / a["train_cpu_s_per_epoch"]
    return f ** (math.log(4) / math.log(b["n_train"] / a["n_train"]))


def slope(recs: dict) -> float:
    """Least-squares slope of log CPU s/epoch on log training pairs (1: linear growth)."""
    xs = [math.log(r["n_train"]) for r in recs.values()]
    ys = [math.log(r["train_cpu_s_per_epoch"]) for r in recs.values()]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)


def cost_table(c: dict) -> list[str]:
    """One row per scale from `benchmarks/scale_out.py`'s growth runs (exact, and sampled at each of
    its batch sizes) and the subgraph sizes of `benchmarks/subgraph_sizes.py` for the same batches
    (`load_costs`); growth against the series' previous scale, as a factor per 4x the training pairs."""
    series, sub = {"exact": c["exact"], **c["sampled"]}, c["sub"]
    head = "| scale | train pairs | graph nodes |"
    for name in series:
        head += (" exact: CPU ms/step | CPU s/epoch | growth per 4x |" if name == "exact" else
                 f" {name} pairs: subgraph nodes (share) | CPU ms/step | CPU s/epoch | growth per 4x |")
    rows = [head, "|" + "---|" * (head.count("|") - 1)]
    scales = sorted({sc for recs in series.values() for sc in recs})
    for sc in scales:
        any_r = next(recs[sc] for recs in series.values() if sc in recs)
        nodes = any_r["n_users"] + any_r["n_items"]
        cells = [f"{sc:g}", f"{any_r['n_train']:,}", f"{nodes:,}"]
        for name, recs in series.items():
            if name != "exact":
                g = sub.get((name, sc))
                cells.append(f"{g['sub_nodes']:,.0f} ({g['sub_nodes'] / nodes:.0%})" if g else "-")
            r = recs.get(sc)
            prev = [x for x in sorted(recs) if x < sc]
            if r is None:
                cells += ["-"] * 3
                continue
            cells += [f"{step_ms(r):.1f}",
                      f"{r['train_cpu_s_per_epoch']:.1f}", f"{per4(recs[prev[-1]], r):.2f}x" if prev else "-"]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--clothing-epochs", type=int, default=10, help="synthetic-clothing: epochs (evaluated every 5)")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--runs", default=os.path.join(os.path.dirname(HERE), "runs", "sampled_training"))
    ap.add_argument("--datasets", default="ml100k_mm,synthetic-clothing")
    ap.add_argument("--models", default="lightgcn,freedom")
    a = ap.parse_args()
    from graphrec.train.link_neighbor import available
    if not available():
        print("needs torch_sparse or pyg-lib (pip install 'graphrec[ext]')", file=sys.stderr)
        return 2
    seeds = [int(x) for x in a.seeds.split(",")]
    path = os.path.join(a.out, "sampled_training.json")
    acc: dict = json.load(open(path))["accuracy"] if os.path.exists(path) else {}  # rows of models not run again
    if "ml100k_mm" in acc or "synthetic-clothing" in acc:  # the layout before FREEDOM's rows: LightGCN's only
        acc = {"lightgcn": acc}
    for model in a.models.split(","):
        for name, ds in (("ml100k_mm", f"mmrec:{ML100K}"), ("synthetic-clothing", "synthetic-clothing")):
            if name in a.datasets.split(","):
                clothing = name == "synthetic-clothing"
                modes = tuple(MODES) if (model, name) == SMALL_BATCHES else ("exact", "sampled")
                acc.setdefault(model, {})[name] = accuracy(ds, seeds, a.clothing_epochs if clothing else a.epochs,
                                                           a.runs, 5 if clothing else 1, model, modes)
    with open(path, "w") as f:
        json.dump({"accuracy": {model: {name: {m: [{k: r[k] for k in ("seed", "test", "train_s_per_epoch")} for r in rs]
                                               for m, rs in res.items()} for name, res in by_data.items()}
                                for model, by_data in acc.items()}}, f, indent=1)
    costs = load_costs(a.out)
    lines = ["## Sampled-subgraph training against exact training", "", HEADER, "",
             "### Accuracy at the same epochs", "",
             "`python benchmarks/sampled_training.py --datasets ml100k_mm,synthetic-clothing` (sampled: [10, 10] neighbours, "
             "2,048 pairs per batch; LightGCN on ml100k_mm also with the growth runs' [5, 5] around 64 pairs; each "
             "model's defaults otherwise, FREEDOM's pruning skipped when sampled; no early stop; test metrics of the "
             "best-valid epoch; ml100k_mm 30 epochs evaluated every epoch, synthetic-clothing 10 epochs evaluated "
             "every 5).", "",
             "| model | data | training | seeds | test recall@20 | test ndcg@20 |", "|---|---|---|---|---|---|",
             *accuracy_rows(acc), "", accuracy_note(acc), "", "### Cost per epoch by size", "", COST_SOURCE, "",
             *cost_table(costs), "", cost_note(costs)]
    text = "\n".join(lines) + "\n"
    with open(os.path.join(a.out, "sampled_training.md"), "w") as f:
        f.write(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
