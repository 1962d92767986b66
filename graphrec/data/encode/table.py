"""Item tables for the encoders: read a csv/tsv/parquet file and build one text per item."""
from __future__ import annotations

import csv
from pathlib import Path
from typing import Optional, Sequence

from graphrec.utils import log


def read_columns(path: str | Path, columns: Sequence[str]) -> dict[str, list[Optional[str]]]:
    """``{column: values}`` of a .csv / .tsv (.tab, .txt: tab-separated) / .parquet file.

    Values are strings, None where the cell is empty. Raises naming the file, the missing column(s)
    and the available columns.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such items file")
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        try:
            import pandas as pd
        except ImportError as e:
            raise ImportError(f"{path}: reading parquet needs pandas and pyarrow "
                              f"(`pip install 'graphrec[io]'`)") from e
        df = pd.read_parquet(path)
        header = [str(c) for c in df.columns]
        _check(path, header, columns)
        df.columns = header
        return {c: [None if v is None or (isinstance(v, float) and v != v) else str(v)
                    for v in df[c].tolist()] for c in columns}
    delim = "," if suffix == ".csv" else "\t"
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f, delimiter=delim)
        header = next(reader, None)
        if header is None:
            raise ValueError(f"{path}: empty file (expected a header row)")
        header = [h.strip() for h in header]
        _check(path, header, columns)
        pos = [header.index(c) for c in columns]
        out: dict[str, list[Optional[str]]] = {c: [] for c in columns}
        for lineno, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise ValueError(f"{path}: record {lineno} has {len(row)} fields, the header has "
                                 f"{len(header)} (wrong delimiter for a '{suffix}' file?)")
            for c, p in zip(columns, pos):
                out[c].append(row[p] if row[p].strip() else None)
    return out


def _check(path: Path, header: list[str], columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in header]
    if missing:
        raise ValueError(f"{path}: no column(s) {', '.join(map(repr, missing))}; available columns: "
                         f"{', '.join(header)}")
    dup = sorted({c for c in header if header.count(c) > 1} & set(columns))
    if dup:
        raise ValueError(f"{path}: column(s) {dup} appear more than once in the header")


def join_text(parts: Sequence[Optional[str]], sep: str = ". ") -> str:
    """Join the non-empty parts with ``sep`` ('Title. Genres. Overview'); '' when all are empty."""
    return sep.join(" ".join(p.split()) for p in parts if p is not None and p.strip())


def item_texts(path: str | Path, id_col: str, text_cols: Sequence[str],
               sep: str = ". ") -> tuple[list[str], list[str]]:
    """(ids, texts) in file order; each text joins the item's ``text_cols`` with ``sep``.

    Whitespace inside each part is collapsed to single spaces. Duplicate ids raise naming them.
    """
    if not text_cols:
        raise ValueError("at least one text column is needed")
    cols = read_columns(path, [id_col, *[c for c in text_cols if c != id_col]])
    ids = cols[id_col]
    blank = [i for i, v in enumerate(ids) if v is None]
    if blank:
        raise ValueError(f"{path}: empty id in column {id_col!r} at data row(s) {blank[:10]} (0-based, header excluded)")
    seen: dict[str, int] = {}
    for i, v in enumerate(ids):
        if v in seen:
            raise ValueError(f"{path}: id {v!r} appears twice in column {id_col!r} (0-based data rows "
                             f"{seen[v]} and {i}); keep one row per item")
        seen[v] = i
    texts = [join_text([cols[c][i] for c in text_cols], sep) for i in range(len(ids))]
    log.info("encode text: %d items from %s (columns %s)", len(ids), path, ", ".join(text_cols))
    return [str(v) for v in ids], texts
