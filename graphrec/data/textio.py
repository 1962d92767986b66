"""Input files read as the formats they claim: bytes -> text -> RFC 4180 records -> string columns.

Every interaction, mapping, text and feature table that graphrec reads as text goes through
`read_delimited`, so every one of them follows the same rules:

* **Files.** A missing path is a `MissingFileError`; a directory, an unreadable or empty file is a
  `DataError` naming it. Gzip content (found by its magic bytes, whatever the name) is decompressed;
  other compressed content (bzip2, xz, zip, zstd), parquet and ``.npy`` files read as text are refused
  with a message that says what the file is.
* **Encoding.** Text is decoded with ``encoding`` (UTF-8 by default, a byte-order mark accepted and
  dropped). A byte that does not decode is a `DataError` naming the file, the line and the
  ``encoding`` option to set; a NUL character (binary content, or UTF-16 read as UTF-8) likewise.
* **Records.** CSV/TSV per RFC 4180 with a configurable delimiter: a field may be quoted with ``"``,
  a quoted field may hold the delimiter, a line break or a doubled ``""`` (one quote); quotes are
  removed from quoted fields (header names included); a ``"`` inside an unquoted field is kept as is.
  Empty lines are skipped. A record whose field count differs from the header's is a `DataError`
  naming its line (an unclosed quote shows up this way too). Values are kept as strings; the
  readers above this module parse ids and numbers (`graphrec.data.ids`).

Rows are numbered as data rows (1-based, the header not counted); `Table.line` gives the physical
line where a record starts, for messages ("row 2 (line 3, column 'user_id')"). Parsing uses pyarrow's CSV reader (a core
dependency); line numbers are recovered with Python's ``csv`` module only when a message needs one.
"""
from __future__ import annotations

import codecs
import csv
import gzip
import io
import os
import zlib
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from graphrec.errors import DataError, MissingFileError

# magic bytes of content that is not a text table
_REFUSED_MAGIC = (
    (b"BZh", "bzip2-compressed"),
    (b"\xfd7zXZ\x00", "xz-compressed"),
    (b"PK\x03\x04", "a zip archive"),
    (b"\x28\xb5\x2f\xfd", "zstd-compressed"),
    (b"PAR1", "a parquet file (name it .parquet, or pass fmt='parquet')"),
    (b"\x93NUMPY", "a .npy array"),
)
_GZIP = b"\x1f\x8b"
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF16_LE, "utf-16"),
         (codecs.BOM_UTF16_BE, "utf-16"))


def check_file(path: str, what: str = "file") -> None:
    """Raise unless ``path`` is an existing, non-empty regular file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: no such {what}")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, expected a {what}")
    if not os.path.isfile(path):
        raise DataError(f"{path}: not a regular file (a device, pipe or socket), expected a {what}")
    if not os.access(path, os.R_OK):
        raise DataError(f"{path}: cannot be read (permission denied)")
    if os.path.getsize(path) == 0:
        raise DataError(f"{path}: the file is empty")


def read_bytes(path: str, what: str = "file") -> bytes:
    """The file's bytes, gzip content decompressed; other compressed or binary formats refused."""
    check_file(path, what)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"{path}: cannot be read ({e.strerror or e})") from None
    return unpack(data, path)


def unpack(data: bytes, source: str) -> bytes:
    """Gzip content decompressed (one level); refused formats named; empty content refused."""
    if data.startswith(_GZIP):
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{source}: gzip content that does not decompress ({e})") from None
        if not data:
            raise DataError(f"{source}: the file is empty (after gzip decompression)")
    for magic, what in _REFUSED_MAGIC:
        if data.startswith(magic):
            raise DataError(f"{source}: the content is {what}, not a text table")
    if not data:
        raise DataError(f"{source}: the file is empty")
    return data


