"""Dataset cards: a small YAML file that says how to read a user's own interaction log and item
content, so ``graphrec train --dataset card.yaml`` (and every other command) can load it.

```yaml
name: my-shop
interactions: {path: interactions.csv, format: csv, delimiter: ",", encoding: utf-8,
               columns: {user: user_id, item: item_id, timestamp: ts, rating: stars}}
cleaning: {implicit_threshold: 4, dedupe: true, kcore: 5}
split: {method: random, ratios: [0.8, 0.1, 0.1], seed: 999}
items:
  features: {image: {path: img.npy, ids: img_ids.txt}, extra: {path: f.parquet, id_column: item_id}}
  text: {path: items.csv, id_column: item_id, columns: [title, description]}
  images: {dir: posters/, pattern: "{id}.jpg"}
```

- Paths are relative to the card's folder. Tables are CSV/TSV/parquet, gzip accepted, read by
  `graphrec.data.readers` (RFC 4180 quoting with ``"``, the ``encoding`` option, errors naming the
  line); ids follow `graphrec.data.ids`. Column roles default to ``user_id``, ``item_id`` and, when
  the file has them, ``timestamp`` and ``rating`` (``rating: null`` ignores a rating column).
- Cleaning, in this order: keep rows with ``rating >= implicit_threshold`` (when set; needs the
  rating column), drop repeated (user, item) rows keeping the first (``dedupe``, default true),
  iterative k-core (``kcore``: k for users and items, or ``{user: k, item: k}``; default 0 = off).
- ``split`` (optional): computed once when the card loads and held as the dataset's own split, so
  ``data.split=auto`` (the default) uses it for every run whatever the run's seed, like MMRec's
  ``x_label``; ``--set data.split=...`` still replaces it with the config's rule. Without it the
  config's ``data.split`` applies as for any dataset.
- ``items.features``: precomputed matrices per modality, a ``.npy`` with an ``ids`` file (one id
  per line, row r = item ids[r], as ``graphrec encode`` writes them) or a table with an
  ``id_column`` (the other columns, or ``columns``, are the dimensions). Rows may come in any
  order; rows of items the cleaned log does not hold are dropped (logged); items without a row
  follow ``missing`` (``error`` default, ``mean``, ``zeros``).
- ``items.text``: ``columns`` of a table joined per item (``"Title. Description"``, as
  ``graphrec encode text`` does) and encoded into ``modality`` (default ``text``, 384-d);
  ``items.images``: ``dir``/``pattern`` files encoded into ``modality`` (default ``image``,
  1280-d). Both through the offline encoders of `graphrec.data.encode`, cached by content.
- Every key is checked; an unknown key or a bad value is one `ConfigError` (a bad file a
  `DataError`) naming the card file and the key, e.g. ``card.yaml: items.text.columns: ...``.
"""
from __future__ import annotations

import json
import os
import re
from typing import Any, Callable, Optional

import numpy as np
import yaml

from graphrec.data.dataset import Dataset
from graphrec.data.features import MISSING_POLICIES, ItemFeatures, load_npy, npy_rows
from graphrec.data.frames import (TEXT_MISSING, align_features, aligned_content, clean, encode_image_paths,
                                  encode_text_column)
from graphrec.data.readers import DEFAULT_COLUMNS, default_sep, is_large, from_columns, read_frame
from graphrec.data.split import DEFAULT_HOLDOUT, make_split
from graphrec.data.textio import read_delimited, read_text
from graphrec.errors import ConfigError, DataError, GraphrecError, MissingFileError, UnsafeFileError
from graphrec.utils import log, safe_name, to_name

CARD_SUFFIXES = (".yaml", ".yml")
FORMATS = ("csv", "tsv", "parquet")
SPLIT_METHODS = ("random", "temporal", "loo", "global_time", "user")
_ROLES = tuple(DEFAULT_COLUMNS)  # user, item, timestamp, rating


