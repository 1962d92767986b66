"""Optional compiled CSR x dense product for CPU (`native/csr_spmm.c`), loaded through ctypes.

torch's CPU CSR product is the hot path of every graph model's training step; the C loop in
``native/csr_spmm.c`` does the same product about 2x faster at Clothing scale (see its header and
``benchmarks/results/bench_changes.md``). It is an accelerator, never a requirement:

* it is compiled on first use with the system C compiler (``$CC``, else ``cc``/``gcc``) and
  ``-O3 -march=native -fopenmp`` into ``$GRAPHREC_CACHE_DIR/native`` (default
  ``~/.cache/graphrec/native``), keyed by the source, the flags and the host, and reused after;
* without a compiler, or when the build fails, graphrec logs one line and keeps torch's product;
  a build without ``-march=native`` is not used (it is slower than torch's);
* ``GRAPHREC_NATIVE_SPMM=0`` turns it off; ``backend()`` says which product a process uses
  (`graphrec bench` records it).

It takes CPU CSR tensors with int64 indices and float32 values, and a float32 dense operand;
anything else goes to torch. Each output row sums its entries in storage order (with fused
multiply-adds), so results are deterministic and independent of the thread count, and agree with
torch's to float rounding.
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
from typing import Optional

import torch

from graphrec.utils import log

SOURCE = Path(__file__).with_name("native") / "csr_spmm.c"
FLAGS = ("-O3", "-march=native", "-fopenmp", "-fPIC", "-shared")
_ENV_SWITCH = "GRAPHREC_NATIVE_SPMM"
# Below this many multiply-adds one thread does the product (starting threads costs ~30 us).
_ONE_THREAD_WORK = 1 << 17

_lock = threading.Lock()
_lib: Optional[ctypes.CDLL] = None
_tried = False
_why_not = "not loaded yet"


def _cache_dir() -> Path:
    base = os.environ.get("GRAPHREC_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache"), "graphrec")
    return Path(base) / "native"


def _compiler() -> Optional[str]:
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


def _build(cc: str) -> Path:
    src = SOURCE.read_bytes()
    key = hashlib.sha256(src + " ".join((cc,) + FLAGS).encode() + _host_key().encode()).hexdigest()[:16]
    target = _cache_dir() / f"csr_spmm-{key}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    # build beside the target, then rename: concurrent processes (pytest workers) never load a
    # half-written library
    fd, tmp = tempfile.mkstemp(suffix=".so", dir=target.parent)
    os.close(fd)
    try:
        proc = subprocess.run([cc, *FLAGS, "-o", tmp, str(SOURCE)], capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"{cc} {' '.join(FLAGS)} failed: {proc.stderr.strip()[-500:]}")
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _load() -> Optional[ctypes.CDLL]:
    global _lib, _tried, _why_not
    if _tried:
        return _lib
    with _lock:
        if _tried:
            return _lib
        try:
            if os.environ.get(_ENV_SWITCH, "1").strip().lower() in ("0", "false", "off", "no"):
                raise RuntimeError(f"{_ENV_SWITCH}=0")
            cc = _compiler()
            if cc is None:
                raise RuntimeError("no C compiler ($CC, cc, gcc) on PATH")
            lib = ctypes.CDLL(str(_build(cc)))
            fn = lib.graphrec_csr_spmm
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.c_void_p] * 6 + [ctypes.c_int64, ctypes.c_int64, ctypes.c_int]
            tr = lib.graphrec_csr_transpose
            tr.restype = ctypes.c_int
            tr.argtypes = [ctypes.c_void_p] * 3 + [ctypes.c_int64, ctypes.c_int64] + [ctypes.c_void_p] * 3
            _lib, _why_not = lib, ""
        except Exception as exc:  # any failure keeps torch's product; say so once
            _lib, _why_not = None, str(exc)
            log.info("native CSR product not used (%s); using torch's", _why_not)
        _tried = True
    return _lib


def backend() -> str:
    """``"graphrec-native"`` when the compiled product is in use, else ``"torch"`` (and why)."""
    return "graphrec-native" if _load() is not None else f"torch ({_why_not})"


def applicable(adj: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether `csr_spmm` takes this pair (CPU, CSR int64 / float32, dense 2-D float32)."""
    return (adj.layout == torch.sparse_csr and adj.device.type == "cpu" and x.device.type == "cpu"
            and adj.dtype == torch.float32 and x.dtype == torch.float32 and x.dim() == 2
            and not x.is_sparse and adj.crow_indices().dtype == torch.int64
            and adj.col_indices().dtype == torch.int64 and adj.shape[1] == x.shape[0])


