"""UniSRec/RecBole-style sequential sets (e.g. Amazon "Scientific"): ``<name>.test.inter`` rows
``user_id  item_id_list  item_id`` where the list is the user's whole history before the last item,
``<name>.item2index`` / ``<name>.user2index`` (original id -> dense index) and ``<name>.text``
(``item_id:token  text:token_seq``, keyed by original item id).

Files are read by `graphrec.data.textio` (RFC 4180 quoting, as RecBole's pandas reads its atomic
files; ``encoding`` option; gzip). The ``user_id``/``item_id`` fields of the ``.inter`` files are
dense indices (`graphrec.data.ids`): below the ``*2index`` files' sizes when present, else not
inflated beyond the distinct indices.
"""
from __future__ import annotations

import glob
import os
from typing import Optional

import numpy as np
import torch

from graphrec.data.dataset import Dataset
from graphrec.data.ids import check_unique, dense_size, parse_ids, parse_indices
from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.readers import read_recbole_frame
from graphrec.data.sequences import Sequences
from graphrec.data.textio import read_delimited
from graphrec.errors import ConfigError, DataError, MissingFileError
from graphrec.utils import log


def _index_file(path: str, side: str, encoding: str = "utf-8") -> np.ndarray:
    """Original ids by dense index (``original<TAB>index`` lines, no header)."""
    table = read_delimited(path, "\t", header=False, encoding=encoding)
    if len(table.names) != 2:
        raise DataError(f"{path}: expected two tab-separated columns (original {side} id, index), found "
                        f"{len(table.names)}")
    idx = parse_indices(table.columns["1"], side, path, "index", table.line)
    dense_size(idx, side, path, len(idx), table.line, column="index")
    check_unique(idx, f"{side} index", path, "index", table.line)  # with the bound: exactly 0..n-1
    ids = parse_ids(table.columns["0"], side, path, "original id", table.line)
    check_unique(ids, f"original {side} id", path, "original id", table.line)
    return ids[np.argsort(idx, kind="stable")]


def _sequences(table, test_path: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(users per row, items flattened: each row's history then its target, sequence lengths)."""
    import pyarrow.compute as pc

    users = parse_indices(table.column("user_id"), "user", test_path, "user_id", table.line)
    check_unique(users, "user", test_path, "user_id", table.line)  # one full history per user
    hist = pc.utf8_split_whitespace(table.column("item_id_list"))
    hist_len = pc.list_value_length(hist).to_numpy(zero_copy_only=False).astype(np.int64)
    row_of = np.repeat(np.arange(len(users)), hist_len)
    flat = parse_indices(pc.list_flatten(hist), "item", test_path, "item_id_list", table.line, rows=row_of)
    target = parse_indices(table.column("item_id"), "item", test_path, "item_id", table.line)
    lens = hist_len + 1
    starts = np.cumsum(lens) - lens
    items = np.empty(int(lens.sum()), dtype=np.int64)
    is_target = np.zeros(items.size, dtype=bool)
    is_target[starts + hist_len] = True
    items[is_target] = target
    items[~is_target] = flat
    return users, items, lens


def load_recbole_seq(path: str, name: Optional[str] = None, encoding: str = "utf-8") -> Dataset:
    """Full per-user sequences (test history + test target) as interactions whose timestamp is the
    position in the sequence; ``meta['sequences']`` is the `Sequences` view. No split is fixed:
    general top-K use gets the default per-user random split, sequential models use the order."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: no such directory")
    if not os.path.isdir(path):
        raise DataError(f"{path}: is a file, expected a RecBole sequential directory (<name>.test.inter, ...)")
    if name is None:
        found = sorted(glob.glob(os.path.join(glob.escape(path), "*.test.inter")))
        if len(found) != 1:
            raise MissingFileError(f"{path}: expected exactly one <name>.test.inter, found "
                                   f"{[os.path.basename(f) for f in found] or 'none'} (pass name=)")
        name = os.path.basename(found[0])[: -len(".test.inter")]
    elif not isinstance(name, str) or not name or os.sep in name or name in (".", ".."):
        raise ConfigError(f"{path}: name must be a file name without directories, got {name!r}")
    test_path = os.path.join(path, f"{name}.test.inter")
    table = read_recbole_frame(test_path, encoding)
    for col in ("user_id", "item_id_list", "item_id"):
        table.column(col, "sequences")
    users_row, items, lens = _sequences(table, test_path)
    users = np.repeat(users_row, lens)
    pos = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)

    i2i, u2i = os.path.join(path, f"{name}.item2index"), os.path.join(path, f"{name}.user2index")
    item_ids = _index_file(i2i, "item", encoding) if os.path.exists(i2i) else None
    user_ids = _index_file(u2i, "user", encoding) if os.path.exists(u2i) else None
    item_rows = np.repeat(np.arange(lens.size), lens)
    n_items = dense_size(items, "item", test_path, None if item_ids is None else len(item_ids), table.line,
                         f"{i2i}: {len(item_ids)} items" if item_ids is not None else "", rows=item_rows)
    n_users = dense_size(users_row, "user", test_path, None if user_ids is None else len(user_ids), table.line,
                         f"{u2i}: {len(user_ids)} users" if user_ids is not None else "", column="user_id")
    item_ids = item_ids if item_ids is not None else np.arange(n_items)
    user_ids = user_ids if user_ids is not None else np.arange(n_users)
    inter = Interactions(torch.from_numpy(users), torch.from_numpy(items), IdMap(user_ids, "user"),
                         IdMap(item_ids, "item"), timestamp=torch.from_numpy(pos), source=test_path)

    text = None
    tpath = os.path.join(path, f"{name}.text")
    if os.path.exists(tpath):
        tt = read_recbole_frame(tpath, encoding)
        tid = tt.column("item_id", "item id")
        keys = parse_ids(tid, "item", tpath, "item_id", tt.line)
        check_unique(keys, "item", tpath, "item_id", tt.line)
        lookup = dict(zip(map(str, keys.tolist()), tt.column("text", "item text").to_pylist()))
        text = [lookup.get(str(i), "").strip() for i in item_ids.tolist()]
        n_missing = sum(str(i) not in lookup for i in item_ids.tolist())
        if n_missing:
            log.info("%s: %d of %d items have no text (empty string)", tpath, n_missing, len(item_ids))
    return Dataset(f"recbole-seq:{name}", inter, item_text=text,
                   meta={"path": path, "sequences": Sequences.from_interactions(inter)})
