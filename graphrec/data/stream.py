"""Streamed reading of large interaction logs: bounded memory, rows per second reported.

A log of 10^8 rows does not fit the whole-file path of `graphrec.data.textio` (the file's bytes,
its decoded text, a table of strings and a Python object per id at once). Here the file is read in
blocks (pyarrow's streaming CSV reader, ``block_bytes`` each, gzip decompressed on the way; parquet
row groups in batches), only the needed columns, and each block is reduced at once to what stays:
one int64 per row and column, and each distinct id once. Memory is O(rows + distinct ids + one
block), not O(file).

The id policy is the one of `graphrec.data.ids`, applied per block and reconciled at the end: a
column stays int64 only when every block's ids are canonical integers (else all become strings,
which for canonical integers gives back the same text), and the maps are the sorted distinct ids,
so the result equals the whole-file reader's (tested). Errors name the file, the data row (from 1)
and the column; streamed text has no line numbers (a quoted field may hold line breaks).
"""
from __future__ import annotations

import os
import time
from typing import Iterator, Mapping, Optional

import numpy as np
import torch

from graphrec.data.ids import parse_ids, parse_numbers
from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.textio import check_file
from graphrec.errors import DataError
from graphrec.utils import log

STREAM_MIN_BYTES = 64 << 20  # files from this size are streamed (smaller ones keep line numbers in errors)
BLOCK_BYTES = 8 << 20  # a 2.78M-row log peaks at 380 MB with 8 MiB blocks, 440 MB with 32 MiB (pyarrow reads ahead)
_PARQUET = (".parquet", ".pq")


def _is_parquet(path: str, fmt: Optional[str]) -> bool:
    return fmt == "parquet" or (fmt is None and path.lower().endswith(_PARQUET))


def _fail(path: str, e: Exception) -> DataError:
    return DataError(f"{path}: {' '.join(str(e).split())[:300]}")


def header(path: str, sep: str = ",", fmt: Optional[str] = None, encoding: str = "utf-8") -> list[str]:
    """The column names of a CSV/TSV (first record) or parquet file, without reading its rows."""
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    check_file(path, "interaction file")
    try:
        if _is_parquet(path, fmt):
            return list(pq.ParquetFile(path).schema_arrow.names)
        with pcsv.open_csv(path, read_options=pcsv.ReadOptions(encoding=encoding, block_size=1 << 16),
                           parse_options=pcsv.ParseOptions(delimiter=sep, newlines_in_values=True),
                           convert_options=pcsv.ConvertOptions(include_columns=[])) as reader:
            return list(reader.schema.names)
    except (pa.ArrowException, OSError) as e:
        raise _fail(path, e) from None


