"""graphrec beside MMRec's own implementation (and the official SAND code) on byte-identical data.

    python benchmarks/compare_mmrec.py --mmrec PATH/TO/MMRec [--sand PATH/TO/SAND]
        [--dataset synthetic-clothing] [--scale 1] [--models lightgcn,freedom] [--epochs 3]
        [--threads 2] [--work DIR] [--out benchmarks/results/compare_mmrec] [--label TEXT] [--max-steps N]
        [--precisions float32,bf16] [--repeat N] [--set KEY=VALUE ...]

PATH is the user's own checkout; nothing of it is vendored here and the checkout is never
modified: it is copied into a temporary work directory, where behaviour-preserving edits make it
run on a current stack (Python 3.11, torch >= 2.6, numpy 2, scipy >= 1.12) and on Linux:

1. DOK adjacency filled through scipy's removed private ``_update`` -> ``_dict.update`` (same entries);
2. the removed ``np.float`` alias in its metrics -> the builtin ``float`` it meant;
3. ``torch.load`` of a cached kNN graph -> ``weights_only=False`` (torch >= 2.6 default changed);
4. unused image-helper imports of its dataset module (torchvision, lmdb) guarded by ``try/except
   ImportError`` (feature-based models never call them);
5. where a model file's name is not lower case (the official SAND's ``models/SAND.py``, which its
   ``get_model`` imports as ``models.sand``), a lower-case alias module that re-exports it;
6. ``self.x = nn.Parameter(t).to(self.device)`` -> ``....to(self.device).clone()``: on CUDA, where the
   code was written, ``.to`` returns a plain tensor that the forward later overwrites; on CPU it
   returns the Parameter itself and the overwrite raises (DRAGON, SAND).

The official SAND code also logs every epoch to Weights & Biases (``wandb.init(mode='online')``);
the run wrapper puts a no-op ``wandb`` module first on the import path (nothing may contact the
network, and the logging does not touch training).

The dataset is generated (or loaded) by graphrec, split once, and exported in MMRec's layout with
`graphrec.data.export.export_mmrec`; MMRec runs its own ``quick_start`` on that directory (CPU,
``epochs`` = N, valid and test evaluated after every epoch as MMRec always does) and graphrec runs
``graphrec.bench.worker`` on the same directory (``mmrec:<dir>``). MMRec's per-epoch training and
valid-evaluation times are read from its log; its peak memory is the process's RSS high-water mark.
Both sides use the same thread count. Without ``--mmrec`` only graphrec is measured, and the MMRec
column holds the figures recorded on this machine kind (``graphrec.bench.reference``), labelled so.

``--precisions float32,bf16`` measures graphrec once per ``train.amp`` setting against the same
MMRec run (one table per precision); ``--repeat N`` runs every graphrec measurement N times,
interleaved across precisions and around the MMRec run (graphrec, MMRec, graphrec, ...), so that
all see the same machine load, and reports the median seconds per epoch (per step x batches).
"""
from __future__ import annotations

import argparse
import ast
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

# graphrec model -> (MMRec model name, which checkout runs it, hyper-parameters of the single grid point)
MMREC_MODELS: Dict[str, Tuple[str, str, dict]] = {
    "mf": ("BPR", "mmrec", {"reg_weight": 1e-4}),
    "lightgcn": ("LightGCN", "mmrec", {"n_layers": 2, "reg_weight": 1e-4}),
    "vbpr": ("VBPR", "mmrec", {"reg_weight": 1e-4}),
    "freedom": ("FREEDOM", "mmrec", {"dropout": 0.8, "reg_weight": 0.0, "knn_k": 10, "mm_image_weight": 0.1}),
    "sand-a": ("SAND", "sand", {}),
    "sand": ("SAND", "sand", {}),
}
# graphrec settings matching MMRec's single grid point (graphrec defaults are MMRec's already;
# listed so a changed graphrec default cannot silently break the comparison)
GRAPHREC_SETS: Dict[str, List[str]] = {
    "lightgcn": ["model.n_layers=2", "model.reg_weight=0.0001", "model.embedding_dim=64"],
    "freedom": ["model.dropout=0.8", "model.reg_weight=0.0", "model.knn_k=10", "model.mm_image_weight=0.1"],
}
COMMON_SETS = ["train.batch_size=2048", "train.lr=0.001", "train.num_neg=1", "train.neg_sampling=uniform"]

