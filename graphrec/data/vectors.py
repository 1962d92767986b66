"""Exported vectors: the user and item tables one model writes (``graphrec export``) for a later
stage or another model to read (PAMD's disentangled item vectors as a modality of VBPR, MCPT's
pretrained user and item vectors as the start of LightGCN).

A directory holds ``<side>_<name>.npy`` (float32, one row per user or item) and ``export.json``:
the model, run and dataset they came from, each table's side and shape, and the original user and
item ids of the rows, in row order. Readers align rows by those ids (`align_rows`), never by
position, so a table exported from one dataset is read correctly by another that holds the same
ids in another order, and an id the reader's dataset has but the table lacks is named.
"""
from __future__ import annotations

import io
import json
import os
from typing import Any, Dict, Optional

import numpy as np
import torch

from graphrec.data.features import align_rows, load_npy
from graphrec.data.interactions import IdMap
from graphrec.data.textio import check_file
from graphrec.errors import DataError
from graphrec.utils import atomic_write_bytes, atomic_write_json, safe_name

MANIFEST = "export.json"
FORMAT = "graphrec-export/1"
SIDES = ("user", "item")


def _split_key(key: str) -> tuple[str, str]:
    side, _, name = key.partition("/")
    if side not in SIDES or not name:
        raise ValueError(f"exported table key {key!r}: expected 'user/<name>' or 'item/<name>'")
    return side, safe_name(name, "exported table name")


def write_export(out_dir: str, tables: Dict[str, torch.Tensor], user_ids: IdMap, item_ids: IdMap,
                 meta: Dict[str, Any]) -> Dict[str, str]:
    """Write ``tables`` (``{"item/<name>": [n_items, d], "user/<name>": [n_users, d]}``) and the
    manifest into ``out_dir``; returns ``{key: path}``. Shapes are checked before anything is
    written."""
    sizes = {"user": len(user_ids), "item": len(item_ids)}
    arrays = {}
    for key, t in tables.items():
        side, name = _split_key(key)
        x = t.detach().float().cpu().numpy()
        if x.ndim != 2 or x.shape[0] != sizes[side]:
            raise ValueError(f"exported table {key!r} has shape {tuple(x.shape)}; expected ({sizes[side]}, d)")
        if not np.isfinite(x).all():
            raise ValueError(f"exported table {key!r} holds NaN or inf values")
        arrays[f"{side}_{name}.npy"] = (key, side, name, np.ascontiguousarray(x))
    if not arrays:
        raise ValueError("the model exports no tables (Recommender.export_tables returned none)")
    os.makedirs(out_dir, exist_ok=True)
    paths = {}
    for fname, (key, _side, _name, x) in arrays.items():
        buf = io.BytesIO()
        np.save(buf, x, allow_pickle=False)
        atomic_write_bytes(os.path.join(out_dir, fname), buf.getvalue())
        paths[key] = os.path.join(out_dir, fname)
    ids = {s: [v.item() if hasattr(v, "item") else v for v in m.to_original(np.arange(len(m)))]
           for s, m in (("user", user_ids), ("item", item_ids))}
    atomic_write_json(os.path.join(out_dir, MANIFEST), {
        "format": FORMAT, **meta,
        "tables": {f: {"key": k, "side": s, "name": n, "shape": list(x.shape)} for f, (k, s, n, x) in arrays.items()},
        "user_ids": ids["user"], "item_ids": ids["item"]})
    return paths


def read_manifest(directory: str) -> Optional[dict]:
    """The ``export.json`` of ``directory`` (None when there is none), its layout checked."""
    path = os.path.join(directory, MANIFEST)
    if not os.path.exists(path):
        return None
    check_file(path, "export manifest")
    with open(path, encoding="utf-8") as f:
        try:
            man = json.load(f)
        except json.JSONDecodeError as e:
            raise DataError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(man, dict) or man.get("format") != FORMAT:
        raise DataError(f"{path}: not a graphrec export manifest (format {man.get('format') if isinstance(man, dict) else None!r}, "
                        f"expected {FORMAT!r})")
    for k in ("tables", "user_ids", "item_ids"):
        if not isinstance(man.get(k), (dict if k == "tables" else list)):
            raise DataError(f"{path}: key {k!r} is missing or of the wrong type")
    return man


def ids_file(npy_path: str) -> str:
    """``OUT.ids.txt`` beside ``OUT.npy``: the item id of each row, one per line (`graphrec encode`)."""
    return (npy_path[:-4] if npy_path.endswith(".npy") else npy_path) + ".ids.txt"


def read_ids_file(path: str) -> list[str]:
    """One id per line; a blank line or a repeated id is an error naming its line (either would
    shift or merge rows)."""
    from graphrec.data.textio import read_text
    lines = read_text(path, what="ids file").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    seen: dict[str, int] = {}
    for n, x in enumerate(lines, start=1):
        if not x.strip():
            raise DataError(f"{path}: blank id on line {n}")
        if x in seen:
            raise DataError(f"{path}: id {x!r} on lines {seen[x]} and {n}")
        seen[x] = n
    return lines


def read_item_table(path: str, item_map: IdMap, modality: str, missing: str = "error") -> torch.Tensor:
    """An item table aligned to ``item_map`` by the original ids of its rows: those of
    ``export.json`` beside it (`graphrec export`) or of ``<name>.ids.txt`` (`graphrec encode`);
    rows of items the map lacks are an error naming them, items the table lacks follow ``missing``.
    A plain ``.npy`` with neither is read as row ``i`` = item index ``i``."""
    man = read_manifest(os.path.dirname(os.path.abspath(path)))
    if man is None:
        ids_path = ids_file(path)
        if not os.path.exists(ids_path):
            return load_npy(path, len(item_map), item_map, modality)
        ids = read_ids_file(ids_path)
        x = load_npy(path, len(ids), None, modality)
        return align_rows(np.asarray(ids, dtype=object), x.numpy(), item_map, path, missing)
    entry = man["tables"].get(os.path.basename(path))
    if entry is None or entry.get("side") != "item":
        raise DataError(f"{path}: {MANIFEST} beside it lists no item table of that name (item tables: "
                        f"{sorted(f for f, e in man['tables'].items() if e.get('side') == 'item')})")
    x = load_npy(path, len(man["item_ids"]), None, modality)
    return align_rows(np.asarray(man["item_ids"], dtype=object), x.numpy(), item_map, path, missing)
