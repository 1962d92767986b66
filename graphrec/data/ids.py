"""The id policy: how original ids, dense indices and numeric columns are read from any source.

**Original ids** (user/item ids of CSV/TSV/parquet tables, RecBole atomic files, MovieLens, feature
tables keyed by id, mapping files) are *tokens*:

* Text ids are strings compared as strings after stripping surrounding (Unicode) whitespace; the
  number of values that had whitespace is logged once per file (summed over its id columns). An id
  that is empty after stripping is an error.
* ``1`` and ``01`` are different ids. A column whose every id is a canonical non-negative decimal
  integer (``0`` or ``[1-9][0-9]*``) that fits int64 is kept as int64, so ids sort numerically
  (MMRec's re-indexing ranks sorted ids); one id with a leading zero, a sign, a letter or more than
  int64 holds keeps the whole column as strings, where ``1`` and ``01`` stay apart and ids sort as
  strings. An `IdMap` compares an int id and its decimal string as equal (``7`` finds ``"7"``).
* Typed columns (parquet, in-memory arrays) must hold non-negative integers that fit int64, or
  strings: a negative integer, a uint64 above 2^63 - 1, a float with a fractional part, a NaN, a
  float at or above 2^53 (not exact), a bool, a list, bytes or a timestamp is an error naming the
  file, the column and the first bad row. Whole floats (an int column that a null turned into
  float) are read as integers; nulls are "empty id" errors.

**Dense indices** (MMRec ``userID``/``itemID``, UniSRec sequence files, ``*2index`` and
``*_id_mapping.csv`` files) are *numbers*: decimal integers (surrounding whitespace stripped, leading
zeros allowed, as pandas reads them in MMRec and RecBole), non-negative, within int64. The
catalogue they define is ``0..max``, so one typo id would create millions of empty rows:

* when the size is known (the rows of a feature file, a mapping file, ``n=``), every index must be
  below it;
* otherwise an index may not reach ``DENSE_FACTOR * n_distinct + DENSE_EXTRA`` (2 x the distinct
  indices + 1,000): at most half of a dense range may be unused, beyond a small allowance for tiny
  files. An index beyond that is an error naming the file and the row (indices are never remapped:
  remapping would silently break the row alignment of feature files).

**Numbers** (ratings, timestamps, feature values) must parse as finite numbers; all-integer columns
stay int64 (exact, even beyond 2^53), whole floats below 2^53 become int64 ("3.0" ratings), others
float64.

Row numbers in messages count data rows from 1 (the header not counted); text tables add the line.
"""
from __future__ import annotations

from typing import Any, Callable, Optional

import numpy as np

from graphrec.errors import DataError
from graphrec.utils import log

DENSE_FACTOR = 2
DENSE_EXTRA = 1000
_INT64_MAX = np.iinfo(np.int64).max
_CANONICAL = r"^(0|[1-9][0-9]*)$"
_FLOAT_EXACT = 2.0 ** 53

LineOf = Callable[[int], Optional[int]]


class Loc:
    """Where a value sits, for messages: ``row N`` (data rows from 1) plus ``(line L, column 'c';
    k rows)`` context."""

    def __init__(self, source: str = "", column: Optional[str] = None, line: Optional[LineOf] = None,
                 rows: Optional[np.ndarray] = None, offset: int = 0):
        self.source = source or "input"
        self.column = column
        self.line = line
        self.rows = rows  # value i sits in data row rows[i] (flattened sequence fields); None: row offset + i
        self.offset = offset  # a chunk of a streamed file starts at data row offset

    def _r(self, i: int) -> int:
        return int(self.rows[i]) if self.rows is not None else self.offset + i

    def row(self, i: int) -> str:
        return f"row {self._r(i) + 1}"

    def ctx(self, i: int, count: Optional[int] = None) -> str:
        parts = []
        ln = self.line(self._r(i)) if self.line is not None else None
        if ln is not None:
            parts.append(f"line {ln}")
        if self.column:
            parts.append(f"column {self.column!r}")
        text = ", ".join(parts)
        if count is not None and count > 1:
            text += ("; " if text else "") + f"{count} such rows"
        return f" ({text})" if text else ""


    def fail(self, i: int, message: str, count: Optional[int] = None, hint: str = "") -> DataError:
        """``<source>: <message with {at}> (line, column; count)<hint>`` as a `DataError`."""
        return DataError(f"{self.source}: {message.format(at=self.row(i))}{self.ctx(i, count)}{hint}")

    def whole(self, message: str) -> DataError:
        col = f" (column {self.column!r})" if self.column else ""
        return DataError(f"{self.source}: {message}{col}")