_TRAIN_RE = re.compile(r"epoch (\d+) training \[time: ([0-9.]+)s")
_EVAL_RE = re.compile(r"epoch (\d+) evaluating \[time: ([0-9.]+)s")
PEAK_MARKER = "MMREC_PEAK_RSS_KB "


# -- the copy and its edits ----------------------------------------------------------------
def copy_tree(src: str, dst: str) -> str:
    """Copy a checkout (code and configs only: no .git, data, saved models or logs) to ``dst``."""
    if not os.path.isdir(os.path.join(src, "src")):
        raise FileNotFoundError(f"{src}: not an MMRec-style checkout (no src/ directory)")
    if os.path.exists(dst):
        shutil.rmtree(dst)
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(".git", "data", "saved", "log", "__pycache__",
                                                            "*.pt", "*.npy", "recommend_topk"))
    return dst


def _sub(path: str, pattern: str, repl: str, what: str, changes: List[str]) -> None:
    with open(path, encoding="utf-8") as f:
        text = f.read()
    new, n = re.subn(pattern, repl, text)
    if n:
        with open(path, "w", encoding="utf-8") as f:
            f.write(new)
        changes.append(f"{os.path.relpath(path)}: {what} ({n}x)")


def _guard_imports(path: str, modules: Tuple[str, ...], changes: List[str]) -> None:
    """Wrap top-level imports of ``modules`` in try/except ImportError (located with ``ast``, so a
    parenthesised multi-line import is wrapped whole)."""
    with open(path, encoding="utf-8") as f:
        text = f.read()
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    spans = []
    for node in tree.body:
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
        if any(n == m or n.startswith(m + ".") or n.endswith("." + m) for n in names for m in modules):
            spans.append((node.lineno - 1, node.end_lineno))
    for start, end in reversed(spans):
        body = ["    " + ln if ln.strip() else ln for ln in lines[start:end]]
        if body and not body[-1].endswith("\n"):
            body[-1] += "\n"
        lines[start:end] = ["try:  # graphrec compare: unused by feature-based models\n", *body,
                            "except ImportError:\n", "    pass\n"]
    if spans:
        with open(path, "w", encoding="utf-8") as f:
            f.write("".join(lines))
        changes.append(f"{os.path.relpath(path)}: guarded {len(spans)} unused import(s) of {', '.join(modules)}")


# balanced parentheses, up to five levels deep, across lines
_BALANCED = r"(?:[^()]|\((?:[^()]|\((?:[^()]|\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\))*\))*\))*"