def is_card(name: Any) -> bool:
    """True when ``name`` is a path to an existing ``*.yaml``/``*.yml`` file (a dataset card)."""
    return isinstance(name, (str, os.PathLike)) and os.fspath(name).lower().endswith(CARD_SUFFIXES) \
        and os.path.isfile(name)


# -- reading and checking the card ---------------------------------------------------------------
class _DupLoader(yaml.SafeLoader):
    """Safe loader that refuses a key given twice (a silently lost setting otherwise)."""


def _mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
        seen.add(key)
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_DupLoader.construct_mapping = _mapping  # type: ignore[method-assign]


class _Card:
    """The card's file, folder and one-line errors that name both the card and the key."""

    def __init__(self, path: str):
        self.path = path
        self.dir = os.path.dirname(os.path.abspath(path))

    def fail(self, key: str, msg: str, cls: type = ConfigError) -> GraphrecError:
        return cls(f"{self.path}: {key}: {msg}")

    def section(self, obj: Any, key: str, allowed: tuple, required: tuple = ()) -> dict:
        if obj is None:
            obj = {}
        if not isinstance(obj, dict):
            raise self.fail(key, f"expected a mapping, got {_show(obj)}")
        unknown = [k for k in obj if k not in allowed]
        if unknown:
            raise self.fail(f"{key}.{unknown[0]}" if key else str(unknown[0]),
                            f"unknown key; {'keys here are' if key else 'top-level keys are'}: {', '.join(allowed)}")
        for k in required:
            if obj.get(k) is None:
                raise self.fail(f"{key}.{k}" if key else k, "required key is missing")
        return obj

    def string(self, obj: dict, key: str, where: str, default: Optional[str] = None) -> Optional[str]:
        v = obj.get(key, default)
        if v is None:
            return None
        if not isinstance(v, str) or not v:
            raise self.fail(f"{where}.{key}", f"expected a non-empty string, got {_show(v)}")
        return v

    def choice(self, obj: dict, key: str, where: str, choices: tuple, default: str) -> str:
        v = obj.get(key, default)
        if v not in choices:
            raise self.fail(f"{where}.{key}", f"{_show(v)} is not one of {', '.join(choices)}")
        return v

    def file(self, obj: dict, key: str, where: str, kind: str = "file") -> str:
        """A path under the card's folder (or absolute) that exists."""
        rel = self.string(obj, key, where)
        if rel is None:
            raise self.fail(f"{where}.{key}", "required key is missing")
        path = os.path.join(self.dir, os.path.expanduser(rel))
        ok = os.path.isdir(path) if kind == "folder" else os.path.isfile(path)
        if not ok:
            what = "no such folder" if kind == "folder" and not os.path.exists(path) else \
                "not a folder" if kind == "folder" else \
                "no such file" if not os.path.exists(path) else "not a regular file"
            raise self.fail(f"{where}.{key}", f"{rel}: {what}", MissingFileError if "no such" in what else DataError)
        return path

    def wrap(self, key: str, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; a graphrec error (or a ValueError) it raises gains the card and key in front."""
        try:
            return fn()
        except GraphrecError as e:
            raise type(e)(f"{self.path}: {key}: {' '.join(str(e).split())}") from None
        except (ValueError, FileNotFoundError) as e:
            raise DataError(f"{self.path}: {key}: {' '.join(str(e).split())}") from None


def _show(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


def read_card(path: str) -> tuple[_Card, dict]:
    """The card's YAML as a mapping (one-line errors for a missing file or bad YAML)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: no such dataset card")
    card = _Card(path)
    try:
        obj = yaml.load(read_text(path, what="dataset card"), Loader=_DupLoader)  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark is not None else ""
        raise ConfigError(f"{path}: not valid YAML ({where}{' '.join(str(getattr(e, 'problem', e)).split())})") \
            from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: a dataset card is a mapping with the keys name, interactions, cleaning, split, "
                          f"items; got {_show(obj)}")
    card.section(obj, "", ("name", "interactions", "cleaning", "split", "items"), ("interactions",))
    return card, obj


