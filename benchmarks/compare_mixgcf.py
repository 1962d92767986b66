"""graphrec's `mixgcf` beside the official MixGCF code (LightGCN backbone) on byte-identical data.

    python benchmarks/compare_mixgcf.py --mixgcf PATH/TO/MixGCF [--mixgcf-rev SHA]
        [--dataset synthetic-clothing] [--scale 1] [--epochs 3] [--threads 2]
        [--out benchmarks/results/compare_mixgcf] [--label TEXT]

PATH is the user's own copy of https://github.com/huangtinglin/MixGCF (it needs numpy, scipy,
scikit-learn and prettytable beside torch); nothing of it is vendored here and it is never modified:
its code is copied into a temporary directory and run there with the README's LightGCN + MixGCF
command (dim 64, lr 1e-3, batch 2048, 3 hops, mean pooling, K = 1, 64 candidates), on the CPU.

One edit is made to the copy: the evaluation every fifth epoch (epoch 0 included) is skipped
(``if epoch % 5 == 0:`` -> ``if False:``). It ranks each user's items in a Python loop with one
worker process per two cores (at Clothing scale about 7 minutes per pass here, twice per evaluation:
test and valid), and only training is compared. Training is untouched.

The dataset is generated (or loaded) by graphrec, split once and exported in MMRec's layout
(`compare_mmrec.export_dataset`); MixGCF's ``train.txt``/``valid.txt``/``test.txt`` (one
``user item`` pair per line, items numbered after the users as its loader expects) are written from
that export's ``.inter`` file, and graphrec trains on the export itself (``mmrec:<dir>``), so both
read the same pairs. MixGCF's seconds per epoch come from its log lines (``using time ...s``), its
peak memory from the process's RSS high-water mark; both sides use the same thread count. Its
epoch leaves out the last partial batch (97 of graphrec's 98 batches at Clothing scale), which
favours it by about 1%.
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
import time
from typing import List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from compare_mmrec import _git, export_dataset  # noqa: E402  (the same export as the MMRec comparison)

_EPOCH_RE = re.compile(r"using time ([0-9.]+)s, training loss at epoch (\d+): ([-0-9.naninf]+)")
PEAK_MARKER = "MIXGCF_PEAK_RSS_KB "
#: the README's LightGCN + MixGCF command, minus dataset paths and the GPU
MIXGCF_ARGS = ["--gnn", "lightgcn", "--dim", "64", "--lr", "0.001", "--batch_size", "2048", "--context_hops", "3",
               "--pool", "mean", "--ns", "mixgcf", "--K", "1", "--n_negs", "64"]
GRAPHREC_SETS = ["model.n_layers=3", "model.embedding_dim=64", "model.readout=mean", "model.n_candidates=64",
                 "model.n_negatives=1", "model.reg_weight=0.0001", "train.batch_size=2048", "train.lr=0.001"]

_WRAPPER = r'''
import os, resource, runpy, sys
threads = int(os.environ.get("MIXGCF_THREADS", "0"))
import torch
if threads:
    torch.set_num_threads(threads)
sys.argv = ["main.py"] + sys.argv[1:]
try:
    runpy.run_path("main.py", run_name="__main__")
finally:
    print("MIXGCF_PEAK_RSS_KB %d" % resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, flush=True)
'''


def copy_code(src: str, dst: str) -> List[str]:
    """Copy MixGCF's code (no data, logs or git) to ``dst`` and make the one edit; returns its note."""
    if not os.path.isfile(os.path.join(src, "main.py")) or not os.path.isdir(os.path.join(src, "modules")):
        raise FileNotFoundError(f"{src}: not a MixGCF checkout (no main.py and modules/)")
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "data", "training_log", "weights",
                                                            "__pycache__"))
    main = os.path.join(dst, "main.py")
    with open(main) as f:
        text = f.read()
    if "if epoch % 5 == 0:" not in text:
        raise RuntimeError(f"{main}: the evaluation condition 'if epoch % 5 == 0:' is not there; "
                           "this MixGCF revision is not one this script knows")
    with open(main, "w") as f:
        f.write(text.replace("if epoch % 5 == 0:", "if False:  # graphrec compare: training only", 1))
    return ["main.py: `if epoch % 5 == 0:` -> `if False:` (its evaluation is skipped; training only)"]


def write_mixgcf_data(inter_path: str, out_dir: str) -> dict:
    """``train.txt``, ``valid.txt``, ``test.txt`` from an MMRec ``.inter`` (x_label 0/1/2), items
    shifted by the user count as MixGCF's non-yelp loader expects; returns the sizes."""
    import pandas as pd

    df = pd.read_csv(inter_path, sep="\t")
    n_users = int(df["userID"].max()) + 1
    os.makedirs(out_dir, exist_ok=True)
    sizes = {}
    for label, name in ((0, "train"), (1, "valid"), (2, "test")):
        part = df[df["x_label"] == label]
        pairs = part[["userID", "itemID"]].to_numpy().copy()
        pairs[:, 1] += n_users
        with open(os.path.join(out_dir, f"{name}.txt"), "w") as f:
            f.write("\n".join(f"{u} {i}" for u, i in pairs) + "\n")
        sizes[name] = int(len(pairs))
    return {"n_users": n_users, "n_items": int(df["itemID"].max()) + 1, **sizes}


