"""Demure (Yao et al., arXiv 2305.01915) against its Base Model and SASRec on real data, 3 seeds.

    python benchmarks/accuracy_demure.py --datasets scientific,ml100k --protocols user,loo --seeds 0,1,2

Modalities (the paper uses item attributes as modalities):

- Amazon Scientific (``recbole-seq:``): the item text ``title. category path. brand.`` is split into
  its three fields, each encoded separately by the offline all-MiniLM-L6-v2 (graphrec's
  ``graphrec encode text`` encoder, `graphrec.data.encode.text.encode_text`) into
  ``<cache>/sci_{title,category,brand}.npy``, rows in the loaded dataset's item order, and added
  with ``data.extra_features``.
- ml-100k (``mmrec:ml100k_mm``, timestamped): its ``text`` (TMDB plot, MiniLM) and ``image``
  (poster, EfficientNet-Lite0) features plus ``genre``: the 19 MovieLens genre flags, divided by
  the movie's genre count (so the projection :math:`P_m` is the mean of learned genre embeddings,
  the paper's categorical modality), written to ``<cache>/ml100k_genre.npy``.

Protocols: ``user`` (the paper's: users 8:1:1, each held-out user's last 20% as targets, the rest as
history; ComiRec's Recall/NDCG@{20,50} beside the standard keys, `eval.protocol=next_item_comirec`)
and ``loo`` (leave-one-out). History items masked for every model (graphrec's next-item default;
ComiRec does not mask, `eval.mask_history=false`). Epoch selected by valid NDCG@10, test read once.
The cost of Demure's interest scores and augmentation is its s/step over its Base Model's (same
sampler, same steps per epoch, one thread each).

Writes benchmarks/results/accuracy_demure_<dataset>.{json,md}; run directories go under --runs
(default /work/cache/demure/runs) and a finished run is re-read, not re-run.

Sensitivity (`GRID`: λ1 x λ2, Adam's beta2 0.99, lr 3e-3 with beta2 0.99, 60 epochs), run as
models of the same script and tabulated into accuracy_demure_grid.{json,md}:

    python benchmarks/accuracy_demure.py --datasets scientific --protocols loo --epochs 20 --patience 4 \
        --models demure_l1-0.0_l2-0.1,demure_beta2-0.99,... --seeds 0 --runs GRID_RUNS
    python benchmarks/accuracy_demure.py --datasets scientific --protocols loo --seeds 0,1,2 --grid RUNS,GRID_RUNS
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("GRAPHREC_SHARED_DATA", ROOT.parent / "shared" / "data"))
SCI = DATA / "amazon_scientific_seq"
ML = DATA / "mmrec_format" / "ml100k_mm"
POSTERS = DATA / "ml100k_tmdb_posters"

METRICS = ["ndcg@10", "recall@10", "ndcg@20", "recall@20", "recall@50", "ndcg@50",
           "comirec_recall@20", "comirec_ndcg@20", "comirec_recall@50", "comirec_ndcg@50"]
MODELS = ["sasrec", "demure-base", "demure"]
#: non-paper variants (name -> (registered model, model overrides)): a learned item-ID token as one
#: more modality (the paper's item tower is content-only), and Demure with gradient x activation
#: interest scores (the attribution that recovers planted drivers, tests/test_demure_planted.py)
VARIANTS = {"demure-base+id": ("demure-base", {"item_id": True}), "demure+id": ("demure", {"item_id": True}),
            "demure-gxi": ("demure", {"score_mode": "grad_x_input"})}
#: the sensitivity grid (name -> (registered model, model overrides, train overrides)): Eq. 15's
#: weights λ1 (``lambda_aug``) x λ2 (``lambda_cl``), and the paper's Adam beta2 = 0.99 for Demure and
#: its Base Model; one seed (``--grid``), written to accuracy_demure_grid.{md,json}
GRID = {f"demure_l1-{a}_l2-{b}": ("demure", {"lambda_aug": a, "lambda_cl": b}, {})
        for a in (0.0, 0.5, 1.0) for b in (0.1, 0.5)}
GRID.update({"demure-base_beta2-0.99": ("demure-base", {}, {"betas": [0.9, 0.99]}),
             "demure_beta2-0.99": ("demure", {}, {"betas": [0.9, 0.99]}),
             # the paper's optimiser for MovieLens: lr 3e-3 with beta2 0.99
             "demure-base_lr3e-3_beta2-0.99": ("demure-base", {}, {"betas": [0.9, 0.99], "lr": 0.003}),
             "demure_lr3e-3_beta2-0.99": ("demure", {}, {"betas": [0.9, 0.99], "lr": 0.003}),
             # three times the epoch cap: is the gap to the Base Model a matter of training time?
             "demure-base_60ep": ("demure-base", {}, {"epochs": 60, "patience": 10}),
             "demure_60ep": ("demure", {}, {"epochs": 60, "patience": 10})})


def split_scientific_text(text: str) -> tuple[str, str, str]:
    """(title, category path, brand) of one ``Scientific.text`` entry, ``title. category. brand. ``
    (44 items have an empty category: ``title. . brand. ``)."""
    t = text.strip()
    t = t[:-1] if t.endswith(".") else t
    k = t.find(". Industrial & Scientific")
    if k >= 0:
        title, rest = t[:k], t[k + 2:]
        cat, _, brand = rest.rpartition(". ")
        return title.strip(), cat.strip(), brand.strip()
    title, _, brand = t.rpartition(". . ")
    if not title:
        return t, "", ""
    return title.strip(), "", brand.strip()


def scientific_features(cache: Path) -> dict:
    """{modality: path} of the three encoded text fields (built once)."""
    from graphrec.datasets import load
    from graphrec.data.encode.text import encode_text
    paths = {m: cache / f"sci_{m}.npy" for m in ("title", "category", "brand")}
    if all(p.exists() for p in paths.values()):
        return {m: str(p) for m, p in paths.items()}
    ds = load(f"recbole-seq:{SCI}")
    fields = [split_scientific_text(t or "") for t in ds.item_text]
    for j, m in enumerate(("title", "category", "brand")):
        texts = [f[j] or f"unknown {m}" for f in fields]
        x = encode_text(texts, device="cpu", progress=False).numpy().astype(np.float32)
        np.save(paths[m], x)
        with open(cache / f"sci_{m}.ids.txt", "w") as f:
            f.write("\n".join(map(str, ds.interactions.item_map.ids.tolist())) + "\n")
    return {m: str(p) for m, p in paths.items()}


def ml100k_genre(cache: Path) -> dict:
    """{'genre': path} of count-normalised genre flags in the mmrec dataset's item order."""
    import pandas as pd
    from graphrec.datasets import load
    path = cache / "ml100k_genre.npy"
    if not path.exists():
        ds = load(f"mmrec:{ML}")
        items = pd.read_csv(POSTERS / "items.csv").drop_duplicates("movie_id").set_index("movie_id")
        cols = list(items.columns[items.columns.get_loc("genre_unknown"): items.columns.get_loc("Western") + 1])
        # the loader's item ids are the MovieLens movie ids
        g = np.stack([items.loc[int(i), cols].to_numpy(dtype=np.float32)
                      for i in ds.interactions.item_map.ids.tolist()])
        g = g / np.maximum(g.sum(1, keepdims=True), 1.0)
        np.save(path, g.astype(np.float32))
    return {"genre": str(path)}