def _format(card: _Card, sec: dict, path: str, where: str) -> str:
    base = path[:-3] if path.lower().endswith(".gz") else path
    guess = "parquet" if base.lower().endswith((".parquet", ".pq")) else \
        "tsv" if base.lower().endswith((".tsv", ".tab")) else "csv"
    return card.choice(sec, "format", where, FORMATS, guess)


def _table(card: _Card, sec: dict, where: str, path: str):
    """Read a table the way a card section describes it (format, delimiter, encoding)."""
    fmt = _format(card, sec, path, where)
    delim = card.string(sec, "delimiter", where)
    if delim is not None:
        if fmt == "parquet":
            raise card.fail(f"{where}.delimiter", "a parquet file has no delimiter")
        if len(delim) != 1 or delim in "\"\r\n":
            raise card.fail(f"{where}.delimiter", f"expected one character (not a quote or line break), got {_show(delim)}")
    enc = card.string(sec, "encoding", where, "utf-8")
    return card.wrap(f"{where}.path", lambda: read_frame(
        path, sep=delim or {"csv": ",", "tsv": "\t"}.get(fmt), fmt="parquet" if fmt == "parquet" else "text",
        encoding=enc))


def _interactions(card: _Card, obj: Any):
    w = "interactions"
    sec = card.section(obj, w, ("path", "format", "delimiter", "encoding", "columns"), ("path",))
    path = card.file(sec, "path", w)
    cols = card.section(sec.get("columns"), f"{w}.columns", _ROLES)
    if is_large(path):  # a large log: block by block, bounded memory (graphrec.data.stream)
        return _streamed_interactions(card, sec, w, path, cols)
    table = _table(card, sec, w, path)
    names = {}
    for role in _ROLES:  # timestamp/rating: read under their default names when present, unless set to null
        default = DEFAULT_COLUMNS[role]
        if role not in ("user", "item") and (role in cols or not table.has(default)):
            default = None
        names[role] = card.string(cols, role, f"{w}.columns", default)
    for role, col in names.items():
        if col is not None and not table.has(col):
            raise card.fail(f"{w}.columns.{role}", f"{os.path.basename(path)} has no column {col!r} (columns: "
                            f"{', '.join(table.names)})", DataError)
    get = (lambda r: table.column(names[r]) if names[r] is not None else None)
    return card.wrap(w, lambda: from_columns(get("user"), get("item"), timestamp=get("timestamp"),
                                             rating=get("rating"), source=path, table=table,
                                             names={r: c or "" for r, c in names.items()}))


def _streamed_interactions(card: _Card, sec: dict, w: str, path: str, cols: dict):
    from graphrec.data.stream import header, stream_interactions
    fmt = _format(card, sec, path, w)
    sep = card.string(sec, "delimiter", w) or {"csv": ",", "tsv": "\t"}.get(fmt) or default_sep(path)
    enc = card.string(sec, "encoding", w, "utf-8")
    parquet = "parquet" if fmt == "parquet" else None
    have = card.wrap(f"{w}.path", lambda: header(path, sep, parquet, enc))
    names = {}
    for role in _ROLES:
        default = DEFAULT_COLUMNS[role]
        if role not in ("user", "item") and (role in cols or default not in have):
            default = None
        names[role] = card.string(cols, role, f"{w}.columns", default)
        if names[role] is not None and names[role] not in have:
            raise card.fail(f"{w}.columns.{role}", f"{os.path.basename(path)} has no column {names[role]!r} "
                            f"(columns: {', '.join(have)})", DataError)
    return card.wrap(w, lambda: stream_interactions(path, names, sep, parquet, enc))


def _number(card: _Card, v: Any, key: str, lo: float = 0.0, integer: bool = False) -> Any:
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and v not in (float("inf"), float("-inf"))
    if integer:
        ok = ok and isinstance(v, int)
    if not ok or v < lo:
        kind = "an integer" if integer else "a number"
        raise card.fail(key, f"expected {kind} >= {lo:g}, got {_show(v)}")
    return v


