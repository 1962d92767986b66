"""Accuracy table of the multimodal recommenders (issue 6): mean ± std over seeds of valid and test
Recall/NDCG@10/20, selecting the epoch by valid Recall@20 only (test is read once per run).

    python benchmarks/accuracy_mm.py --dataset ml100k --models lightgcn,freedom --seeds 0,1,2
    python benchmarks/accuracy_mm.py --dataset scientific --models all
    python benchmarks/accuracy_mm.py --dataset synthetic --ablation      # SAND with vs without distancing

Writes benchmarks/results/accuracy_mm_<dataset>[_<tag>].{json,csv,md}; each run's directory (config,
split, per-epoch metrics) stays under --runs. Runs are resumable: a finished run is re-read, not re-run.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"

DATASETS = {
    "ml100k": {"name": f"mmrec:{DATA / 'mmrec_format' / 'ml100k_mm'}", "overrides": {}},
    # RecBole-seq files used as general top-K: a fresh 8:1:1 per-user random split of all events,
    # MiniLM text features only, so the second SAND 'modality' is a learnable item-ID table.
    "scientific": {"name": "scientific-text",
                   "overrides": {"data": {"split": "random", "ratios": [0.8, 0.1, 0.1], "repeated_pairs": "warn"}},
                   "model_overrides": {"vbpr": {"modalities": ["text"]}, "freedom": {"modalities": ["text"]},
                                       "sand": {"modalities": ["text", "id"]}}},
    "synthetic": {"name": "synthetic", "overrides": {}},
}
ALL = ["lightgcn", "vbpr", "freedom", "sand-a", "sand-b", "sand-c", "sand-d", "vbpr+sand", "freedom+sand"]
METRICS = ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]
# MMRec's own numbers on ml100k_mm (issue 6), test at best valid Recall@20
MMREC_ML100K = {"lightgcn": {"recall@20": 0.3482, "ndcg@20": 0.2808}, "freedom": {"recall@20": 0.3436, "ndcg@20": 0.2865}}


def register_scientific_text() -> None:
    """`scientific-text`: the RecBole-seq Scientific set with its item text encoded by MiniLM
    (graphrec.data.encode, cached), since the recbole-seq loader keeps raw text only."""
    from graphrec.datasets import load, register

    def loader(**_: object):
        from graphrec.data.encode import attach_encoded
        ds = load(f"recbole-seq:{DATA / 'amazon_scientific_seq'}")
        return attach_encoded(ds, True, modalities=("text",), progress=False)

    register("scientific-text", loader, "Amazon Scientific (RecBole-seq) + MiniLM text features")


def model_overrides(ds: dict, model: str) -> dict:
    mo = ds.get("model_overrides", {})
    if model in mo:
        return dict(mo[model])
    base = "sand" if model.startswith("sand") else model.split("+")[0]
    out = dict(mo.get(base, {}))
    if "+" in model and base in mo:  # plug-ins take the backbone's modalities
        out = dict(mo[base])
    return out


def run_one(dataset: str, model: str, seed: int, runs: str, extra: dict, tag: str, epochs: int | None,
            finished_only: bool = False) -> dict | None:
    from graphrec.experiment import run
    ds = DATASETS[dataset]
    out = os.path.join(runs, f"{dataset}{'_' + tag if tag else ''}", model, f"seed{seed}")
    res_path = os.path.join(out, "result.json")
    if os.path.exists(res_path):
        with open(res_path) as f:
            return _with_config(json.load(f))
    if finished_only:
        return None
    t0 = time.time()
    if all(os.path.exists(os.path.join(out, f)) for f in ("last.pt", "config.yaml", "split.npz")):
        # an interrupted run continues from its last checkpoint with its saved config (a resumed run
        # reproduces the uninterrupted one: tests/test_train_run.py); --set does not apply to it
        return _report(run(resume=out, quiet=True), dataset, model, seed, t0, " (resumed)")
    if os.path.isdir(out):  # interrupted before its first checkpoint: start again from scratch
        import shutil
        shutil.rmtree(out)
    ov = json.loads(json.dumps(ds["overrides"]))
    from graphrec.config import load_config
    known = load_config(model)["model_params"]
    # --set model_params apply to the models that have those hyper-parameters (club_steps: SAND family)
    mp = {**model_overrides(ds, model), **{k: v for k, v in extra.get("model_params", {}).items() if k in known}}
    if mp:
        ov["model_params"] = mp
    for sec in ("train", "data", "eval"):
        if sec in extra:
            ov.setdefault(sec, {}).update(extra[sec])
    for key in ("threads", "device"):
        if key in extra:
            ov[key] = extra[key]
    ov.setdefault("train", {})["progress"] = False
    r = run(model=model, dataset=ds["name"], overrides=ov, seed=seed, out=out, quiet=True, epochs=epochs)
    return _report(r, dataset, model, seed, t0)


def _report(r: dict, dataset: str, model: str, seed: int, t0: float, how: str = "") -> dict:
    print(f"[{time.strftime('%H:%M:%S')}] {dataset} {model} seed {seed}{how}: valid R@20 {r['valid']['recall@20']:.4f} "
          f"test R@20 {r['test']['recall@20']:.4f} (best epoch {r['best_epoch']}/{r['epochs_run']}, "
          f"{time.time() - t0:.0f} s)", flush=True)
    return _with_config(r)


def _with_config(r: dict) -> dict:
    """Attach the run's resolved model/train configuration (from its config.yaml)."""
    import yaml
    path = os.path.join(r["run_dir"], "config.yaml")
    if os.path.exists(path):
        with open(path) as f:
            cfg = yaml.safe_load(f)
        r["config"] = {"model_params": cfg.get("model_params"), "train": cfg.get("train"), "data": cfg.get("data")}
    return r


