"""MCPT (Liu et al., ICMR 2022): pre-train, export, fine-tune LightGCN + MixGCF from the exported
vectors, against the paper's Random and CLIP-average (content-average) initialisers and the loss
ablation (w/o CIMA: λ = 0, w/o BCE: λ = 1); mean ± std over seeds, test read once per run at the
epoch selected by valid Recall@20.

    python benchmarks/accuracy_mcpt.py --dataset ml100k --seeds 0,1,2
    python benchmarks/accuracy_mcpt.py --dataset scientific --seeds 0,1,2
    python benchmarks/accuracy_mcpt.py --cost            # pre-training cost at Clothing scale

Writes benchmarks/results/accuracy_mcpt_<dataset>.{json,md} and mcpt_cost.{json,md}. Every run
directory stays under --runs; a finished run is re-read, not re-run.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
DATA = ROOT.parent / "shared" / "data"

# ml100k_mm: MiniLM plot text + EfficientNet posters, its own split. Scientific: MiniLM item text
# only, graphrec's random 8:1:1 split (as accuracy_mm.py): no image, so no CIMA.
DATASETS = {
    # ml100k's co-interaction graphs are nearly complete without pruning (834,574 of 888,306 user
    # pairs, 1.71 M of 2.83 M item pairs: every user is linked to almost every other); per-row top-50
    # by co-count, symmetrised (graph_topk, an explicit deviation), keeps the informative links at a
    # tenth of the propagation cost
    "ml100k": {"name": f"mmrec:{DATA / 'mmrec_format' / 'ml100k_mm'}", "overrides": {},
               "mcpt": {"graph_topk": 50}, "pre_epochs": 20, "ft_epochs": 60,
               # (variant, export_scale) in the order they run: at the raw scale of the fused vectors
               # (norms ~3-7 against Xavier's ~0.3) MixGCF's fine-tuning barely moves them (the
               # planted-structure check: flat valid Recall@20 over 20 epochs), so every variant is
               # compared at Xavier's scale and the raw export comes last
               "jobs": [("MCPT", "match_xavier"), ("content-average (CLIP baseline)", "match_xavier"),
                        ("MCPT w/o CIMA (λ=0)", "match_xavier"), ("MCPT w/o BCE (λ=1)", "match_xavier"),
                        ("MCPT", "none")]},
    "scientific": {"name": "scientific-text",
                   "overrides": {"data": {"split": "random", "ratios": [0.8, 0.1, 0.1], "repeated_pairs": "warn"}},
                   "mcpt": {"item_modalities": ["text", "graph"]}},
}
# pre-training variants: (label, model_params over the dataset's, datasets it applies to)
PRETRAIN = [
    ("MCPT", {}, ("ml100k", "scientific")),
    ("content-average (CLIP baseline)", {"export": "content_average"}, ("ml100k", "scientific")),
    ("MCPT w/o CIMA (λ=0)", {"use_cima": False}, ("ml100k",)),
    ("MCPT w/o BCE (λ=1)", {"use_bce": False}, ("ml100k",)),
]
# pre-training stage: Adam 1e-3, batch 2048, λ = 0.2 (the paper's "in most cases"), one negative per
# pair; zero-shot valid Recall@20 every 2 epochs selects the epoch (patience 3: stop after 8 epochs without gain)
PRE_TRAIN = {"epochs": 40, "eval_every": 2, "patience": 3, "lr": 0.001, "batch_size": 2048, "progress": False}
# fine-tuning: graphrec's mixgcf defaults = MixGCF's LightGCN recipe (3 hops, M = 64, K = 1, L2 1e-4,
# lr 1e-3, batch 2048, eval every 5, patience 10); epochs capped at 400 (the paper: 1000)
FT_TRAIN = {"epochs": 400, "progress": False}
EVAL = {"ks": [10, 20, 40]}
METRICS = ["recall@20", "ndcg@20", "recall@40"]


def slug(label: str) -> str:
    keep = "".join(c if c.isalnum() else "_" for c in label.lower())
    return "_".join(p for p in keep.split("_") if p)


#: --finished-only: tabulate finished runs, train nothing (the seeds column says how many)
FINISHED_ONLY = False


class NotFinished(Exception):
    pass


def _finished(out: str):
    """A finished run's result; an interrupted one continues from its last checkpoint (a resumed
    run reproduces the uninterrupted one, tests/test_train_run.py); None: start it."""
    path = os.path.join(out, "result.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    if FINISHED_ONLY:
        raise NotFinished(out)
    if all(os.path.exists(os.path.join(out, f)) for f in ("last.pt", "config.yaml", "split.npz")):
        from graphrec.errors import RunDirError
        from graphrec.experiment import run
        try:
            return run(resume=out, quiet=True)
        except RunDirError as e:  # its saved config differs from its fingerprint: start again
            print(f"not resumable, restarting: {e}", flush=True)
    if os.path.isdir(out):  # interrupted before its first checkpoint: start again
        shutil.rmtree(out)
    return None


def _overrides(ds: dict, **sections) -> dict:
    ov = json.loads(json.dumps(ds["overrides"]))
    for k, v in sections.items():
        if isinstance(v, dict):
            ov.setdefault(k, {}).update(v)
        else:
            ov[k] = v
    ov["threads"] = 1
    return ov


def pretrain(dataset: str, label: str, params: dict, seed: int, runs: str) -> dict:
    from graphrec.experiment import run
    ds = DATASETS[dataset]
    out = os.path.join(runs, dataset, "pre_" + slug(label), f"seed{seed}")
    r = _finished(out)
    if r is None:
        t0 = time.time()
        r = run(model="mcpt", dataset=ds["name"], seed=seed, out=out, quiet=True,
                overrides=_overrides(ds, model_params={**ds["mcpt"], **params},
                                     train={**PRE_TRAIN, "epochs": ds.get("pre_epochs", PRE_TRAIN["epochs"])}, eval=EVAL))
        print(f"[{time.strftime('%H:%M:%S')}] {dataset} pretrain {label} seed {seed}: zero-shot valid R@20 "
              f"{r['valid']['recall@20']:.4f} (epoch {r['best_epoch']}/{r['epochs_run']}, {time.time() - t0:.0f} s)",
              flush=True)
    return r


def export(run_dir: str, scale: str) -> str:
    """The run's exported tables (``graphrec export``), optionally rescaled (export_scale)."""
    out = os.path.join(run_dir, f"export_{scale}")
    if os.path.exists(os.path.join(out, "export.json")):
        return out
    import torch

    from graphrec.data.vectors import write_export
    from graphrec.experiment import load_run
    p = load_run(run_dir)
    p.model.export_scale = scale
    with torch.no_grad():
        tables = p.model.export_tables()
    write_export(out, tables, p.split.user_map, p.split.item_map,
                 {"model": "mcpt", "run": os.path.abspath(run_dir), "checkpoint": "best.pt", "dataset": p.cfg["dataset"]})
    return out


