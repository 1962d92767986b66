"""Checkpoints: atomic writes; model components stored separately so any one loads alone.

A checkpoint holds only tensors and plain values (dict, list, tuple, str, int, float, bool, None,
torch sizes/dtypes/devices) and is read with ``torch.load(weights_only=True)``, whose unpickler
rebuilds nothing else: loading a checkpoint never runs code, whoever wrote it. `save` converts numpy
scalars and arrays to Python numbers and tensors and refuses any other object, so everything
graphrec writes loads again. A file holding other objects (one written by an older graphrec with
numpy values in it, or a crafted one) is refused with `UnsafeFileError`; `convert`
(``graphrec checkpoint convert FILE``) rewrites old files, reading their numpy values without
running code, and unpickles anything else only when told to trust the file.

Exported vectors as a starting point (pretrain -> fine-tune): ``train.init_from`` may also name a
directory written by ``graphrec export`` (``<side>_<name>.npy`` + ``export.json``,
`graphrec.data.vectors`). Such a directory holds tables, not a model's components, so `load_into`
maps them by name: a ``"user/<name>"`` table into the rows of the model's layer-0 user embeddings
and an ``"item/<name>"`` table into its item rows (`table_slots`: the ``[users + items, d]``
``embedding`` of LightGCN, MixGCF and NGCF, or ``user_emb``/``item_emb`` tables), rows aligned by
the original ids of ``export.json`` when the run's id maps are given. ``.npy`` files are read
without pickles.
"""
from __future__ import annotations

import os
import pickle
import re
import shutil
import warnings
from typing import Any, Iterable, Optional

import numpy as np
import torch
from torch import nn

from graphrec.errors import ConfigError, DataError, MissingFileError, UnsafeFileError
from graphrec.utils import log, torch_save_atomic

#: leaves `torch.load(weights_only=True)` rebuilds (besides tensors and containers)
_PLAIN = (type(None), bool, int, float, complex, str, bytes, torch.Size, torch.dtype, torch.device)


