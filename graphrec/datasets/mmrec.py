"""Directories in MMRec's layout: ``<name>.inter`` (TSV ``userID itemID rating timestamp x_label``,
ids already dense), optional ``image_feat.npy`` / ``text_feat.npy`` (row i = item i), optional
``u_id_mapping.csv`` / ``i_id_mapping.csv`` (TSV original id -> dense id) and ``item_text.tsv``."""
from __future__ import annotations

import glob
import os
from typing import Optional

import numpy as np

from graphrec.data.features import ItemFeatures, load_npy
from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.readers import _pd, read_mmrec_inter
from graphrec.data.split import split_from_labels
from graphrec.data.dataset import Dataset
from graphrec.utils import log

FEATURE_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}


def _find_inter(path: str, name: Optional[str]) -> str:
    if name is not None:
        f = os.path.join(path, f"{name}.inter")
        if not os.path.exists(f):
            raise FileNotFoundError(f"{f}: no such file")
        return f
    found = sorted(glob.glob(os.path.join(path, "*.inter")))
    if len(found) != 1:
        raise FileNotFoundError(f"{path}: expected exactly one <name>.inter file, found "
                                f"{[os.path.basename(f) for f in found] or 'none'} (pass name=)")
    return found[0]


def _mapping(path: str, n: int, side: str) -> Optional[np.ndarray]:
    """Original ids by dense index from ``u_id_mapping.csv`` / ``i_id_mapping.csv`` (when present)."""
    if not os.path.exists(path):
        return None
    df = _pd().read_csv(path, sep="\t", dtype=str)
    if df.shape[1] < 2:
        raise ValueError(f"{path}: expected two tab-separated columns (original id, dense id)")
    dense = df.iloc[:, 1].astype(np.int64).to_numpy()
    if len(df) != n or not np.array_equal(np.sort(dense), np.arange(n)):
        raise ValueError(f"{path}: maps {len(df)} {side}s with dense ids not exactly 0..{n - 1}")
    ids = np.empty(n, dtype=object)
    ids[dense] = df.iloc[:, 0].to_numpy()
    try:
        return ids.astype(np.int64)
    except ValueError:
        return ids.astype(str)


def load_mmrec(path: str, name: Optional[str] = None, modalities: Optional[list[str]] = None) -> Dataset:
    """Load an MMRec directory; ``x_label`` becomes the predefined split. The item count is the
    larger of ``max(itemID) + 1`` and the feature files' row count (MMRec sizes its embedding
    tables that way); a feature file with fewer rows than the items is an error."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: not a directory")
    inter_path = _find_inter(path, name)
    inter, labels = read_mmrec_inter(inter_path)
    feats_present = {m: os.path.join(path, f) for m, f in FEATURE_FILES.items()
                     if os.path.exists(os.path.join(path, f)) and (modalities is None or m in modalities)}
    n_items = inter.n_items
    for m, f in feats_present.items():
        rows = int(np.load(f, mmap_mode="r").shape[0])
        if rows < n_items:
            raise ValueError(f"{f}: {rows} feature rows, but {inter_path} has item index {n_items - 1}")
        n_items = max(n_items, rows)
    uids = _mapping(os.path.join(path, "u_id_mapping.csv"), inter.n_users, "user")
    iids = _mapping(os.path.join(path, "i_id_mapping.csv"), n_items, "item")
    umap = IdMap(uids if uids is not None else np.arange(inter.n_users), "user")
    imap = IdMap(iids if iids is not None else np.arange(n_items), "item")
    inter = Interactions(inter.user, inter.item, umap, imap, timestamp=inter.timestamp, rating=inter.rating,
                         source=inter_path, meta=inter.meta)
    features = ItemFeatures({m: load_npy(f, n_items) for m, f in feats_present.items()}, imap,
                            dict(feats_present)) if feats_present else None
    split = split_from_labels(inter, labels, "predefined") if labels is not None else None
    text = None
    tpath = os.path.join(path, "item_text.tsv")
    if os.path.exists(tpath):
        df = _pd().read_csv(tpath, sep="\t", dtype=str, keep_default_na=False)
        if "itemID" in df.columns and "text" in df.columns:
            idx = df["itemID"].astype(np.int64).to_numpy()
            text = [""] * n_items
            for i, t in zip(idx.tolist(), df["text"].tolist()):
                text[i] = t
            if len(set(idx.tolist())) != n_items:
                log.info("%s: %d of %d items have no text (empty string)", tpath, n_items - len(set(idx.tolist())),
                         n_items)
    dname = name or os.path.splitext(os.path.basename(inter_path))[0]
    return Dataset(f"mmrec:{dname}", inter, split=split, features=features, item_text=text,
                   meta={"path": path, "inter_file": inter_path})