def finetune(dataset: str, label: str, seed: int, runs: str, init: str | None) -> dict:
    from graphrec.experiment import run
    ds = DATASETS[dataset]
    out = os.path.join(runs, dataset, "ft_" + slug(label), f"seed{seed}")
    r = _finished(out)
    if r is None:
        t0 = time.time()
        train = {**FT_TRAIN, "epochs": ds.get("ft_epochs", FT_TRAIN["epochs"])}
        if init:
            train["init_from"] = init
        r = run(model="mixgcf", dataset=ds["name"], seed=seed, out=out, quiet=True,
                overrides=_overrides(ds, train=train, eval=EVAL))
        print(f"[{time.strftime('%H:%M:%S')}] {dataset} finetune {label} seed {seed}: valid R@20 "
              f"{r['valid']['recall@20']:.4f} test R@20 {r['test']['recall@20']:.4f} "
              f"(epoch {r['best_epoch']}/{r['epochs_run']}, {time.time() - t0:.0f} s)", flush=True)
    return r


def mean_sd(v: list[float]) -> str:
    return f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}" if len(v) > 1 else f"{v[0]:.4f}"


RUNS = str(ROOT / "runs" / "accuracy_mcpt")


def accuracy(dataset: str, seeds: list[int], runs: str, scales: list[str], only: str = "") -> None:
    """``only``: a comma list of variant keys (random, mcpt, content, nocima, nobce, raw) to run;
    several processes may take disjoint ones (each variant has run directories of its own)."""
    keys = {"Random (Xavier)": "random", "MCPT": "mcpt", "content-average (CLIP baseline)": "content",
            "MCPT w/o CIMA (λ=0)": "nocima", "MCPT w/o BCE (λ=1)": "nobce"}
    want = set(only.split(",")) if only else None

    def wanted(label: str, scale: str = "") -> bool:
        key = "raw" if label == "MCPT" and scale == "none" and DATASETS[dataset].get("jobs") else keys[label]
        return want is None or key in want or FINISHED_ONLY

    rows: dict[str, dict] = {"Random (Xavier)": {"pre": [], "ft": []}}
    for seed in seeds:
        try:
            if wanted("Random (Xavier)"):
                rows["Random (Xavier)"]["ft"].append(finetune(dataset, "Random (Xavier)", seed, runs, None))
        except NotFinished:
            pass
        params_of = {label: params for label, params, where in PRETRAIN if dataset in where}
        jobs = DATASETS[dataset].get("jobs") or [(label, scale) for label in params_of
                                                 for scale in (scales if label == "MCPT" else ["none"])]
        for label, scale in jobs:
            if not wanted(label, scale):
                continue
            name = label if scale == "none" else f"{label}, export_scale={scale}"
            entry = rows.setdefault(name, {"pre": [], "ft": []})
            try:
                pre = pretrain(dataset, label, params_of[label], seed, runs)
                ft = finetune(dataset, name, seed, runs, export(pre["run_dir"], scale))
            except NotFinished:
                continue
            entry["pre"].append(pre)
            entry["ft"].append(ft)
    write_accuracy(dataset, {k: v for k, v in rows.items() if v["ft"]})