def patch_tree(root: str) -> List[str]:
    """Apply the behaviour-preserving edits to the copy at ``root``; returns what changed."""
    changes: List[str] = []
    src = os.path.join(root, "src")
    for dirpath, _, files in os.walk(src):
        for fn in files:
            if not fn.endswith(".py"):
                continue
            p = os.path.join(dirpath, fn)
            # 1. scipy >= 1.12 removed dok_matrix._update; its entries live in ._dict
            _sub(p, r"(\w+)\._update\(", r"\1._dict.update(", "dok _update -> _dict.update", changes)
            # 2. numpy >= 1.24 removed the np.float alias (np.float32 etc. untouched)
            _sub(p, r"\bnp\.float\b(?!\d|_)", "float", "np.float -> float", changes)
            # 6. `self.x = nn.Parameter(t).to(self.device)`: on CUDA `.to` returns a plain tensor, so the
            #    attribute is an ordinary tensor the forward later overwrites (DRAGON, SAND); on CPU `.to`
            #    returns the Parameter itself and that overwrite raises. `.clone()` gives CPU the CUDA case.
            _sub(p, r"(self\.\w+\s*=\s*nn\.Parameter\(" + _BALANCED + r"\))\.to\(self\.device\)(?!\.clone)",
                 r"\1.to(self.device).clone()", "nn.Parameter(...).to(device) -> plain tensor as on CUDA", changes)
            # 3. torch >= 2.6 loads weights only by default; the cached graph is a pickled tensor
            _sub(p, r"torch\.load\(((?:(?!weights_only)[^()\n])*)\)", r"torch.load(\1, weights_only=False)",
                 "torch.load(..., weights_only=False)", changes)
    # 4. image helpers (torchvision, lmdb) unused by models that read precomputed features
    ds = os.path.join(src, "utils", "dataset.py")
    if os.path.exists(ds):
        _guard_imports(ds, ("data_utils", "lmdb", "torchvision"), changes)
    # 5. get_model imports models.<name.lower()>; the official SAND ships models/SAND.py, which only a
    #    case-insensitive file system finds: add a lower-case alias module re-exporting it
    mdir = os.path.join(src, "models")
    if os.path.isdir(mdir):
        for fn in sorted(os.listdir(mdir)):
            stem = fn[:-3]
            if fn.endswith(".py") and stem != stem.lower() and not os.path.exists(os.path.join(mdir, fn.lower())):
                with open(os.path.join(mdir, fn.lower()), "w") as f:
                    f.write(f"from models.{stem} import *  # noqa: F401,F403  (alias added by graphrec's compare_mmrec.py)\n")
                changes.append(f"{os.path.relpath(os.path.join(mdir, fn))}: alias module {fn.lower()}")
    prefix = os.path.relpath(root) + os.sep  # report paths inside the copy, not the temporary directory
    return [c[len(prefix):] if c.startswith(prefix) else c for c in changes]


def config_dir_cwd(root: str) -> str:
    """The directory MMRec must run from: its configurator reads ``src/configs`` relative to the
    working directory in some versions and ``configs`` in others."""
    conf = os.path.join(root, "src", "utils", "configurator.py")
    with open(conf, encoding="utf-8") as f:
        text = f.read()
    return root if "'src/configs'" in text or '"src/configs"' in text else os.path.join(root, "src")


def write_dataset_yaml(root: str, name: str, modalities: List[str]) -> str:
    cwd = config_dir_cwd(root)
    d = os.path.join(cwd, "src", "configs", "dataset") if cwd == root else os.path.join(cwd, "configs", "dataset")
    os.makedirs(d, exist_ok=True)
    lines = ["USER_ID_FIELD: userID", "ITEM_ID_FIELD: itemID", "TIME_FIELD: timestamp",
             "filter_out_cod_start_users: True", f"inter_file_name: '{name}.inter'", 'field_separator: "\\t"']
    if "image" in modalities:
        lines.append("vision_feature_file: 'image_feat.npy'")
    if "text" in modalities:
        lines.append("text_feature_file: 'text_feat.npy'")
    lines.append("user_graph_dict_file: 'user_graph_dict.npy'")  # read by the official SAND only
    path = os.path.join(d, f"{name}.yaml")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")
    return path


def parse_mmrec_log(text: str) -> Dict[str, List[float]]:
    """Per-epoch training and valid-evaluation seconds from MMRec's log lines."""
    return {"train_s": [float(m.group(2)) for m in _TRAIN_RE.finditer(text)],
            "eval_s": [float(m.group(2)) for m in _EVAL_RE.finditer(text)]}


