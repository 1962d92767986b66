"""`graphrec build-graphs --dataset NAME`: build a dataset's graphs from its training split, print
per graph its size, degrees, build time and peak memory, and fill the graph cache."""
from __future__ import annotations

import argparse
import os
import time
from typing import Optional

import torch

from graphrec.train.probe import current_rss_mb, peak_rss_mb, reset_peak_rss
from graphrec.utils import atomic_write_json


def graph_specs(modalities: list[str], knn_k: int, co_topk: Optional[int],
                knn_index: str = "auto") -> list[tuple[str, dict]]:
    specs: list[tuple[str, dict]] = [
        ("user-item (sym)", {"kind": "bipartite", "norm": "sym"}),
        ("interaction R", {"kind": "interaction", "norm": "none"}),
        ("user-user co-interaction", {"kind": "cointeraction", "side": "user", "topk": co_topk}),
        ("item-item co-interaction", {"kind": "cointeraction", "side": "item", "topk": co_topk}),
    ]
    for m in modalities:
        specs.append((f"kNN {m}", {"kind": "knn", "modality": m, "k": knn_k, "index": knn_index}))
    if "image" in modalities and "text" in modalities:
        specs.append(("kNN mix (FREEDOM)", {"kind": "knn_mix", "modalities": {"image": 0.1, "text": 0.9}, "k": knn_k,
                                            "index": knn_index}))
    return specs


def run(args: argparse.Namespace) -> int:
    from graphrec import datasets
    from graphrec.data.split import dataset_split
    from graphrec.graphs import GraphCache, build

    ds = datasets.load(args.dataset)
    split = dataset_split(ds)
    train = split.train
    feats = ds.features
    cache = GraphCache(args.cache_dir)
    mods = feats.modalities if feats is not None else []
    rows = []
    print(f"{ds.name}: {train.n_users} users, {train.n_items} items, {len(train)} training rows; "
          f"cache {cache.root}")
    header = f"{'graph':<26} {'nodes':>15} {'nnz':>11} {'deg min/mean/max':>22} {'build s':>8} {'peak MiB':>9} cached"
    print(header)
    print("-" * len(header))
    cuda = torch.cuda.is_available()
    for label, spec in graph_specs(mods, args.knn_k, args.cointeraction_topk, args.knn_index):
        exact = reset_peak_rss()
        base_mb = current_rss_mb()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t0 = time.perf_counter()
        g = build(spec, train, feats, cache)
        wall = time.perf_counter() - t0
        peak_kib = (peak_rss_mb() - base_mb) * 1024
        s = g.summary()
        row = {"graph": label, "spec": spec, "nodes": list(g.shape), "nnz": g.nnz,
               "degree_min": s["degree_min"], "degree_mean": s["degree_mean"], "degree_max": s["degree_max"],
               "build_s": g.meta.get("build_s", wall), "wall_s": wall, "cached": bool(g.meta.get("cached")),
               "peak_extra_rss_mib": max(0, peak_kib) / 1024, "peak_is_per_graph": exact,
               "hash": g.meta.get("hash"), "index": g.meta.get("params", {}).get("index"),
               "recall": g.meta.get("recall")}
        if cuda:
            row["peak_cuda_mib"] = torch.cuda.max_memory_allocated() / 2**20
        rows.append(row)
        nodes = f"{g.shape[0]}x{g.shape[1]}"
        deg = f"{s['degree_min']:.0f}/{s['degree_mean']:.1f}/{s['degree_max']:.0f}"
        print(f"{label:<26} {nodes:>15} {g.nnz:>11} {deg:>22} {row['build_s']:>8.2f} "
              f"{row['peak_extra_rss_mib']:>9.1f} {'yes' if row['cached'] else 'no'}"
              + (f"  {row['index']} index, neighbour recall {row['recall']:.4f}" if row["recall"] is not None else ""))
    if not rows or not rows[0]["peak_is_per_graph"]:
        print("(peak memory is the process high-water mark: /proc/self/clear_refs is not writable)")
    if args.json:
        os.makedirs(os.path.dirname(os.path.abspath(args.json)), exist_ok=True)
        atomic_write_json(args.json, {"dataset": ds.name, "split_hash": split.hash(), "graphs": rows})
        print(f"wrote {args.json}")
    return 0


def register(subparsers) -> None:
    p = subparsers.add_parser("build-graphs", help="build and cache a dataset's graphs, print their statistics",
                              description=__doc__)
    p.add_argument("--dataset", required=True, help="dataset name (see `graphrec datasets`)")
    p.add_argument("--knn-k", type=int, default=10, help="neighbours per item in the modality kNN graphs (10)")
    p.add_argument("--knn-index", default="auto", choices=("auto", "exact", "ivf", "hnsw"),
                   help="exact search, or an approximate FAISS index whose neighbour recall against exact is "
                        "printed (auto: exact up to 100,000 items)")
    p.add_argument("--cointeraction-topk", type=int, default=None,
                   help="keep only each node's top-k co-interaction neighbours (default: all)")
    p.add_argument("--cache-dir", default=None, help="graph cache directory ($GRAPHREC_CACHE or "
                                                     "~/.cache/graphrec/graphs)")
    p.add_argument("--json", default=None, metavar="FILE", help="also write the table as JSON")
    p.set_defaults(func=run)
