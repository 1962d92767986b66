"""Checkpoints: atomic writes; model components stored separately so any one loads alone.

A checkpoint holds only tensors and plain values (dict, list, tuple, str, int, float, bool, None,
torch sizes/dtypes/devices) and is read with ``torch.load(weights_only=True)``, whose unpickler
rebuilds nothing else: loading a checkpoint never runs code, whoever wrote it. `save` converts numpy
scalars and arrays to Python numbers and tensors and refuses any other object, so everything
graphrec writes loads again. A file holding other objects (one written by an older graphrec with
numpy values in it, or a crafted one) is refused with `UnsafeFileError`; `convert`
(``graphrec checkpoint convert FILE``) rewrites old files, reading their numpy values without
running code, and unpickles anything else only when told to trust the file.
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

from graphrec.errors import DataError, MissingFileError, UnsafeFileError
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


def load_file(path: str) -> dict:
    """A checkpoint's contents, read with ``weights_only=True`` (no code runs).

    Raises `MissingFileError` (no such file), `UnsafeFileError` (objects other than tensors and
    plain values: a crafted file, or an old one to `convert`) or `DataError` (truncated or not a
    graphrec checkpoint), each naming ``path``."""
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: checkpoint not found")
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
              where: str = "checkpoint") -> list[str]:
    """Load components into ``model``; ``only`` restricts to some components (pretrain -> fine-tune).
    Returns the component names loaded. ``where`` (the file) names the checkpoint in errors."""
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


def resolve_init(path: str) -> str:
    """A run directory means its best checkpoint."""
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