def run_mixgcf(code: str, data_root: str, name: str, epochs: int, threads: int,
               timeout: Optional[float] = None) -> dict:
    """Run the copy's main.py on the CPU; per-epoch training seconds from its log, peak RSS."""
    wrapper = os.path.join(code, "_graphrec_compare_run.py")
    with open(wrapper, "w") as f:
        f.write(_WRAPPER)
    env = dict(os.environ, MIXGCF_THREADS=str(threads), OMP_NUM_THREADS=str(threads))
    # --cuda is argparse type=bool: only the empty string reads as False
    cmd = [sys.executable, wrapper, "--dataset", name, "--data_path", os.path.abspath(data_root) + os.sep,
           "--cuda", "", "--gpu_id", "0", "--epoch", str(epochs)] + MIXGCF_ARGS
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=code, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.perf_counter() - t0
    text = proc.stdout + "\n" + proc.stderr
    found = [(int(e), float(s), float(loss)) for s, e, loss in _EPOCH_RE.findall(text)]
    if proc.returncode != 0 or not found:
        tail = " | ".join(text.strip().splitlines()[-10:])
        raise RuntimeError(f"MixGCF failed (exit {proc.returncode}): {tail}")
    peak = [int(line[len(PEAK_MARKER):]) for line in proc.stdout.splitlines() if line.startswith(PEAK_MARKER)]
    secs = [s for _, s, _ in found]
    timed = secs[1:] if len(secs) > 1 else secs  # the first epoch is a warm-up, as on graphrec's side
    return {"train_s_epochs": secs, "losses": [x for _, _, x in found], "train_s": statistics.median(timed),
            "peak_rss_gb": peak[-1] / 2 ** 20 if peak else None, "wall_s": round(wall, 2)}


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mixgcf", required=True, help="path of a local MixGCF copy (never modified)")
    ap.add_argument("--mixgcf-rev", help="its commit when the copy is not a git checkout")
    ap.add_argument("--dataset", default="synthetic-clothing")
    ap.add_argument("--scale", type=float)
    ap.add_argument("--epochs", type=int, default=3, help="epochs per side, the first a warm-up (default 3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--out", default="benchmarks/results/compare_mixgcf", help="output prefix (.json, .md)")
    ap.add_argument("--label", default="")
    ap.add_argument("--timeout", type=float, help="seconds per run")
    a = ap.parse_args(argv)

    from graphrec.bench.runner import run_one

    work = tempfile.mkdtemp(prefix="graphrec-mixgcf-")
    try:
        ddir, name, _ = export_dataset(a.dataset, a.scale, os.path.join(work, "mmrec"))
        sizes = write_mixgcf_data(os.path.join(ddir, f"{name}.inter"), os.path.join(work, "mixgcf", name))
        print(f"exported {a.dataset}: {sizes}")
        notes = copy_code(os.path.abspath(a.mixgcf), os.path.join(work, "code"))
        print("graphrec mixgcf ...")
        ours = run_one("mixgcf", f"mmrec:{ddir}", a.epochs, None, GRAPHREC_SETS, "cpu", a.threads, 1, a.timeout)
        if ours.get("error"):
            raise RuntimeError(f"graphrec mixgcf failed: {ours['error']}")
        print("official MixGCF ...")
        theirs = run_mixgcf(os.path.join(work, "code"), os.path.join(work, "mixgcf"), name, a.epochs, a.threads,
                            a.timeout)
    finally:
        shutil.rmtree(work, ignore_errors=True)

    rev = a.mixgcf_rev or _git(a.mixgcf)
    ratio_t = theirs["train_s"] / ours["train_s_per_epoch"]
    ratio_m = (ours["peak_rss_mb"] / 1024) / theirs["peak_rss_gb"] if theirs.get("peak_rss_gb") else None
    out = {"kind": "graphrec-compare-mixgcf", "label": a.label, "dataset": a.dataset, "scale": a.scale,
           "epochs": a.epochs, "threads": a.threads, "sizes": sizes, "source": f"MixGCF {rev}",
           "edits": notes, "mixgcf_args": MIXGCF_ARGS, "graphrec_sets": GRAPHREC_SETS,
           "device": f"{ours.get('device_name', 'cpu')}, {a.threads} threads",
           "graphrec": ours, "mixgcf": theirs, "speedup": ratio_t, "memory_ratio": ratio_m}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".json", "w") as f:
        json.dump(out, f, indent=2, default=str)
    mem = f"{ratio_m:.2f}" if ratio_m is not None else "n/a"
    md = "\n".join([
        "# graphrec `mixgcf` beside the official MixGCF code",
        "",
        f"Measured in one run on byte-identical data ({a.dataset}, {sizes['train']:,} training pairs, "
        f"{sizes['n_users']:,} users, {sizes['n_items']:,} items), {out['device']}, MixGCF {rev}. "
        f"Median of the epochs after the first. {a.label}",
        "",
        "| side | s/epoch | epochs (s) | peak RSS GB |",
        "|---|---|---|---|",
        f"| official MixGCF | {theirs['train_s']:.2f} | {', '.join(f'{s:.2f}' for s in theirs['train_s_epochs'])} | "
        f"{theirs['peak_rss_gb']:.2f} |",
        f"| graphrec mixgcf | {ours['train_s_per_epoch']:.2f} | "
        f"{', '.join(f'{s:.2f}' for s in ours.get('train_s_epochs', []))} | {ours['peak_rss_mb'] / 1024:.2f} |",
        "",
        f"Speed-up {ratio_t:.1f}x; graphrec's peak memory is {mem} of MixGCF's.",
        "",
        "Edits applied to the temporary copy:",
        "",
        *[f"- {n}" for n in notes],
        "",
    ])
    with open(a.out + ".md", "w") as f:
        f.write(md)
    print(md)
    print(f"wrote {a.out}.json and {a.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
