"""CSR x dense products and CSR transposes for CPU through graphrec's compiled kernel
(`graphrec/native/csr_spmm.c`; building, caching and fall-back in `graphrec.native`).

torch's CPU CSR product is the hot path of every graph model's training step; the C loop does
the same product about 2x faster at Clothing scale (see its header; measured 2.0-2.3 ms against
MKL's 4.2-4.7 ms, 2 threads). It takes CPU CSR tensors with int64 indices and float32
values and a float32 dense operand; anything else goes to torch. Each output row sums its entries
in storage order (with fused multiply-adds), so results are deterministic and independent of the
thread count, and agree with torch's to float rounding. ``backend()`` says which product a process
uses (`graphrec bench` and run records store it).
"""
from __future__ import annotations

import ctypes
from typing import Optional

import torch

from graphrec import native

# Below this many multiply-adds one thread does the product (starting threads costs ~30 us).
_ONE_THREAD_WORK = 1 << 17
_NAME = "csr_spmm"


def _load() -> Optional[ctypes.CDLL]:
    return native.load(_NAME)


def backend(device: Optional[torch.device] = None) -> str:
    """The product used for CSR graphs on ``device`` (default CPU): ``"graphrec-native"``, or
    ``"torch"`` (with the reason on CPU)."""
    if device is not None and torch.device(device).type != "cpu":
        return "torch"
    return "graphrec-native" if _load() is not None else f"torch ({native.why_not(_NAME)})"


def _cpu_csr_f32(adj: torch.Tensor) -> bool:
    """A CPU CSR tensor with int64 indices and float32 values: what the compiled code reads."""
    return (adj.layout == torch.sparse_csr and adj.device.type == "cpu" and adj.dtype == torch.float32
            and adj.crow_indices().dtype == torch.int64 and adj.col_indices().dtype == torch.int64)


def applicable(adj: torch.Tensor, x: torch.Tensor) -> bool:
    """Whether `csr_spmm` takes this pair (CPU, CSR int64 / float32, dense 2-D float32)."""
    return (_cpu_csr_f32(adj) and x.device.type == "cpu" and x.dtype == torch.float32 and x.dim() == 2
            and not x.is_sparse and adj.shape[1] == x.shape[0])


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
    threads = native.threads_for(col.numel() * d, _ONE_THREAD_WORK)
    lib.graphrec_csr_spmm(crow.data_ptr(), col.data_ptr(), val.data_ptr(), x.data_ptr(),
                          None if add is None else add.data_ptr(), out.data_ptr(), n, d, threads)
    return out


def csr_transpose(adj: torch.Tensor) -> Optional[torch.Tensor]:
    """``adj^T`` as CSR by one counting pass (each new row keeps its entries in old-row order, as a
    stable sort by column gives), or None when the compiled code is unavailable or does not apply
    (CPU CSR with int64 indices and float32 values only)."""
    if not _cpu_csr_f32(adj):
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