def _cleaning(card: _Card, obj: Any, inter):
    w = "cleaning"
    sec = card.section(obj, w, ("implicit_threshold", "dedupe", "kcore"))
    thr = sec.get("implicit_threshold")
    if thr is not None:
        _number(card, thr, f"{w}.implicit_threshold", float("-inf"))
        if inter.rating is None:
            raise card.fail(f"{w}.implicit_threshold", "needs a rating column (interactions.columns.rating)")
    dd = sec.get("dedupe", True)
    if not isinstance(dd, bool):
        raise card.fail(f"{w}.dedupe", f"expected true or false, got {_show(dd)}")
    k = sec.get("kcore", 0)
    if isinstance(k, dict):
        ks = card.section(k, f"{w}.kcore", ("user", "item"))
        k = tuple(_number(card, ks.get(s, 0), f"{w}.kcore.{s}", 0, True) for s in ("user", "item"))
    else:
        k = _number(card, k, f"{w}.kcore", 0, True)
    return card.wrap(w, lambda: clean(inter, thr, dd, k))


def _split(card: _Card, obj: Any, inter):
    w = "split"
    sec = card.section(obj, w, ("method", "ratios", "seed", "holdout"), ("method",))
    method = card.choice(sec, "method", w, SPLIT_METHODS, "random")
    ratios = sec.get("ratios", [0.8, 0.1, 0.1])
    if not (isinstance(ratios, list) and len(ratios) == 3 and all(
            isinstance(r, (int, float)) and not isinstance(r, bool) and r >= 0 for r in ratios)
            and abs(sum(ratios) - 1.0) < 1e-6):
        raise card.fail(f"{w}.ratios", f"expected three non-negative numbers that sum to 1, got {_show(ratios)}")
    seed = _number(card, sec.get("seed", 999), f"{w}.seed", 0, True)
    hold = sec.get("holdout", DEFAULT_HOLDOUT)
    if not (isinstance(hold, (int, float)) and not isinstance(hold, bool) and 0 < hold < 1):
        raise card.fail(f"{w}.holdout", f"expected a number in (0, 1), got {_show(hold)}")
    return card.wrap(w, lambda: make_split(inter, method, tuple(float(r) for r in ratios), seed, holdout=hold))


def _ids_file(card: _Card, path: str, key: str, encoding: str) -> np.ndarray:
    """One id per line (the ``.ids.txt`` that ``graphrec encode`` writes), read as text without a header."""
    table = card.wrap(key, lambda: read_delimited(path, "\t", header=False, encoding=encoding))
    if len(table.names) != 1:
        raise card.fail(key, f"{os.path.basename(path)}: expected one id per line, found {len(table.names)} "
                        f"tab-separated fields", DataError)
    return table.columns[table.names[0]]


