"""Readers: interaction files -> `Interactions`.

Formats: CSV/TSV/parquet with a column mapping (`read_table`), MMRec ``.inter`` with ``x_label``
(`read_mmrec_inter`), RecBole atomic files with a typed header (`read_recbole_inter`) and MovieLens
``u.data`` (`read_movielens`). Original ids that are all integers are kept as int64 (so they sort
numerically, as MMRec's re-indexing does); other ids are kept as strings. Every error names the
file and, where there is one, the row (1-based data row, header not counted) and the id.
"""
from __future__ import annotations

import io
import os
from typing import Any, Mapping, Optional

import numpy as np
import torch

from graphrec.data.interactions import IdMap, Interactions

DEFAULT_COLUMNS = {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "rating": "rating"}
_OPTIONAL = ("timestamp", "rating")


def _pd():
    try:
        import pandas as pd
    except ImportError as e:  # pragma: no cover - pandas ships with the io/test extras
        raise ImportError("reading interaction files needs pandas: pip install 'graphrec[io]'") from e
    return pd


def _as_ids(values: Any, what: str, source: str) -> np.ndarray:
    """Original ids as int64 when every value is an integer, otherwise as str; blanks are errors."""
    pd = _pd()
    s = pd.Series(values)
    missing = np.flatnonzero(s.isna().to_numpy())
    if missing.size:
        raise ValueError(f"{source}: empty {what} id at row {int(missing[0]) + 1} ({missing.size} row(s))")
    if s.dtype.kind in "iu":
        return s.to_numpy(np.int64)
    if s.dtype.kind == "f":
        arr = s.to_numpy()
        if np.all(arr == np.round(arr)):
            return arr.astype(np.int64)
        bad = int(np.flatnonzero(arr != np.round(arr))[0])
        raise ValueError(f"{source}: {what} id {arr[bad]!r} at row {bad + 1} is not an integer or a token")
    st = s.astype(str).str.strip()
    num = pd.to_numeric(st, errors="coerce")
    if not num.isna().any() and np.all(num.to_numpy() == np.round(num.to_numpy())) and st.str.fullmatch(r"-?\d+").all():
        return num.to_numpy().astype(np.int64)
    return st.to_numpy(dtype=object).astype(str)


def _numeric(values: Any, what: str, source: str) -> torch.Tensor:
    pd = _pd()
    s = pd.to_numeric(pd.Series(values), errors="coerce")
    bad = np.flatnonzero(s.isna().to_numpy())
    if bad.size:
        raw = pd.Series(values).iloc[int(bad[0])]
        raise ValueError(f"{source}: {what} value {raw!r} at row {int(bad[0]) + 1} is not a number "
                         f"({bad.size} bad row(s))")
    arr = s.to_numpy()
    if arr.dtype.kind == "f" and np.all(arr == np.round(arr)) and np.all(np.abs(arr) < 2**53):
        arr = arr.astype(np.int64)  # "3.0" ratings and float timestamps that are whole numbers
    return torch.from_numpy(np.array(arr))  # a writable copy (pandas may hand out read-only views)


def from_columns(users: Any, items: Any, timestamp: Any = None, rating: Any = None, *, source: str = "",
                 user_map: Optional[IdMap] = None, item_map: Optional[IdMap] = None) -> Interactions:
    """Interactions from original-id columns. Without maps, each side's `IdMap` is the sorted
    distinct ids (MMRec's convention); with a map, ids must all be known to it."""
    src = source or "interactions"
    u = _as_ids(users, "user", src)
    i = _as_ids(items, "item", src)
    umap = user_map if user_map is not None else IdMap.from_values(u, "user")
    imap = item_map if item_map is not None else IdMap.from_values(i, "item")
    uidx = _map_sorted(umap, u, src) if user_map is None else umap.to_index(u, src)
    iidx = _map_sorted(imap, i, src) if item_map is None else imap.to_index(i, src)
    ts = None if timestamp is None else _numeric(timestamp, "timestamp", src)
    rt = None if rating is None else _numeric(rating, "rating", src)
    return Interactions(torch.from_numpy(uidx), torch.from_numpy(iidx), umap, imap, timestamp=ts, rating=rt,
                        source=source)


def _map_sorted(m: IdMap, values: np.ndarray, source: str) -> np.ndarray:
    # m.ids is np.unique(values): a vectorised binary search replaces a per-row dict lookup
    return np.searchsorted(m.ids, values).astype(np.int64)