def write_accuracy(dataset: str, rows: dict) -> None:
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    summary = []
    for name, e in rows.items():
        ft = e["ft"]
        row = {"init": name, "seeds": [r["seed"] for r in ft]}
        for m in METRICS:
            row[f"test_{m}"] = [r["test"][m] for r in ft]
        row["valid_recall@20"] = [r["valid"]["recall@20"] for r in ft]
        row["ft_best_epoch"] = [r["best_epoch"] for r in ft]
        row["ft_s_per_epoch"] = statistics.mean(r["train_s_per_epoch"] for r in ft)
        if e["pre"]:
            row["pre_zero_shot_test_recall@20"] = [r["test"]["recall@20"] for r in e["pre"]]
            row["pre_best_epoch"] = [r["best_epoch"] for r in e["pre"]]
            row["pre_s_per_epoch"] = statistics.mean(r["train_s_per_epoch"] for r in e["pre"])
        summary.append(row)
    r0 = next(iter(rows.values()))["ft"][0]
    ds = DATASETS[dataset]
    pre_train = {**PRE_TRAIN, "epochs": ds.get("pre_epochs", PRE_TRAIN["epochs"])}
    ft_train = {**FT_TRAIN, "epochs": ds.get("ft_epochs", FT_TRAIN["epochs"])}
    meta = {"dataset": ds["name"], "split": r0["split"], "split_hash": r0["split_hash"],
            "pretrain": {"train": pre_train, "model_params": ds["mcpt"]},
            "finetune": {"model": "mixgcf", "train": ft_train}, "eval": EVAL,
            "device": r0.get("device_name"), "torch": r0.get("torch"), "threads": r0.get("threads")}
    with open(out / f"accuracy_mcpt_{dataset}.json", "w") as f:
        json.dump({"meta": meta, "summary": summary}, f, indent=1)
    head = ("| initialiser of LightGCN+MixGCF | seeds | test R@20 | test N@20 | test R@40 | valid R@20 | "
            "fine-tune best epochs | pre-training zero-shot test R@20 | pre-training best epochs | pre s/epoch |")
    lines = [f"# MCPT on {dataset}: pre-train, then fine-tune LightGCN+MixGCF from the vectors", "", head,
             "|---" * 10 + "|"]
    for row in summary:
        pre = row.get("pre_zero_shot_test_recall@20")
        lines.append(f"| {row['init']} | {len(row['seeds'])} | {mean_sd(row['test_recall@20'])} | "
                     f"{mean_sd(row['test_ndcg@20'])} | {mean_sd(row['test_recall@40'])} | "
                     f"{mean_sd(row['valid_recall@20'])} | {', '.join(map(str, row['ft_best_epoch']))} | "
                     f"{mean_sd(pre) if pre else '-'} | "
                     f"{', '.join(map(str, row.get('pre_best_epoch', []))) or '-'} | "
                     f"{row.get('pre_s_per_epoch', float('nan')):.2f} |")
    base = {r["init"]: statistics.mean(r["test_recall@20"]) for r in summary}
    for main in [k for k in base if k.startswith("MCPT") and "w/o" not in k]:
        lines += ["", f"Test Recall@20 of '{main}' relative to: " + ", ".join(
            f"{k} {100 * (base[main] / v - 1):+.1f} %" for k, v in base.items() if k != main)]
    lines += ["", f"Split {meta['split']} (hash {meta['split_hash']}); {meta['device']}, {meta['threads']} thread(s), "
                  f"torch {meta['torch']}. Pre-training: {json.dumps(pre_train)}, model {json.dumps(meta['pretrain']['model_params'])} "
                  f"over graphrec's mcpt defaults (λ 0.2, τ 0.1, 2 graph layers, sym norm, InfoNCE CIMA on projected "
                  f"features, 1 negative per pair). Fine-tuning: graphrec's mixgcf defaults (MixGCF's LightGCN recipe, "
                  f"M = 64), {json.dumps(ft_train)}."]
    # every finished pre-training run, fine-tuned or not: the zero-shot ranking of <e_u, e_i>
    pre_rows = []
    for label, params, where in PRETRAIN:
        rs = []
        for path in sorted(Path(RUNS).glob(f"{dataset}/pre_{slug(label)}/seed*/result.json")):
            with open(path) as f:
                rs.append(json.load(f))
        if rs:
            pre_rows.append(f"| {label} | {', '.join(str(r['seed']) for r in rs)} | "
                            f"{mean_sd([r['test']['recall@20'] for r in rs])} | {mean_sd([r['test']['ndcg@20'] for r in rs])} | "
                            f"{mean_sd([r['valid']['recall@20'] for r in rs])} | {', '.join(str(r['best_epoch']) for r in rs)} |")
    if pre_rows:
        lines += ["", "Pre-training runs by themselves (zero-shot ranking by the exported vectors, no fine-tuning):", "",
                  "| pre-training | seeds | test R@20 | test N@20 | valid R@20 | best epochs |", "|---|---|---|---|---|---|"] + pre_rows
    (out / f"accuracy_mcpt_{dataset}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def cost(runs: str, steps: int, topk: list) -> None:
    """Pre-training cost at Clothing scale: graph build nnz/seconds, s/step, peak memory."""
    from graphrec.experiment import run
    records = []
    for k in topk:
        out = os.path.join(runs, "clothing_cost", f"topk{k}")
        if os.path.isdir(out):
            shutil.rmtree(out)
        t0 = time.time()
        mp = {"graph_topk": k} if k else {}
        r = run(model="mcpt", dataset="synthetic-clothing", seed=0, out=out, quiet=True,
                overrides={"model_params": mp, "threads": 1, "eval": {"ks": [20]},
                           "data": {"cache_dir": os.path.join(runs, "clothing_cost", "graph_cache")},
                           "train": {"epochs": 1, "max_steps_per_epoch": steps, "progress": False}})
        rec = {"graph_topk": k, "steps": steps, "s_per_step": r["train_s_per_epoch"] / steps,
               "s_per_epoch_extrapolated": r["train_s_per_epoch"] / steps * r["split"]["train"] / 2048,
               "eval_s": r["eval_s"], "peak_mem_mb": r["peak_mem_mb"], "graph_build_s": r["graph_build_s"],
               "graphs": {n: {"nnz": g["nnz"], "build_s": round(g.get("build_s", 0.0), 2)} for n, g in r["graphs"].items()},
               "n_users": r["n_users"], "n_items": r["n_items"], "train_pairs": r["split"]["train"],
               "params": r["params"], "wall_s": time.time() - t0, "device": r.get("device_name"),
               "threads": r.get("threads")}
        records.append(rec)
        print(json.dumps(rec), flush=True)
    out = ROOT / "benchmarks" / "results"
    with open(out / "mcpt_cost.json", "w") as f:
        json.dump(records, f, indent=1)
    lines = ["# MCPT pre-training cost at Clothing scale (synthetic-clothing)", "",
             f"{records[0]['n_users']:,} users, {records[0]['n_items']:,} items, {records[0]['train_pairs']:,} training "
             f"pairs; batch 2048; {steps} training steps measured (train.max_steps_per_epoch), then one zero-shot "
             f"full-ranking evaluation. {records[0]['device']}, {records[0]['threads']} thread.", "",
             "| graph_topk | user graph nnz | item graph nnz | graph build s | s/step | s/epoch (extrapolated) | eval s | peak memory MB | params |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in records:
        lines.append(f"| {r['graph_topk'] or 'none (paper)'} | {r['graphs']['uu']['nnz']:,} | {r['graphs']['ii']['nnz']:,} | "
                     f"{r['graph_build_s']:.1f} | {r['s_per_step']:.2f} | {r['s_per_epoch_extrapolated']:.0f} | "
                     f"{r['eval_s']:.1f} | {r['peak_mem_mb']:.0f} | {r['params']:,} |")
    (out / "mcpt_cost.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


def main(argv=None) -> int:
    import torch
    torch.set_num_threads(1)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="ml100k")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "accuracy_mcpt"))
    ap.add_argument("--scales", default="none,match_xavier", help="export_scale values of the MCPT row")
    ap.add_argument("--cost", action="store_true")
    ap.add_argument("--finished-only", action="store_true", help="tabulate finished runs only, train nothing")
    ap.add_argument("--ft-patience", type=int, default=None, help="fine-tuning patience (default: mixgcf's 10)")
    ap.add_argument("--only", default="", help="comma list of variants to run: random,mcpt,content,nocima,nobce,raw")
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--topk", default="0,50", help="cost: graph_topk values (0 = no pruning)")
    a = ap.parse_args(argv)
    if a.cost:
        cost(a.runs, a.steps, [int(k) or None for k in a.topk.split(",")])
        return 0
    global FINISHED_ONLY, RUNS
    FINISHED_ONLY = a.finished_only
    RUNS = a.runs
    if a.ft_patience is not None:
        FT_TRAIN["patience"] = a.ft_patience
    from accuracy_mm import register_scientific_text
    register_scientific_text()
    accuracy(a.dataset, [int(s) for s in a.seeds.split(",")], a.runs, a.scales.split(","), a.only)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
