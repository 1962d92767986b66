"""Item-item kNN graphs on modality features (FREEDOM / LATTICE / SAND Eq. 5-7) and their mix.

For features ``X`` (n x d): ``X̂ = X / ||X||_2`` per row, cosine ``C = X̂ X̂^T``, and for each row
the k largest columns are kept (ties to the lower index). Defaults reproduce FREEDOM's code
(`get_knn_adj_mat`): the item itself competes like any other column (``include_self=True``; its
cosine is 1, so it is normally kept), edges are binary and directed (exactly k per row), and
``norm="sym"`` is ``D^{-1/2} A D^{-1/2}`` with the *row* sums on both sides, so every entry is 1/k.
Options: ``weight="cosine"`` keeps the similarity as edge weight (LATTICE's
``build_knn_neighbourhood``), ``symmetrize=True`` uses ``A ∪ A^T``, ``norm="sym_inout"`` the in/out
degree variant, ``include_self=False`` excludes the diagonal.

Memory: never an n x n matrix. ``backend="faiss"`` uses an exact ``IndexFlatIP`` on ``X̂``
(GPU index when CUDA and faiss-gpu are present) and asks for k+1 neighbours to detect a tie at the
k-th place; only tied rows are recomputed with the torch path. ``backend="torch"`` computes
``X̂[chunk] X̂^T`` and its top-k chunk by chunk: extra memory is O(chunk x n) floats.

Approximate neighbours for large catalogues (``index``, FAISS only): ``"ivf"`` is an inverted
file (``IndexIVFFlat``, inner product) of ``nlist`` k-means cells (default ``4 sqrt(n)``, trained
on a seeded sample of ``64 nlist`` rows) of which ``nprobe`` (default ``nlist / 8``) are searched,
on the GPU where faiss-gpu is installed; ``"hnsw"`` is a navigable small-world graph
(``IndexHNSWFlat``, ``M`` = 32 links, ``ef_search`` = max(64, 4k)). ``"auto"`` (the default)
is exact below ``EXACT_MAX_ITEMS`` items and IVF above. An approximate graph records its
neighbour recall against exact search, measured on ``recall_rows`` seeded random rows, in its
metadata (``meta["recall"]``); rows where the index returns fewer than k neighbours are recomputed
exactly (counted in ``meta["exact_rows"]``). Ties at the k-th place are not resolved there.
"""
from __future__ import annotations

import math
import time
from typing import Mapping, Optional

import numpy as np
import torch
import torch.nn.functional as F

from graphrec.graphs.normalize import NORMS, normalize_values
from graphrec.graphs.sparse import SparseGraph, csr_from_coo, csr_rows
from graphrec.graphs.topk import topk_low_ties
from graphrec.utils import content_hash, log

INCLUDE_SELF_DEFAULT = True  # FREEDOM: plain torch.topk over the full similarity row
INDEXES = ("auto", "exact", "ivf", "hnsw")
EXACT_MAX_ITEMS = 100_000  # index="auto": exact search up to here (Clothing's 23k items: 2 s with faiss)
CHUNK_BYTES = 1 << 27  # 128 MiB of float32 scores per torch chunk by default


def faiss_module():
    """The ``faiss`` module, or None when it is not installed or fails to load (missing .so)."""
    try:
        import faiss  # noqa: PLC0415
    except (ImportError, OSError):
        return None
    return faiss


def _faiss_gpu_ok(faiss, device: torch.device) -> bool:
    return (device.type == "cuda" and hasattr(faiss, "StandardGpuResources")
            and getattr(faiss, "get_num_gpus", lambda: 0)() > 0)


