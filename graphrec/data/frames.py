"""A `Dataset` from in-memory tables and arrays: a user's own data from Python.

``dataset_from_frames(df, user=..., item=...)`` reads the id columns of any table (pandas, pyarrow,
a dict of columns) by the id policy of `graphrec.data.ids`, cleans the log in the documented order
(`clean`: implicit threshold, then dedupe, then k-core) and aligns item content to the surviving
items by original id:

- precomputed features ``{modality: (array [rows, d], ids [rows])}``: row ``r`` belongs to item
  ``ids[r]``, in any order (`align_features`);
- item text ``{id: text}`` (or a pandas Series indexed by id, or ``(ids, texts)``) and image paths
  likewise, encoded by graphrec's offline encoders (``graphrec.data.encode``, cached by content)
  into the modalities ``text`` (384-d all-MiniLM-L6-v2) and ``image`` (1280-d EfficientNet-Lite0).

Content rows for items that are not in the cleaned log (filtered out, or never interacted with)
are dropped and counted in the log; a content source that matches none of the items, and items
without a row (unless a ``missing`` fill is chosen), are errors naming the source and the ids.
Dataset cards (`graphrec.data.card`) read their files and build on the same functions.
"""
from __future__ import annotations

import os
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from graphrec.data.dataset import Dataset
from graphrec.data.features import MISSING_POLICIES, ItemFeatures, align_rows, check_matrix
from graphrec.data.filters import dedupe as dedupe_rows
from graphrec.data.filters import kcore as kcore_filter
from graphrec.data.filters import to_implicit
from graphrec.data.ids import check_unique, parse_ids
from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.readers import from_columns
from graphrec.errors import ConfigError, DataError, MissingExtraError
from graphrec.utils import log

TEXT_MISSING = ("error", "empty")  # items without text: refused, or embedded as the empty string


def clean(inter: Interactions, implicit_threshold: Optional[float] = None, dedupe: bool = True,
          kcore: int | tuple[int, int] = 0) -> Interactions:
    """The documented cleaning order: keep rows with ``rating >= implicit_threshold`` (when set),
    drop repeated (user, item) rows keeping the first (``dedupe``), then the iterative k-core
    (``kcore`` = k for both sides, or ``(user_k, item_k)``; 0 keeps everything). Each step logs
    its count (`graphrec.data.filters`)."""
    if implicit_threshold is not None:
        inter = to_implicit(inter, implicit_threshold)
    if dedupe:
        inter = dedupe_rows(inter, "first")
    uk, ik = (kcore, kcore) if not isinstance(kcore, (tuple, list)) else tuple(kcore)
    if uk or ik:
        inter = kcore_filter(inter, int(uk), int(ik))
    return inter


def _known(ids: np.ndarray, item_map: IdMap) -> np.ndarray:
    """Mask of ``ids`` that the map holds (ids compared as `IdMap` does: '12' == 12)."""
    lk = item_map.lookup
    return np.fromiter((item_map._key(v) in lk for v in ids.tolist()), dtype=bool, count=ids.size)


def _restrict(ids: Any, n_rows: int, item_map: IdMap, source: str) -> tuple[np.ndarray, np.ndarray]:
    """(ids parsed by the id policy, mask of rows whose item is in ``item_map``): rows of other
    items are dropped with a logged count; ids must be unique; none matching is an error."""
    ids = parse_ids(ids, "item", source)
    if ids.size != n_rows:
        raise DataError(f"{source}: {ids.size} ids for {n_rows} rows")
    check_unique(ids, "item id", source)
    keep = _known(ids, item_map)
    if not keep.any():
        raise DataError(f"{source}: none of its {ids.size} item ids (e.g. {ids[:3].tolist()}) is an item of the "
                        f"interactions (e.g. {item_map.ids[:3].tolist()}): content for another item set?")
    if not keep.all():
        log.info("%s: %d of %d row(s) belong to items not in the cleaned interactions; not used", source,
                 int((~keep).sum()), ids.size)
    return ids, keep


