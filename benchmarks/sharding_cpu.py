"""Memory of sharded embedding tables (``train.shard_tables``) on the CPU: MF on synthetic-clothing
(no item features) trained by one process, and by two gloo processes with its tables sharded
row-wise and table-wise. Per rank: the bytes of table rows it holds (measured from its shards,
result.json's ``shard_tables``) and its peak resident memory (sampled every 20 ms over the whole
run: data, model, one epoch of ``--steps`` Adam steps, valid and test evaluation, checkpoints).

    python benchmarks/sharding_cpu.py [--scale 2] [--dim 256] [--steps 30] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import socket
import subprocess
import sys
import time

from graphrec import environment

HERE = os.path.dirname(os.path.abspath(__file__))


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(out: str, argv: list[str]) -> int:
    """One process of a measured run: ``graphrec <argv>``, then its peak RSS into ``out``. The
    peak is sampled every 20 ms (graphrec's phase probe resets the kernel's VmHWM per phase)."""
    import threading
    from graphrec.cli import main as cli
    peak, done = [rss_mb()], threading.Event()

    def sample():
        while not done.wait(0.02):
            peak[0] = max(peak[0], rss_mb())
    t = threading.Thread(target=sample, daemon=True)
    t.start()
    rc = cli(argv)
    done.set()
    t.join()
    with open(out, "w") as f:
        json.dump({"rank": int(os.environ.get("RANK", "0")), "rc": rc, "peak_rss_mb": round(peak[0], 1)}, f)
    return rc or 0


def measure(label: str, nproc: int, mode: str, a, work: str) -> dict:
    run_dir = os.path.join(work, label)
    argv = ["train", "--model", "mf", "--dataset", "synthetic-clothing", "--epochs", "1", "--out", run_dir,
            "--seed", "0", "--quiet",
            "--set", f"data.dataset_args={{scale: {a.scale}, features: false}}", "--set", f"threads={a.threads}",
            "--set", f"model_params.embedding_dim={a.dim}", "--set", f"train.max_steps_per_epoch={a.steps}",
            "--set", f"train.shard_tables={mode}"]
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nproc)}
    if nproc == 1:
        env.pop("WORLD_SIZE")
    t0 = time.time()
    procs = [subprocess.Popen([sys.executable, __file__, "--worker", f"{run_dir}.rank{r}.json", "--", *argv],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(nproc)]
    if any(p.wait() for p in procs):
        raise SystemExit(f"{label}: a rank failed")
    ranks = [json.load(open(f"{run_dir}.rank{r}.json")) for r in range(nproc)]
    res = json.load(open(os.path.join(run_dir, "result.json")))
    tables = (res.get("shard_tables") or {}).get("tables")
    if tables is None:  # one process: the whole tables
        n_rows = {"user_emb": res["n_users"], "item_emb": res["n_items"]}
        tables = {k: {"rows": n, "rows_per_rank": [n], "bytes_per_rank": [n * a.dim * 4]} for k, n in n_rows.items()}
    per_rank_bytes = [sum(t["bytes_per_rank"][r] for t in tables.values()) for r in range(nproc)]
    phases = {k: round(v.get("peak_rss_mb", 0.0), 1) for k, v in res["phases"].items()}
    return {"label": label, "nproc": nproc, "shard_tables": mode, "wall_s": round(time.time() - t0, 1),
            "table_mb_per_rank": [round(b / 2**20, 1) for b in per_rank_bytes],
            # rows + gradient + Adam's two moments, per rank
            "train_state_mb_per_rank": [round(4 * b / 2**20, 1) for b in per_rank_bytes],
            "peak_rss_mb_per_rank": [r["peak_rss_mb"] for r in ranks],
            "rank0_phase_peak_rss_mb": phases, "tables": tables,
            "test_recall@20": round(res["test"].get("recall@20", float("nan")), 4),
            "n_users": res["n_users"], "n_items": res["n_items"]}


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        return worker(sys.argv[2], sys.argv[4:])
    ap = argparse.ArgumentParser()
    ap.add_argument("--scale", type=float, default=2.0)
    ap.add_argument("--dim", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--work", default="/tmp/graphrec_sharding_bench")
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    a = ap.parse_args()
    os.makedirs(a.work, exist_ok=True)
    rows = [measure("1 process", 1, "none", a, a.work),
            measure("2 ranks, row_wise", 2, "row_wise", a, a.work),
            measure("2 ranks, table_wise", 2, "table_wise", a, a.work)]
    meta = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": f"{environment.cpu_name()}, {os.cpu_count()} cores shared with other jobs",
            "threads_per_process": a.threads, "dataset": f"synthetic-clothing, scale {a.scale}, no item features",
            "model": f"mf, embedding_dim {a.dim}, Adam", "epochs": 1, "steps": a.steps,
            "python": platform.python_version()}
    import torch
    meta["torch"] = torch.__version__
    with open(os.path.join(a.out, "sharding_cpu.json"), "w") as f:
        json.dump({"meta": meta, "runs": rows}, f, indent=1)
    lines = [f"# Sharded embedding tables on the CPU ({meta['date']})", "",
             f"{meta['model']}; {meta['dataset']} ({rows[0]['n_users']:,} users, {rows[0]['n_items']:,} items); "
             f"one epoch of {a.steps} steps, valid and test evaluation, checkpoints; {a.threads} thread per process; "
             f"{meta['machine']}; torch {meta['torch']}. Table MB: the rows a rank holds; train state: rows, gradient "
             f"and Adam's two moments (4x); peak RSS: the process's largest resident set, sampled every 20 ms.", "",
             "| run | table MB per rank | train state MB per rank | peak RSS MB per rank "
             "| rank 0 peak RSS MB by phase | test recall@20 | wall s |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        ph = ", ".join(f"{k} {v:.0f}" for k, v in r["rank0_phase_peak_rss_mb"].items())
        lines.append(f"| {r['label']} | {' / '.join(map(str, r['table_mb_per_rank']))} | "
                     f"{' / '.join(map(str, r['train_state_mb_per_rank']))} | "
                     f"{' / '.join(f'{x:.0f}' for x in r['peak_rss_mb_per_rank'])} | {ph} | "
                     f"{r['test_recall@20']} | {r['wall_s']} |")
    with open(os.path.join(a.out, "sharding_cpu.md"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
