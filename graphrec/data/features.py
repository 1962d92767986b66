"""Item content features: one float32 matrix per modality, row i = item index i."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Dict, Optional

import numpy as np
import torch

from graphrec.data.interactions import IdMap
from graphrec.utils import content_hash, log


@dataclass
class ItemFeatures:
    """``{modality: FloatTensor[n_items, d]}`` aligned to ``item_map`` (row i = item index i)."""

    features: Dict[str, torch.Tensor]
    item_map: IdMap
    sources: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.item_map)
        for m, x in list(self.features.items()):
            x = torch.as_tensor(x, dtype=torch.float32)
            if x.ndim != 2 or x.shape[0] != n:
                src = self.sources.get(m, m)
                raise ValueError(f"{src}: feature matrix for modality '{m}' has shape {tuple(x.shape)}, "
                                 f"expected ({n}, d) for the {n} items")
            bad = ~torch.isfinite(x).all(dim=1)
            if bool(bad.any()):
                rows = torch.nonzero(bad).flatten()[:10].tolist()
                raise ValueError(f"{self.sources.get(m, m)}: modality '{m}' has NaN/inf in {int(bad.sum())} "
                                 f"row(s); first item indices {rows} (original ids "
                                 f"{self.item_map.to_original(rows).tolist()})")
            self.features[m] = x.contiguous()

    def __getitem__(self, modality: str) -> torch.Tensor:
        return self.features[modality]

    def __contains__(self, modality: str) -> bool:
        return modality in self.features

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    def dims(self) -> Dict[str, int]:
        return {m: int(x.shape[1]) for m, x in self.features.items()}

    def hash(self, modality: Optional[str] = None) -> str:
        if modality is not None:
            return content_hash(self.features[modality])
        return content_hash({m: content_hash(x) for m, x in self.features.items()})

    def select(self, modalities: list[str]) -> "ItemFeatures":
        missing = [m for m in modalities if m not in self.features]
        if missing:
            raise KeyError(f"modalities {missing} not available (have {self.modalities})")
        return ItemFeatures({m: self.features[m] for m in modalities}, self.item_map,
                            {m: self.sources.get(m, "") for m in modalities})


# -- loaders -------------------------------------------------------------------------------------
MISSING_POLICIES = ("error", "mean", "zeros")


def load_npy(path: str, n_items: int) -> torch.Tensor:
    """A ``.npy`` matrix whose row ``i`` is item index ``i`` (MMRec's convention)."""
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    x = np.load(path, allow_pickle=False)
    if x.ndim != 2:
        raise ValueError(f"{path}: feature array has shape {x.shape}, expected (n_items, d)")
    if x.shape[0] != n_items:
        raise ValueError(f"{path}: {x.shape[0]} feature rows, but the dataset has {n_items} items "
                         f"(row i must be item index i)")
    return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def align_rows(ids: np.ndarray, x: np.ndarray, item_map: IdMap, source: str, missing: str = "error") -> torch.Tensor:
    """Rows keyed by original item id -> matrix aligned to ``item_map``. Ids unknown to the map
    are an error (a feature file for another item set); items without a row follow ``missing``:
    ``error`` (default), ``mean`` (mean of the present rows) or ``zeros``, with the count logged."""
    if missing not in MISSING_POLICIES:
        raise ValueError(f"missing={missing!r}; choose one of {MISSING_POLICIES}")
    keys = [str(v) for v in ids.tolist()]
    if len(set(keys)) != len(keys):
        seen: set = set()
        dup = next(k for k in keys if k in seen or seen.add(k))  # type: ignore[func-returns-value]
        raise ValueError(f"{source}: item id {dup!r} has more than one feature row")
    rows = item_map.to_index(ids.tolist(), source)
    out = np.zeros((len(item_map), x.shape[1]), dtype=np.float32)
    out[rows] = x
    have = np.zeros(len(item_map), dtype=bool)
    have[rows] = True
    n_missing = int((~have).sum())
    if n_missing:
        absent = item_map.to_original(np.flatnonzero(~have)[:5]).tolist()
        if missing == "error":
            raise ValueError(f"{source}: no feature row for {n_missing} item(s), e.g. ids {absent}; pass "
                             f"missing='mean' or 'zeros' to fill them")
        if missing == "mean":
            out[~have] = x.mean(axis=0) if len(x) else 0.0
        log.info("%s: %d item(s) without a feature row filled with %s (e.g. ids %s)", source, n_missing,
                 missing, absent)
    return torch.from_numpy(out)


def load_table(path: str, item_map: IdMap, id_col: str = "item_id", columns: Optional[list[str]] = None,
               missing: str = "error") -> torch.Tensor:
    """Parquet/CSV with an item-id column and one column per feature dimension (all other columns,
    or ``columns``), aligned to ``item_map`` by original id."""
    from graphrec.data.readers import _need, _read_frame

    df = _read_frame(path, sep=",")
    ids = _need(df, id_col, "item id", path).to_numpy()
    cols = columns or [c for c in df.columns if c != id_col]
    if not cols:
        raise ValueError(f"{path}: no feature columns besides {id_col!r}")
    for c in cols:
        _need(df, c, "feature", path)
    import pandas as pd

    vals = df[cols].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(vals).all(axis=1)
    if bad.any():
        r = np.flatnonzero(bad)
        raise ValueError(f"{path}: non-numeric, NaN or inf feature values in {r.size} row(s); first data rows "
                         f"{(r[:10] + 1).tolist()} (item ids {ids[r[:10]].tolist()})")
    return align_rows(ids, vals.astype(np.float32), item_map, path, missing)


def load_features(paths: Dict[str, str], item_map: IdMap, missing: str = "error", id_col: str = "item_id") -> ItemFeatures:
    """``{modality: file}`` -> `ItemFeatures`; ``.npy`` by row index, ``.parquet``/``.csv`` by id."""
    mats = {}
    for m, p in paths.items():
        mats[m] = load_npy(p, len(item_map)) if p.endswith(".npy") else load_table(p, item_map, id_col, missing=missing)
    return ItemFeatures(mats, item_map, dict(paths))
