"""Graph-construction benchmark: build seconds and peak extra memory per case.

Cases (each in a fresh subprocess so its RSS high-water mark is its own):
- kNN graphs at Clothing scale (23,033 items x 4096-d and x 384-d, random features), k=10, for the
  torch (chunked mm + top-k) and FAISS (IndexFlatIP) backends;
- the user-user co-interaction graph of `synthetic-sports` (35,598 users, 296,337 interactions);
- FREEDOM's degree-sensitive pruning at ~280k edges: multinomial vs Gumbel-top-k, per sample;
- spmm forward+backward on a (U+I)^2 graph with ~560k nnz and 64-d features: CSR vs COO.

Peak extra memory = VmHWM at the end minus VmRSS just before the build (after inputs exist),
compared with one dense n x n float32 matrix. Usage:
    python benchmarks/bench_graphs.py [--cases knn,co,prune,spmm] [--out benchmarks/results]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time

from graphrec.environment import cpu_name

N_ITEMS = 23_033


def _kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def case_knn(dim: int, backend: str) -> dict:
    import torch

    from graphrec.graphs import knn_graph
    x = torch.randn(N_ITEMS, dim, generator=torch.Generator().manual_seed(0))
    base = _kib("VmRSS")
    t0 = time.perf_counter()
    g = knn_graph(x, k=10, backend=backend)
    dt = time.perf_counter() - t0
    dense = N_ITEMS * N_ITEMS * 4
    return {"case": f"knn {N_ITEMS}x{dim} {backend}", "build_s": dt, "nnz": g.nnz,
            "peak_extra_mib": (_kib("VmHWM") - base) / 1024, "dense_nxn_mib": dense / 2**20}


def case_co() -> dict:
    from graphrec import datasets
    from graphrec.graphs import cointeraction_graph
    ds = datasets.load("synthetic-sports")
    train = ds.interactions
    out = {}
    for topk in (None, 50):
        try:  # reset the high-water mark so the second build is measured on its own
            with open("/proc/self/clear_refs", "w") as f:
                f.write("5")
        except OSError:
            pass
        base = _kib("VmRSS")
        t0 = time.perf_counter()
        g = cointeraction_graph(train, side="user", topk=topk)
        out[f"topk={topk}"] = {"build_s": time.perf_counter() - t0, "nnz": g.nnz,
                               "peak_extra_mib": (_kib("VmHWM") - base) / 1024}
        del g
    n = train.n_users
    return {"case": f"user-user co-interaction synthetic-sports ({n} users, {len(train)} rows)",
            "results": out, "dense_nxn_mib": n * n * 4 / 2**20}


def _random_train(n_users: int, n_items: int, n_rows: int):
    import torch

    from graphrec.data.interactions import IdMap, Interactions
    g = torch.Generator().manual_seed(0)
    u = (torch.rand(n_rows, generator=g) ** 1.5 * n_users).long()
    i = (torch.rand(n_rows, generator=g) ** 2 * n_items).long()
    return Interactions(u, i, IdMap(range(n_users), "user"), IdMap(range(n_items), "item"))


def case_prune() -> dict:
    import torch

    from graphrec.graphs import DegreeSensitivePruner
    train = _random_train(39_387, 23_033, 300_000)
    out = {}
    for method in ("multinomial", "gumbel"):
        pr = DegreeSensitivePruner(train, keep_ratio=0.2, method=method)
        gen = torch.Generator().manual_seed(0)
        pr.sample(gen)
        t0 = time.perf_counter()
        reps = 10
        for _ in range(reps):
            pr.sample_edges(gen)
        t_edges = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            g = pr.sample(gen)
        out[method] = {"edges": pr.n_edges, "kept": pr.n_keep, "sample_edges_ms": 1e3 * t_edges,
                       "sample_graph_ms": 1e3 * (time.perf_counter() - t0) / reps, "nnz": g.nnz}
    return {"case": "FREEDOM degree-sensitive pruning, keep 0.2", "results": out}


def case_spmm() -> dict:
    import torch

    from graphrec.graphs import bipartite_adjacency
    train = _random_train(39_387, 23_033, 300_000)
    g = bipartite_adjacency(train)
    csr, coo = g.adj, g.coo()
    out = {"nnz": g.nnz, "n": g.shape[0]}
    from graphrec.graphs import spmm
    g.meta["symmetric"] = False  # measure the general path (explicit cached transpose)
    variants = (("csr", lambda x: torch.sparse.mm(csr, x)), ("coo", lambda x: torch.sparse.mm(coo, x)),
                ("csr+cached_transpose (graphrec spmm)", lambda x: spmm(g, x)))
    for name, f in variants:
        x = torch.randn(g.shape[0], 64, requires_grad=True)
        for _ in range(2):
            f(x).sum().backward()
        reps = 10
        t0 = time.perf_counter()
        for _ in range(reps):
            y = f(x)
        fwd = (time.perf_counter() - t0) / reps
        t0 = time.perf_counter()
        for _ in range(reps):
            x.grad = None
            f(x).pow(2).sum().backward()
        out[name] = {"forward_ms": 1e3 * fwd, "forward_backward_ms": 1e3 * (time.perf_counter() - t0) / reps}
        del y
    return {"case": "spmm (U+I)^2 x 64, torch.sparse.mm, CPU", "results": out}


CASES = {
    "knn4096_torch": lambda: case_knn(4096, "torch"), "knn4096_faiss": lambda: case_knn(4096, "faiss"),
    "knn384_torch": lambda: case_knn(384, "torch"), "knn384_faiss": lambda: case_knn(384, "faiss"),
    "co": case_co, "prune": case_prune, "spmm": case_spmm,
}
GROUPS = {"knn": ["knn384_torch", "knn384_faiss", "knn4096_torch", "knn4096_faiss"],
          "co": ["co"], "prune": ["prune"], "spmm": ["spmm"]}


def write_md(path: str, env: dict, results: list[dict]) -> None:
    lines = ["# Graph construction benchmark (CPU)", "",
             f"Device: {env['cpu']}, {env['cores']} cores, torch {env['torch']} (threads {env['threads']}), "
             f"faiss {env['faiss']}. The machine was **shared** with other engineers' jobs, so timings are "
             "noisy upper bounds. Peak extra memory = RSS high-water mark minus RSS before the build, "
             "each case in a fresh process.", "",
             "| case | build s | nnz | peak extra MiB | one dense n x n float32 MiB |", "|---|---|---|---|---|"]
    for r in results:
        if "results" in r and r["case"].startswith("user-user"):
            for k, v in r["results"].items():
                lines.append(f"| {r['case']} {k} | {v['build_s']:.2f} | {v['nnz']:,} | {v['peak_extra_mib']:.0f} "
                             f"| {r['dense_nxn_mib']:.0f} |")
        elif "build_s" in r:
            lines.append(f"| {r['case']} | {r['build_s']:.2f} | {r['nnz']:,} | {r['peak_extra_mib']:.0f} "
                         f"| {r['dense_nxn_mib']:.0f} |")
    for r in results:
        if r["case"].startswith("FREEDOM"):
            lines += ["", f"## {r['case']}", "", "| method | edges | kept | sample edges ms | sample + CSR ms |",
                      "|---|---|---|---|---|"]
            for m, v in r["results"].items():
                lines.append(f"| {m} | {v['edges']:,} | {v['kept']:,} | {v['sample_edges_ms']:.1f} | "
                             f"{v['sample_graph_ms']:.1f} |")
        if r["case"].startswith("spmm"):
            res = r["results"]
            lines += ["", f"## {r['case']}", "", f"n = {res['n']:,}, nnz = {res['nnz']:,}", "",
                      "| layout | forward ms | forward+backward ms |", "|---|---|---|"]
            for m in [k for k in res if k not in ("n", "nnz")]:
                lines.append(f"| {m} | {res[m]['forward_ms']:.1f} | {res[m]['forward_backward_ms']:.1f} |")
    with open(path, "w") as f:
        f.write("\n".join(lines) + "\n")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cases", default="knn,co,prune,spmm")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"))
    ap.add_argument("--run-case", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run_case:
        print(json.dumps(CASES[args.run_case]()))
        return 0
    import torch

    from graphrec.graphs.knn import faiss_module
    fa = faiss_module()
    env = {"cpu": cpu_name(), "cores": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "faiss": getattr(fa, "__version__", None), "python": platform.python_version(), "shared_machine": True}
    results = []
    for group in args.cases.split(","):
        for name in GROUPS[group]:
            if name.endswith("faiss") and fa is None:
                continue
            print(f"running {name} ...", flush=True)
            p = subprocess.run([sys.executable, os.path.abspath(__file__), "--run-case", name],
                               capture_output=True, text=True)
            if p.returncode != 0:
                print(p.stderr[-2000:], file=sys.stderr)
                return p.returncode
            res = json.loads(p.stdout.strip().splitlines()[-1])
            print(json.dumps(res), flush=True)
            results.append(res)
    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "graphs_cpu.json"), "w") as f:
        json.dump({"env": env, "results": results}, f, indent=2)
    write_md(os.path.join(args.out, "graphs_cpu.md"), env, results)
    print(f"wrote {args.out}/graphs_cpu.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