def _blocks(path: str, columns: list[str], sep: str, fmt: Optional[str], encoding: str,
            block_bytes: int) -> Iterator[dict]:
    import pyarrow as pa
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    if _is_parquet(path, fmt):
        f = pq.ParquetFile(path)
        rows = max(1, block_bytes // max(1, 16 * len(columns)))
        for batch in f.iter_batches(batch_size=rows, columns=columns):
            yield {c: batch.column(c) for c in columns}
        return
    opts = pcsv.ConvertOptions(include_columns=columns, column_types={c: pa.string() for c in columns},
                               strings_can_be_null=False, quoted_strings_can_be_null=False)
    with pcsv.open_csv(path, read_options=pcsv.ReadOptions(encoding=encoding, block_size=block_bytes),
                       parse_options=pcsv.ParseOptions(delimiter=sep, newlines_in_values=True),
                       convert_options=opts) as reader:
        for batch in reader:
            yield {c: batch.column(c) for c in columns}


class _Ids:
    """One id column, block by block: distinct ids in first-seen order (one dictionary entry per
    distinct id, never one object per row) and every row's provisional index; the sorted map is
    made once, at the end."""

    def __init__(self) -> None:
        self.index: dict = {}
        self.strings = False
        self.rows: list[np.ndarray] = []

    def add(self, uniques: np.ndarray, codes: np.ndarray) -> None:
        """A block: its distinct parsed ids (repeats allowed: ``" a"`` and ``"a"``) and its rows'
        codes into them."""
        if uniques.dtype.kind != "i" and not self.strings:  # a non-canonical id: the column is text
            self.index = {str(k): v for k, v in self.index.items()}
            self.strings = True
        keys = uniques.astype(str).tolist() if self.strings else uniques.tolist()
        d = self.index
        prov = np.fromiter((d.setdefault(k, len(d)) for k in keys), dtype=np.int64, count=len(keys))
        self.rows.append(prov[codes])

    def finish(self, name: str) -> tuple[IdMap, torch.Tensor]:
        """(the sorted distinct ids' map, every row's index into it)."""
        keys = np.asarray(list(self.index), dtype=str if self.strings else np.int64)
        self.index = {}
        imap = IdMap.from_values(keys, name)
        final = np.searchsorted(imap.ids, keys)
        rows = np.concatenate(self.rows) if self.rows else np.zeros(0, dtype=np.int64)
        self.rows = []
        np.take(final, rows, out=rows)
        return imap, torch.from_numpy(rows)


def _block_ids(values, role: str, path: str, col: str, ids: _Ids, stripped: list, offset: int) -> None:
    """One block's id column into ``ids``. Text is dictionary-encoded first, so the id policy runs
    once per distinct string of the block, not once per row; a bad id is then looked up again over
    the rows, for the row number of the message."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if not pa.types.is_string(values.type) or values.null_count:
        uniq, codes = np.unique(parse_ids(values, role, path, col, stripped=stripped, offset=offset),
                                return_inverse=True)
        ids.add(uniq, codes)
        return
    enc = pc.dictionary_encode(values)
    words = enc.dictionary
    try:
        parsed = parse_ids(words, role, path, col, stripped=[])
    except DataError:
        parse_ids(values, role, path, col, stripped=[], offset=offset)  # raises, naming the row
        raise
    codes = enc.indices.to_numpy(zero_copy_only=False)
    trimmed = pc.not_equal(pc.utf8_trim_whitespace(words), words).to_numpy(zero_copy_only=False)
    stripped.append(int(trimmed[codes].sum()) if trimmed.any() else 0)  # rows, as the whole-file reader counts
    ids.add(parsed, codes)


def stream_interactions(path: str, names: Mapping[str, Optional[str]], sep: str = ",", fmt: Optional[str] = None,
                        encoding: str = "utf-8", block_bytes: int = BLOCK_BYTES) -> Interactions:
    """Interactions of a CSV/TSV (gzip ok) or parquet log read block by block; ``names`` maps the
    roles ``user``, ``item`` (required) and ``timestamp``, ``rating`` (None: not read) to columns.
    ``meta["read"]`` holds rows, seconds, rows per second and the number of blocks."""
    import pyarrow as pa

    t0 = time.perf_counter()
    path = os.fspath(path)
    check_file(path, "interaction file")
    roles = {r: c for r, c in names.items() if c is not None}
    have = header(path, sep, fmt, encoding)
    for role, col in roles.items():
        if col not in have:
            raise DataError(f"{path}: no {role} column {col!r} (columns: {', '.join(have)})")
    ids = {"user": _Ids(), "item": _Ids()}
    parts: dict[str, list] = {r: [] for r in roles if r not in ids}
    stripped: list = []
    offset = n_blocks = 0
    try:
        for block in _blocks(path, sorted(set(roles.values())), sep, fmt, encoding, block_bytes):
            n = len(next(iter(block.values())))
            for role, col in roles.items():
                if role in ids:
                    _block_ids(block[col], role, path, col, ids[role], stripped, offset)
                else:
                    parts[role].append(parse_numbers(block[col], role, path, col, offset=offset))
            offset += n
            n_blocks += 1
    except pa.ArrowException as e:
        raise _fail(path, e) from None
    if offset == 0:
        raise DataError(f"{path}: the file has a header but no rows")
    if sum(stripped):
        log.info("%s: stripped surrounding whitespace from %d id value(s)", path, sum(stripped))
    maps = {role: ids[role].finish(role) for role in ("user", "item")}
    numbers = {}
    for role, chunks in parts.items():
        kinds = {c.dtype.kind for c in chunks}
        numbers[role] = torch.from_numpy(np.concatenate([c.astype(np.float64 if "f" in kinds else np.int64)
                                                         for c in chunks]))
    seconds = time.perf_counter() - t0
    inter = Interactions(maps["user"][1], maps["item"][1], maps["user"][0], maps["item"][0],
                         timestamp=numbers.get("timestamp"), rating=numbers.get("rating"), source=path)
    inter.meta["read"] = {"rows": offset, "seconds": round(seconds, 3), "rows_per_s": round(offset / max(seconds, 1e-9)),
                          "blocks": n_blocks, "streamed": True}
    log.info("%s: %d rows streamed in %d block(s), %.1f s (%.0f rows/s)", path, offset, n_blocks, seconds,
             offset / max(seconds, 1e-9))
    return inter
