"""On-disk cache of built graphs, keyed by the content hash of the inputs and every parameter.

An entry is ``<root>/<kind>-<keyhash>.pt`` holding the CSR arrays, the metadata, the full key and a
checksum of the arrays. On load the stored key hash and the checksum are verified; an unreadable,
truncated, stale (other key) or corrupt entry is logged and rebuilt, never used. Writes go to a
temporary file renamed into place, so a crash never leaves a half-written entry under the real name.
"""
from __future__ import annotations

import json
import os
from typing import Any, Callable, Optional

import torch

from graphrec.graphs.sparse import SparseGraph
from graphrec.utils import content_hash, log, torch_save_atomic

CACHE_FORMAT = 1


def default_cache_dir() -> str:
    return os.environ.get("GRAPHREC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "graphrec", "graphs")


def _checksum(crow: torch.Tensor, col: torch.Tensor, val: torch.Tensor, shape: Any, meta_json: str) -> str:
    return content_hash(crow, col, val, list(shape), meta_json, length=32)


class GraphCache:
    """``get_or_build(key, builder)``: load the graph cached under ``key`` or build and store it."""

    def __init__(self, root: Optional[str] = None):
        self.root = root or default_cache_dir()
        self.hits = 0
        self.builds = 0

    def key_hash(self, key: dict) -> str:
        return content_hash({"format": CACHE_FORMAT, **key}, length=24)

    def path(self, key: dict) -> str:
        kind = str(key.get("kind", "graph")).replace(os.sep, "_")
        return os.path.join(self.root, f"{kind}-{self.key_hash(key)}.pt")

    def load(self, key: dict) -> Optional[SparseGraph]:
        """The verified cached graph, or None (missing, unreadable, stale or corrupt: logged)."""
        path = self.path(key)
        if not os.path.exists(path):
            return None
        try:
            blob = torch.load(path, map_location="cpu", weights_only=True)
            crow, col, val = blob["crow"], blob["col"], blob["val"]
            shape, meta_json = tuple(blob["shape"]), blob["meta"]
            if blob.get("format") != CACHE_FORMAT or blob.get("key_hash") != self.key_hash(key):
                log.warning("graph cache: %s belongs to another key/format (stale); rebuilding", path)
                return None
            if blob.get("checksum") != _checksum(crow, col, val, shape, meta_json):
                log.warning("graph cache: %s failed its checksum (corrupt); rebuilding", path)
                return None
            adj = torch.sparse_csr_tensor(crow, col, val, size=shape, check_invariants=False)
            return SparseGraph(adj, json.loads(meta_json))
        except Exception as e:  # any unreadable entry is rebuilt, whatever the cause
            log.warning("graph cache: %s unreadable (%s: %s); rebuilding", path, type(e).__name__, e)
            return None

    def store(self, key: dict, graph: SparseGraph) -> str:
        os.makedirs(self.root, exist_ok=True)
        path = self.path(key)
        adj = graph.adj.to("cpu")
        crow, col, val = adj.crow_indices(), adj.col_indices(), adj.values()
        meta = dict(graph.meta)
        meta["cache_key"] = self.key_hash(key)
        meta_json = json.dumps(meta, sort_keys=True, default=str)
        torch_save_atomic({"format": CACHE_FORMAT, "key_hash": self.key_hash(key),
                           "key": json.dumps(key, sort_keys=True, default=str),
                           "crow": crow, "col": col, "val": val, "shape": list(graph.shape), "meta": meta_json,
                           "checksum": _checksum(crow, col, val, graph.shape, meta_json)}, path)
        graph.meta["cache_key"] = meta["cache_key"]
        return path

    def get_or_build(self, key: dict, builder: Callable[[], SparseGraph]) -> SparseGraph:
        graph = self.load(key)
        if graph is not None:
            self.hits += 1
            graph.meta["cached"] = True
            return graph
        graph = builder()
        self.builds += 1
        self.store(key, graph)
        graph.meta["cached"] = False
        return graph