def to_arrow(values: Any, what: str, loc: Loc):
    """Any column-like input -> a pyarrow Array; None when mixed Python objects defeat arrow."""
    import pyarrow as pa

    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if not isinstance(values, pa.Array):
        try:
            import torch
            if isinstance(values, torch.Tensor):
                if values.is_complex():
                    raise loc.whole(f"{what} values are complex numbers")
                values = values.detach().cpu().numpy()
        except ImportError:  # pragma: no cover - torch is a core dependency
            pass
        if isinstance(values, np.ndarray) and values.ndim != 1:
            raise loc.whole(f"{what} column has shape {values.shape}, expected one dimension")
        if isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
            raise loc.whole(f"{what} column is a {type(values).__name__}, expected a sequence of values")
        try:
            values = pa.array(values, from_pandas=hasattr(values, "iloc"))  # pandas marks nulls with NaN
        except (pa.ArrowException, OverflowError, TypeError, ValueError):
            return None
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    return values


def _pylist(values: Any) -> list:
    return list(values.tolist()) if hasattr(values, "tolist") else list(values)


def _np(arr) -> np.ndarray:
    return arr.to_numpy(zero_copy_only=False)


def _log_strip(n: int, what: str, loc: Loc, stripped: Optional[list]) -> None:
    if not n:
        return
    if stripped is not None:
        stripped.append(n)
    else:
        col = f" in column {loc.column!r}" if loc.column else ""
        log.info("%s: stripped surrounding whitespace from %d %s id(s)%s", loc.source, n, what, col)


def _is_str(t) -> bool:
    import pyarrow as pa
    return pa.types.is_string(t) or pa.types.is_large_string(t) or str(t) == "string_view"


def _nulls(arr, what: str, loc: Loc) -> None:
    if arr.null_count:
        bad = np.flatnonzero(_np(arr.is_null()))
        raise loc.fail(int(bad[0]), f"empty {what} at {{at}}", bad.size)


def _short(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 40 else r[:37] + "..."


def parse_ids(values: Any, what: str, source: str = "", column: Optional[str] = None,
              line: Optional[LineOf] = None, stripped: Optional[list] = None, offset: int = 0) -> np.ndarray:
    """Original ids (policy above) -> int64 array or str array. ``stripped``: a list that receives
    the count of whitespace-stripped values instead of logging it (callers log once per file);
    ``line(i)``: the line of data row i, for messages; ``offset``: the data row of value 0 (a chunk
    of a streamed file)."""
    import pyarrow as pa
    import pyarrow.compute as pc

    loc = Loc(source, column, line, offset=offset)
    arr = to_arrow(values, f"{what} id", loc)
    if arr is None:
        return _parse_objects(_pylist(values), what, loc, stripped)
    t = arr.type
    _nulls(arr, f"{what} id", loc)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    if pa.types.is_boolean(t):
        raise loc.fail(0, f"{what} ids are booleans ({{at}}: {arr[0].as_py()!r}); ids must be integers or strings")
    if pa.types.is_integer(t):
        return _check_ints(arr, f"{what} id", loc)
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        return _check_floats(arr.cast(pa.float64()), f"{what} id", loc)
    if _is_str(t):
        raw = arr.cast(pa.string())
        s = pc.utf8_trim_whitespace(raw)
        _log_strip(int(pc.sum(pc.not_equal(s, raw)).as_py() or 0), what, loc, stripped)
        empty = np.flatnonzero(_np(pc.equal(pc.utf8_length(s), 0)))
        if empty.size:
            raise loc.fail(int(empty[0]), f"empty {what} id at {{at}}", empty.size)
        if bool(pc.all(pc.match_substring_regex(s, _CANONICAL)).as_py()):
            try:
                return _np(pc.cast(s, pa.int64())).astype(np.int64)
            except pa.ArrowInvalid:  # beyond int64: the column stays strings
                pass
        return np.asarray(_np(s), dtype=str)
    kind = ("lists" if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)
            else "bytes" if pa.types.is_binary(t) or pa.types.is_large_binary(t) else f"of type {t}")
    raise loc.fail(0, f"{what} ids are {kind} ({{at}}: {_short(arr[0].as_py())}); ids must be integers or strings")


