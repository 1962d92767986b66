"""Per-epoch sampled user-item graphs: FREEDOM's degree-sensitive pruning and random edge dropout.

FREEDOM (Zhou & Shen 2023, §3.2 "denoising"; `pre_epoch_processing` in its code): every epoch keep
``n = int(|E| * keep_ratio)`` of the distinct training edges, drawn **without replacement** with
probability proportional to ``p_e = 1 / sqrt(d_u d_i)`` (training degrees), then re-normalise the
kept bipartite graph with its own degrees, ``1 / sqrt(d'_u d'_i)``, and add both directions of every
kept edge (the undirected edge is sampled once, so (u, i) and (i, u) are kept or dropped together).
FREEDOM calls the dropped fraction ``dropout`` = 1 - keep_ratio.

Everything that does not change between epochs (distinct edges, ``log p_e``, the item-major
permutation for the CSR's item rows) is computed once; a sample is O(|E|) on the device, with no
Python loop and no re-sort. ``method="multinomial"`` uses ``torch.multinomial`` (FREEDOM's call),
``method="gumbel"`` (default) the Gumbel-top-k trick (``argtopk(log p_e + G_e)``, the same
distribution as sequential sampling without replacement); both are exact, Gumbel was ~2x faster
at 300k edges on CPU (benchmarks/results/graphs_cpu.md). The random streams differ, so a
FREEDOM run is reproduced in distribution, not edge for edge.
"""
from __future__ import annotations

import time
from typing import Optional

import torch

from graphrec.data.interactions import Interactions
from graphrec.graphs.bipartite import bipartite_from_edges, train_hash, unique_edges
from graphrec.graphs.sparse import SparseGraph
from graphrec.utils import content_hash

METHODS = ("multinomial", "gumbel")


class EdgeSampler:
    """Keeps ``int(|E| * keep_ratio)`` distinct training edges per call to `sample`, without
    replacement, with probability ∝ ``weights`` (uniform when None), and returns the re-normalised
    symmetric (U+I)^2 graph (``norm``: "sym" as FREEDOM, or "none"/"row")."""

    kind = "sampled"

    def __init__(self, train: Interactions, keep_ratio: float, weights: Optional[torch.Tensor] = None,
                 device: Optional[str | torch.device] = None, method: str = "multinomial",
                 norm: str = "sym"):
        if not 0.0 < float(keep_ratio) <= 1.0:
            raise ValueError(f"{type(self).__name__}: keep_ratio must be in (0, 1], got {keep_ratio}")
        if method not in METHODS:
            raise ValueError(f"{type(self).__name__}: unknown method {method!r}; expected one of {METHODS}")
        self.device = torch.device(device) if device is not None else torch.device("cpu")
        self.n_users, self.n_items = train.n_users, train.n_items
        self.u, self.i = (t.to(self.device) for t in unique_edges(train))
        self.n_edges = int(self.u.numel())
        if self.n_edges == 0:
            raise ValueError(f"{type(self).__name__}: the training interactions are empty")
        self.keep_ratio = float(keep_ratio)
        self.n_keep = max(1, int(self.n_edges * self.keep_ratio))
        self.method = method
        self.norm = norm
        if weights is None:
            weights = self.edge_weights()
        self.weights = weights.to(self.device, torch.float32)
        self.log_weights = self.weights.log()
        self.perm_item_major = torch.sort(self.i, stable=True).indices
        self._hash = content_hash(self.kind, train_hash(train), self.keep_ratio, norm)

    def edge_weights(self) -> torch.Tensor:
        """Unnormalised sampling weight of every distinct edge (uniform here)."""
        return torch.ones(self.n_edges, device=self.device)

    def sample_edges(self, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        """Boolean mask over the distinct edges (sorted by user, item): exactly ``n_keep`` True."""
        if self.n_keep >= self.n_edges:
            return torch.ones(self.n_edges, dtype=torch.bool, device=self.device)
        if self.method == "multinomial":
            idx = torch.multinomial(self.weights, self.n_keep, replacement=False, generator=generator)
        else:
            g = torch.rand(self.n_edges, generator=generator, device=self.device)
            gumbel = -torch.log(-torch.log(g.clamp_min(torch.finfo(torch.float32).tiny)))
            idx = torch.topk(self.log_weights + gumbel, self.n_keep, sorted=False).indices
        mask = torch.zeros(self.n_edges, dtype=torch.bool, device=self.device)
        mask[idx] = True
        return mask

    def sample(self, generator: Optional[torch.Generator] = None) -> SparseGraph:
        """One sampled, re-normalised (U+I)^2 adjacency (CSR on the sampler's device)."""
        t0 = time.perf_counter()
        mask = self.sample_edges(generator)
        u, i = self.u[mask], self.i[mask]
        # kept edges in item-major order: the precomputed permutation filtered by the mask
        perm = self.perm_item_major[mask[self.perm_item_major]]
        # positions of those edges inside the kept (user-major) list
        pos = torch.cumsum(mask.to(torch.long), 0) - 1
        adj = bipartite_from_edges(u, i, self.n_users, self.n_items, self.norm, perm_item_major=pos[perm])
        return SparseGraph(adj, {"kind": self.kind, "norm": self.norm, "symmetric": self.norm != "row",
                                 "params": {"keep_ratio": self.keep_ratio, "method": self.method},
                                 "hash": self._hash, "build_s": time.perf_counter() - t0})


class DegreeSensitivePruner(EdgeSampler):
    """FREEDOM's degree-sensitive edge pruning: keep probability ∝ ``1/sqrt(d_u d_i)`` (module doc)."""

    kind = "pruned"

    def __init__(self, train: Interactions, keep_ratio: float, device: Optional[str | torch.device] = None,
                 method: str = "gumbel", norm: str = "sym"):
        super().__init__(train, keep_ratio, weights=None, device=device, method=method, norm=norm)

    def edge_weights(self) -> torch.Tensor:
        """``p_e = 1/sqrt(d_u d_i)`` with training degrees (distinct edges)."""
        du = torch.bincount(self.u, minlength=self.n_users).to(torch.float32)
        di = torch.bincount(self.i, minlength=self.n_items).to(torch.float32)
        return du[self.u].rsqrt() * di[self.i].rsqrt()


class RandomEdgeDropout(EdgeSampler):
    """Uniform edge dropout: keep ``int(|E| * (1 - drop_rate))`` edges uniformly without replacement,
    both directions together, re-normalised on the kept edges."""

    kind = "edge_dropout"

    def __init__(self, train: Interactions, drop_rate: float, device: Optional[str | torch.device] = None,
                 method: str = "gumbel", norm: str = "sym"):
        if not 0.0 <= float(drop_rate) < 1.0:
            raise ValueError(f"RandomEdgeDropout: drop_rate must be in [0, 1), got {drop_rate}")
        super().__init__(train, 1.0 - float(drop_rate), weights=None, device=device, method=method, norm=norm)


def edge_dropout(train: Interactions, drop_rate: float, generator: Optional[torch.Generator] = None,
                 device: Optional[str | torch.device] = None, norm: str = "sym") -> SparseGraph:
    """One uniformly edge-dropped, re-normalised user-item graph (see `RandomEdgeDropout`).
    For per-epoch use build a `RandomEdgeDropout` once and call ``.sample`` each epoch."""
    return RandomEdgeDropout(train, drop_rate, device=device, norm=norm).sample(generator)