def from_indices(users: Any, items: Any, timestamp: Any = None, rating: Any = None, *, source: str = "",
                 n_users: Optional[int] = None, n_items: Optional[int] = None) -> Interactions:
    """Interactions from columns that already are dense indices (MMRec's ``userID``/``itemID``).
    They must be non-negative integers; the maps are ``0..max`` (or ``0..n-1`` when given)."""
    src = source or "interactions"
    cols = []
    for what, vals, n in (("user", users, n_users), ("item", items, n_items)):
        arr = _index_column(vals, what, src)
        size = int(arr.max()) + 1 if n is None else int(n)
        if arr.size and int(arr.max()) >= size:
            bad = int(np.argmax(arr >= size))
            raise ValueError(f"{src}: {what} index {int(arr[bad])} at row {bad + 1} is >= the {size} {what}s")
        cols.append((arr, IdMap(np.arange(size, dtype=np.int64), what)))
    ts = None if timestamp is None else _numeric(timestamp, "timestamp", src)
    rt = None if rating is None else _numeric(rating, "rating", src)
    return Interactions(torch.from_numpy(cols[0][0]), torch.from_numpy(cols[1][0]), cols[0][1], cols[1][1],
                        timestamp=ts, rating=rt, source=source)


def _index_column(values: Any, what: str, source: str) -> np.ndarray:
    pd = _pd()
    raw = pd.Series(values)
    s = pd.to_numeric(raw, errors="coerce")
    arr = s.to_numpy()
    bad = np.flatnonzero(s.isna().to_numpy() | (arr != np.round(arr)) if arr.dtype.kind == "f" else s.isna().to_numpy())
    if bad.size:
        raise ValueError(f"{source}: {what} index {raw.iloc[int(bad[0])]!r} at row {int(bad[0]) + 1} is not an "
                         f"integer ({bad.size} bad row(s))")
    arr = arr.astype(np.int64)
    neg = np.flatnonzero(arr < 0)
    if neg.size:
        raise ValueError(f"{source}: negative {what} index {int(arr[neg[0]])} at row {int(neg[0]) + 1} "
                         f"({neg.size} bad row(s))")
    if arr.size == 0:
        raise ValueError(f"{source}: no rows")
    return arr


def _read_frame(path: str, sep: Optional[str] = None, fmt: Optional[str] = None, header: bool = True,
                names: Optional[list[str]] = None):
    pd = _pd()
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty")
    fmt = fmt or ("parquet" if path.endswith((".parquet", ".pq")) else "text")
    if fmt == "parquet":
        df = pd.read_parquet(path)
    else:
        if sep is None:
            sep = "," if path.endswith(".csv") else "\t"
        df = pd.read_csv(path, sep=sep, header=0 if header else None, names=names, dtype=str,
                         keep_default_na=False, na_values=[""], quoting=3, engine="c")
    if len(df) == 0:
        raise ValueError(f"{path}: the file has a header but no rows")
    return df


def _need(df: Any, col: str, role: str, path: str) -> Any:
    if col not in df.columns:
        raise ValueError(f"{path}: no column {col!r} for the {role} (columns: {', '.join(map(str, df.columns))})")
    return df[col]


def read_table(path: str, columns: Optional[Mapping[str, str]] = None, sep: Optional[str] = None,
               fmt: Optional[str] = None) -> Interactions:
    """CSV (``,``), TSV (any other suffix) or parquet. ``columns`` maps the roles ``user``, ``item``,
    ``timestamp``, ``rating`` to column names (defaults `DEFAULT_COLUMNS`); a timestamp or rating
    column is read when it is present (or required when named explicitly)."""
    cols = dict(DEFAULT_COLUMNS)
    explicit = set(columns or {})
    cols.update(columns or {})
    unknown = set(cols) - set(DEFAULT_COLUMNS)
    if unknown:
        raise ValueError(f"read_table: unknown column roles {sorted(unknown)}; roles are {list(DEFAULT_COLUMNS)}")
    df = _read_frame(path, sep=sep, fmt=fmt)
    opt = {}
    for role in _OPTIONAL:
        if cols[role] in df.columns:
            opt[role] = df[cols[role]]
        elif role in explicit and cols[role] is not None:
            _need(df, cols[role], role, path)
    return from_columns(_need(df, cols["user"], "user", path), _need(df, cols["item"], "item", path),
                        timestamp=opt.get("timestamp"), rating=opt.get("rating"), source=path)


