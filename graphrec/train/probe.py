"""Peak-memory probes.

CPU: the process's resident-set high-water mark (``VmHWM`` in ``/proc/self/status``). Between
phases the mark is reset by writing ``5`` to ``/proc/self/clear_refs`` (Linux >= 4.0), so each
phase reports its own peak; where the reset is not permitted the mark is cumulative and the
record says so (``rss_reset: false``). CUDA: ``torch.cuda.max_memory_allocated`` reset per phase.
"""
from __future__ import annotations

import resource
import time
from contextlib import contextmanager
from typing import Dict, Iterator

import torch


def _status_kb(field: str) -> int | None:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def current_rss_mb() -> float:
    kb = _status_kb("VmRSS")
    return kb / 1024 if kb is not None else float("nan")


def peak_rss_mb() -> float:
    kb = _status_kb("VmHWM")
    if kb is None:
        kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return kb / 1024


def reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


class PhaseProbe:
    """Records seconds and peak memory per named phase: ``with probe.phase("train"): ...``."""

    def __init__(self, device: torch.device | str = "cpu"):
        self.device = torch.device(device)
        self.phases: Dict[str, dict] = {}
        self.baseline_rss_mb = current_rss_mb()

    @contextmanager
    def phase(self, name: str) -> Iterator[dict]:
        rec: dict = {}
        reset = reset_peak_rss()
        start_rss = current_rss_mb()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
        t0 = time.perf_counter()
        try:
            yield rec
        finally:
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
                rec["peak_cuda_mb"] = torch.cuda.max_memory_allocated(self.device) / 2**20
            rec["seconds"] = time.perf_counter() - t0
            rec["peak_rss_mb"] = peak_rss_mb()
            rec["start_rss_mb"] = start_rss
            rec["rss_reset"] = reset
            prev = self.phases.get(name)
            if prev:  # a phase entered several times (eval per epoch): keep totals and the max
                rec["seconds"] += prev["seconds"]
                rec["peak_rss_mb"] = max(rec["peak_rss_mb"], prev["peak_rss_mb"])
                if "peak_cuda_mb" in prev:
                    rec["peak_cuda_mb"] = max(rec.get("peak_cuda_mb", 0.0), prev["peak_cuda_mb"])
                rec["count"] = prev.get("count", 1) + 1
            self.phases[name] = rec

    def peak_mb(self) -> float:
        key = "peak_cuda_mb" if self.device.type == "cuda" else "peak_rss_mb"
        return max((p.get(key, 0.0) for p in self.phases.values()), default=0.0)