def setting(dataset: str, protocol: str, cache: Path, epochs: int = 30, patience: int = 5) -> tuple[str, dict, dict]:
    """(dataset name, common overrides, per-model overrides) of one table."""
    common = {"data": {"split": protocol, "repeated_pairs": "warn"},
              "eval": {"protocol": "next_item_comirec", "ks": [10, 20, 50], "metrics": ["recall", "ndcg", "mrr", "hit"]},
              "train": {"valid_metric": "ndcg@10", "progress": False, "epochs": int(epochs), "patience": int(patience)},
              "threads": 1}
    if dataset == "scientific":
        feats = scientific_features(cache)
        common["data"]["extra_features"] = feats
        dm = {"modalities": list(feats), "max_len": 50, "min_prefix": 1}
        name = f"recbole-seq:{SCI}"
    else:
        common["data"]["extra_features"] = ml100k_genre(cache)
        dm = {"modalities": ["text", "image", "genre"], "max_len": 20, "min_prefix": 1}
        name = f"mmrec:{ML}"
    per = {"sasrec": {"model_params": {"max_len": dm["max_len"]}, "train": {"batch_size": 256}},
           "demure-base": {"model_params": dict(dm), "train": {"batch_size": 256}},
           "demure": {"model_params": dict(dm), "train": {"batch_size": 256}}}
    for v, (_, extra) in VARIANTS.items():
        per[v] = {"model_params": {**dm, **extra}, "train": {"batch_size": 256}}
    for v, (_, extra, train) in GRID.items():
        per[v] = {"model_params": {**dm, **extra}, "train": {"batch_size": 256, **train}}
    return name, common, per


