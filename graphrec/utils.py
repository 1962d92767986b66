"""Small shared helpers: content hashing, logging, seeding, device choice, safe names."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
import sys
import unicodedata
from typing import Any, Iterable

import numpy as np
import torch

from graphrec.errors import UnsafeNameError

class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is at the time of the record (a redirected or replaced
    stderr, e.g. under a test runner, never leaves the handler writing to a closed stream)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


log = logging.getLogger("graphrec")
if not log.handlers:
    _h = _StderrHandler()
    _h.setFormatter(logging.Formatter("[graphrec] %(levelname)s %(message)s"))
    log.addHandler(_h)
    log.setLevel(os.environ.get("GRAPHREC_LOG", "INFO"))
    log.propagate = False


def hash_update(h: "hashlib._Hash", obj: Any) -> None:
    """Feed tensors, arrays, strings, numbers and nested containers into a hash, deterministically."""
    if isinstance(obj, torch.Tensor):
        t = obj.detach().cpu().contiguous()
        h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
        h.update(t.numpy().tobytes() if t.dtype != torch.bfloat16 else t.float().numpy().tobytes())
    elif isinstance(obj, np.ndarray):
        a = np.ascontiguousarray(obj)
        h.update(f"A{a.dtype}{a.shape}".encode())
        if a.dtype == object:
            h.update("\x1f".join(map(str, a.tolist())).encode())
        else:
            h.update(a.tobytes())
    elif isinstance(obj, dict):
        h.update(b"{")
        for k in sorted(obj, key=str):
            hash_update(h, str(k))
            hash_update(h, obj[k])
        h.update(b"}")
    elif isinstance(obj, (list, tuple)):
        h.update(b"[")
        for x in obj:
            hash_update(h, x)
        h.update(b"]")
    else:
        h.update(f"{type(obj).__name__}:{obj!r}".encode())


def content_hash(*objs: Any, length: int = 16) -> str:
    """SHA-256 (truncated hex) of tensors/arrays/configs; equal content -> equal hash."""
    h = hashlib.sha256()
    for o in objs:
        hash_update(h, o)
    return h.hexdigest()[:length]


def seed_everything(seed: int, deterministic: bool = False) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        torch.use_deterministic_algorithms(True, warn_only=True)
        if torch.backends.cudnn.is_available():
            torch.backends.cudnn.deterministic = True
            torch.backends.cudnn.benchmark = False


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def atomic_write_bytes(path: str, data: bytes) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n").encode())


def _json_default(o: Any) -> Any:
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.floating,)):
        return float(o)
    if isinstance(o, torch.Tensor):
        return o.tolist()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)


def torch_save_atomic(obj: Any, path: str) -> None:
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


def chunks(n: int, size: int) -> Iterable[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


#: longest name accepted by `safe_name` (file systems allow 255 bytes; the rest is left for suffixes)
MAX_NAME_LEN = 128
#: Unicode categories never allowed in a name: controls (NUL, newline, ESC, DEL, C1), invisible
#: format characters (bidirectional overrides, zero-width), surrogates, line/paragraph separators
_BAD_CATEGORIES = ("Cc", "Cf", "Cs", "Zl", "Zp")


def to_name(text: str, limit: int = 0, keep: str = "") -> str:
    """``text`` made into a name `safe_name` accepts: runs of characters other than letters, digits
    and ``_.+-`` (plus ``keep``) become ``_``, ``..`` becomes ``_``, leading/trailing ``._-`` go;
    the last ``limit`` characters when ``limit`` > 0. Empty when nothing usable is left."""
    s = re.sub(rf"[^A-Za-z0-9_.+{re.escape(keep)}-]+", "_", text).replace("..", "_").strip("._-")
    return s[-limit:] if limit > 0 else s


def safe_name(name: Any, what: str) -> str:
    """``name`` unchanged if it can be used as one plain file or directory name, else
    `UnsafeNameError` with one line saying which ``what`` (e.g. ``"run name"``) was refused and why.

    Refused: non-strings, empty names, path separators (``/``, ``\\``), ``..``, leading dots or
    dashes (hidden files, ``.``, options), leading/trailing whitespace, NUL, control and invisible
    format characters, and names longer than `MAX_NAME_LEN` characters. Call it before anything
    is created from the name.
    """
    if not isinstance(name, str):
        raise UnsafeNameError(f"{what} {repr(name)[:60]} refused: expected a string, got {type(name).__name__}")
    shown = repr(name if len(name) <= 60 else name[:60] + "...")  # repr: control characters stay escaped
    why = None
    if not name:
        why = "it is empty"
    elif len(name) > MAX_NAME_LEN:
        why = f"it is {len(name)} characters long (at most {MAX_NAME_LEN})"
    elif "/" in name or "\\" in name or (os.altsep and os.altsep in name):
        why = "it contains a path separator"
    elif ".." in name:
        why = "it contains '..'"
    elif name[0] in ".-":
        why = f"it starts with {name[0]!r}"
    elif name != name.strip():
        why = "it starts or ends with whitespace"
    else:
        bad = next((c for c in name if unicodedata.category(c) in _BAD_CATEGORIES), None)
        if bad is not None:
            why = f"it contains the control or invisible character U+{ord(bad):04X}"
    if why:
        raise UnsafeNameError(f"{what} {shown} refused: {why} (it becomes a file or directory name)")
    return name