def read_mmrec_inter(path: str, user_col: str = "userID", item_col: str = "itemID"
                     ) -> tuple[Interactions, Optional[np.ndarray]]:
    """MMRec ``.inter`` (TSV ``userID itemID rating timestamp x_label``): ids are dense indices
    already. Returns (interactions, x_label array or None when the column is absent)."""
    df = _read_frame(path, sep="\t")
    u, i = _need(df, user_col, "user index", path), _need(df, item_col, "item index", path)
    inter = from_indices(u, i, timestamp=df["timestamp"] if "timestamp" in df.columns else None,
                         rating=df["rating"] if "rating" in df.columns else None, source=path)
    labels = None
    if "x_label" in df.columns:
        lab = _index_column(df["x_label"], "x_label", path)
        bad = np.flatnonzero(lab > 2)
        if bad.size:
            raise ValueError(f"{path}: x_label {int(lab[bad[0]])} at row {int(bad[0]) + 1} is not 0/1/2")
        labels = lab.astype(np.int8)
    inter.meta["columns"] = list(map(str, df.columns))
    return inter, labels


def parse_recbole_header(line: str, path: str) -> list[tuple[str, str]]:
    """``user_id:token\\titem_id:token`` -> [(name, type)]; types token/token_seq/float/float_seq."""
    out = []
    for field in line.rstrip("\r\n").split("\t"):
        name, sep, typ = field.rpartition(":")
        if not sep or typ not in ("token", "token_seq", "float", "float_seq"):
            raise ValueError(f"{path}: header field {field!r} is not 'name:type' with a RecBole type "
                             f"(token, token_seq, float, float_seq)")
        out.append((name, typ))
    return out


def read_recbole_frame(path: str):
    """A RecBole atomic file as a DataFrame with the typed header's plain names as columns."""
    pd = _pd()
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open(path, encoding="utf-8") as f:
        head = f.readline()
        if not head.strip():
            raise ValueError(f"{path}: the file is empty")
        fields = parse_recbole_header(head, path)
        body = f.read()
    df = pd.read_csv(io.StringIO(body), sep="\t", header=None, names=[n for n, _ in fields], dtype=str,
                     keep_default_na=False, na_values=[""], quoting=3)
    if len(df) == 0:
        raise ValueError(f"{path}: the file has a header but no rows")
    return df


def read_recbole_inter(path: str, user_field: str = "user_id", item_field: str = "item_id",
                       rating_field: str = "rating", time_field: str = "timestamp") -> Interactions:
    """RecBole atomic ``.inter`` (first line a typed header such as ``user_id:token``)."""
    df = read_recbole_frame(path)
    return from_columns(_need(df, user_field, "user", path), _need(df, item_field, "item", path),
                        timestamp=df[time_field] if time_field in df.columns else None,
                        rating=df[rating_field] if rating_field in df.columns else None, source=path)


def read_movielens(path: str) -> Interactions:
    """MovieLens ``u.data`` (tab-separated ``user item rating timestamp``, no header); also reads
    ``ratings.dat`` (``::``-separated, ML-1M/10M)."""
    sep = "::" if path.endswith(".dat") else "\t"
    pd = _pd()
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise ValueError(f"{path}: the file is empty")
    df = pd.read_csv(path, sep=sep, header=None, dtype=str, engine="python" if sep == "::" else "c")
    if df.shape[1] != 4:
        raise ValueError(f"{path}: expected 4 columns (user, item, rating, timestamp), found {df.shape[1]}")
    return from_columns(df[0], df[1], timestamp=df[3], rating=df[2], source=path)


def read_interactions(path: str, fmt: Optional[str] = None, **kwargs: Any) -> Interactions:
    """Dispatch on ``fmt`` (``table``, ``mmrec``, ``recbole``, ``movielens``) or the file name."""
    base = os.path.basename(path)
    if fmt is None:
        if base in ("u.data", "ratings.dat"):
            fmt = "movielens"
        elif base.endswith(".inter"):
            with open(path, encoding="utf-8") as f:
                fmt = "recbole" if ":" in f.readline() else "mmrec"
        else:
            fmt = "table"
    if fmt == "mmrec":
        return read_mmrec_inter(path, **kwargs)[0]
    if fmt == "recbole":
        return read_recbole_inter(path, **kwargs)
    if fmt == "movielens":
        return read_movielens(path)
    if fmt == "table":
        return read_table(path, **kwargs)
    raise ValueError(f"{path}: unknown interaction format {fmt!r} (table, mmrec, recbole, movielens)")
