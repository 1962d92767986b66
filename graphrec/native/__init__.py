"""graphrec's optional compiled kernels: C sources beside this file, built on first use and loaded
through ctypes. They are accelerators, never requirements:

* each source ``<name>.c`` is compiled with the system C compiler (``$CC``, else ``cc``/``gcc``)
  and ``-O3 -march=native -fopenmp`` into ``$GRAPHREC_CACHE_DIR/native`` (default
  ``~/.cache/graphrec/native``), keyed by the source, the flags and the host CPU, and reused after;
  concurrent processes build beside the target and rename, so none loads a half-written library;
* OpenMP resolves to the libgomp torch has already loaded (same soname), so these loops share
  torch's thread pool instead of competing with it for the cores;
* without a compiler, when a build fails, or with ``GRAPHREC_NATIVE=0``, `load` returns None
  after logging one line, and callers use their torch code; a build without ``-march=native`` is
  not attempted (the plain-SSE2 product was slower than torch's).

Users: `graphrec.graphs.native_spmm` (CSR products, CSR transpose),
`graphrec.eval.screened_topk` (the screen's post-GEMM selection) and
`graphrec.nn.candidate_argmax` (MixGCF's hardest-candidate choice).
"""
from __future__ import annotations

import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path
from typing import Dict, Optional

from graphrec.utils import log

SOURCES = Path(__file__).parent
_P, _I64, _INT = ctypes.c_void_p, ctypes.c_int64, ctypes.c_int
#: argument types of every exported function (all return int): without them ctypes would pass
#: Python ints as 32-bit C ints to the int64 parameters
SIGNATURES: Dict[str, Dict[str, list]] = {
    "csr_spmm": {
        "graphrec_csr_spmm": [_P] * 6 + [_I64, _I64, _INT],
        "graphrec_csr_transpose": [_P] * 3 + [_I64, _I64] + [_P] * 3,
    },
    "candidate_argmax": {
        "graphrec_candidate_argmax": [_P, _I64, _P, _I64, _I64, _P, _I64, _P, _INT],
    },
    "screen_topk": {
        "graphrec_screen_select": ([_P] + [_I64] * 4 + [_P] * 3 + [_I64] + [_P] * 5 + [_I64] + [_P]
                                   + [_I64] * 2 + [_P] * 2 + [_INT]),
    },
}
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared")
ENV_SWITCH = "GRAPHREC_NATIVE"

_lock = threading.Lock()
_libs: Dict[str, Optional[ctypes.CDLL]] = {}
_why_not: Dict[str, str] = {}


def cache_dir() -> Path:
    base = os.environ.get("GRAPHREC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "graphrec")
    return Path(base) / "native"


def compiler() -> Optional[str]:
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and shutil.which(name):
            return name
    return None


def _host_key() -> str:
    """What -march=native depends on: the CPU model and flags (a copied cache must not be reused
    on another CPU)."""
    info = platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith(("model name", "flags", "Features", "CPU part")):
                    info += line
                if line.strip() == "":
                    break
    except OSError:
        info += platform.processor()
    return info


def _build(source: Path, cc: str) -> Path:
    src = source.read_bytes()
    key = hashlib.sha256(src + " ".join((cc,) + FLAGS).encode() + _host_key().encode()).hexdigest()[:16]
    target = cache_dir() / f"{source.stem}-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cc, *FLAGS, "-o", tmp, str(source)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} {' '.join(FLAGS)} failed: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def load(name: str, source: Optional[Path] = None) -> Optional[ctypes.CDLL]:
    """The compiled library of ``<name>.c`` (or of ``source``), or None (reason in `why_not`)."""
    if name in _libs:
        return _libs[name]
    with _lock:
        if name in _libs:
            return _libs[name]
        lib = None
        try:
            if os.environ.get(ENV_SWITCH, "1").strip().lower() in ("0", "false", "off", "no"):
                raise RuntimeError(f"{ENV_SWITCH}=0")
            cc = compiler()
            if cc is None:
                raise RuntimeError("no C compiler ($CC, cc, gcc) on PATH")
            lib = ctypes.CDLL(str(_build(source or SOURCES / f"{name}.c", cc)))
            for fn_name, argtypes in SIGNATURES.get(name, {}).items():
                fn = getattr(lib, fn_name)
                fn.restype, fn.argtypes = ctypes.c_int, argtypes
            _why_not[name] = ""
        except Exception as exc:  # any failure keeps the torch code; say so once
            _why_not[name] = str(exc)
            log.info("native %s not used (%s); using torch", name, exc)
        _libs[name] = lib
    return lib


def why_not(name: str) -> str:
    """Why ``name`` is not in use ("" when it is; "not loaded yet" before the first `load`)."""
    return _why_not.get(name, "not loaded yet")


def forget(name: str) -> None:
    """Drop the cached load result of ``name`` (tests)."""
    with _lock:
        _libs.pop(name, None)
        _why_not.pop(name, None)