def _features(card: _Card, obj: Any, imap, taken: set) -> tuple[dict, dict]:
    w = "items.features"
    if not isinstance(obj, dict) or not obj:
        raise card.fail(w, f"expected a mapping of modality names to files, got {_show(obj)}")
    mats, sources = {}, {}
    for m, spec in obj.items():
        key = f"{w}.{m}"
        if not isinstance(m, str):
            raise card.fail(key, "a modality name must be a string")
        card.wrap(key, lambda: safe_name(m, "modality name"))
        sec = card.section(spec, key, ("path", "ids", "id_column", "columns", "missing", "format", "delimiter",
                                       "encoding"), ("path",))
        path = card.file(sec, "path", key)
        missing = card.choice(sec, "missing", key, MISSING_POLICIES, "error")
        enc = card.string(sec, "encoding", key, "utf-8")
        if path.lower().endswith(".npy"):
            extra = [k for k in ("id_column", "columns", "format", "delimiter") if k in sec]
            if extra:
                raise card.fail(f"{key}.{extra[0]}", "not used for a .npy file (its rows are named by 'ids')")
            if sec.get("ids") is None:
                raise card.fail(f"{key}.ids", "a .npy file needs an ids file (one item id per line, row r = "
                                "line r) to say which item each row is")
            ids = _ids_file(card, card.file(sec, "ids", key), f"{key}.ids", enc)
            rows = card.wrap(f"{key}.path", lambda: npy_rows(path))
            if rows != len(ids):
                raise card.fail(f"{key}.ids", f"{len(ids)} ids for the {rows} rows of {os.path.basename(path)}",
                                DataError)
            x = card.wrap(f"{key}.path", lambda: load_npy(path, rows))
        else:
            if "ids" in sec:
                raise card.fail(f"{key}.ids", "only for a .npy file; a table names its items by 'id_column'")
            id_col = card.string(sec, "id_column", key, "item_id")
            cols = sec.get("columns")
            if cols is not None and not (isinstance(cols, list) and cols and all(isinstance(c, str) for c in cols)):
                raise card.fail(f"{key}.columns", f"expected a list of column names, got {_show(cols)}")
            table = _table(card, sec, key, path)
            if not table.has(id_col):
                raise card.fail(f"{key}.id_column", f"{os.path.basename(path)} has no column {id_col!r} (columns: "
                                f"{', '.join(table.names)})", DataError)
            cols = cols or [c for c in table.names if c != id_col]
            bad = [c for c in cols if not table.has(c)] or ([] if cols else ["(none)"])
            if bad:
                raise card.fail(f"{key}.columns", f"{os.path.basename(path)} has no feature column {bad[0]!r}",
                                DataError)
            from graphrec.data.features import _feature_values  # the checked numeric reader of load_table
            ids = table.column(id_col)
            x = card.wrap(key, lambda: _feature_values(table, cols, path, np.asarray(ids)))
        mats[m] = card.wrap(key, lambda: align_features(x, ids, imap, os.path.basename(path), missing))
        sources[m] = path
        taken.add(m)
    return mats, sources


def _modality(card: _Card, sec: dict, key: str, default: str, taken: set) -> str:
    m = card.string(sec, "modality", key, default)
    card.wrap(f"{key}.modality", lambda: safe_name(m, "modality name"))
    if m in taken:
        raise card.fail(f"{key}.modality", f"modality {m!r} is already given (items.features or items.text/images)")
    taken.add(m)
    return m


def _text(card: _Card, obj: Any, imap, taken: set, progress: bool) -> tuple[str, list, Any, str]:
    from graphrec.data.encode.table import join_text

    w = "items.text"
    sec = card.section(obj, w, ("path", "id_column", "columns", "modality", "separator", "missing", "format",
                                "delimiter", "encoding"), ("path", "columns"))
    path = card.file(sec, "path", w)
    m = _modality(card, sec, w, "text", taken)
    id_col = card.string(sec, "id_column", w, "item_id")
    cols = sec["columns"]
    if isinstance(cols, str):
        cols = [cols]
    if not (isinstance(cols, list) and cols and all(isinstance(c, str) and c for c in cols)):
        raise card.fail(f"{w}.columns", f"expected a list of column names, got {_show(cols)}")
    sep = sec.get("separator", ". ")
    if not isinstance(sep, str):
        raise card.fail(f"{w}.separator", f"expected a string, got {_show(sep)}")
    missing = card.choice(sec, "missing", w, TEXT_MISSING, "error")
    table = _table(card, sec, w, path)
    for key, names in (("id_column", [id_col]), ("columns", cols)):
        bad = [c for c in names if not table.has(c)]
        if bad:
            raise card.fail(f"{w}.{key}", f"{os.path.basename(path)} has no column {bad[0]!r} (columns: "
                            f"{', '.join(table.names)})", DataError)
    parts = [table.column(c).to_pylist() for c in cols]
    texts = [join_text([None if p[r] is None else str(p[r]) for p in parts], sep) for r in range(table.n_rows)]
    per_item = card.wrap(w, lambda: aligned_content((table.column(id_col), texts), imap, os.path.basename(path)))
    feats = card.wrap(w, lambda: encode_text_column(per_item, imap, os.path.basename(path), missing, progress))
    return m, per_item, feats, path