def _check_ints(arr, what: str, loc: Loc) -> np.ndarray:
    import pyarrow as pa

    if pa.types.is_unsigned_integer(arr.type):
        x = _np(arr).astype(np.uint64)
        big = np.flatnonzero(x > np.uint64(_INT64_MAX))
        if big.size:
            raise loc.fail(int(big[0]), f"{what} {int(x[big[0]])} at {{at}} does not fit int64", big.size)
        return x.astype(np.int64)
    x = _np(arr).astype(np.int64)
    neg = np.flatnonzero(x < 0)
    if neg.size:
        raise loc.fail(int(neg[0]), f"negative {what} {int(x[neg[0]])} at {{at}}", neg.size,
                       "; numeric ids must be non-negative integers")
    return x


def _check_floats(arr, what: str, loc: Loc) -> np.ndarray:
    x = _np(arr).astype(np.float64)
    nan = np.flatnonzero(np.isnan(x))
    if nan.size:
        raise loc.fail(int(nan[0]), f"{what} NaN at {{at}}", nan.size)
    with np.errstate(invalid="ignore"):
        frac = np.flatnonzero(~np.isfinite(x) | (x != np.floor(x)))
    if frac.size:
        raise loc.fail(int(frac[0]), f"{what} {float(x[frac[0]])!r} at {{at}} is not an integer", frac.size)
    neg = np.flatnonzero(x < 0)
    if neg.size:
        raise loc.fail(int(neg[0]), f"negative {what} {x[neg[0]]:.0f} at {{at}}", neg.size,
                       "; numeric ids must be non-negative integers")
    big = np.flatnonzero(x >= _FLOAT_EXACT)
    if big.size:
        raise loc.fail(int(big[0]), f"{what} {float(x[big[0]])!r} at {{at}} is a float at or above 2^53, where floats "
                       f"skip integers", big.size, "; store ids as int64 or strings")
    return x.astype(np.int64)


def _parse_objects(vals: list, what: str, loc: Loc, stripped: Optional[list]) -> np.ndarray:
    """Mixed Python objects (a list of ints and strings, ...), checked one by one: not a hot path,
    the readers hand over typed arrow columns."""
    import pyarrow as pa

    out: list = []
    n_strip = 0
    all_int = True
    for i, v in enumerate(vals):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            raise loc.fail(i, f"empty {what} id at {{at}}")
        if isinstance(v, (bool, np.bool_)):
            raise loc.fail(i, f"{what} id {v!r} at {{at}} is a boolean", hint="; ids must be integers or strings")
        if isinstance(v, (int, np.integer)):
            if v < 0 or v > _INT64_MAX:
                raise loc.fail(i, f"{what} id {int(v)} at {{at}} is not a non-negative integer that fits int64")
            out.append(int(v))
        elif isinstance(v, (float, np.floating)):
            f = float(v)
            if not (np.isfinite(f) and f == np.floor(f) and 0 <= f < _FLOAT_EXACT):
                raise loc.fail(i, f"{what} id {f!r} at {{at}} is not a non-negative integer below 2^53")
            out.append(int(f))
        elif isinstance(v, str):
            s = v.strip()
            n_strip += s != v
            if not s:
                raise loc.fail(i, f"empty {what} id at {{at}}")
            out.append(s)
            all_int = False
        else:
            raise loc.fail(i, f"{what} id at {{at}} is a {type(v).__name__} ({_short(v)})",
                           hint="; ids must be integers or strings")
    _log_strip(n_strip, what, loc, stripped)
    if all_int:
        return np.asarray(out, dtype=np.int64)
    # ints among strings become their decimal strings; the string rules then decide the column type
    return parse_ids(pa.array([str(v) for v in out], type=pa.string()), what, loc.source, loc.column, loc.line,
                     stripped=[])


