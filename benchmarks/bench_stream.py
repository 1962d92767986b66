"""Reading a large interaction log: the whole-file reader against the streamed one
(`graphrec.data.stream`), rows per second and peak memory, each in a fresh subprocess.

The log has the size of `synthetic-clothing` at scale 10 (2.78M rows: 394k users, 230k items,
Amazon-like 14-character user and 10-character item ids, a timestamp and a rating per row), written
once as CSV (and gzip-compressed CSV) to a temporary directory. Peak memory is the process's RSS
high-water mark minus its RSS before reading (interpreter and libraries loaded). Usage:
    python benchmarks/bench_stream.py [--rows 2780000] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import subprocess
import sys
import tempfile
import time

import numpy as np

from graphrec.environment import cpu_name

CHILD = r"""
import json, sys, time
def kib(field):
    for line in open('/proc/self/status'):
        if line.startswith(field):
            return int(line.split()[1])
from graphrec.data import stream
from graphrec.data.readers import read_table
import pyarrow, torch  # loaded before the baseline
path, mode = sys.argv[1], sys.argv[2]
stream.STREAM_MIN_BYTES = 0 if mode == "streamed" else 1 << 62
base = kib("VmRSS")
t0 = time.perf_counter()
inter = read_table(path)
sec = time.perf_counter() - t0
print(json.dumps({"rows": len(inter), "users": inter.n_users, "items": inter.n_items, "seconds": sec,
                  "rows_per_s": len(inter) / sec, "peak_extra_mb": (kib("VmHWM") - base) / 1024}))
"""


def write_log(path: str, rows: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    n_users, n_items = round(rows / 7.06), round(rows / 12.1)
    users = np.char.add("A", np.char.zfill(rng.integers(0, n_users, rows).astype(str), 13))
    items = np.char.add("B", np.char.zfill(rng.integers(0, n_items, rows).astype(str), 9))
    ts = 1_300_000_000 + rng.integers(0, 10**8, rows)
    rating = rng.integers(1, 6, rows)
    opener = gzip.open if path.endswith(".gz") else open
    with opener(path, "wt") as f:
        f.write("user_id,item_id,timestamp,rating\n")
        for s in range(0, rows, 500_000):
            e = min(rows, s + 500_000)
            f.write("\n".join(f"{u},{i},{t},{r}" for u, i, t, r in
                              zip(users[s:e], items[s:e], ts[s:e], rating[s:e])) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=2_780_000)
    ap.add_argument("--out", default="benchmarks/results")
    args = ap.parse_args()
    records = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in ("log.csv", "log.csv.gz"):
            path = os.path.join(tmp, name)
            write_log(path, args.rows)
            size_mb = os.path.getsize(path) / 2**20
            for mode in ("whole-file", "streamed"):
                out = subprocess.run([sys.executable, "-c", CHILD, path, mode], capture_output=True, text=True,
                                     check=True, env={**os.environ, "GRAPHREC_LOG": "WARNING"})
                rec = {"file": name, "file_mb": round(size_mb, 1), "reader": mode, **json.loads(out.stdout)}
                records.append(rec)
                print(rec, flush=True)
    meta = {"cpu": cpu_name(), "python": platform.python_version(), "rows": args.rows,
            "date": time.strftime("%Y-%m-%d")}
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "memory_stream_read.json"), "w") as f:
        json.dump({"meta": meta, "records": records}, f, indent=2)
    lines = ["## Memory: reading a 10x Clothing-sized log, whole file against streamed", "",
             f"{args.rows:,} rows (the size of `synthetic-clothing` at scale 10), Amazon-like string ids; "
             f"`python benchmarks/bench_stream.py`; {meta['cpu']}, 2 cores shared with other work, {meta['date']}. Peak = RSS "
             "high-water mark minus RSS before the read.", "",
             "| file | MB | reader | rows/s | seconds | peak extra MB |", "|---|---:|---|---:|---:|---:|"]
    for r in records:
        lines.append(f"| {r['file']} | {r['file_mb']:.0f} | {r['reader']} | {r['rows_per_s']:,.0f} | "
                     f"{r['seconds']:.1f} | {r['peak_extra_mb']:,.0f} |")
    with open(os.path.join(args.out, "memory_stream_read.md"), "w") as f:
        f.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