def _images(card: _Card, obj: Any, imap, taken: set, progress: bool) -> tuple[str, list, Any, str]:
    w = "items.images"
    sec = card.section(obj, w, ("dir", "pattern", "modality", "missing"), ("dir",))
    folder = card.file(sec, "dir", w, "folder")
    pattern = card.string(sec, "pattern", w, "{id}.jpg")
    if pattern.count("{id}") != 1:
        raise card.fail(f"{w}.pattern", f"{pattern!r} must contain '{{id}}' exactly once")
    m = _modality(card, sec, w, "image", taken)
    missing = card.choice(sec, "missing", w, MISSING_POLICIES, "error")
    root = os.path.realpath(folder)
    paths = []
    for x in imap.ids.tolist():
        p = os.path.join(folder, pattern.replace("{id}", str(x)))
        if os.path.commonpath([root, os.path.realpath(p)]) != root:  # an id may not name a file outside dir
            raise card.fail(f"{w}.pattern", f"item id {x!r}: its image path {p} leaves {sec['dir']}",
                            UnsafeFileError)
        paths.append(p)
    feats = card.wrap(w, lambda: encode_image_paths(paths, imap, sec["dir"], missing, progress))
    return m, paths, feats, folder


def load_card(path: str, progress: bool = False, **unknown: Any) -> Dataset:
    """The `Dataset` a card describes (module docstring): interactions read and cleaned, the
    card's split (if any) as the dataset's own split, item features aligned by id, item text and
    images encoded (cached)."""
    path = os.fspath(path)
    if unknown:
        raise ConfigError(f"{path}: unknown loader option(s) {', '.join(map(repr, sorted(unknown)))} "
                          f"(data.dataset_args); a dataset card takes: progress")
    card, obj = read_card(path)
    name = obj.get("name")
    if name is None:
        name = os.path.splitext(os.path.basename(path))[0]
    else:
        if not isinstance(name, str):
            raise card.fail("name", f"expected a string, got {_show(name)}")
        card.wrap("name", lambda: safe_name(name, "dataset name"))
    inter = _interactions(card, obj["interactions"])
    inter = _cleaning(card, obj.get("cleaning"), inter)
    items = card.section(obj.get("items"), "items", ("features", "text", "images"))
    imap = inter.item_map
    taken: set = set()
    mats, sources = _features(card, items["features"], imap, taken) if items.get("features") is not None else ({}, {})
    text = images = None
    if items.get("text") is not None:
        m, text, mats_m, src = _text(card, items["text"], imap, taken, progress)
        mats[m], sources[m] = mats_m, f"{src}: text encoded"
    if items.get("images") is not None:
        m, images, mats_m, src = _images(card, items["images"], imap, taken, progress)
        mats[m], sources[m] = mats_m, f"{src}: images encoded"
    features = card.wrap("items", lambda: ItemFeatures(mats, imap, sources)) if mats else None
    split = _split(card, obj["split"], inter) if obj.get("split") is not None else None
    log.info("%s: %s: %d users, %d items, %d interactions%s", path, name, inter.n_users, inter.n_items, len(inter),
             f", modalities {features.dims()}" if features is not None else "")
    return Dataset(name, inter, split=split, features=features,
                   item_text=None if text is None else ["" if t is None else t for t in text], item_images=images,
                   meta={"card": os.path.abspath(path), "path": card.dir})


