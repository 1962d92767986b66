"""Nodes and edges of the subgraphs `train.sampler=neighbor` samples per batch, by scale of
synthetic-clothing: the quantity a sampled step's cost follows (the memory/time model of
`benchmarks/scale_model.py` reads it). Needs torch_sparse or pyg-lib (the 'ext' extra).

    python benchmarks/subgraph_sizes.py --scales 0.25,0.5,1,2,4,10 --fanout 5,5 --batch 512 --out FILE.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import torch


def measure(scale: float, fanout: list[int], batch: int, batches: int) -> dict:
    from graphrec.config import load_config
    from graphrec.experiment import prepare, sampler
    cfg = load_config(model="lightgcn", dataset="synthetic-clothing", overrides={
        "data": {"dataset_args": {"scale": scale}}, "threads": 1,
        "train": {"sampler": "neighbor", "num_neighbors": fanout, "batch_size": batch}})
    p = prepare(cfg)
    s = sampler(p)
    nodes, edges, cpu = [], [], []
    it = iter(s.epoch(torch.Generator().manual_seed(0)))
    for _ in range(batches):
        t0 = time.process_time()
        b = next(it)
        cpu.append(time.process_time() - t0)
        nodes.append(b["sub_users"].numel() + b["sub_items"].numel())
        edges.append(b["sub_ui"].shape[1] + b["sub_iu"].shape[1])
    return {"scale": scale, "fanout": fanout, "batch_size": batch, "n_users": p.split.n_users,
            "n_items": p.split.n_items, "n_train": len(p.split.train), "steps_per_epoch": len(s),
            "sub_nodes": statistics.median(nodes), "sub_edges": statistics.median(edges), "batches": len(nodes),
            # PyG's sampling of one batch (CPU seconds, one thread; the first batch builds the loader)
            "sample_cpu_s": statistics.median(cpu[1:] or cpu)}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scales", default="0.25,0.5,1,2,4,10")
    ap.add_argument("--fanout", default="5,5")
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    torch.set_num_threads(1)
    done = json.load(open(a.out))["records"] if os.path.exists(a.out) else []
    fan = [int(x) for x in a.fanout.split(",")]
    for sc in (float(x) for x in a.scales.split(",")):
        if any(r["scale"] == sc and r["fanout"] == fan and r["batch_size"] == a.batch and "sample_cpu_s" in r
               for r in done):
            continue
        done = [r for r in done if not (r["scale"] == sc and r["fanout"] == fan and r["batch_size"] == a.batch)]
        done.append(measure(sc, fan, a.batch, a.batches))
        print(json.dumps(done[-1]), flush=True)
        with open(a.out, "w") as f:
            json.dump({"kind": "graphrec-subgraph-sizes", "records": done}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