_WRAPPER = r'''
import os, sys, types, yaml
# the official SAND code logs to Weights & Biases online: a no-op stand-in keeps the run offline
_noop = lambda *a, **k: None
sys.modules["wandb"] = types.SimpleNamespace(init=_noop, login=_noop, log=_noop, finish=_noop, config={})
threads = int(sys.argv[5])
import torch
if threads:
    torch.set_num_threads(threads)
sys.path.insert(0, sys.argv[1])
from utils.quick_start import quick_start
model, dataset, cfg = sys.argv[2], sys.argv[3], __import__("json").loads(sys.argv[4])
max_steps = cfg.pop("graphrec_max_steps", None)
if max_steps:  # per-step timing: each training epoch ends after max_steps batches of its shuffle
    from utils import dataloader as _dl
    _end = _dl.TrainDataLoader.pr_end
    _dl.TrainDataLoader.pr_end = property(lambda self: min(_end.fget(self), int(max_steps) * self.step))
conf_dir = "src/configs" if os.path.isdir("src/configs") else "configs"
myaml = os.path.join(conf_dir, "model", model + ".yaml")
fixed = dict(cfg.pop("model_params"))
if os.path.exists(myaml):
    with open(myaml) as f:
        y = yaml.safe_load(f) or {}
    for h in y.get("hyper_parameters") or []:
        if h not in fixed:
            v = y.get(h)
            fixed[h] = v[0] if isinstance(v, list) and v else v
cfg.update(fixed)
cfg["hyper_parameters"] = ["seed"]
kwargs = {}
if "args" in __import__("inspect").signature(quick_start).parameters:
    # the official SAND code also takes its command-line namespace: its own defaults, read from main.py
    import argparse, ast
    ns = {}
    with open(os.path.join(sys.argv[1], "main.py")) as f:
        tree = ast.parse(f.read())
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "add_argument":
            flag = next((a.value for a in node.args if isinstance(a, ast.Constant) and str(a.value).startswith("--")), None)
            kw = {k.arg: k.value for k in node.keywords}
            if flag:
                ns[flag[2:].replace("-", "_")] = ast.literal_eval(kw["default"]) if "default" in kw else None
    kwargs["args"] = argparse.Namespace(**ns)
quick_start(model=model, dataset=dataset, config_dict=cfg, save_model=False, **kwargs)
with open("/proc/self/status") as f:
    for line in f:
        if line.startswith("VmHWM:"):
            print("''' + PEAK_MARKER + r'''" + line.split()[1], flush=True)
'''


def run_mmrec(root: str, mmrec_model: str, dataset: str, data_root: str, epochs: int, params: dict,
              threads: int, timeout: Optional[float] = None, max_steps: Optional[int] = None) -> dict:
    """Run ``quick_start`` of the patched copy at ``root``; times from its log, peak RSS from /proc.
    ``max_steps``: end every training epoch after that many batches (its log's epoch time is then
    the time of those steps)."""
    for f in os.listdir(os.path.join(data_root, dataset)):
        if f.startswith("mm_adj") and f.endswith(".pt"):  # FREEDOM's kNN cache: time the build
            os.remove(os.path.join(data_root, dataset, f))
    cfg = {"epochs": int(epochs), "use_gpu": False, "data_path": os.path.abspath(data_root) + os.sep,
           "stopping_step": 10 ** 6, "seed": [999], "save_recommended_topk": False, "model_params": params}
    if max_steps:
        cfg["graphrec_max_steps"] = int(max_steps)
    cwd = config_dir_cwd(root)
    wrapper = os.path.join(root, "_graphrec_compare_run.py")
    with open(wrapper, "w") as f:
        f.write(_WRAPPER)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, wrapper, os.path.join(root, "src"), mmrec_model, dataset,
                           json.dumps(cfg), str(threads)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.perf_counter() - t0
    text = proc.stdout + "\n" + proc.stderr
    logs = sorted((os.path.join(dp, fn) for dp, _, fs in os.walk(cwd) for fn in fs if fn.endswith(".log")),
                  key=os.path.getmtime)
    times = parse_mmrec_log(text)
    if not times["train_s"] and logs:  # MMRec also writes its log to a file: read it when the console got nothing
        with open(logs[-1], errors="replace") as f:
            text += "\n" + f.read()
        times = parse_mmrec_log(text)
    if proc.returncode != 0 or not times["train_s"]:
        tail = " | ".join(text.strip().splitlines()[-10:])
        raise RuntimeError(f"MMRec {mmrec_model} failed (exit {proc.returncode}): {tail}")
    peak = [int(line[len(PEAK_MARKER):]) for line in proc.stdout.splitlines() if line.startswith(PEAK_MARKER)]
    n = len(times["train_s"])
    timed = times["train_s"][1:] if n > 1 else times["train_s"]
    ev = times["eval_s"][1:] if len(times["eval_s"]) > 1 else times["eval_s"]
    return {"train_s_epochs": times["train_s"], "eval_s_runs": times["eval_s"],
            "train_s": statistics.median(timed), "eval_s": statistics.median(ev) if ev else None,
            "max_steps": max_steps,
            "peak_rss_gb": peak[-1] / 2**20 if peak else None, "wall_s": round(wall, 2)}


