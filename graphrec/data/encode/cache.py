"""Row-level feature cache: one row per (model, content hash).

Layout: ``<root>/<model_key>/<shard>.npz`` with arrays ``keys`` (content hashes, str) and
``feats`` (float32 [k, d]). Each encoding call that computes new rows writes one shard atomically,
so a crashed run leaves no half-written file and concurrent writers never clobber each other.
Rows are keyed by content, not by item id: a k-core filter or a new item order still hits the
cache, and an item whose text or image bytes changed is re-encoded.

Root: ``$GRAPHREC_CACHE/encode`` when set, else ``~/.cache/graphrec/encode``.
"""
from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from graphrec.utils import log


def cache_root() -> Path:
    base = os.environ.get("GRAPHREC_CACHE")
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "graphrec") / "encode"


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class FeatureCache:
    """Feature rows of one model, looked up by content hash."""

    def __init__(self, model_key: str, root: Optional[Path] = None):
        safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model_key)
        self.dir = Path(root or cache_root()) / safe

    def lookup(self, keys: Sequence[str]) -> dict[str, np.ndarray]:
        """Rows found for ``keys`` (a subset of them); unreadable shards are skipped with a warning."""
        want = set(keys)
        found: dict[str, np.ndarray] = {}
        if not want or not self.dir.is_dir():
            return found
        for shard in sorted(self.dir.glob("*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as z:
                    skeys, feats = z["keys"], z["feats"]
            except Exception as e:  # a damaged shard costs a re-encode, never a wrong row
                log.warning("encode cache: ignoring unreadable shard %s (%s)", shard, e)
                continue
            for i, k in enumerate(skeys.tolist()):
                if k in want and k not in found:
                    found[k] = feats[i]
            if len(found) == len(want):
                break
        return found

    def store(self, keys: Sequence[str], feats: np.ndarray) -> None:
        if len(keys) == 0:
            return
        feats = np.ascontiguousarray(feats, dtype=np.float32)
        if feats.shape[0] != len(keys):
            raise ValueError(f"encode cache: {len(keys)} keys for {feats.shape[0]} rows")
        self.dir.mkdir(parents=True, exist_ok=True)
        name = sha256_hex("\n".join(keys).encode())[:24]
        tmp = self.dir / f".{name}.tmp{os.getpid()}.npz"
        np.savez(tmp, keys=np.asarray(list(keys), dtype=str), feats=feats)
        os.replace(tmp, self.dir / f"{name}.npz")


def encode_with_cache(keys: Sequence[str], encode_rows, cache: Optional[FeatureCache],
                      what: str = "rows") -> np.ndarray:
    """Assemble ``[len(keys), d]`` float32 features, encoding each distinct key once.

    ``encode_rows(positions) -> ndarray[len(positions), d]`` encodes the inputs at those positions
    (one representative position per distinct key that the cache does not hold).
    """
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        first.setdefault(k, i)
    found = cache.lookup(list(first)) if cache is not None else {}
    todo = [k for k in first if k not in found]
    if found:
        log.info("encode: %d of %d distinct %s taken from the cache (%s)", len(found), len(first), what,
                 cache.dir if cache is not None else "")
    rows = dict(found)
    if todo:
        new = np.asarray(encode_rows([first[k] for k in todo]), dtype=np.float32)
        if cache is not None:  # rows an encoder marked as failed (NaN) are never cached
            ok = np.isfinite(new).all(axis=1)
            cache.store([k for k, g in zip(todo, ok) if g], new[ok])
        rows.update(zip(todo, new))
    if not keys:
        return np.zeros((0, 0), dtype=np.float32)
    return np.stack([rows[k] for k in keys]).astype(np.float32, copy=False)
