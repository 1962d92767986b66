"""Directories in MMRec's layout: ``<name>.inter`` (TSV ``userID itemID rating timestamp x_label``,
ids already dense), optional ``image_feat.npy`` / ``text_feat.npy`` (row i = item i), optional
``u_id_mapping.csv`` / ``i_id_mapping.csv`` (TSV original id -> dense id) and ``item_text.tsv``.

Every text file is read by `graphrec.data.textio` (RFC 4180 quoting as MMRec's pandas reads it,
``encoding`` option, gzip) and every id by the policy of `graphrec.data.ids`. The item count is
fixed by the feature files' rows or the item mapping when present (the ``.inter`` indices must be
below it), else by ``max(itemID) + 1`` when that range is not inflated by a stray index.
"""
from __future__ import annotations

import glob
import os
from functools import partial
from typing import Optional

import numpy as np

from graphrec.data.dataset import Dataset
from graphrec.data.features import ItemFeatures, LazyTable, load_npy, npy_header, npy_rows
from graphrec.data.ids import check_unique, dense_size, parse_ids, parse_indices
from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.readers import read_mmrec_inter
from graphrec.data.split import split_from_labels
from graphrec.data.textio import read_delimited
from graphrec.errors import ConfigError, DataError, MissingFileError
from graphrec.utils import log

FEATURE_FILES = {"image": "image_feat.npy", "text": "text_feat.npy"}


def _find_inter(path: str, name: Optional[str]) -> str:
    if name is not None:
        if not isinstance(name, str) or not name or os.sep in name or name in (".", ".."):
            raise ConfigError(f"{path}: name must be a file name without directories, got {name!r}")
        f = os.path.join(path, f"{name}.inter")
        if not os.path.exists(f):
            raise MissingFileError(f"{f}: no such file")
        return f
    found = sorted(glob.glob(os.path.join(glob.escape(path), "*.inter")))
    if len(found) != 1:
        raise MissingFileError(f"{path}: expected exactly one <name>.inter file, found "
                               f"{[os.path.basename(f) for f in found] or 'none'} (pass name=)")
    return found[0]


def _mapping(path: str, side: str, encoding: str) -> Optional[np.ndarray]:
    """Original ids by dense index from ``u_id_mapping.csv`` / ``i_id_mapping.csv`` (when present):
    the second column must be a permutation of 0..n-1, the first unique original ids."""
    if not os.path.exists(path):
        return None
    table = read_delimited(path, "\t", encoding=encoding)
    if len(table.names) < 2:
        raise DataError(f"{path}: expected two tab-separated columns (original {side} id, dense id), found "
                        f"{len(table.names)}")
    orig_col, dense_col = table.names[0], table.names[1]
    dense = parse_indices(table.columns[dense_col], f"dense {side}", path, dense_col, table.line)
    n = len(dense)
    dense_size(dense, f"dense {side}", path, n, table.line, column=dense_col)
    check_unique(dense, f"dense {side} id", path, dense_col, table.line)  # with the bound: exactly 0..n-1
    orig = parse_ids(table.columns[orig_col], side, path, orig_col, table.line)
    check_unique(orig, f"original {side} id", path, orig_col, table.line)
    return orig[np.argsort(dense, kind="stable")]


def _item_text(tpath: str, n_items: int, encoding: str) -> Optional[list[str]]:
    table = read_delimited(tpath, "\t", encoding=encoding, require_rows=False)
    if not (table.has("itemID") and table.has("text")):
        log.warning("%s: no 'itemID' and 'text' columns (columns: %s); item text not loaded", tpath,
                    ", ".join(table.names))
        return None
    idx = parse_indices(table.column("itemID"), "item", tpath, "itemID", table.line)
    dense_size(idx, "item", tpath, n_items, table.line, column="itemID")
    check_unique(idx, "item", tpath, "itemID", table.line)
    text = [""] * n_items
    for i, t in zip(idx.tolist(), table.column("text").to_pylist()):
        text[i] = t
    if idx.size != n_items:
        log.info("%s: %d of %d items have no text (empty string)", tpath, n_items - idx.size, n_items)
    return text


def load_mmrec(path: str, name: Optional[str] = None, modalities: Optional[list[str]] = None,
               encoding: str = "utf-8") -> Dataset:
    """Load an MMRec directory; ``x_label`` becomes the predefined split. The item count is the
    feature files' row count (MMRec sizes its embedding tables that way) or the item mapping's,
    else ``max(itemID) + 1``; an ``.inter`` index at or above it is an error naming its row."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: no such directory")
    if not os.path.isdir(path):
        raise DataError(f"{path}: is a file, expected an MMRec directory (<name>.inter, *_feat.npy, ...)")
    if modalities is not None:
        if isinstance(modalities, str) or not all(isinstance(m, str) for m in modalities):
            raise ConfigError(f"{path}: modalities must be a list of names, got {modalities!r}")
        unknown = sorted(set(modalities) - set(FEATURE_FILES))
        if unknown:
            raise ConfigError(f"{path}: unknown modalities {unknown}; an MMRec directory has {list(FEATURE_FILES)}")
    inter_path = _find_inter(path, name)
    feats_present = {m: os.path.join(path, f) for m, f in FEATURE_FILES.items()
                     if os.path.exists(os.path.join(path, f)) and (modalities is None or m in modalities)}
    rows = {m: npy_rows(f) for m, f in feats_present.items()}
    if len(set(rows.values())) > 1:
        shown = ", ".join(f"{os.path.basename(feats_present[m])} {r}" for m, r in rows.items())
        raise DataError(f"{path}: the feature files disagree on the item count ({shown} rows)")
    uids = _mapping(os.path.join(path, "u_id_mapping.csv"), "user", encoding)
    iids = _mapping(os.path.join(path, "i_id_mapping.csv"), "item", encoding)
    n_items, size_from = None, ""
    if rows:
        m, n_items = next(iter(rows.items()))
        size_from = f"{feats_present[m]}: {n_items} feature rows"
        if iids is not None and len(iids) != n_items:
            raise DataError(f"{os.path.join(path, 'i_id_mapping.csv')}: maps {len(iids)} items, but "
                            f"{feats_present[m]} has {n_items} feature rows")
    elif iids is not None:
        n_items, size_from = len(iids), f"{os.path.join(path, 'i_id_mapping.csv')}: {len(iids)} mapped items"
    inter, labels = read_mmrec_inter(inter_path, encoding=encoding, n_items=n_items, size_from=size_from,
                                     n_users=None if uids is None else len(uids))
    n_items = inter.n_items
    umap = IdMap(uids if uids is not None else np.arange(inter.n_users), "user")
    imap = IdMap(iids if iids is not None else np.arange(n_items), "item")
    inter = Interactions(inter.user, inter.item, umap, imap, timestamp=inter.timestamp, rating=inter.rating,
                         source=inter_path, meta=inter.meta)
    # read when a model asks for the modality (LightGCN reads none: 0.38 GB of image rows at Clothing)
    features = ItemFeatures({m: LazyTable((n_items, npy_header(f)[0][1]), partial(load_npy, f, n_items, imap, m))
                             for m, f in feats_present.items()}, imap, dict(feats_present)) if feats_present else None
    split = split_from_labels(inter, labels, "predefined") if labels is not None else None
    tpath = os.path.join(path, "item_text.tsv")
    text = _item_text(tpath, n_items, encoding) if os.path.exists(tpath) else None
    dname = name or os.path.splitext(os.path.basename(inter_path))[0]
    return Dataset(f"mmrec:{dname}", inter, split=split, features=features, item_text=text,
                   meta={"path": path, "inter_file": inter_path})