def merge(a: dict, b: dict) -> dict:
    out = json.loads(json.dumps(a))
    for k, v in b.items():
        out[k] = merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


def run_one(dataset: str, protocol: str, model: str, seed: int, runs: Path, cache: Path, epochs: int = 30,
            patience: int = 5, lr: float | None = None) -> dict:
    from graphrec.experiment import run
    out = runs / dataset / protocol / model / f"seed{seed}"
    if (out / "result.json").exists():
        return json.loads((out / "result.json").read_text())
    if out.exists():  # an interrupted start: a fresh run needs an empty directory
        import shutil
        shutil.rmtree(out)
    name, common, per = setting(dataset, protocol, cache, epochs, patience)
    if lr is not None:
        common["train"]["lr"] = float(lr)
    t0 = time.time()
    registered = GRID[model][0] if model in GRID else VARIANTS.get(model, (model, {}))[0]
    r = run(model=registered, dataset=name, overrides=merge(common, per[model]), seed=seed, out=str(out), quiet=True)
    r["model"] = model
    print(f"{dataset}/{protocol} {model} seed {seed}: test ndcg@10 {r['test']['ndcg@10']:.4f} recall@20 "
          f"{r['test']['recall@20']:.4f} (best epoch {r['best_epoch']}, {time.time() - t0:.0f} s)", flush=True)
    return r


def _ms(xs: list[float]) -> str:
    if not xs:
        return "–"
    return f"{statistics.mean(xs):.4f} ± {statistics.stdev(xs):.4f}" if len(xs) > 1 else f"{xs[0]:.4f}"


def _ms1(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.1f} ± {statistics.stdev(xs):.1f}" if len(xs) > 1 else f"{xs[0]:.1f}"