def seed_stats(rs: list[dict]) -> dict:
    """Mean and std over runs of every valid/test metric in METRICS (std 0 for one run)."""
    row = {}
    for split in ("valid", "test"):
        for m in METRICS:
            v = [r[split][m] for r in rs]
            row[f"{split}_{m}"] = statistics.mean(v)
            row[f"{split}_{m}_std"] = statistics.stdev(v) if len(v) > 1 else 0.0
    return row


def summarise(results: dict[str, list[dict]]) -> list[dict]:
    return [{"model": model, "seeds": len(rs), **seed_stats(rs),
             "best_epoch": statistics.mean(r["best_epoch"] for r in rs),
             "s_per_epoch": statistics.mean(r["train_s_per_epoch"] for r in rs)} for model, rs in results.items()]


def write(rows: list[dict], results: dict, stem: str, header: str) -> None:
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    with open(out / f"{stem}.json", "w") as f:
        json.dump({"summary": rows, "runs": {m: [{k: r[k] for k in ("seed", "valid", "test", "best_epoch", "epochs_run",
                                                                     "train_s_per_epoch", "params", "config_hash")
                                                   if k in r} for r in rs] for m, rs in results.items()},
                   "configs": {m: rs[0].get("config") for m, rs in results.items()}}, f, indent=1)
    if rows:
        with open(out / f"{stem}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(rows[0]))
            w.writeheader()
            w.writerows(rows)
    lines = [header, "", "| model | seeds | " + " | ".join(f"valid {m}" for m in METRICS) + " | "
             + " | ".join(f"test {m}" for m in METRICS) + " | best epoch | s/epoch |",
             "|---" * (4 + 2 * len(METRICS)) + "|"]
    for r in rows:
        # one seed has no spread to report: the mean alone, not "± 0"
        cells = [f"{r[f'{s}_{m}']:.4f}" + (f" ± {r[f'{s}_{m}_std']:.4f}" if r["seeds"] > 1 else "")
                 for s in ("valid", "test") for m in METRICS]
        lines.append(f"| {r['model']} | {r['seeds']} | " + " | ".join(cells) + f" | {r['best_epoch']:.0f} | {r['s_per_epoch']:.2f} |")
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="ml100k")
    ap.add_argument("--models", default="all", help="comma list or 'all'")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "accuracy_mm"))
    ap.add_argument("--set", default="{}", help="JSON of extra overrides, e.g. '{\"model_params\": {\"club_steps\": 5}}'")
    ap.add_argument("--tag", default="")
    ap.add_argument("--also-tags", default="",
                    help="with --finished-only: comma list of further tags whose finished runs fill the table "
                         "(e.g. the parity runs of lightgcn/freedom beside the 'full' runs)")
    ap.add_argument("--stem", help="output name (default accuracy_mm_<dataset>[_<tag>])")
    ap.add_argument("--epochs", type=int, default=None)
    ap.add_argument("--ablation", action="store_true", help="SAND-a with and without distancing (and alignment)")
    ap.add_argument("--finished-only", action="store_true",
                    help="train nothing: tabulate the finished runs only (the seeds column says how many)")
    a = ap.parse_args(argv)
    register_scientific_text()
    seeds = [int(s) for s in a.seeds.split(",")]
    extra = json.loads(a.set)
    results: dict[str, list[dict]] = {}
    if a.ablation:
        variants = {"sand-a": {}, "sand-a (distance: none)": {"distance": "none"},
                    "sand-a (align: none)": {"align": "none"}, "sand-a (none)": {"align": "none", "distance": "none"}}
        for label, mp in variants.items():
            e = json.loads(json.dumps(extra))
            e.setdefault("model_params", {}).update(mp)
            slug = label.replace(" ", "").replace("(", "_").replace(")", "").replace(":", "-")
            results[label] = [r for s in seeds if (r := run_one(a.dataset, "sand-a", s, a.runs, e,
                                                                (a.tag + "_" if a.tag else "") + slug, a.epochs,
                                                                a.finished_only)) is not None]
    else:
        models = ALL if a.models == "all" else a.models.split(",")
        for m in models:
            tags = [a.tag] + ([t for t in a.also_tags.split(",") if t] if a.finished_only else [])
            results[m] = []
            for s in seeds:
                for t in tags:  # the first tag with a finished run of this (model, seed)
                    r = run_one(a.dataset, m, s, a.runs, extra, t, a.epochs, a.finished_only)
                    if r is not None:
                        results[m].append(r)
                        break
    missing = [m for m, rs in results.items() if not rs]
    results = {m: rs for m, rs in results.items() if rs}
    if missing:
        print(f"no finished run for {', '.join(missing)}", flush=True)
    rows = summarise(results)
    stem = a.stem or (f"accuracy_mm_{a.dataset}" + ("_ablation" if a.ablation else "") + (f"_{a.tag}" if a.tag else ""))
    seed_note = f"seeds {seeds}" + (" (finished runs only: the seeds column counts them)" if a.finished_only else "")
    header = (f"# accuracy_mm: {a.dataset} ({DATASETS[a.dataset]['name'].split(':')[0]}), {seed_note}, "
              f"epoch selected by valid recall@20; "
              + ("each run's settings as it ran (the json's 'configs')" if a.finished_only
                 else f"extra overrides {extra or 'none'}") + "; CPU shared with other jobs")
    write(rows, results, stem, header)
    print((ROOT / "benchmarks" / "results" / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
