"""UniSRec/RecBole-style sequential sets (e.g. Amazon "Scientific"): ``<name>.test.inter`` rows
``user_id  item_id_list  item_id`` where the list is the user's whole history before the last item,
``<name>.item2index`` / ``<name>.user2index`` (original id -> dense index) and ``<name>.text``
(``item_id:token  text:token_seq``, keyed by original item id)."""
from __future__ import annotations

import glob
import os
from typing import Optional

import numpy as np
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.readers import _pd, read_recbole_frame
from graphrec.data.sequences import Sequences
from graphrec.data.dataset import Dataset
from graphrec.utils import log


def _index_file(path: str, side: str) -> np.ndarray:
    """Original ids by dense index."""
    df = _pd().read_csv(path, sep="\t", header=None, dtype=str, quoting=3, keep_default_na=False)
    if df.shape[1] != 2:
        raise ValueError(f"{path}: expected two tab-separated columns (original {side} id, index)")
    idx = df[1].astype(np.int64).to_numpy()
    n = len(df)
    if not np.array_equal(np.sort(idx), np.arange(n)):
        raise ValueError(f"{path}: {side} indices are not exactly 0..{n - 1}")
    ids = np.empty(n, dtype=object)
    ids[idx] = df[0].to_numpy()
    return ids.astype(str)


def load_recbole_seq(path: str, name: Optional[str] = None) -> Dataset:
    """Full per-user sequences (test history + test target) as interactions whose timestamp is the
    position in the sequence; ``meta['sequences']`` is the `Sequences` view. No split is fixed:
    general top-K use gets the default per-user random split, sequential models use the order."""
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: not a directory")
    if name is None:
        found = sorted(glob.glob(os.path.join(path, "*.test.inter")))
        if len(found) != 1:
            raise FileNotFoundError(f"{path}: expected exactly one <name>.test.inter, found "
                                    f"{[os.path.basename(f) for f in found] or 'none'} (pass name=)")
        name = os.path.basename(found[0])[: -len(".test.inter")]
    test_path = os.path.join(path, f"{name}.test.inter")
    df = read_recbole_frame(test_path)
    for col in ("user_id", "item_id_list", "item_id"):
        if col not in df.columns:
            raise ValueError(f"{test_path}: no '{col}' field (fields: {', '.join(df.columns)})")
    if df["user_id"].duplicated().any():
        r = int(np.flatnonzero(df["user_id"].duplicated().to_numpy())[0])
        raise ValueError(f"{test_path}: user {df['user_id'].iloc[r]!r} has a second row at data row {r + 1}; "
                         f"the test file must hold one full history per user")
    hist = df["item_id_list"].fillna("").str.split()
    seqs = [h + [t] for h, t in zip(hist, df["item_id"])]
    lens = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
    flat = np.concatenate([np.asarray(s) for s in seqs])
    try:
        items = flat.astype(np.int64)
        users = np.repeat(df["user_id"].astype(np.int64).to_numpy(), lens)
    except ValueError as e:
        raise ValueError(f"{test_path}: user/item fields must be integer indices ({e})") from None
    pos = np.arange(lens.sum()) - np.repeat(np.cumsum(lens) - lens, lens)

    i2i, u2i = os.path.join(path, f"{name}.item2index"), os.path.join(path, f"{name}.user2index")
    item_ids = _index_file(i2i, "item") if os.path.exists(i2i) else np.arange(int(items.max()) + 1)
    user_ids = _index_file(u2i, "user") if os.path.exists(u2i) else np.arange(int(users.max()) + 1)
    for side, arr, ids in (("item", items, item_ids), ("user", users, user_ids)):
        bad = np.flatnonzero((arr < 0) | (arr >= len(ids)))
        if bad.size:
            raise ValueError(f"{test_path}: {side} index {int(arr[bad[0]])} is outside the {len(ids)} {side}s")
    inter = Interactions(torch.from_numpy(users), torch.from_numpy(items), IdMap(user_ids, "user"),
                         IdMap(item_ids, "item"), timestamp=torch.from_numpy(pos), source=test_path)

    text = None
    tpath = os.path.join(path, f"{name}.text")
    if os.path.exists(tpath):
        tdf = read_recbole_frame(tpath)
        lookup = dict(zip(tdf["item_id"].astype(str), tdf["text"].fillna("").astype(str)))
        text = [lookup.get(str(i), "").strip() for i in item_ids.tolist()]
        n_missing = sum(str(i) not in lookup for i in item_ids.tolist())
        if n_missing:
            log.info("%s: %d of %d items have no text (empty string)", tpath, n_missing, len(item_ids))
    return Dataset(f"recbole-seq:{name}", inter, item_text=text,
                   meta={"path": path, "sequences": Sequences.from_interactions(inter)})