# -- a starting card from a log's header -------------------------------------------------------
_GUESS = {
    "user": ("user_id", "userid", "user", "uid", "customer_id", "customerid", "customer", "visitor_id",
             "visitorid", "member_id", "account_id", "reviewer_id", "reviewerid", "client_id", "session_id"),
    "item": ("item_id", "itemid", "item", "iid", "product_id", "productid", "product", "movie_id", "movieid",
             "asin", "sku", "article_id", "track_id", "song_id", "book_id", "isbn", "business_id", "video_id",
             "news_id", "post_id", "parent_asin"),
    "timestamp": ("timestamp", "ts", "time", "unix_time", "unixtime", "unixreviewtime", "event_time", "datetime",
                  "date", "created_at", "time_stamp"),
    "rating": ("rating", "ratings", "stars", "star", "score", "overall", "rate", "preference"),
}
_HINT = {"user": ("user",), "item": ("item",), "timestamp": ("time", "date"), "rating": ("rating",)}


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def guess_columns(names: list[str]) -> dict[str, Optional[str]]:
    """Role -> column by name: an exact known name first (``user_id``, ``asin``, ``stars``, ...,
    compared without case and punctuation), then a column whose name contains the role's word."""
    out: dict[str, Optional[str]] = {}
    used: set = set()
    for role, known in _GUESS.items():
        pick = next((n for k in known for n in names if _norm(n) == _norm(k) and n not in used), None)
        if pick is None:
            pick = next((n for n in names if n not in used and (any(h in _norm(n) for h in _HINT[role]) or (
                role == "timestamp" and re.search(r"(_at|At)$", n)))), None)
        out[role] = pick
        if pick is not None:
            used.add(pick)
    for role in ("user", "item"):  # the first unused columns, marked as a guess in the card
        if out[role] is None:
            out[role] = next((n for n in names if n not in used), None)
            used.add(out[role])
    return out


