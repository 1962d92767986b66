"""What a benchmark ran on: device name, library versions, threads, git commit."""
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
    }