def align_features(x: Any, ids: Any, item_map: IdMap, source: str, missing: str = "error") -> torch.Tensor:
    """Feature rows keyed by original item id (any order) -> ``[n_items, d]`` aligned to
    ``item_map``; rows of other items dropped (logged), items without a row follow ``missing``
    (`graphrec.data.features.align_rows`: ``error``, ``mean`` or ``zeros``)."""
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"{source}: missing={missing!r}; choose one of {MISSING_POLICIES}")
    arr = x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    check_matrix(arr, source)
    ids, keep = _restrict(ids, arr.shape[0], item_map, source)
    return align_rows(ids[keep], np.asarray(arr[keep], dtype=np.float32), item_map, source, missing)


def _pairs(content: Any, what: str) -> tuple[list, list]:
    """``{id: value}``, a pandas Series indexed by id, or ``(ids, values)`` -> (ids, values)."""
    if hasattr(content, "index") and hasattr(content, "tolist") and not isinstance(content, np.ndarray):
        return list(content.index.tolist()), list(content.tolist())  # pandas Series
    if isinstance(content, Mapping):
        return list(content.keys()), list(content.values())
    if isinstance(content, (tuple, list)) and len(content) == 2:
        ids, vals = (c.to_pylist() if hasattr(c, "to_pylist") else list(c) for c in content)  # pyarrow columns too
        return ids, vals
    raise ConfigError(f"{what}: expected {{id: value}}, a pandas Series indexed by id, or (ids, values); got "
                      f"{type(content).__name__}")


def aligned_content(content: Any, item_map: IdMap, source: str) -> list:
    """Per-item values (text or image path) in item-index order; None where an item has none."""
    ids, vals = _pairs(content, source)
    parsed, keep = _restrict(ids, len(vals), item_map, source)
    rows = item_map.to_index(parsed[keep].tolist(), source)
    out: list = [None] * len(item_map)
    for r, v in zip(rows.tolist(), (v for v, k in zip(vals, keep) if k)):
        out[r] = v
    return out


def _no_extra(e: ImportError, source: str) -> MissingExtraError:
    return MissingExtraError(f"{source}: encoding item content needs the encode extra ({e})")


def encode_text_column(texts: Sequence[Optional[str]], item_map: IdMap, source: str, missing: str = "error",
                       progress: bool = False) -> torch.Tensor:
    """Per-item texts -> ``[n_items, 384]`` with `graphrec.data.encode.encode_text` (cached).
    ``missing='error'`` refuses items without text naming their ids; ``'empty'`` embeds the empty
    string for them (logged)."""
    if missing not in TEXT_MISSING:
        raise ConfigError(f"{source}: missing={missing!r}; choose one of {TEXT_MISSING}")
    from graphrec.data.encode import EncodeExtraMissing, encode_text

    empty = [i for i, t in enumerate(texts) if t is None or not str(t).strip()]
    if empty and missing == "error":
        shown = item_map.to_original(np.asarray(empty[:5])).tolist()
        raise DataError(f"{source}: {len(empty)} item(s) without text, e.g. ids {shown}; add their rows, or set "
                        f"missing to 'empty' to embed the empty string for them")
    try:
        return encode_text(list(texts), ids=item_map.ids.tolist(), progress=progress,
                           empty="error" if missing == "error" else "encode")
    except EncodeExtraMissing as e:
        raise _no_extra(e, source) from None
    except (ValueError, FileNotFoundError) as e:
        raise DataError(f"{source}: {' '.join(str(e).split())}") from None


def encode_image_paths(paths: Sequence[Optional[str]], item_map: IdMap, source: str, missing: str = "error",
                       progress: bool = False) -> torch.Tensor:
    """Per-item image paths -> ``[n_items, 1280]`` with `graphrec.data.encode.encode_images`
    (cached); items without a readable image follow ``missing`` (``error``, ``mean``, ``zeros``)."""
    if missing not in MISSING_POLICIES:
        raise ConfigError(f"{source}: missing={missing!r}; choose one of {MISSING_POLICIES}")
    from graphrec.data.encode import EncodeExtraMissing, encode_images

    try:
        return encode_images([None if p is None else os.fspath(p) for p in paths], ids=item_map.ids.tolist(),
                             missing=missing, progress=progress)
    except EncodeExtraMissing as e:
        raise _no_extra(e, source) from None
    except (ValueError, FileNotFoundError) as e:
        raise DataError(f"{source}: {' '.join(str(e).split())}") from None