def table(dataset: str, res: dict) -> str:
    lines = [f"# Demure on {dataset}", ""]
    for protocol, by_model in res.items():
        lines += [f"## protocol: {protocol}", "",
                  "| model | seeds | " + " | ".join(f"test {m}" for m in METRICS) + " | best epoch | s/epoch |",
                  "|---|---|" + "---|" * len(METRICS) + "---|---|"]
        for model, rs in by_model.items():
            cells = [_ms([r["test"][m] for r in rs if m in r["test"]]) for m in METRICS]
            lines.append(f"| {model} | {len(rs)} | " + " | ".join(cells) +
                         f" | {_ms1([float(r['best_epoch']) for r in rs])} | "
                         f"{_ms1([float(r['train_s_per_epoch']) for r in rs])} |")
        for b_name, d_name in (("demure-base", "demure"), ("demure-base+id", "demure+id")):
            base, dem = by_model.get(b_name, []), by_model.get(d_name, [])
            common = {r["seed"] for r in base} & {r["seed"] for r in dem}  # paired: the same seeds
            base, dem = [r for r in base if r["seed"] in common], [r for r in dem if r["seed"] in common]
            if not (base and dem):
                continue
            ratio = (statistics.mean(r["train_s_per_epoch"] for r in dem)
                     / statistics.mean(r["train_s_per_epoch"] for r in base))
            gains = []
            for m in ("ndcg@10", "recall@20"):
                mb, md = statistics.mean(r["test"][m] for r in base), statistics.mean(r["test"][m] for r in dem)
                gains.append(f"{m} {100 * (md / mb - 1):+.1f}%")
            lines += ["", f"{d_name} over {b_name} (seeds {sorted(common)}): {', '.join(gains)}; "
                          f"training time per step {ratio:.2f}x (same sampler, same steps per epoch; "
                          f"wall time on a shared CPU)"]
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="scientific,ml100k")
    ap.add_argument("--protocols", default="user,loo")
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--cache", default="/work/cache/demure")
    ap.add_argument("--runs", default=None)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--patience", type=int, default=5)
    ap.add_argument("--lr", type=float, default=None, help="learning rate of every model (default: each model's)")
    ap.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    ap.add_argument("--collect", default=None, metavar="RUNS,RUNS",
                    help="run nothing: tabulate every finished run under these run roots")
    ap.add_argument("--grid", default=None, metavar="MAIN_RUNS,GRID_RUNS",
                    help="run nothing: tabulate the sensitivity grid (first dataset and protocol, each of "
                         "--seeds) into accuracy_demure_grid.{md,json}")
    a = ap.parse_args()
    if a.grid:
        main_runs, grid_runs = (Path(x) for x in a.grid.split(","))
        d, p = a.datasets.split(",")[0], a.protocols.split(",")[0]
        write_grid(grid_rows(main_runs, grid_runs, d, p, [int(x) for x in a.seeds.split(",")]), d, p,
                   Path(a.results))
        return
    if a.collect:
        for dataset in a.datasets.split(","):
            res = collect([Path(x) for x in a.collect.split(",")], dataset, a.protocols.split(","),
                          a.models.split(","))
            if res:
                write(dataset, res, Path(a.results))
        return
    import torch
    torch.set_num_threads(1)
    cache = Path(a.cache)
    cache.mkdir(parents=True, exist_ok=True)
    runs = Path(a.runs) if a.runs else cache / "runs"
    seeds = [int(s) for s in a.seeds.split(",")]
    for dataset in a.datasets.split(","):
        res: dict = {}
        for protocol in a.protocols.split(","):
            for seed in seeds:  # seeds outermost: every model has a result early
                for model in a.models.split(","):
                    r = run_one(dataset, protocol, model, seed, runs, cache, a.epochs, a.patience, a.lr)
                    res.setdefault(protocol, {}).setdefault(model, []).append(r)
                    write(dataset, res, Path(a.results))


def collect(roots: list[Path], dataset: str, protocols: list[str], models: list[str]) -> dict:
    """{protocol: {model: [result, ...]}} of the finished runs under ``roots`` (seed order)."""
    res: dict = {}
    for protocol in protocols:
        for model in models:
            found = sorted((f for r in roots for f in (r / dataset / protocol / model).glob("seed*/result.json")),
                           key=lambda f: int(f.parent.name[4:]))
            if found:
                rs = [json.loads(f.read_text()) for f in found]
                for r in rs:
                    r["model"] = model
                res.setdefault(protocol, {})[model] = rs
    return res


def grid_rows(main_runs: Path, grid_runs: Path, dataset: str, protocol: str, seeds: list[int]) -> list[dict]:
    """Rows of the sensitivity table, per seed: the committed runs of SASRec, the Base Model and
    Demure (λ1 = 0.5, λ2 = 0.1, betas (0.9, 0.999)) and every finished `GRID` run."""
    import yaml
    rows = []
    named = [(m, main_runs) for m in MODELS] + [(m, grid_runs) for m in GRID]
    for seed, (model, root) in ((s, n) for s in seeds for n in named):
        f = root / dataset / protocol / model / f"seed{seed}" / "result.json"
        if not f.exists():
            continue
        r = json.loads(f.read_text())
        cfg = yaml.safe_load((f.parent / "config.yaml").read_text())  # the run's own lr and betas
        hist = [json.loads(x) for x in (f.parent / "epochs.jsonl").read_text().splitlines() if x.strip()]
        registered, hp = cfg["model"], cfg.get("model_params") or {}
        is_demure = registered == "demure"
        rows.append({"model": model, "registered": registered, "seed": seed,
                     "lambda_aug": float(hp["lambda_aug"]) if is_demure else None,
                     "lambda_cl": float(hp["lambda_cl"]) if is_demure else None,
                     "betas": list(cfg["train"].get("betas") or [0.9, 0.999]), "lr": float(cfg["train"]["lr"]),
                     "valid_ndcg@10": max(e["valid"]["ndcg@10"] for e in hist),
                     "valid_recall@20": max(e["valid"]["recall@20"] for e in hist),
                     "test": {m: r["test"][m] for m in ("ndcg@10", "recall@20", "ndcg@20", "recall@50")},
                     "best_epoch": r["best_epoch"], "epochs_run": r["epochs_run"],
                     "train_s_per_epoch": r["train_s_per_epoch"], "run_dir": str(f.parent)})
    return rows