def components(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """State dict split by top-level submodule (``""`` holds the model's own params/buffers)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in model.state_dict().items():
        head, _, rest = key.partition(".")
        comp, name = (head, rest) if rest else ("", head)
        out.setdefault(comp, {})[name] = value
    return out


def plain(obj: Any, where: str = "checkpoint") -> Any:
    """``obj`` with numpy scalars/arrays turned into Python numbers/tensors; `TypeError` naming the
    key path of anything that ``torch.load(weights_only=True)`` would refuse."""
    if isinstance(obj, np.generic):  # first: np.float64 and np.str_ also pass as float and str
        return obj.item()
    if isinstance(obj, torch.Tensor) or isinstance(obj, _PLAIN):
        return obj
    if isinstance(obj, np.ndarray):
        if obj.dtype == object:
            raise TypeError(f"{where}: numpy object array cannot be stored in a checkpoint")
        return torch.from_numpy(np.ascontiguousarray(obj).copy())
    if isinstance(obj, dict):
        return {plain(k, f"{where} key"): plain(v, f"{where}[{k!r}]") for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set, frozenset)):
        return type(obj)(plain(v, f"{where}[{i}]") for i, v in enumerate(obj))
    raise TypeError(f"{where}: a {type(obj).__module__}.{type(obj).__qualname__} cannot be stored in a "
                    f"checkpoint (only tensors and plain values load with weights_only=True)")


def save(path: str, model: nn.Module, **extra: Any) -> None:
    torch_save_atomic(plain({"components": components(model), **extra}), path)


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())[:300]


def _refusal(path: str, err: BaseException) -> str:
    """Why ``path`` was refused, naming the objects it holds and how to convert it if trusted."""
    found: list[str] = []
    probe = getattr(torch.serialization, "get_unsafe_globals_in_checkpoint", None)  # torch >= 2.5
    if probe is not None:
        try:
            found = sorted(probe(path))
        except Exception:  # not a zip checkpoint: name what the unpickler stopped at
            pass
    if not found:
        found = re.findall(r"GLOBAL (\S+)", str(err))
    what = f" ({', '.join(found[:5])})" if found else ""
    return (f"{path}: refused to load: it holds Python objects other than tensors and plain values{what}, "
            f"and unpickling them could run code; if an older graphrec wrote it, convert it once with: "
            f"graphrec checkpoint convert {path}")


EXPORT_MANIFEST = "export.json"  # graphrec.data.vectors.MANIFEST


def export_dir(path: str) -> Optional[str]:
    """The export directory ``path`` names (the directory, or its ``export.json``), else None."""
    if os.path.isdir(path) and os.path.isfile(os.path.join(path, EXPORT_MANIFEST)):
        return path
    if os.path.basename(path) == EXPORT_MANIFEST and os.path.isfile(path):
        return os.path.dirname(os.path.abspath(path))
    return None


def load_export(path: str) -> dict:
    """The tables of an export directory as ``{"components": {}, "tables": {key: tensor},
    "user_ids": [...], "item_ids": [...], "export": manifest fields}``. Each ``.npy`` is read
    without pickles and checked (shape against its id list, finite values); a table file named in
    the manifest must sit in the directory itself."""
    from graphrec.data.features import load_npy
    from graphrec.data.vectors import read_manifest

    directory = export_dir(path) or path
    man = read_manifest(directory)
    if man is None:
        raise MissingFileError(f"{directory}: no {EXPORT_MANIFEST} (not a graphrec export directory)")
    where = os.path.join(directory, EXPORT_MANIFEST)
    tables: dict[str, torch.Tensor] = {}
    for fname, entry in man["tables"].items():
        if (not isinstance(fname, str) or os.path.basename(fname) != fname or fname in (".", "..")
                or not fname.endswith(".npy")):
            raise UnsafeFileError(f"{where}: table file {fname!r} is not a plain .npy name in the export directory")
        if not isinstance(entry, dict) or entry.get("side") not in ("user", "item") or not isinstance(entry.get("key"), str):
            raise DataError(f"{where}: table {fname!r} lacks a side ('user' or 'item') or a key")
        n = len(man[f"{entry['side']}_ids"])
        tables[entry["key"]] = load_npy(os.path.join(directory, fname), n, None, entry["key"])
    meta = {k: man[k] for k in ("model", "run", "checkpoint", "dataset") if k in man}
    return {"components": {}, "tables": tables, "user_ids": man["user_ids"], "item_ids": man["item_ids"],
            "export": meta}


def load_file(path: str) -> dict:
    """A checkpoint's contents, read with ``weights_only=True`` (no code runs), or the tables of an
    export directory (`load_export`).

    Raises `MissingFileError` (no such file), `UnsafeFileError` (objects other than tensors and
    plain values: a crafted file, or an old one to `convert`) or `DataError` (truncated or not a
    graphrec checkpoint), each naming ``path``."""
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: checkpoint not found")
    if export_dir(path) is not None:
        return load_export(path)
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a checkpoint file")
    try:
        with warnings.catch_warnings():  # torch warns about the protocol of raw pickles it then refuses
            warnings.simplefilter("ignore", UserWarning)
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        if "weights only" in str(e).lower() or "weightsunpickler" in str(e).lower():
            raise UnsafeFileError(_refusal(path, e)) from None
        raise DataError(f"{path}: cannot read checkpoint ({_one_line(e)})") from None
    except Exception as e:  # truncated or foreign file: say which
        raise DataError(f"{path}: cannot read checkpoint ({_one_line(e)})") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("components"), dict):
        raise DataError(f"{path}: not a graphrec checkpoint (no 'components' mapping)")
    return obj


def load_into(model: nn.Module, ckpt: dict, only: Optional[Iterable[str]] = None, strict: bool = True,
              where: str = "checkpoint", user_map: Any = None, item_map: Any = None) -> list[str]:
    """Load components into ``model``; ``only`` restricts to some components (pretrain -> fine-tune).
    Returns the component names loaded. ``where`` (the file) names the checkpoint in errors.
    For an export (`load_export`) ``only`` names tables (``"user/mcpt"``) and `load_tables`
    places them; ``user_map``/``item_map`` (the run's `IdMap`s) align their rows by original id."""
    if "tables" in ckpt:
        return load_tables(model, ckpt, only, where, user_map, item_map)
    comps = ckpt["components"]
    names = list(only) if only is not None else list(comps)
    missing = [n for n in names if n not in comps]
    if missing:
        raise KeyError(f"{where} has no component(s) {missing}; it has {sorted(comps)}")
    state = {}
    for comp in names:
        for k, v in comps[comp].items():
            state[f"{comp}.{k}" if comp else k] = v
    try:
        if only is None and strict:
            model.load_state_dict(state)
            return names
        res = model.load_state_dict(state, strict=False)
    except RuntimeError as e:  # missing/unexpected keys or shapes: a checkpoint of another model or config
        raise DataError(f"{where} does not fit model {type(model).__name__}: {_one_line(e)}") from None
    if res.unexpected_keys:
        raise KeyError(f"{where} keys not in the model: {res.unexpected_keys[:5]}")
    log.info("loaded components %s (%d tensors)", names, len(state))
    return names


def table_slots(model: nn.Module) -> dict[str, tuple[torch.Tensor, int, int]]:
    """Where exported tables go: ``{side: (parameter, first row, rows)}`` for the model's layer-0
    user and item embeddings. A model may say so itself (``init_table_slots()``); otherwise a
    ``[n_users + n_items, d]`` ``embedding`` (users first: LightGCN, MixGCF, NGCF) or
    ``user_emb``/``item_emb`` (``user_embedding``/``item_embedding``) tables are found by shape."""
    hook = getattr(model, "init_table_slots", None)
    if callable(hook):
        return hook()
    nu, ni = int(getattr(model, "n_users", -1)), int(getattr(model, "n_items", -1))

    def weight(obj: Any) -> Optional[torch.Tensor]:
        w = obj.weight if isinstance(obj, nn.Embedding) else obj
        return w if isinstance(w, nn.Parameter) and w.dim() == 2 else None

    w = weight(getattr(model, "embedding", None))
    if w is not None and w.shape[0] == nu + ni:
        return {"user": (w, 0, nu), "item": (w, nu, ni)}
    out = {}
    for side, n in (("user", nu), ("item", ni)):
        for attr in (f"{side}_emb", f"{side}_embedding"):
            w = weight(getattr(model, attr, None))
            if w is not None and w.shape[0] in (n, n + 1):  # n + 1: a PAD row after the items
                out[side] = (w, 0, n)
                break
    return out


def _aligned(x: torch.Tensor, ids: list, id_map: Any, n: int, where: str, key: str) -> torch.Tensor:
    """The rows of ``x`` (rows = original ``ids``) in the order of the model's ``n`` rows."""
    if id_map is None:  # no id map given: the rows must be the model's, one for one
        if x.shape[0] != n:
            raise DataError(f"{where}: table {key!r} has {x.shape[0]} rows but the model holds {n}")
        return x
    want = id_map.to_original(np.arange(n))
    pos = {v: r for r, v in enumerate(ids)}
    idx = [pos.get(v.item() if hasattr(v, "item") else v, -1) for v in want]
    lacking = [want[r] for r, i in enumerate(idx) if i < 0]
    if lacking:
        raise DataError(f"{where}: table {key!r} has no row for {len(lacking)} of the run's ids, e.g. "
                        f"{[v.item() if hasattr(v, 'item') else v for v in lacking[:5]]}")
    return x.index_select(0, torch.as_tensor(idx, dtype=torch.long))


def load_tables(model: nn.Module, ckpt: dict, only: Optional[Iterable[str]] = None, where: str = "export",
                user_map: Any = None, item_map: Any = None) -> list[str]:
    """Copy exported tables into the model's layer-0 rows (`table_slots`); returns the keys loaded.
    ``only`` names the tables (default: all of the export, at most one per side)."""
    tables = ckpt["tables"]
    names = list(only) if only is not None else list(tables)
    missing = [n for n in names if n not in tables]
    if missing:
        raise ConfigError(f"train.init_components: {where} has no table(s) {missing}; it has {sorted(tables)}")
    by_side: dict[str, str] = {}
    for key in names:
        side = key.partition("/")[0]
        if side in by_side:
            raise ConfigError(f"{where} holds several {side} tables ({by_side[side]}, {key}); name the ones to "
                              f"load in train.init_components")
        by_side[side] = key
    slots = table_slots(model)
    maps = {"user": user_map, "item": item_map}
    for side, key in by_side.items():
        if side not in slots:
            raise DataError(f"{where}: model {type(model).__name__} has no layer-0 {side} embedding table for "
                            f"{key!r} (known layouts: a [users + items, d] 'embedding', or user_emb/item_emb)")
        param, first, n = slots[side]
        x = _aligned(tables[key], ckpt[f"{side}_ids"], maps[side], n, where, key)
        if x.shape[1] != param.shape[1]:
            raise DataError(f"{where}: table {key!r} is {x.shape[1]}-d but the model's {side} embeddings are "
                            f"{param.shape[1]}-d (set the model's embedding_dim to {x.shape[1]})")
        with torch.no_grad():
            param[first:first + n].copy_(x.to(param.dtype))
        log.info("initialised %s rows %d..%d from %s (mean row norm %.4f)", side, first, first + n - 1, key,
                 float(x.norm(dim=1).mean()))
    return list(by_side.values())


def resolve_init(path: str) -> str:
    """A run directory means its best checkpoint; an export directory (``export.json``) itself."""
    if export_dir(path) is not None:
        return path
    if os.path.isdir(path):
        for name in ("best.pt", "last.pt"):
            p = os.path.join(path, name)
            if os.path.exists(p):
                return p
        raise MissingFileError(f"{path}: no best.pt or last.pt in this run directory")
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: checkpoint not found")
    return path


def resolve_in_run(run_dir: str, name: str, what: str = "--checkpoint") -> str:
    """The checkpoint ``name`` of a run: a relative name is looked up inside ``run_dir`` and may not
    leave it (``../x.pt``, or a link pointing outside, is refused); an absolute path is taken as
    given, on purpose. Raises `UnsafeFileError` or `MissingFileError`."""
    if not name:
        raise UnsafeFileError(f"{what}: empty checkpoint name")
    if "\x00" in name:
        raise UnsafeFileError(f"{what} {name!r}: contains a NUL character")
    if os.path.isabs(name):
        path = name
    else:
        base = os.path.realpath(run_dir)
        path = os.path.join(run_dir, name)
        real = os.path.realpath(path)
        if os.path.commonpath([base, real]) != base:
            raise UnsafeFileError(f"{what} {name!r}: a relative name must stay inside the run directory "
                                  f"{run_dir}; give an absolute path to load a checkpoint from elsewhere")
    if not os.path.isfile(path):
        have = sorted(f for f in os.listdir(run_dir) if f.endswith(".pt")) if os.path.isdir(run_dir) else []
        raise MissingFileError(f"{what} {name!r}: no such checkpoint file {path}"
                               + (f" (this run has {', '.join(have)})" if have else ""))
    return path


def _numpy_globals() -> list:
    """numpy's data-only reconstructors (scalars, dtypes, arrays), under the names numpy 1.x and 2.x
    pickle them: what checkpoints of older graphrec versions hold besides tensors."""
    try:
        from numpy._core import multiarray as ma  # numpy >= 2
    except ImportError:  # numpy 1.x
        from numpy.core import multiarray as ma  # type: ignore[no-redef]
    out: list = [np.dtype, np.ndarray]
    for fn in (ma.scalar, ma._reconstruct):
        out += [(fn, f"numpy.core.multiarray.{fn.__name__}"), (fn, f"numpy._core.multiarray.{fn.__name__}")]
    dtypes = getattr(np, "dtypes", None)
    if dtypes is not None:
        out += [getattr(dtypes, n) for n in dir(dtypes) if n.endswith("DType")]
    return out


def convert(path: str, out: Optional[str] = None, trust: bool = False) -> str:
    """Rewrite an old checkpoint so that it loads with ``weights_only=True``; returns the path
    written (``out``, or ``path`` itself with the original kept as ``<path>.orig``).

    Numpy scalars and arrays (what older graphrec versions stored in metrics) are read by the same
    restricted unpickler with numpy's data-only reconstructors allowed, so converting them runs no
    code. A file holding any other object is refused unless ``trust=True``, which unpickles it in
    full: that runs whatever code the file holds, so only for files you wrote yourself.
    A file that loads safely already is left as it is (copied to ``out`` if given)."""
    if not os.path.isfile(path):
        raise MissingFileError(f"{path}: checkpoint not found")
    in_place = out is None or os.path.abspath(out) == os.path.abspath(path)
    try:
        load_file(path)
        if not in_place:
            shutil.copyfile(path, out)
        return path if in_place else out
    except UnsafeFileError as e:
        refusal = e
    allow = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
    try:
        if trust:
            obj = torch.load(path, map_location="cpu", weights_only=False)  # the user vouched for it
        elif allow is None:
            raise refusal
        else:
            with allow(_numpy_globals()), warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.findall(r"GLOBAL (\S+)", str(e))
        raise UnsafeFileError(f"{path}: not converted: it holds objects other than tensors, plain values and "
                              f"numpy values{' (' + ', '.join(found[:5]) + ')' if found else ''}; only if "
                              f"you wrote it yourself, convert it with trust (graphrec checkpoint convert "
                              f"--trust {path}), which runs any code it holds") from None
    try:
        obj = plain(obj, path)
    except TypeError as e:
        raise UnsafeFileError(f"cannot convert {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("components"), dict):
        raise DataError(f"{path}: not a graphrec checkpoint (no 'components' mapping)")
    if in_place:
        out = path
        shutil.copy2(path, path + ".orig")
    torch_save_atomic(obj, out)
    load_file(out)  # it must now load safely
    return out
