"""Readers: interaction files -> `Interactions`.

Formats: CSV/TSV/parquet with a column mapping (`read_table`), MMRec ``.inter`` with ``x_label``
(`read_mmrec_inter`), RecBole atomic files with a typed header (`read_recbole_inter`) and MovieLens
``u.data`` / ``ratings.dat`` (`read_movielens`).

Text files are read by `graphrec.data.textio` (RFC 4180 quoting, ``encoding`` option, gzip,
errors that name the file and line); ids, dense indices and numbers follow the id policy of
`graphrec.data.ids` (ids are strings compared after stripping whitespace, an all-canonical-integer
column is int64, ``1`` and ``01`` are different ids; dense indices may not inflate the catalogue).
Every error is a `graphrec.errors.DataError` (a ``ValueError``) or `MissingFileError` (a
``FileNotFoundError``) whose one-line message names the file and, where there is one, the row
(data rows from 1, the header not counted), line, column and id.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional

import numpy as np
import torch

from graphrec.data.ids import dense_size, parse_ids, parse_indices, parse_numbers
from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.textio import Table, parse_delimited, read_delimited, read_parquet, read_text
from graphrec.errors import ConfigError, DataError
from graphrec.utils import log

DEFAULT_COLUMNS = {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "rating": "rating"}
_OPTIONAL = ("timestamp", "rating")
_PARQUET = (".parquet", ".pq")


def _log_stripped(source: str, stripped: list) -> None:
    if sum(stripped):
        log.info("%s: stripped surrounding whitespace from %d id value(s)", source, sum(stripped))


def from_columns(users: Any, items: Any, timestamp: Any = None, rating: Any = None, *, source: str = "",
                 user_map: Optional[IdMap] = None, item_map: Optional[IdMap] = None,
                 table: Optional[Table] = None, names: Optional[Mapping[str, str]] = None) -> Interactions:
    """Interactions from original-id columns (the id policy of `graphrec.data.ids`). Without maps,
    each side's `IdMap` is the sorted distinct ids (MMRec's convention); with a map, ids must all be
    known to it. ``table``/``names`` only improve messages (line numbers, column names)."""
    src = source or "interactions"
    names = dict(names or {})
    line = table.line if table is not None else None
    stripped: list = []
    u = parse_ids(users, "user", src, names.get("user"), line, stripped)
    i = parse_ids(items, "item", src, names.get("item"), line, stripped)
    _log_stripped(src, stripped)
    if u.size != i.size:
        raise DataError(f"{src}: user and item columns differ in length ({u.size} vs {i.size})")
    umap = user_map if user_map is not None else IdMap.from_values(u, "user")
    imap = item_map if item_map is not None else IdMap.from_values(i, "item")
    uidx = np.searchsorted(umap.ids, u).astype(np.int64) if user_map is None else umap.to_index(u, src)
    iidx = np.searchsorted(imap.ids, i).astype(np.int64) if item_map is None else imap.to_index(i, src)
    ts = _numbers(timestamp, "timestamp", src, names, line)
    rt = _numbers(rating, "rating", src, names, line)
    return Interactions(torch.from_numpy(uidx), torch.from_numpy(iidx), umap, imap, timestamp=ts, rating=rt,
                        source=source)


def _numbers(values: Any, what: str, src: str, names: Mapping[str, str], line) -> Optional[torch.Tensor]:
    if values is None:
        return None
    return torch.from_numpy(np.array(parse_numbers(values, what, src, names.get(what), line)))  # writable copy


def from_indices(users: Any, items: Any, timestamp: Any = None, rating: Any = None, *, source: str = "",
                 n_users: Optional[int] = None, n_items: Optional[int] = None, table: Optional[Table] = None,
                 names: Optional[Mapping[str, str]] = None, size_from: str = "") -> Interactions:
    """Interactions from columns that already are dense indices (MMRec's ``userID``/``itemID``).
    They must be non-negative integers; the maps are ``0..n-1`` with ``n`` given (every index below
    it; ``size_from`` names what fixed it) or ``max + 1`` when the range is not inflated
    (`graphrec.data.ids.dense_size`)."""
    src = source or "interactions"
    names = dict(names or {})
    line = table.line if table is not None else None
    stripped: list = []
    cols = []
    for what, vals, n in (("user", users, n_users), ("item", items, n_items)):
        arr = parse_indices(vals, what, src, names.get(what), line, stripped)
        if arr.size == 0:
            raise DataError(f"{src}: no rows")
        size = dense_size(arr, what, src, n, line, size_from if n is not None else "", names.get(what))
        cols.append((arr, IdMap(np.arange(size, dtype=np.int64), what)))
    _log_stripped(src, stripped)
    if cols[0][0].size != cols[1][0].size:
        raise DataError(f"{src}: user and item columns differ in length ({cols[0][0].size} vs {cols[1][0].size})")
    ts = _numbers(timestamp, "timestamp", src, names, line)
    rt = _numbers(rating, "rating", src, names, line)
    return Interactions(torch.from_numpy(cols[0][0]), torch.from_numpy(cols[1][0]), cols[0][1], cols[1][1],
                        timestamp=ts, rating=rt, source=source)


def default_sep(path: str) -> str:
    base = path[:-3] if path.endswith(".gz") else path
    return "," if base.lower().endswith(".csv") else "\t"


def read_frame(path: str, sep: Optional[str] = None, fmt: Optional[str] = None, encoding: str = "utf-8",
               header: bool = True, names: Optional[list[str]] = None) -> Table:
    """A table file as a `Table`: ``fmt`` ``parquet`` (default for ``.parquet``/``.pq``), ``csv``,
    ``tsv`` or ``text`` (the delimiter ``sep``, else ``,`` for ``.csv[.gz]`` and tab otherwise)."""
    path = os.fspath(path)
    if fmt is None:
        fmt = "parquet" if path.lower().endswith(_PARQUET) else "text"
    if fmt == "parquet":
        table = read_parquet(path)
        if table.n_rows == 0:
            raise DataError(f"{path}: the file has a header but no rows")
        return table
    if fmt not in ("text", "csv", "tsv"):
        raise ConfigError(f"{path}: unknown table format {fmt!r} (parquet, csv, tsv, text)")
    if sep is None:
        sep = {"csv": ",", "tsv": "\t"}.get(fmt) or default_sep(path)
    return read_delimited(path, sep, header=header, names=names, encoding=encoding)


def read_table(path: str, columns: Optional[Mapping[str, str]] = None, sep: Optional[str] = None,
               fmt: Optional[str] = None, encoding: str = "utf-8") -> Interactions:
    """CSV (``,``), TSV (any other suffix) or parquet. ``columns`` maps the roles ``user``, ``item``,
    ``timestamp``, ``rating`` to column names (defaults `DEFAULT_COLUMNS`); a timestamp or rating
    column is read when it is present (or required when named explicitly)."""
    cols = dict(DEFAULT_COLUMNS)
    if columns is not None and not isinstance(columns, Mapping):
        raise ConfigError(f"read_table: columns must be a mapping of roles to column names, got "
                          f"{type(columns).__name__}")
    explicit = set(columns or {})
    cols.update(columns or {})
    unknown = set(cols) - set(DEFAULT_COLUMNS)
    if unknown:
        raise ConfigError(f"read_table: unknown column roles {sorted(unknown)}; roles are {list(DEFAULT_COLUMNS)}")
    if is_large(path):
        return _stream_table(path, cols, explicit, sep, fmt, encoding)
    table = read_frame(path, sep=sep, fmt=fmt, encoding=encoding)
    opt = {}
    for role in _OPTIONAL:
        if cols[role] is not None and table.has(cols[role]):
            opt[role] = table.column(cols[role])
        elif role in explicit and cols[role] is not None:
            table.column(cols[role], role)
    return from_columns(table.column(cols["user"], "user"), table.column(cols["item"], "item"),
                        timestamp=opt.get("timestamp"), rating=opt.get("rating"), source=path, table=table,
                        names=cols)


def is_large(path: str) -> bool:
    """Whether a log is large enough to be read block by block (`graphrec.data.stream`)."""
    from graphrec.data import stream
    try:
        return os.path.getsize(path) >= stream.STREAM_MIN_BYTES
    except OSError:
        return False  # the whole-file reader names the problem


def _stream_table(path: str, cols: Mapping[str, Optional[str]], explicit: set, sep: Optional[str],
                  fmt: Optional[str], encoding: str) -> Interactions:
    from graphrec.data.stream import header, stream_interactions
    if fmt not in (None, "parquet", "text", "csv", "tsv"):
        raise ConfigError(f"{path}: unknown table format {fmt!r} (parquet, csv, tsv, text)")
    sep = sep or {"csv": ",", "tsv": "\t"}.get(fmt or "") or default_sep(path)
    have = set(header(path, sep, "parquet" if fmt == "parquet" else None, encoding))
    names = {r: c for r, c in cols.items() if r in ("user", "item") or r in explicit or c in have}
    return stream_interactions(path, names, sep, "parquet" if fmt == "parquet" else None, encoding)


def read_mmrec_inter(path: str, user_col: str = "userID", item_col: str = "itemID", encoding: str = "utf-8",
                     n_users: Optional[int] = None, n_items: Optional[int] = None, size_from: str = ""
                     ) -> tuple[Interactions, Optional[np.ndarray]]:
    """MMRec ``.inter`` (TSV ``userID itemID rating timestamp x_label``): ids are dense indices
    already. ``n_users``/``n_items`` (when a feature or mapping file fixes them; ``size_from``
    names it) bound the indices. Returns (interactions, x_label array or None when absent)."""
    table = read_delimited(path, "\t", encoding=encoding)
    names = {"user": user_col, "item": item_col, "timestamp": "timestamp", "rating": "rating"}
    inter = from_indices(table.column(user_col, "user index"), table.column(item_col, "item index"),
                         timestamp=table.columns.get("timestamp"), rating=table.columns.get("rating"),
                         source=path, n_users=n_users, n_items=n_items, table=table, names=names,
                         size_from=size_from)
    labels = None
    if table.has("x_label"):
        lab = parse_indices(table.column("x_label"), "x_label", path, "x_label", table.line)
        bad = np.flatnonzero(lab > 2)
        if bad.size:
            r = int(bad[0])
            ln = table.line(r)
            raise DataError(f"{path}: x_label {int(lab[r])} at row {r + 1} is not 0/1/2 (train/valid/test"
                            + (f"; line {ln})" if ln else ")"))
        labels = lab.astype(np.int8)
    inter.meta["columns"] = list(table.names)
    return inter, labels


RECBOLE_TYPES = ("token", "token_seq", "float", "float_seq")


def parse_recbole_header(line: str | list[str], path: str) -> list[tuple[str, str]]:
    """``user_id:token\\titem_id:token`` (or its fields) -> [(name, type)]."""
    fields = line.rstrip("\r\n").split("\t") if isinstance(line, str) else list(line)
    out = []
    for field in fields:
        name, sep, typ = str(field).strip().rpartition(":")
        if not sep or not name or typ not in RECBOLE_TYPES:
            raise DataError(f"{path}: header field {str(field)[:60]!r} is not 'name:type' with a RecBole type "
                            f"({', '.join(RECBOLE_TYPES)})")
        out.append((name, typ))
    names = [n for n, _ in out]
    dup = next((n for n in names if names.count(n) > 1), None)
    if dup is not None:
        raise DataError(f"{path}: header field {dup!r} appears twice")
    return out


def parse_recbole(text: str, source: str) -> Table:
    """RecBole atomic text (tab-separated, first line a typed header such as ``user_id:token``) as a
    `Table` whose names are the plain field names; ``table.types`` maps them to their types."""
    table = parse_delimited(text, source, "\t")
    fields = parse_recbole_header(table.names, source)
    table.names = [n for n, _ in fields]
    table.columns = dict(zip(table.names, table.columns.values()))
    table.types = dict(fields)
    if table.n_rows == 0:
        raise DataError(f"{source}: the file has a header but no rows")
    return table


def read_recbole_frame(path: str, encoding: str = "utf-8") -> Table:
    """`parse_recbole` of a file."""
    return parse_recbole(read_text(path, encoding), path)


def read_recbole_inter(path: str, user_field: str = "user_id", item_field: str = "item_id",
                       rating_field: str = "rating", time_field: str = "timestamp",
                       encoding: str = "utf-8") -> Interactions:
    """RecBole atomic ``.inter`` (first line a typed header such as ``user_id:token``)."""
    table = read_recbole_frame(path, encoding)
    return from_columns(table.column(user_field, "user"), table.column(item_field, "item"),
                        timestamp=table.columns.get(time_field), rating=table.columns.get(rating_field),
                        source=path, table=table,
                        names={"user": user_field, "item": item_field, "timestamp": time_field,
                               "rating": rating_field})


def read_movielens(path: str, encoding: str = "utf-8") -> Interactions:
    """MovieLens ``u.data`` (tab-separated ``user item rating timestamp``, no header); also reads
    ``ratings.dat`` (``::``-separated, ML-1M/10M)."""
    text = read_text(path, encoding)
    if path.endswith(".dat"):
        if "\t" in text:
            raise DataError(f"{path}: line {text.count(chr(10), 0, text.index(chr(9))) + 1} holds a tab; a "
                            f"ratings.dat file is '::'-separated")
        text = text.replace("::", "\t")
    table = parse_delimited(text, path, "\t", header=False)
    if len(table.names) != 4:
        raise DataError(f"{path}: expected 4 columns (user, item, rating, timestamp), found {len(table.names)}")
    c = table.columns
    return from_columns(c["0"], c["1"], timestamp=c["3"], rating=c["2"], source=path, table=table)


FORMATS = ("table", "mmrec", "recbole", "movielens")


def read_interactions(path: str, fmt: Optional[str] = None, **kwargs: Any) -> Interactions:
    """Dispatch on ``fmt`` (``table``, ``mmrec``, ``recbole``, ``movielens``) or the file name."""
    path = os.fspath(path)
    base = os.path.basename(path)
    if fmt is None:
        if base in ("u.data", "ratings.dat"):
            fmt = "movielens"
        elif base.endswith((".inter", ".inter.gz")):
            first = read_text(path, kwargs.get("encoding", "utf-8")).lstrip("\r\n").split("\n", 1)[0]
            fmt = "recbole" if ":" in first else "mmrec"
        else:
            fmt = "table"
    readers = {"mmrec": read_mmrec_inter, "recbole": read_recbole_inter, "movielens": read_movielens,
               "table": read_table}
    if fmt not in readers:
        raise ConfigError(f"{path}: unknown interaction format {fmt!r} ({', '.join(FORMATS)})")
    check_options(readers[fmt], kwargs, f"the {fmt} reader")
    out = readers[fmt](path, **kwargs)
    return out[0] if fmt == "mmrec" else out


def check_options(fn: Any, kwargs: Mapping[str, Any], what: str) -> None:
    """Keyword options a function does not take are a `ConfigError` naming them (not a TypeError)."""
    import inspect

    params = inspect.signature(fn).parameters
    if any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return
    known = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)][1:]
    bad = sorted(set(kwargs) - set(known))
    if bad:
        raise ConfigError(f"unknown option(s) {', '.join(map(repr, bad))} for {what} (options: {', '.join(known)})")