def csr_spmm(adj: torch.Tensor, x: torch.Tensor, add: Optional[torch.Tensor] = None,
             out: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
    """``adj @ x + add`` (``add`` optional, shape ``(adj.shape[0], x.shape[1])``) with the compiled
    loop, or None when it is unavailable or does not apply (the caller then uses torch). ``out``
    (contiguous float32, that shape, not sharing memory with ``x``) receives the result.

    No autograd: callers wrap it (`graphrec.graphs.sparse._CSRMatmul`, the batch readout)."""
    if not applicable(adj, x):
        return None
    lib = _load()
    if lib is None:
        return None
    n, d = adj.shape[0], x.shape[1]
    x = x.contiguous()
    crow, col, val = adj.crow_indices(), adj.col_indices(), adj.values()
    if not (crow.is_contiguous() and col.is_contiguous() and val.is_contiguous()):
        crow, col, val = crow.contiguous(), col.contiguous(), val.contiguous()
    if add is not None:
        if add.shape != (n, d) or add.dtype != torch.float32 or add.device.type != "cpu":
            raise ValueError(f"csr_spmm: add must be a float32 CPU ({n}, {d}) tensor, got "
                             f"{tuple(add.shape)} {add.dtype} on {add.device}")
        add = add.contiguous()
    if out is None:
        out = torch.empty(n, d, dtype=torch.float32)
    elif out.shape != (n, d) or out.dtype != torch.float32 or out.device.type != "cpu" or not out.is_contiguous():
        raise ValueError(f"csr_spmm: out must be a contiguous float32 CPU ({n}, {d}) tensor, got "
                         f"{tuple(out.shape)} {out.dtype} on {out.device}")
    if n == 0 or d == 0:
        return out
    threads = 1 if col.numel() * d < _ONE_THREAD_WORK else torch.get_num_threads()
    lib.graphrec_csr_spmm(crow.data_ptr(), col.data_ptr(), val.data_ptr(), x.data_ptr(),
                          None if add is None else add.data_ptr(), out.data_ptr(), n, d, threads)
    return out


def csr_transpose(adj: torch.Tensor) -> Optional[torch.Tensor]:
    """``adj^T`` as CSR by one counting pass (each new row keeps its entries in old-row order, as a
    stable sort by column gives), or None when the compiled code is unavailable or does not apply
    (CPU CSR with int64 indices and float32 values only)."""
    if not (adj.layout == torch.sparse_csr and adj.device.type == "cpu" and adj.dtype == torch.float32
            and adj.crow_indices().dtype == torch.int64 and adj.col_indices().dtype == torch.int64):
        return None
    lib = _load()
    if lib is None:
        return None
    n_rows, n_cols = adj.shape
    crow, col, val = adj.crow_indices().contiguous(), adj.col_indices().contiguous(), adj.values().contiguous()
    nnz = col.numel()
    t_crow = torch.empty(n_cols + 1, dtype=torch.int64)
    t_col = torch.empty(nnz, dtype=torch.int64)
    t_val = torch.empty(nnz, dtype=torch.float32)
    lib.graphrec_csr_transpose(crow.data_ptr(), col.data_ptr(), val.data_ptr(), n_rows, n_cols,
                               t_crow.data_ptr(), t_col.data_ptr(), t_val.data_ptr())
    return torch.sparse_csr_tensor(t_crow, t_col, t_val, (n_cols, n_rows), check_invariants=False)