def parse_indices(values: Any, what: str, source: str = "", column: Optional[str] = None,
                  line: Optional[LineOf] = None, stripped: Optional[list] = None,
                  rows: Optional[np.ndarray] = None) -> np.ndarray:
    """Dense indices (policy above): non-negative decimal integers within int64 -> int64 array.
    ``rows[i]``: the data row of value i when values are flattened from sequence fields."""
    import pyarrow as pa
    import pyarrow.compute as pc

    loc = Loc(source, column, line, rows)
    arr = to_arrow(values, f"{what} index", loc)
    if arr is None:
        arr = pa.array([None if v is None else str(v) for v in _pylist(values)], type=pa.string())
    t = arr.type
    _nulls(arr, f"{what} index", loc)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    if pa.types.is_integer(t):
        return _check_ints(arr, f"{what} index", loc)
    if pa.types.is_floating(t):
        return _check_floats(arr, f"{what} index", loc)
    if not _is_str(t):
        raise loc.fail(0, f"{what} indices are of type {t} ({{at}}: {_short(arr[0].as_py())})",
                       hint="; expected integers")
    raw = arr.cast(pa.string())
    s = pc.utf8_trim_whitespace(raw)
    _log_strip(int(pc.sum(pc.not_equal(s, raw)).as_py() or 0), f"{what} index", loc, stripped)
    empty = np.flatnonzero(_np(pc.equal(pc.utf8_length(s), 0)))
    if empty.size:
        raise loc.fail(int(empty[0]), f"empty {what} index at {{at}}", empty.size)
    ok = _np(pc.match_substring_regex(s, r"^-?[0-9]+$"))
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        raise loc.fail(i, f"{what} index {_short(raw[i].as_py())} at {{at}} is not an integer", int((~ok).sum()))
    neg = _np(pc.starts_with(s, "-"))
    if neg.any():
        i = int(np.flatnonzero(neg)[0])
        raise loc.fail(i, f"negative {what} index {s[i].as_py()} at {{at}}", int(neg.sum()))
    try:
        return _np(pc.cast(s, pa.int64())).astype(np.int64)
    except pa.ArrowInvalid:
        digits = _np(pc.utf8_length(pc.utf8_ltrim(s, characters="0")))
        i = int(np.argmax(digits))
        raise loc.fail(i, f"{what} index {str(s[i].as_py())[:40]} at {{at}} does not fit int64") from None


def dense_size(idx: np.ndarray, what: str, source: str = "", n: Optional[int] = None,
               line: Optional[LineOf] = None, size_from: str = "", column: Optional[str] = None,
               rows: Optional[np.ndarray] = None) -> int:
    """The catalogue size of dense indices ``idx``: ``n`` when given (every index must be below it;
    ``size_from``, e.g. ``"feat.npy: 10 feature rows"``, says what fixed it and leads the message),
    else ``max + 1`` provided the range is not inflated."""
    loc = Loc(source, column, line, rows)
    if idx.size == 0:
        return int(n or 0)
    if n is not None:
        over = np.flatnonzero(idx >= n)
        if over.size:
            i = int(over[0])
            if size_from:
                raise DataError(f"{size_from}, but {loc.source} has {what} index {int(idx[i])} at {loc.row(i)}"
                                f"{loc.ctx(i, over.size)}")
            raise loc.fail(i, f"{what} index {int(idx[i])} at {{at}} is >= the {n} {what}s", over.size)
        return int(n)
    n_distinct = int(np.unique(idx).size)
    limit = DENSE_FACTOR * n_distinct + DENSE_EXTRA
    over = np.flatnonzero(idx >= limit)
    if over.size:
        raise loc.fail(int(over[0]), f"{what} index {int(idx[over[0]])} at {{at}} is far beyond the {n_distinct:,} "
                       f"distinct {what} indices", over.size,
                       f"; dense indices must stay below {DENSE_FACTOR} x distinct + {DENSE_EXTRA:,} = {limit:,} "
                       f"(a typo? it would make {int(idx.max()) + 1:,} {what}s)")
    return int(idx.max()) + 1