def _git(path: str) -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=path, capture_output=True, text=True,
                              timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def write_user_graph_dict(train, path: str, topk: int = 200) -> None:
    """The official SAND code loads ``user_graph_dict.npy`` (its DRAGON-derived preprocessing script
    writes it; the forward never uses it, but ``topk_sample`` reads it every epoch): per user, the
    ids and co-interaction counts of the ``topk`` users sharing most training items, by count
    descending. Built here from graphrec's user-user co-interaction graph."""
    import numpy as np
    import torch
    from graphrec.graphs import cointeraction_graph

    g = cointeraction_graph(train, side="user", topk=topk, weight="count").adj
    crow, col, val = g.crow_indices().tolist(), g.col_indices(), g.values()
    out = {}
    for u in range(train.n_users):
        c, v = col[crow[u]:crow[u + 1]], val[crow[u]:crow[u + 1]]
        order = torch.argsort(-v, stable=True)
        out[u] = [c[order].tolist(), v[order].tolist()]
    np.save(path, out, allow_pickle=True)


def export_dataset(dataset: str, scale: Optional[float], out_root: str,
                   user_graph: bool = False) -> Tuple[str, str, List[str]]:
    """Generate/load ``dataset``, split it as graphrec does, export it; returns (dir, name, modalities).
    ``user_graph``: also write the official SAND's ``user_graph_dict.npy``."""
    from graphrec import config as config_mod
    from graphrec.data.export import export_mmrec
    from graphrec.datasets import load
    from graphrec.experiment import split_for

    ds = load(dataset, **({"scale": scale} if scale is not None else {}))
    split = split_for(ds, config_mod.load_config("lightgcn", dataset))
    name = re.sub(r"[^A-Za-z0-9_]", "_", dataset) + (f"_x{scale:g}".replace(".", "p") if scale else "")
    d = os.path.join(out_root, name)
    export_mmrec(ds, split, d, name)
    if user_graph:
        write_user_graph_dict(split.train, os.path.join(d, "user_graph_dict.npy"))
    mods = ds.features.modalities if ds.features is not None else []
    return d, name, mods


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--mmrec", help="path of a local MMRec checkout (never modified; a copy is patched)")
    ap.add_argument("--sand", help="path of a local copy of the official SAND code (for sand-a)")
    ap.add_argument("--dataset", default="synthetic-clothing")
    ap.add_argument("--scale", type=float)
    ap.add_argument("--models", default="lightgcn,freedom")
    ap.add_argument("--epochs", type=int, default=3, help="epochs per side, the first a warm-up (default 3)")
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--work", help="work directory (default: a temporary one, removed afterwards)")
    ap.add_argument("--out", default="benchmarks/results/compare_mmrec", help="output prefix (.json, .md)")
    ap.add_argument("--label", default="", help="e.g. 'shared machine, preliminary'")
    ap.add_argument("--timeout", type=float, help="seconds per run")
    ap.add_argument("--max-steps", type=int,
                    help="end every training epoch after this many batches on both sides and compare seconds "
                         "per step (for implementations whose full epoch takes too long to repeat)")
    ap.add_argument("--mmrec-rev", help="commit of the MMRec copy when it is not a git checkout (e.g. an archive)")
    ap.add_argument("--sand-rev", help="commit of the SAND copy when it is not a git checkout")
    ap.add_argument("--precisions", default="float32",
                    help="graphrec train.amp settings to measure, comma-separated: float32, bf16, auto")
    ap.add_argument("--repeat", type=int, default=1, help="graphrec runs per precision, interleaved (medians)")
    ap.add_argument("--set", action="append", default=[], dest="sets", metavar="KEY=VALUE",
                    help="extra graphrec settings (both precisions)")
    a = ap.parse_args(argv)
    precisions = [p.strip() for p in a.precisions.split(",") if p.strip()]

    from graphrec.bench import reference as ref
    from graphrec.bench import tables
    from graphrec.bench.runner import run_one

    models = [m.strip() for m in a.models.split(",") if m.strip()]
    work = a.work or tempfile.mkdtemp(prefix="graphrec-compare-")
    rows, measured, notes = [], {}, []
    try:
        data_root = os.path.join(work, "data")
        ddir, name, mods = export_dataset(a.dataset, a.scale, data_root, user_graph=bool(a.sand))
        print(f"exported {a.dataset} to {ddir} (MMRec layout)")
        copies: Dict[str, str] = {}
        for kind, path in (("mmrec", a.mmrec), ("sand", a.sand)):
            if path:
                dst = copy_tree(os.path.abspath(path), os.path.join(work, kind))
                for c in patch_tree(dst):
                    notes.append(f"{kind}: {c}")
                write_dataset_yaml(dst, name, mods)
                copies[kind] = dst
        for m in models:
            sets = COMMON_SETS + GRAPHREC_SETS.get(m, []) + list(a.sets)
            if a.max_steps:
                sets = sets + [f"train.max_steps_per_epoch={a.max_steps}"]
            runs: Dict[str, List[dict]] = {p: [] for p in precisions}

            def measure_ours() -> None:
                for prec in precisions:
                    amp = "false" if prec == "float32" else prec
                    print(f"graphrec {m} ({prec}) on mmrec:{ddir} ...")
                    r = run_one(m, f"mmrec:{ddir}", a.epochs, None, sets + [f"train.amp={amp}"], "cpu", a.threads, 1,
                                a.timeout)
                    r["dataset"] = a.dataset  # the same data, under the name the tables know
                    if r.get("error"):
                        print(f"graphrec {m} ({prec}) FAILED: {r['error']}")
                    else:
                        print(f"graphrec {m} ({prec}): {r.get('train_s_per_step')} s/step")
                    runs[prec].append(r)

            n_before = (a.repeat + 1) // 2
            for _ in range(n_before):
                measure_ours()
            row = {"dataset": a.dataset, "model": m}
            spec = MMREC_MODELS.get(m)
            mmrec_r = None
            if spec and spec[1] in copies:
                print(f"MMRec ({spec[1]}) {spec[0]} ...")
                try:
                    mmrec_r = run_mmrec(copies[spec[1]], spec[0], name, data_root, a.epochs, spec[2], a.threads,
                                        a.timeout, a.max_steps)
                    print(f"MMRec {spec[0]}: {mmrec_r['train_s']} s per (truncated) epoch")
                except (RuntimeError, subprocess.TimeoutExpired) as e:
                    row["mmrec_error"] = str(e)
                    print(f"MMRec {spec[0]} FAILED: {e}")
            for _ in range(a.repeat - n_before):
                measure_ours()
            for prec in precisions:
                ok = [r for r in runs[prec] if not r.get("error")]
                if ok:  # the median run by training time stands for the precision; all are kept
                    ours = sorted(ok, key=lambda r: r.get("train_s_per_epoch") or 0)[(len(ok) - 1) // 2]
                else:
                    ours = runs[prec][-1]
                prow = dict(row, precision=prec, graphrec=ours, graphrec_runs=runs[prec])
                if mmrec_r is not None:
                    r = dict(mmrec_r)
                    prow["mmrec_run"] = r
                    if ours.get("train_s_per_epoch_projected"):
                        # MMRec ran the same batches per epoch (same training pairs, same batch size):
                        # project its truncated epochs exactly as the worker projected ours
                        r["train_s_per_step"] = r["train_s"] / ours["steps_per_epoch"]
                        r["projected_train_s_per_epoch"] = r["train_s_per_step"] * ours["full_steps_per_epoch"]
                        r = dict(r, train_s=r["projected_train_s_per_epoch"])
                    mm = {"train_s": (r["train_s"], r["train_s"]),
                          "eval_s": (r["eval_s"], r["eval_s"]) if r["eval_s"] else None,
                          "rss_gb": (r["peak_rss_gb"], r["peak_rss_gb"])}
                    prow["mmrec"] = {k: v for k, v in mm.items() if v}
                    measured[(prec, a.dataset, m)] = prow["mmrec"]
                rows.append(prow)
    finally:
        if not a.work:
            shutil.rmtree(work, ignore_errors=True)

    ours = [r["graphrec"] for r in rows if not r["graphrec"].get("error")]
    src = ", ".join(f"{k} {rev or _git(p)}" for k, p, rev in (("MMRec", a.mmrec, a.mmrec_rev), ("SAND", a.sand, a.sand_rev))
                    if p)
    out = {"kind": "graphrec-compare-mmrec", "label": a.label, "dataset": a.dataset, "scale": a.scale,
           "epochs": a.epochs, "threads": a.threads, "max_steps": a.max_steps, "edits": notes,
           "precisions": precisions, "repeat": a.repeat, "sets": list(a.sets),
           "source": f"compare_mmrec.py, same run ({src})" if measured else ref.MMREC_SOURCE,
           "mmrec_device": (f"{ours[0]['device_name']}, {a.threads} threads" if ours and measured
                            else ref.MMREC_DEVICE),
           "rows": rows}
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".json", "w") as f:
        json.dump(out, f, indent=2, default=str)
    parts = []
    for prec in precisions:
        mine = [r["graphrec"] for r in rows if r.get("precision") == prec and not r["graphrec"].get("error")]
        if measured:
            meas = {(d, m): v for (p, d, m), v in measured.items() if p == prec}
            md = tables.mmrec_table(mine, meas, source=out["source"], device=out["mmrec_device"])
        else:
            md = tables.mmrec_table(mine)
        parts.append(f"### graphrec {prec} (train.amp={'false' if prec == 'float32' else prec})\n\n{md}")
    md = "\n".join(parts)
    if measured:
        head = "graphrec and MMRec measured in one run on byte-identical data"
    else:
        head = ("graphrec measured now; MMRec column = figures recorded on the same machine kind "
                "(reference, not re-run: pass --mmrec PATH to measure it)")
    if a.repeat > 1:
        head += (f". graphrec measured {a.repeat} times per precision, interleaved across precisions and around "
                 "the MMRec run; its median run is shown (all runs in the .json)")
    if a.max_steps:
        head += (f". Training epochs were cut to {a.max_steps} batches on both sides; the s/epoch columns are "
                 "seconds per step (median over timed epochs) x the full epoch's batch count")
    text = f"# graphrec beside MMRec\n\n{head}. {a.label}\n\n{md}\n"
    if notes:
        text += "\nEdits applied to the temporary copy:\n\n" + "\n".join(f"- {n}" for n in notes) + "\n"
    with open(a.out + ".md", "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {a.out}.json and {a.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