def write_grid(rows: list[dict], dataset: str, protocol: str, out: Path) -> None:
    seeds = sorted({r["seed"] for r in rows})
    lines = [f"# Demure sensitivity on {dataset} ({protocol}): λ1, λ2, Adam's lr and beta2, epochs", "",
             f"One run per point and seed (seeds here: {seeds}). Points with one run (the λ grid, beta2 alone) are "
             "one seed only, so their differences below the seed spread of the 3-seed tables "
             "(accuracy_demure_*.md) are noise; points with several seeds are summarised at the end. "
             "Same protocol, epoch cap (20) and "
             "patience (4) as the 3-seed table, except the `_60ep` rows (60 epochs, patience 10); "
             "the epoch is selected on valid NDCG@10; the valid columns are the best over epochs. "
             "λ1 weighs L_ssm^aug and λ2 L_cont (Eq. 15); "
             "betas are Adam's (the paper: 0.9, 0.99; lr 3e-3 on MovieLens). Rows without a λ are not Demure.", "",
             "| model | seed | λ1 | λ2 | lr | betas | valid NDCG@10 (best) | valid Recall@20 (best) | test NDCG@10 | test Recall@20 | test NDCG@20 | "
             "test Recall@50 | best epoch / run |", "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        t = r["test"]
        fmt = lambda x: "–" if x is None else f"{x:g}"
        lines.append(f"| {r['model']} | {r['seed']} | {fmt(r['lambda_aug'])} | {fmt(r['lambda_cl'])} | {r['lr']:g} | "
                     f"({r['betas'][0]:g}, {r['betas'][1]:g}) | {r['valid_ndcg@10']:.4f} | {r['valid_recall@20']:.4f} | "
                     f"{t['ndcg@10']:.4f} | "
                     f"{t['recall@20']:.4f} | {t['ndcg@20']:.4f} | {t['recall@50']:.4f} | "
                     f"{r['best_epoch']} / {r['epochs_run']} |")
    by: dict = {}
    for r in rows:
        by.setdefault(r["model"], []).append(r)
    multi = {m: rs for m, rs in by.items() if len(rs) > 1}
    if multi:
        lines += ["", "Points run with more than one seed (test, mean ± std over the seeds listed):", "",
                  "| model | seeds | test NDCG@10 | test Recall@20 | test Recall@50 |", "|---|---|---|---|---|"]
        for m, rs in multi.items():
            lines.append(f"| {m} | {sorted(r['seed'] for r in rs)} | {_ms([r['test']['ndcg@10'] for r in rs])} | "
                         f"{_ms([r['test']['recall@20'] for r in rs])} | {_ms([r['test']['recall@50'] for r in rs])} |")
    (out / "accuracy_demure_grid.json").write_text(json.dumps(
        {"dataset": dataset, "protocol": protocol, "seeds": seeds, "rows": rows}, indent=1))
    (out / "accuracy_demure_grid.md").write_text("\n".join(lines) + "\n")


def write(dataset: str, res: dict, out: Path) -> None:
    keep = ("model", "seed", "test", "valid", "best_epoch", "epochs_run", "train_s_per_epoch", "split_method",
            "n_users", "n_items", "cold_users_skipped", "run_dir")
    slim = {p: {m: [{k: r.get(k) for k in keep} for r in rs] for m, rs in bm.items()} for p, bm in res.items()}
    (out / f"accuracy_demure_{dataset}.json").write_text(json.dumps(slim, indent=1))
    (out / f"accuracy_demure_{dataset}.md").write_text(table(dataset, res))


if __name__ == "__main__":
    main()
