"""synthetic-clothing at 10x (about 394k users, 230k items, 2.8M interactions, 4096-d image and 384-d
text features): graphs built with FAISS IVF kNN, LightGCN (exact and sampled subgraphs) and FREEDOM
trained on one CPU within 24 GB; and the growth of sampled training's epoch with the interactions
(scales 0.25-4). Seconds per epoch are projected from ``--steps`` timed steps per epoch (s/step x the
epoch's batches; steps cost the same all epoch long); peak memory is the worker's RSS high-water mark.

    python benchmarks/scale_out.py [--threads 2] [--steps 60] [--out benchmarks/results]
        [--data /tmp/graphrec-scale10] [--only scale10|growth]

The 10x set is generated once (about half an hour on 2 cores: its Gumbel top-k draws 9e10 logits)
and written in MMRec's layout under ``--data`` (`compare_mmrec.export_dataset`: the same users,
items, interactions, features and split as ``--dataset synthetic-clothing --scale 10``; 4.2 GB);
every run then reads it as ``mmrec:<dir>`` instead of generating it again in each worker.
Sampled training needs torch_sparse or pyg-lib (the 'ext' extra).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
#: sampled training's setting for the growth measurement: a subgraph that stays a small part of the
#: graph at every scale measured (batch x fanout^2 well under the 62k nodes of scale 1)
SAMPLED = ["--set", "train.sampler=neighbor", "--set", "train.num_neighbors=[5, 5]", "--set", "train.batch_size=512"]


def scale10_data(root: str) -> str:
    """``mmrec:<dir>`` of synthetic-clothing at scale 10, exported under ``root`` unless it is there."""
    d = os.path.join(root, "synthetic_clothing_x10")
    if not os.path.exists(os.path.join(d, "synthetic_clothing_x10.inter")):
        from compare_mmrec import export_dataset
        d = export_dataset("synthetic-clothing", 10.0, root)[0]
    return f"mmrec:{d}"


def bench(args: list[str], out: str, label: str, threads: int, timeout: int,
          dataset: str = "synthetic-clothing") -> dict:
    from graphrec.cli import main as cli
    if not os.path.exists(out):
        rc = cli(["bench", "--dataset", dataset, "--epochs", "2", "--warmup", "1",
                  "--threads", str(threads), "--timeout", str(timeout), "--label", label, "--json", out, *args])
        if rc:
            raise SystemExit(f"graphrec bench failed ({rc}): {args}")
    return json.load(open(out))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=60, help="timed batches per epoch (s/epoch projected)")
    ap.add_argument("--scales", default="0.25,0.5,1,2,4")
    ap.add_argument("--label", default="")
    ap.add_argument("--timeout", type=int, default=5400)
    ap.add_argument("--out", default=os.path.join(HERE, "results"))
    ap.add_argument("--data", default=os.path.join(tempfile.gettempdir(), "graphrec-scale10"),
                    help="where the 10x set is exported once (MMRec layout, 4.2 GB)")
    ap.add_argument("--only", choices=["scale10", "growth"], help="one part only")
    a = ap.parse_args()
    steps = ["--set", f"train.max_steps_per_epoch={a.steps}"]
    lab = a.label or f"{a.threads} threads"
    if a.only != "growth":
        ten = ["--set", "data.knn_index=ivf", *steps]
        data = scale10_data(a.data)
        bench(["--models", "lightgcn,freedom", *ten], os.path.join(a.out, "scale10_exact.json"), lab, a.threads,
              a.timeout, data)
        bench(["--models", "lightgcn", *ten, *SAMPLED], os.path.join(a.out, "scale10_sampled.json"), lab, a.threads,
              a.timeout, data)
    if a.only == "scale10":
        return 0
    bench(["--models", "lightgcn", "--scale", a.scales, *steps, *SAMPLED],
          os.path.join(a.out, "scale_sampled_growth.json"), lab, a.threads, a.timeout)
    bench(["--models", "lightgcn", "--scale", a.scales, *steps], os.path.join(a.out, "scale_exact_growth.json"), lab,
          a.threads, a.timeout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