def decode(data: bytes, source: str, encoding: str = "utf-8") -> str:
    """Bytes -> str with ``encoding``; a leading byte-order mark is dropped. Errors name the line."""
    try:
        codec = codecs.lookup(encoding).name
    except (LookupError, TypeError):
        raise DataError(f"{source}: unknown encoding {encoding!r} (the encoding option)") from None
    if codec == "utf-8":
        for bom, name in _BOMS:
            if data.startswith(bom):
                raise DataError(f"{source}: the file starts with a {name} byte-order mark; read it with "
                                f"encoding='{name}'")
        codec = "utf-8-sig"
    try:
        text = data.decode(codec, errors="strict")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        col = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"{source}: line {line}, column {col}: byte 0x{data[e.start]:02x} is not valid "
                        f"{encoding}; set the encoding option to the file's encoding (e.g. "
                        f"encoding='latin-1')") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    nul = text.find("\x00")
    if nul >= 0:
        line = text.count("\n", 0, nul) + 1
        raise DataError(f"{source}: line {line} holds a NUL character: binary content, or a UTF-16/32 text "
                        f"read as {encoding} (set the encoding option)")
    return text


def read_text(path: str, encoding: str = "utf-8", what: str = "file") -> str:
    """A whole text file, decompressed and decoded by the rules above."""
    return decode(read_bytes(path, what), path, encoding)


@dataclass
class Table:
    """String columns of a delimited text file (or typed columns of a parquet file).

    ``columns`` maps each header name to a pyarrow array; ``line(i)`` is the line where data row
    ``i`` (0-based) starts, for messages."""

    source: str
    names: list[str]
    columns: dict
    n_rows: int
    sep: Optional[str] = None
    header: bool = True
    types: dict = field(default_factory=dict)  # RecBole atomic files: {name: token|float|...}
    _text: Optional[str] = field(default=None, repr=False)
    _lines: Optional[np.ndarray] = field(default=None, repr=False)

    def has(self, name: str) -> bool:
        return name in self.columns

    def column(self, name: str, role: str = "") -> "object":
        """The column ``name``; a `DataError` naming the file, the role and the columns if absent."""
        if name not in self.columns:
            what = f" for the {role}" if role else ""
            raise DataError(f"{self.source}: no column {name!r}{what} (columns: "
                            f"{', '.join(map(_name, self.names)) or 'none'})")
        return self.columns[name]

    def line(self, row: int) -> Optional[int]:
        """Physical line (1-based) where data row ``row`` (0-based) starts; None if unknown."""
        if self._text is None or self.sep is None:
            return None
        if self._lines is None:
            self._lines = record_lines(self._text, self.sep)
        k = row + (1 if self.header else 0)
        return int(self._lines[k]) if 0 <= k < self._lines.size else None


def record_lines(text: str, sep: str) -> np.ndarray:
    """Start line (1-based) of every non-empty record, as Python's csv module splits them (used
    only for messages; pyarrow and csv agree on RFC 4180 input)."""
    starts = []
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=False)
    prev = 0
    try:
        for rec in reader:
            if rec:
                starts.append(prev + 1)
            prev = reader.line_num
    except csv.Error:  # a field over csv's size limit: line numbers stop there
        pass
    return np.asarray(starts, dtype=np.int64)


def _first_record_width(text: str, sep: str) -> int:
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=sep, strict=False)
    try:
        for rec in reader:
            if rec:
                return len(rec)
    except csv.Error:
        pass
    return 1


