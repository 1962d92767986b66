"""What a benchmark ran on: device name, library versions, threads, git commit, and whether the
device multiplies bfloat16 matrices natively (the one detection the evaluation screen and mixed
precision training share)."""
from __future__ import annotations

import os
import platform
import subprocess
from typing import Optional

import torch


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_name(device: torch.device) -> str:
    """GPU name on CUDA, CPU model name otherwise."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return cpu_name()


def native_bf16(device: torch.device) -> bool:
    """True where bfloat16 matrix products run natively, i.e. faster than float32: a CPU whose
    oneDNN has AVX512-BF16 or AMX tiles (measured here, AVX512-BF16, 2 threads: 2.3-3.3x on the
    23,033 x 4096 x 64 and 2,048 x 23,033 x 384 products), or a CUDA device of compute capability
    >= 8.0 (bf16 tensor cores). False elsewhere (an older CPU emulates bf16 GEMMs, slower than float32)."""
    if device.type == "cpu":
        try:
            return bool(torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())
        except AttributeError:  # an older torch without the probes
            return False
    if device.type == "cuda":
        try:
            return torch.cuda.is_available() and torch.cuda.get_device_capability(device)[0] >= 8
        except (RuntimeError, AssertionError):
            return False
    return False


def git_commit(path: Optional[str] = None) -> str:
    """``<sha>`` of the checkout holding graphrec, ``<sha>+dirty`` with uncommitted changes,
    ``unknown`` outside a git checkout."""
    path = path or os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True,
                             timeout=10).stdout.strip()
        if not sha:
            return "unknown"
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=path,
                               capture_output=True, text=True, timeout=10).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def environment(device: torch.device) -> dict:
    import torch_geometric

    from graphrec.graphs import native_spmm
    return {
        "sparse_product": native_spmm.backend(device),
        "device": str(device), "device_name": device_name(device),
        "torch": torch.__version__, "torch_geometric": torch_geometric.__version__,
        "python": platform.python_version(), "threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "git_commit": git_commit(), "host_cpu": cpu_name(),
        "native_bf16": native_bf16(device),
    }