def parse_numbers(values: Any, what: str, source: str = "", column: Optional[str] = None,
                  line: Optional[LineOf] = None, offset: int = 0) -> np.ndarray:
    """A numeric column (rating, timestamp): finite numbers -> int64 when all are integers (exact),
    whole floats below 2^53 -> int64, else float64. ``offset``: the data row of value 0."""
    import pyarrow as pa
    import pyarrow.compute as pc

    loc = Loc(source, column, line, offset=offset)
    arr = to_arrow(values, what, loc)
    if arr is None:
        arr = pa.array([None if v is None else str(v) for v in _pylist(values)], type=pa.string())
    t = arr.type
    _nulls(arr, what, loc)
    if len(arr) == 0:
        return np.zeros(0, dtype=np.int64)
    if pa.types.is_boolean(t):
        raise loc.fail(0, f"{what} values are booleans ({{at}})", hint="; expected numbers")
    if pa.types.is_integer(t):
        if pa.types.is_unsigned_integer(t):
            x = _np(arr).astype(np.uint64)
            big = np.flatnonzero(x > np.uint64(_INT64_MAX))
            if big.size:
                raise loc.fail(int(big[0]), f"{what} {int(x[big[0]])} at {{at}} does not fit int64", big.size)
        return _np(arr).astype(np.int64)
    if pa.types.is_floating(t) or pa.types.is_decimal(t):
        x = _np(arr.cast(pa.float64())).astype(np.float64)
    elif _is_str(t):
        s = pc.utf8_trim_whitespace(arr.cast(pa.string()))
        if bool(pc.all(pc.match_substring_regex(s, r"^[+-]?[0-9]+$")).as_py()):
            try:
                return _np(pc.cast(s, pa.int64())).astype(np.int64)
            except pa.ArrowInvalid:
                pass  # beyond int64: parsed as floats below
        x = _strings_to_float(_np(s))
    else:
        raise loc.fail(0, f"{what} values are of type {t} ({{at}}: {_short(arr[0].as_py())})",
                       hint="; expected numbers")
    bad = np.flatnonzero(~np.isfinite(x))
    if bad.size:
        raw = arr[int(bad[0])].as_py()
        raise loc.fail(int(bad[0]), f"{what} value {_short(raw)} at {{at}} is not a finite number", bad.size)
    if np.all(x == np.round(x)) and np.all(np.abs(x) < _FLOAT_EXACT):
        return x.astype(np.int64)  # "3.0" ratings and whole float timestamps
    return x


def _strings_to_float(s: np.ndarray) -> np.ndarray:
    """Strings -> float64; NaN where a string is not a number (the string 'nan' included)."""
    import pandas as pd

    return pd.to_numeric(pd.Series(s, dtype=object), errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)


def check_unique(values: np.ndarray, what: str, source: str = "", column: Optional[str] = None,
                 line: Optional[LineOf] = None) -> None:
    """Raise naming the first value that appears twice and both of its rows."""
    keys = np.asarray(values).astype(str)
    order = np.argsort(keys, kind="stable")
    rep = np.flatnonzero(keys[order][1:] == keys[order][:-1])
    if rep.size:
        first, second = int(order[rep[0]]), int(order[rep[0] + 1])
        loc = Loc(source, column, line)
        raise loc.fail(second, f"{what} {_short(keys[second].item())} at {{at}} repeats row {first + 1}",
                       hint="; each must appear once")