def guess_delimiter(first_line: str) -> str:
    """The most frequent of ``,``, tab, ``;`` and ``|`` in the header line (``,`` when none)."""
    counts = {d: first_line.count(d) for d in (",", "\t", ";", "|")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _numeric(table, col: str) -> bool:
    from graphrec.data.ids import parse_numbers

    try:
        parse_numbers(table.column(col).slice(0, 1000), "timestamp", table.source)
        return True
    except (GraphrecError, ValueError):
        return False


def draft_card(log_path: str, card_path: str, encoding: str = "utf-8") -> str:
    """The text of a starting card for ``log_path`` (to be written at ``card_path``): format and
    delimiter from the file, column roles guessed from the header, every choice commented."""
    log_path = os.fspath(log_path)
    base = log_path[:-3] if log_path.lower().endswith(".gz") else log_path
    if base.lower().endswith((".parquet", ".pq")):
        fmt, delim = "parquet", None
        table = read_frame(log_path, fmt="parquet")
    else:
        text = read_text(log_path, encoding, what="interaction log")
        delim = guess_delimiter(text.split("\n", 1)[0])
        fmt = "tsv" if delim == "\t" else "csv"
        table = read_frame(log_path, sep=delim, fmt="text", encoding=encoding)
    cols = guess_columns(list(table.names))
    notes = {}
    for role in ("user", "item"):
        if cols[role] is not None and _norm(cols[role]) not in map(_norm, _GUESS[role]) and \
                not any(h in _norm(cols[role]) for h in _HINT[role]):
            notes[role] = "  # GUESSED from the column order: check it"
    if cols["timestamp"] is not None and not _numeric(table, cols["timestamp"]):
        notes["timestamp"] = f"  # {cols['timestamp']!r} is not numeric: store seconds (or any number) to use it"
    rel = os.path.relpath(os.path.abspath(log_path), os.path.dirname(os.path.abspath(card_path)))
    name = to_name(os.path.basename(base).split(".")[0]) or "my-data"

    def col_line(role: str) -> str:
        c = cols[role]
        if c is None:
            return f"    # {role}: <column>  # none found"
        if role == "timestamp" and "timestamp" in notes:
            return f"    timestamp: null{notes['timestamp']}"
        return f"    {role}: {_q(c)}{notes.get(role, '')}"

    has_rating = cols["rating"] is not None
    lines = [
        f"# graphrec dataset card for {os.path.basename(log_path)}, written by `graphrec datasets init`.",
        "# A guess from the file's header: check every line, then run",
        f"#   graphrec datasets info {os.path.basename(card_path)}",
        f"#   graphrec train --dataset {os.path.basename(card_path)} --model lightgcn",
        "# Paths are relative to this file's folder. Unknown keys are refused.",
        f"name: {_q(name)}",
        "interactions:",
        f"  path: {_q(rel)}",
        f"  format: {fmt}            # csv, tsv or parquet (gzip-compressed text is fine)",
    ]
    if delim is not None:
        lines.append(f"  delimiter: {_q(delim)}        # guessed from the header line; fields may be quoted with \"")
        lines.append(f"  encoding: {_q(encoding)}       # the file's text encoding (e.g. latin-1)")
    lines += [
        f"  columns:              # role: column name (the file has: {', '.join(table.names)})",
        col_line("user"), col_line("item"),
        col_line("timestamp") + ("" if "timestamp" in notes or cols["timestamp"] is None else
                                 "   # optional: temporal splits and sequence models use it"),
        col_line("rating") + ("   # optional" if has_rating else ""),
        "cleaning:               # applied in this order",
        ("  implicit_threshold: null   # e.g. 4: keep rows with rating >= 4 as positives; null keeps all"
         if has_rating else "  # implicit_threshold: 4   # needs a rating column: keep rows with rating >= 4"),
        "  dedupe: true           # drop repeated (user, item) rows, keeping the first",
        "  kcore: 0               # e.g. 5: repeatedly drop users and items with fewer than 5 rows",
        "# split:                 # optional: one fixed split for every run (else the config's data.split)",
        "#   method: random       # random (per user), temporal, loo, global_time or user",
        "#   ratios: [0.8, 0.1, 0.1]",
        "#   seed: 999",
        "# items:                 # optional item content, matched to the log by item id",
        "#   features:            # precomputed, per modality: .npy + ids file, or a table with an id column",
        "#     image: {path: image_feat.npy, ids: image_feat.ids.txt}",
        "#     extra: {path: item_feats.parquet, id_column: item_id}",
        "#   text: {path: items.csv, id_column: item_id, columns: [title, description]}  # -> 'text', 384-d",
        "#   images: {dir: images/, pattern: \"{id}.jpg\"}                              # -> 'image', 1280-d",
    ]
    return "\n".join(lines) + "\n"


def _q(s: str) -> str:
    """A YAML scalar for ``s``: plain when YAML reads it back as the same string, else quoted."""
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_./+-]*", s) and s.lower() not in (
        "true", "false", "null", "yes", "no", "on", "off", "y", "n", "nan", "inf")
    return s if plain else json.dumps(s, ensure_ascii=False)  # a JSON string is a double-quoted YAML scalar


def write_card(log_path: str, out: Optional[str] = None, encoding: str = "utf-8") -> str:
    """Write `draft_card` for ``log_path`` to ``out`` (default ``card.yaml`` beside the log), never
    over an existing file. Returns the card's path."""
    log_path = os.fspath(log_path)
    if not os.path.exists(log_path):
        raise MissingFileError(f"{log_path}: no such interaction log")
    out = os.fspath(out) if out is not None else os.path.join(os.path.dirname(log_path), "card.yaml")
    if not out.lower().endswith(CARD_SUFFIXES):
        raise ConfigError(f"--out {out}: a dataset card's name ends with .yaml or .yml")
    if os.path.lexists(out):
        raise ConfigError(f"{out}: already exists; a card is never overwritten (remove it or pass --out)")
    text = draft_card(log_path, out, encoding)
    with open(out, "x", encoding="utf-8") as f:  # 'x': refused if it appeared meanwhile
        f.write(text)
    return out


__all__ = ["CARD_SUFFIXES", "draft_card", "guess_columns", "guess_delimiter", "is_card", "load_card", "read_card",
           "write_card"]
