"""MMRec's own accuracy over several seeds, on an MMRec-format directory, beside graphrec's runs.

    python benchmarks/accuracy_mmrec.py --mmrec PATH/TO/MMRec [--models freedom,lightgcn]
        [--data ../shared/data/mmrec_format/ml100k_mm] [--seeds 999,0,1,2] [--threads 1]
        [--graphrec benchmarks/results/accuracy_mm_ml100k_parity.json] [--out benchmarks/results/accuracy_mmrec_ml100k]

The parity criterion compares graphrec's mean over 3 seeds with one MMRec run (seed 999, the
default of MMRec's ``overall.yaml``). One run is one draw from MMRec's own seed-to-seed spread; this
script measures that spread with MMRec's code: its ``quick_start`` over a seed list (MMRec's grid
over ``seed``), its own early stopping (valid Recall@20, patience 20), test at the best-valid epoch,
at the same single grid point as `compare_mmrec.py` (``MMREC_MODELS``). The checkout is copied and
patched exactly as `compare_mmrec.py` does (its docstring lists the edits); the data directory is
copied too, because MMRec's FREEDOM writes its kNN cache next to the data.

MMRec logs metrics rounded to 4 decimals; those are the values reported.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
import compare_mmrec as cm  # noqa: E402  (the copy/patch/run helpers of the side-by-side script)
from accuracy_mm import seed_stats  # noqa: E402  (graphrec's tables use the same statistics)

ROOT = Path(__file__).resolve().parents[1]
_SEED_RE = re.compile(r"Parameters:\['seed'\]=\((-?\d+),?\)")
_RESULT_RE = re.compile(r"(best valid result|test result): (\S.*)")  # per-epoch "test result:" lines are empty
_BEST_EPOCH_RE = re.compile(r"Finished training, best eval result in epoch (\d+)")


def parse_results(text: str) -> List[dict]:
    """Per-seed records from an MMRec log: the seed, the best-valid epoch, valid and test metrics."""
    out: List[dict] = []
    cur: Optional[dict] = None
    for line in text.splitlines():
        m = _SEED_RE.search(line)
        if m:
            cur = {"seed": int(m.group(1))}
            out.append(cur)
            continue
        if cur is None:
            continue
        m = _BEST_EPOCH_RE.search(line)
        if m:
            cur["best_epoch"] = int(m.group(1))
        m = _RESULT_RE.search(line)
        if m:
            vals = dict(re.findall(r"([a-z]+@\d+): ([0-9.]+)", m.group(2)))
            cur["valid" if m.group(1).startswith("best") else "test"] = {k: float(v) for k, v in vals.items()}
    return [r for r in out if "valid" in r and "test" in r]


def run_seeds(root: str, mmrec_model: str, data_root: str, dataset: str, seeds: List[int], params: dict,
              threads: int, timeout: Optional[float]) -> dict:
    cfg = {"use_gpu": False, "data_path": os.path.abspath(data_root) + os.sep, "seed": seeds,
           "save_recommended_topk": False, "model_params": params}
    cwd = cm.config_dir_cwd(root)
    wrapper = os.path.join(root, "_graphrec_compare_run.py")
    with open(wrapper, "w") as f:
        f.write(cm._WRAPPER)
    proc = subprocess.run([sys.executable, wrapper, os.path.join(root, "src"), mmrec_model, dataset,
                           json.dumps(cfg), str(threads)], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    text = proc.stdout + "\n" + proc.stderr
    recs = parse_results(text)
    if proc.returncode != 0 or len(recs) != len(seeds):
        tail = " | ".join(text.strip().splitlines()[-10:])
        raise RuntimeError(f"MMRec {mmrec_model} failed (exit {proc.returncode}, {len(recs)}/{len(seeds)} seeds): {tail}")
    times = cm.parse_mmrec_log(text)
    return {"runs": recs, "train_s_median": statistics.median(times["train_s"]) if times["train_s"] else None}


def summary(runs: List[dict]) -> dict:
    return {"seeds": [r["seed"] for r in runs], "best_epoch": statistics.mean(r.get("best_epoch", 0) for r in runs),
            **seed_stats(runs)}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mmrec", required=True, help="path of a local MMRec checkout (never modified; a copy is patched)")
    ap.add_argument("--mmrec-rev", help="commit of the copy when it is not a git checkout")
    ap.add_argument("--models", default="freedom")
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "data" / "mmrec_format" / "ml100k_mm"))
    ap.add_argument("--seeds", default="999,0,1,2")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--timeout", type=float)
    ap.add_argument("--graphrec", default=str(ROOT / "benchmarks" / "results" / "accuracy_mm_ml100k_parity.json"),
                    help="graphrec's accuracy_mm.py results on the same directory, shown beside")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "accuracy_mmrec_ml100k"))
    a = ap.parse_args(argv)
    seeds = [int(s) for s in a.seeds.split(",")]
    name = os.path.basename(os.path.normpath(a.data))
    work = tempfile.mkdtemp(prefix="graphrec-mmrec-acc-")
    results: Dict[str, dict] = {}
    notes: List[str] = []
    try:
        data_root = os.path.join(work, "data")
        shutil.copytree(a.data, os.path.join(data_root, name))
        for root_, _, files in os.walk(data_root):  # the shared copy is read-only; MMRec writes a kNN cache
            os.chmod(root_, 0o755)
            for fn in files:
                os.chmod(os.path.join(root_, fn), 0o644)
        dst = cm.copy_tree(os.path.abspath(a.mmrec), os.path.join(work, "mmrec"))
        notes = cm.patch_tree(dst)
        mods = [m for m, f in (("image", "image_feat.npy"), ("text", "text_feat.npy"))
                if os.path.exists(os.path.join(a.data, f))]
        cm.write_dataset_yaml(dst, name, mods)
        for m in [x.strip() for x in a.models.split(",") if x.strip()]:
            mm, _, params = cm.MMREC_MODELS[m]
            print(f"MMRec {mm} on {name}, seeds {seeds} ...", flush=True)
            results[m] = run_seeds(dst, mm, data_root, name, seeds, params, a.threads, a.timeout)
            for r in results[m]["runs"]:
                print(f"  seed {r['seed']}: best epoch {r.get('best_epoch')}, valid R@20 {r['valid']['recall@20']:.4f}, "
                      f"test R@20 {r['test']['recall@20']:.4f}", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    ours = {}
    if a.graphrec and os.path.exists(a.graphrec):
        with open(a.graphrec) as f:
            g = json.load(f)
        ours = {row["model"]: row for row in g.get("summary", [])}
    rev = a.mmrec_rev or cm._git(a.mmrec)
    out = {"kind": "mmrec-accuracy-seeds", "mmrec": rev, "data": name, "seeds": seeds, "threads": a.threads,
           "edits": notes, "models": {m: {**r, "summary": summary(r["runs"])} for m, r in results.items()},
           "graphrec": {m: ours[m] for m in results if m in ours}}
    with open(a.out + ".json", "w") as f:
        json.dump(out, f, indent=1)
    lines = [f"# MMRec {rev} over seeds {seeds} on {name}, beside graphrec",
             "",
             "MMRec's own code (copied and patched as `compare_mmrec.py` does), its early stopping on valid "
             "Recall@20, test at the best-valid epoch, metrics as MMRec logs them (4 decimals). "
             f"{a.threads} thread(s), CPU shared with other jobs.",
             "",
             "| model | code | seeds | valid R@20 | test R@10 | test R@20 | test N@10 | test N@20 | best epoch |",
             "|---|---|---|---|---|---|---|---|---|"]

    def cell(row: dict, key: str) -> str:
        return f"{row[key]:.4f} ± {row[key + '_std']:.4f}" if row.get(key + "_std") else f"{row[key]:.4f}"

    for m, r in results.items():
        for rr in r["runs"]:
            lines.append(f"| {m} | MMRec | {rr['seed']} | {rr['valid']['recall@20']:.4f} | {rr['test']['recall@10']:.4f} | "
                         f"{rr['test']['recall@20']:.4f} | {rr['test']['ndcg@10']:.4f} | {rr['test']['ndcg@20']:.4f} | "
                         f"{rr.get('best_epoch', '-')} |")
        s = summary(r["runs"])
        lines.append(f"| {m} | MMRec | mean of {len(r['runs'])} | {cell(s, 'valid_recall@20')} | {cell(s, 'test_recall@10')} | "
                     f"{cell(s, 'test_recall@20')} | {cell(s, 'test_ndcg@10')} | {cell(s, 'test_ndcg@20')} | "
                     f"{s['best_epoch']:.0f} |")
        if m in ours:
            o = ours[m]
            lines.append(f"| {m} | graphrec | mean of {o['seeds']} | {cell(o, 'valid_recall@20')} | "
                         f"{cell(o, 'test_recall@10')} | {cell(o, 'test_recall@20')} | {cell(o, 'test_ndcg@10')} | "
                         f"{cell(o, 'test_ndcg@20')} | {o['best_epoch']:.0f} |")
    if notes:
        lines += ["", "Edits applied to the temporary copy:", ""] + [f"- {n}" for n in notes]
    with open(a.out + ".md", "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