def _column(df: Any, name: Optional[str], role: str, source: str) -> Any:
    if name is None:
        return None
    if not isinstance(name, str):
        raise ConfigError(f"{source}: the {role} column must be named by a string, got {name!r}")
    try:
        cols = list(df.columns) if hasattr(df, "columns") else list(df.keys())
    except AttributeError:
        raise ConfigError(f"{source}: interactions must be a table (pandas/pyarrow) or a dict of columns, got "
                          f"{type(df).__name__}") from None
    names = [str(c) for c in cols]
    if name not in names:
        raise DataError(f"{source}: no column {name!r} for the {role} (columns: {', '.join(names)})")
    col = df[cols[names.index(name)]]
    return col.to_numpy() if hasattr(col, "to_numpy") and not hasattr(col, "combine_chunks") else col


def dataset_from_frames(interactions: Any, user: str = "user_id", item: str = "item_id",
                        timestamp: Optional[str] = None, rating: Optional[str] = None, *,
                        features: Optional[Mapping[str, tuple[Any, Any]]] = None, item_text: Any = None,
                        item_images: Any = None, name: str = "frames", implicit_threshold: Optional[float] = None,
                        dedupe: bool = True, kcore: int | tuple[int, int] = 0, missing: str = "error",
                        encode: bool = True, progress: bool = False) -> Dataset:
    """A `Dataset` from a table of interactions and item content held in memory.

    ``interactions``: a pandas/pyarrow table or a dict of columns; ``user``/``item`` (and optional
    ``timestamp``, ``rating``) name its columns. ``features``: ``{modality: (array [rows, d],
    ids [rows])}``. ``item_text`` / ``item_images``: ``{id: text or image path}`` (or a Series
    indexed by id, or ``(ids, values)``), encoded into the modalities ``text`` and ``image`` when
    ``encode`` (else kept raw on the dataset). Cleaning: `clean`. ``missing``: items without a
    feature row or image (``error``, ``mean``, ``zeros``); items without text are an error."""
    src = name
    inter = from_columns(_column(interactions, user, "user", src), _column(interactions, item, "item", src),
                         timestamp=_column(interactions, timestamp, "timestamp", src),
                         rating=_column(interactions, rating, "rating", src), source=src,
                         names={"user": user, "item": item, "timestamp": timestamp or "", "rating": rating or ""})
    inter = clean(inter, implicit_threshold, dedupe, kcore)
    imap = inter.item_map
    mats: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    for m, pair in (features or {}).items():
        if not (isinstance(pair, (tuple, list)) and len(pair) == 2):
            raise ConfigError(f"{src}: features[{m!r}] must be (array, ids)")
        mats[m] = align_features(pair[0], pair[1], imap, f"{src}: features[{m!r}]", missing)
        sources[m] = f"{src}: features[{m!r}]"
    texts = aligned_content(item_text, imap, f"{src}: item_text") if item_text is not None else None
    images = aligned_content(item_images, imap, f"{src}: item_images") if item_images is not None else None
    for m, content in (("text", texts), ("image", images)):
        if content is None or not encode:
            continue
        if m in mats:
            raise ConfigError(f"{src}: modality {m!r} is given as features and as raw item content")
        enc = encode_text_column if m == "text" else encode_image_paths
        mats[m] = enc(content, imap, f"{src}: item_{m}", "error" if m == "text" else missing, progress)
        sources[m] = f"{src}: item_{m} encoded"
    return Dataset(name, inter, features=ItemFeatures(mats, imap, sources) if mats else None,
                   item_text=None if texts is None else ["" if t is None else str(t) for t in texts],
                   item_images=images, meta={"source": "frames"})


__all__ = ["TEXT_MISSING", "align_features", "aligned_content", "clean", "dataset_from_frames",
           "encode_image_paths", "encode_text_column"]
