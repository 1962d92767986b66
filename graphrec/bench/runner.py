"""Run benchmark workers, one subprocess per (model, scale, repeat), and collect their records."""
from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import time
from typing import Callable, Iterable, List, Optional, Sequence

from graphrec.bench.worker import parse_record
from graphrec.utils import atomic_write_bytes, atomic_write_json, log

REQUIRED_KEYS = ("model", "dataset", "device", "params", "graph_build_s", "train_s_per_epoch", "eval_s",
                 "peak_mem_mb")
SCALABLE_PREFIX = "synthetic"  # dataset names whose loader takes scale= (the synthetic generator)


def available_models(names: Sequence[str]) -> tuple[list[str], dict[str, str]]:
    """Split requested model names into those graphrec can build and {name: why not} for the rest."""
    from graphrec.errors import GraphrecError
    from graphrec.models import get_model

    ok, skipped = [], {}
    for n in names:
        try:
            get_model(n)
            ok.append(n)
        except (GraphrecError, KeyError, ImportError) as e:
            skipped[n] = str(e.args[0] if e.args else e)
    return ok, skipped


def worker_command(model: str, dataset: str, epochs: int, scale: Optional[float], sets: Iterable[str],
                   device: Optional[str], threads: Optional[int], warmup: int = 1) -> list[str]:
    cmd = [sys.executable, "-m", "graphrec.bench.worker", "--model", model, "--dataset", dataset,
           "--epochs", str(epochs), "--warmup", str(warmup)]
    return cmd + common_args(scale, sets, device, threads)


def common_args(scale: Optional[float], sets: Iterable[str], device: Optional[str],
                threads: Optional[int]) -> list[str]:
    """Command-line options shared by the bench worker and the profiler subprocesses."""
    cmd: list[str] = []
    if scale is not None:
        cmd += ["--scale", repr(float(scale))]
    for s in sets:
        cmd += ["--set", s]
    if device:
        cmd += ["--device", device]
    if threads:
        cmd += ["--threads", str(threads)]
    return cmd


def run_one(model: str, dataset: str, epochs: int = 3, scale: Optional[float] = None,
            sets: Iterable[str] = (), device: Optional[str] = None, threads: Optional[int] = None,
            warmup: int = 1, timeout: Optional[float] = None) -> dict:
    """One measurement in a fresh process; on failure a record with ``error`` (and stderr's tail)."""
    sets = list(sets)
    cmd = worker_command(model, dataset, epochs, scale, sets, device, threads, warmup)
    env = dict(os.environ)
    env.setdefault("GRAPHREC_LOG", "WARNING")
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"model": model, "dataset": dataset, "scale": scale if scale is not None else 1.0,
                "error": f"timed out after {timeout} s"}
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-8:]
        return {"model": model, "dataset": dataset, "scale": scale if scale is not None else 1.0,
                "error": f"worker exited with {proc.returncode}: " + " | ".join(tail)}
    rec = parse_record(proc.stdout)
    rec["worker_wall_s"] = round(time.perf_counter() - t0, 2)
    return rec


def run_bench(models: Sequence[str], dataset: str, epochs: int = 3, repeat: int = 1,
              scales: Optional[Sequence[float]] = None, sets: Iterable[str] = (), device: Optional[str] = None,
              threads: Optional[int] = None, warmup: int = 1, timeout: Optional[float] = None,
              label: str = "", echo: Callable[[str], None] = print) -> list[dict]:
    """Every (model, scale, repeat) in its own process; returns the records (failed ones carry
    ``error``). Unknown models are reported through ``echo`` and skipped."""
    if repeat < 1:
        raise ValueError(f"bench: --repeat must be >= 1, got {repeat}")
    if scales and not dataset.startswith(SCALABLE_PREFIX):
        raise ValueError(f"bench: --scale needs a synthetic dataset (its generator takes scale=); "
                         f"{dataset!r} is not one")
    ok, skipped = available_models(models)
    for n, why in skipped.items():
        echo(f"skipping model {n!r}: {why}")
    sets = list(sets)
    records = []
    for scale in (list(scales) if scales else [None]):
        for model in ok:
            for r in range(repeat):
                where = f"{model} on {dataset}" + (f" at scale {scale:g}" if scale is not None else "")
                echo(f"bench: {where} (repeat {r + 1}/{repeat}) ...")
                rec = run_one(model, dataset, epochs, scale, sets, device, threads, warmup, timeout)
                rec["repeat"] = r
                if label:
                    rec["label"] = label
                if "error" in rec:
                    echo(f"bench: {where} FAILED: {rec['error']}")
                else:
                    echo(f"bench: {where}: {rec['train_s_per_epoch'] if rec['train_s_per_epoch'] is not None else '-'}"
                         f" s/epoch, eval {rec['eval_s']} s, graphs {rec['graph_build_s']} s, "
                         f"peak {rec['peak_mem_mb']:.0f} MB ({rec['device_name']})")
                records.append(rec)
    return records


# -- files -----------------------------------------------------------------------------------
CSV_COLUMNS = ["model", "dataset", "scale", "repeat", "n_users", "n_items", "n_train", "params",
               "graph_build_s", "train_s_per_epoch", "eval_s", "peak_mem_mb", "mem_graph_build_mb",
               "mem_train_mb", "mem_eval_mb", "peak_rss_mb", "baseline_rss_mb", "mem_method", "device",
               "device_name", "threads", "torch", "torch_geometric", "git_commit", "config_hash", "label",
               "error"]


def to_csv(records: Sequence[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    w.writeheader()
    for r in records:
        row = dict(r)
        for ph in ("graph_build", "train", "eval"):
            row[f"mem_{ph}_mb"] = (r.get("phase_mem_mb") or {}).get(ph)
        w.writerow(row)
    return buf.getvalue()


def write_json(path: str, records: Sequence[dict], meta: Optional[dict] = None) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_json(path, {"kind": "graphrec-bench", "meta": meta or {}, "records": list(records)})


def write_csv(path: str, records: Sequence[dict]) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    atomic_write_bytes(path, to_csv(records).encode())


def read_records(paths: Iterable[str]) -> List[dict]:
    """Records from bench JSON files (an object with ``records`` or a bare list)."""
    out = []
    paths = list(paths)
    for p in paths:
        with open(p) as f:
            obj = json.load(f)
        recs = obj.get("records") if isinstance(obj, dict) else obj
        if not isinstance(recs, list):
            raise ValueError(f"{p}: not a graphrec bench file (no 'records' list)")
        meta = obj.get("meta", {}) if isinstance(obj, dict) else {}
        for r in recs:
            r = dict(r)
            r.setdefault("source_file", os.path.basename(p))
            if meta.get("label"):
                r.setdefault("label", meta["label"])
            out.append(r)
    log.info("read %d bench records from %d file(s)", len(out), len(paths))
    return out