def parse_delimited(text: str, source: str, sep: str, header: bool = True,
                    names: Optional[list[str]] = None) -> Table:
    """RFC 4180 records of ``text`` -> `Table` of string columns (see the module docstring).

    ``header=True`` takes the column names from the first record (quotes removed, surrounding
    whitespace stripped; duplicates are an error); ``header=False`` names columns ``names`` or
    ``0, 1, ...``."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    if len(sep) != 1 or sep in ('"', "\n", "\r"):
        raise DataError(f"{source}: the delimiter must be one character other than a quote or a line "
                        f"break, got {sep!r}")
    if not text.strip():
        raise DataError(f"{source}: the file is empty")
    width = _first_record_width(text, sep)
    bad: list = []

    def on_bad(row) -> str:
        bad.append((row.number, row.expected_columns, row.actual_columns, row.text))
        return "skip"

    tbl = None
    for attempt in range(2):
        k = max(width, 1) + 64
        try:
            tbl = pacsv.read_csv(
                pa.py_buffer(_utf8(text, source)),
                read_options=pacsv.ReadOptions(use_threads=False, autogenerate_column_names=True,
                                               block_size=1 << 26),
                parse_options=pacsv.ParseOptions(delimiter=sep, quote_char='"', double_quote=True,
                                                 escape_char=False, newlines_in_values=True,
                                                 ignore_empty_lines=True, invalid_row_handler=on_bad),
                convert_options=pacsv.ConvertOptions(column_types={f"f{i}": pa.string() for i in range(k)},
                                                     strings_can_be_null=False, quoted_strings_can_be_null=False))
        except pa.ArrowInvalid as e:
            raise DataError(f"{source}: not a readable delimited text file ({_one_line(e)})") from None
        if tbl.num_columns <= k:
            break
        width, bad = tbl.num_columns, []
    assert tbl is not None
    table = Table(source, [], {}, 0, sep=sep, header=header, _text=text)
    if bad:
        number, expected, actual, row_text = bad[0]
        ln = table.line(number - 1 - (1 if header else 0)) if number is not None else None
        where = f"line {ln}" if ln is not None else f"record {number}"
        hint = " (an unclosed or stray quote?)" if row_text and '"' in row_text else \
            " (a delimiter inside an unquoted field? quote the field)" if actual > expected else ""
        raise DataError(f"{source}: {where} has {actual} field(s), the {'header' if header else 'first line'} has "
                        f"{expected}{hint}; {len(bad)} such row(s)")
    cols = [tbl.column(i).combine_chunks() if tbl.column(i).num_chunks != 1 else tbl.column(i).chunk(0)
            for i in range(tbl.num_columns)]
    cols = [c.cast(pa.string()) if c.type != pa.string() else c for c in cols]
    if header:
        head = [str(c[0].as_py()).strip() for c in cols]
        cols = [c.slice(1) for c in cols]
        seen: dict = {}
        for i, h in enumerate(head):
            if h in seen and h:
                raise DataError(f"{source}: column {h!r} appears twice in the header (fields {seen[h] + 1} and "
                                f"{i + 1})")
            seen.setdefault(h, i)
        head = [h if h else f"column{i + 1}" for i, h in enumerate(head)]
    else:
        if names is not None and len(names) != len(cols):
            raise DataError(f"{source}: {len(cols)} field(s) per line, expected {len(names)} "
                            f"({', '.join(names)})")
        head = list(names) if names is not None else [str(i) for i in range(len(cols))]
    table.names = head
    table.columns = dict(zip(head, cols))
    table.n_rows = len(cols[0]) if cols else 0
    return table


def read_delimited(path: str, sep: str, header: bool = True, names: Optional[list[str]] = None,
                   encoding: str = "utf-8", require_rows: bool = True) -> Table:
    """`parse_delimited` of a file; a header without data rows is an error unless
    ``require_rows=False``."""
    table = parse_delimited(read_text(path, encoding), path, sep, header, names)
    if require_rows and table.n_rows == 0:
        raise DataError(f"{path}: the file has a header but no rows" if header else f"{path}: no rows")
    return table


def read_parquet(path: str) -> Table:
    """A parquet file as a `Table` of its typed columns (pyarrow arrays, no pandas conversion, so
    uint64, nullable ints and lists keep their types for the checks of `graphrec.data.ids`)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    check_file(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    if magic.startswith(_GZIP):
        raise DataError(f"{path}: gzip-compressed; parquet files are compressed inside, decompress it first")
    if magic != b"PAR1":
        raise DataError(f"{path}: not a parquet file (no PAR1 magic); name a text table .csv/.tsv")
    try:
        tbl = pq.read_table(path)
    except (pa.ArrowException, OSError, ValueError) as e:
        raise DataError(f"{path}: cannot be read as parquet ({_one_line(e)})") from None
    names = [str(n) for n in tbl.column_names]
    if len(set(names)) != len(names):
        dup = next(n for n in names if names.count(n) > 1)
        raise DataError(f"{path}: column {dup!r} appears twice")
    cols = {n: (c.combine_chunks() if c.num_chunks != 1 else c.chunk(0)) for n, c in zip(names, tbl.columns)}
    return Table(path, names, cols, tbl.num_rows, header=True)


def _name(name: str) -> str:
    """A column name as written, or its repr when it holds line breaks or control characters."""
    return name if name.isprintable() else repr(name)


def _utf8(text: str, source: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:  # lone surrogates from an exotic codec
        raise DataError(f"{source}: line {text.count(chr(10), 0, e.start) + 1} holds a character that is not "
                        f"valid Unicode (set the encoding option)") from None


def _one_line(e: BaseException) -> str:
    msg = " ".join(str(e).split())
    return msg[:300] + ("..." if len(msg) > 300 else "")