def default_chunk(n: int) -> int:
    return max(1, min(n, CHUNK_BYTES // (4 * max(1, n))))


def _torch_topk_rows(xn: torch.Tensor, rows: torch.Tensor, k: int, include_self: bool,
                     chunk: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Exact top-k (values, columns) of ``xn[rows] @ xn^T`` computed chunk by chunk."""
    vals, idx = [], []
    for s in range(0, rows.numel(), chunk):
        r = rows[s:s + chunk]
        sim = xn[r] @ xn.T
        if not include_self:
            sim[torch.arange(r.numel(), device=sim.device), r] = float("-inf")
        v, c = topk_low_ties(sim, k)
        vals.append(v)
        idx.append(c)
        del sim
    return torch.cat(vals), torch.cat(idx)


def _faiss_topk(faiss, xn: torch.Tensor, k: int, include_self: bool, chunk: int,
                device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    n, d = xn.shape
    x_np = xn.detach().to("cpu", torch.float32).contiguous().numpy()
    index = faiss.IndexFlatIP(d)
    if _faiss_gpu_ok(faiss, device):
        res = faiss.StandardGpuResources()
        index = faiss.index_cpu_to_gpu(res, device.index or 0, index)
    index.add(x_np)
    kk = min(n, k + 1 + (0 if include_self else 1))  # +1 detects a tie at place k
    D, I = index.search(x_np, kk)
    D, I = torch.from_numpy(D), torch.from_numpy(I)
    rows = torch.arange(n).unsqueeze(1)
    if not include_self:
        D = torch.where(I == rows, torch.tensor(float("-inf")), D)
    D = torch.where(I < 0, torch.tensor(float("-inf")), D)
    order = torch.sort(D, dim=1, descending=True, stable=True).indices
    D, I = D.gather(1, order), I.gather(1, order)
    vals, idx = D[:, :k].clone(), I[:, :k].clone()
    if kk > k:
        # the k-th score tied with the next one: faiss's choice among ties is arbitrary
        redo = torch.nonzero(D[:, k - 1] <= D[:, k]).squeeze(1)
        if redo.numel():
            xd = xn.to(device)
            v, c = _torch_topk_rows(xd, redo.to(device), k, include_self, chunk)
            vals[redo], idx[redo] = v.cpu(), c.cpu()
    return vals.to(device), idx.to(device)


def _approx_index(faiss, index: str, d: int, n: int, k: int, nlist: Optional[int], nprobe: Optional[int]):
    if index == "hnsw":
        ix = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
        ix.hnsw.efSearch = max(64, 4 * k)
        return ix, {"M": 32, "ef_search": ix.hnsw.efSearch}
    nlist = int(nlist) if nlist else max(1, min(n // 39, int(4 * math.sqrt(n))))
    ix = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
    ix.nprobe = int(nprobe) if nprobe else max(1, nlist // 8)
    return ix, {"nlist": nlist, "nprobe": ix.nprobe}


def _faiss_approx_topk(faiss, xn: torch.Tensor, k: int, include_self: bool, index: str,
                       nlist: Optional[int], nprobe: Optional[int], device: torch.device
                       ) -> tuple[torch.Tensor, torch.Tensor, dict]:
    """Approximate top-k by an IVF or HNSW index; rows left with fewer than k neighbours are
    recomputed exactly."""
    n, d = xn.shape
    x_np = xn.detach().to("cpu", torch.float32).contiguous().numpy()
    ix, info = _approx_index(faiss, index, d, n, k, nlist, nprobe)
    if index == "ivf":
        sample = np.random.default_rng(0).choice(n, size=min(n, 64 * info["nlist"]), replace=False)
        ix.train(x_np[np.sort(sample)])
        if _faiss_gpu_ok(faiss, device):
            ix = faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), device.index or 0, ix)
    ix.add(x_np)
    kk = min(n, k + (0 if include_self else 1))
    D, I = ix.search(x_np, kk)
    D, I = torch.from_numpy(D), torch.from_numpy(I)
    if not include_self:
        D = torch.where(I == torch.arange(n).unsqueeze(1), torch.tensor(float("-inf")), D)
    D = torch.where(I < 0, torch.tensor(float("-inf")), D)
    order = torch.sort(D, dim=1, descending=True, stable=True).indices
    vals, idx = D.gather(1, order)[:, :k].contiguous(), I.gather(1, order)[:, :k].contiguous()
    short = torch.nonzero(~torch.isfinite(vals).all(dim=1)).squeeze(1)
    if short.numel():
        v, c = _torch_topk_rows(xn.to("cpu"), short, k, include_self, default_chunk(n))
        vals[short], idx[short] = v, c
    info["exact_rows"] = int(short.numel())
    return vals.to(device), idx.to(device), info


def neighbour_recall(xn: torch.Tensor, idx: torch.Tensor, k: int, include_self: bool, rows: int,
                     seed: int = 0) -> float:
    """Mean over ``rows`` seeded random rows of |approximate top-k ∩ exact top-k| / k."""
    n = xn.shape[0]
    g = torch.Generator().manual_seed(seed)
    pick = torch.randperm(n, generator=g)[:min(n, rows)].to(xn.device)
    _, exact = _torch_topk_rows(xn, pick, k, include_self, default_chunk(n))
    approx = idx.index_select(0, pick)
    hit = (approx.unsqueeze(2) == exact.unsqueeze(1)).any(dim=2).sum()
    return float(hit) / (pick.numel() * k)


def knn_graph(features: torch.Tensor, k: int = 10, backend: str = "auto", norm: str = "sym",
              include_self: bool = INCLUDE_SELF_DEFAULT, chunk_size: Optional[int] = None,
              device: Optional[str | torch.device] = None, weight: str = "binary",
              symmetrize: bool = False, index: str = "auto", nlist: Optional[int] = None,
              nprobe: Optional[int] = None, recall_rows: int = 1000) -> SparseGraph:
    """Cosine kNN graph (n x n, CSR) of ``features`` (n x d), exact or by an approximate FAISS
    ``index``; see the module doc.

    The graph lives on ``device`` (default: the features' device).
    """
    if features.ndim != 2:
        raise ValueError(f"knn_graph: features must be 2-d (n_items, d), got shape {tuple(features.shape)}")
    if backend not in ("auto", "faiss", "torch"):
        raise ValueError(f"knn_graph: unknown backend {backend!r} (expected 'auto', 'faiss' or 'torch')")
    if norm not in NORMS:
        raise ValueError(f"knn_graph: unknown norm {norm!r}; expected one of {NORMS}")
    if weight not in ("binary", "cosine"):
        raise ValueError(f"knn_graph: unknown weight {weight!r} (expected 'binary' or 'cosine')")
    if index not in INDEXES:
        raise ValueError(f"knn_graph: unknown index {index!r}; expected one of {INDEXES}")
    if not torch.isfinite(features).all():
        raise ValueError("knn_graph: features contain NaN/inf")
    t0 = time.perf_counter()
    device = torch.device(device) if device is not None else features.device
    n = int(features.shape[0])
    k_eff = min(int(k), n - (0 if include_self else 1))
    if k_eff < 1:
        raise ValueError(f"knn_graph: k={k} leaves no neighbour for {n} item(s)")
    if k_eff < k:
        log.warning("knn_graph: k=%d reduced to %d (only %d items)", k, k_eff, n)
    chunk = int(chunk_size) if chunk_size else default_chunk(n)
    xn = F.normalize(features.to(device, torch.float32), dim=1)
    faiss = faiss_module() if backend in ("auto", "faiss") else None
    if backend == "faiss" and faiss is None:
        raise ValueError("knn_graph: backend='faiss' requested but faiss cannot be imported "
                         "(pip install faiss-cpu, or use backend='torch')")
    used = "faiss" if faiss is not None else "torch"
    kind = ("ivf" if n > EXACT_MAX_ITEMS else "exact") if index == "auto" else index
    approx: dict = {}
    if kind != "exact":
        if faiss is None:
            raise ValueError(f"knn_graph: index={index!r} ({kind} for {n:,} items) needs faiss (pip install "
                             f"faiss-cpu), or set index='exact'")
        vals, idx, approx = _faiss_approx_topk(faiss, xn, k_eff, include_self, kind, nlist, nprobe, device)
        approx["recall"] = neighbour_recall(xn, idx, k_eff, include_self, recall_rows)
        log.info("knn_graph: %s index over %d items (%s): neighbour recall %.4f on %d rows", kind, n,
                 ", ".join(f"{a}={b}" for a, b in approx.items() if a != "recall"), approx["recall"],
                 min(n, recall_rows))
    elif used == "faiss":
        vals, idx = _faiss_topk(faiss, xn, k_eff, include_self, chunk, device)
    else:
        vals, idx = _torch_topk_rows(xn, torch.arange(n, device=device), k_eff, include_self, chunk)
    row = torch.arange(n, device=device).repeat_interleave(k_eff)
    col = idx.reshape(-1).to(torch.long)
    w = vals.reshape(-1) if weight == "cosine" else None
    if symmetrize:
        row, col = torch.cat([row, col]), torch.cat([col, row])
        w = None if w is None else torch.cat([w, w])
    adj = csr_from_coo(row, col, w, (n, n), reduce="amax")
    if norm != "none":
        r = csr_rows(adj)
        v = normalize_values(r, adj.col_indices(), adj.values(), (n, n), norm)
        adj = torch.sparse_csr_tensor(adj.crow_indices(), adj.col_indices(), v, size=(n, n), check_invariants=False)
    params = {"k": int(k), "norm": norm, "include_self": bool(include_self), "weight": weight,
              "symmetrize": bool(symmetrize)}
    if kind != "exact":  # an exact graph keeps the hash it always had
        params.update(index=kind, nlist=approx.get("nlist"), nprobe=approx.get("nprobe"))
    meta = {"kind": "knn", "norm": norm, "params": {**params, "backend": used, "index": kind},
            "hash": content_hash("knn", content_hash(features), params), "build_s": time.perf_counter() - t0}
    if approx:
        meta.update(recall=approx["recall"], exact_rows=approx["exact_rows"])
    return SparseGraph(adj, meta)


def mix_graphs(graphs: Mapping[str, SparseGraph], weights: Mapping[str, float]) -> SparseGraph:
    """``S = Σ_m w_m S^m``: FREEDOM's fixed mix (``w·S^v + (1-w)·S^t``, w = 0.1 by default there).

    The weights are used as given (not renormalised); keys of ``graphs`` and ``weights`` must match.
    """
    if set(graphs) != set(weights):
        raise ValueError(f"mix_graphs: graphs {sorted(graphs)} and weights {sorted(weights)} name "
                         f"different modalities")
    if not graphs:
        raise ValueError("mix_graphs: no graphs given")
    t0 = time.perf_counter()
    names = sorted(graphs)
    shapes = {m: graphs[m].shape for m in names}
    if len(set(shapes.values())) != 1:
        raise ValueError(f"mix_graphs: graphs differ in shape: {shapes}")
    n_rows, n_cols = shapes[names[0]]
    rows, cols, vals = [], [], []
    for m in names:
        ei = graphs[m].edge_index()
        rows.append(ei[0])
        cols.append(ei[1])
        vals.append(graphs[m].values * float(weights[m]))
    adj = csr_from_coo(torch.cat(rows), torch.cat(cols), torch.cat(vals), (n_rows, n_cols), reduce="sum")
    params = {"weights": {m: float(weights[m]) for m in names}, "parts": {m: graphs[m].meta.get("hash") for m in names}}
    return SparseGraph(adj, {"kind": "knn_mix", "norm": "mixed", "params": params,
                             "hash": content_hash("mix", params), "build_s": time.perf_counter() - t0})
