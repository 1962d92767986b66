"""Shared pytest fixtures (keep small and generic)."""
from __future__ import annotations

import os
from pathlib import Path

# Tests run in parallel workers (pytest-xdist, one per core): each worker and every subprocess it
# starts uses one intra-op thread, so workers never oversubscribe the cores (OpenMP threads that
# spin on a busy core make small ops ~100x slower).
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture
def shared_data() -> Path:
    """``../shared/data`` next to the repository (licensed data, never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data directory {SHARED_DATA} is absent")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_small():
    """A small synthetic dataset (~300 users, 120 items) for fast tests; do not mutate it."""
    from graphrec.datasets.synthetic import generate

    return generate(300, 120, 6000, n_clusters=6, dims={"image": 32, "text": 16}, seed=3)



def run_on_kernel_and_torch(request, monkeypatch, module, attr: str) -> str:
    """Body of a fixture parametrised ``["native", "torch"]``: "torch" replaces ``module.attr`` (the
    compiled kernel's loader) by one that finds none, "native" skips where no kernel was built."""
    if request.param == "torch":
        monkeypatch.setattr(module, attr, lambda: None)
    elif getattr(module, attr)() is None:
        pytest.skip(f"no compiled {module.__name__}.{attr} here")
    return request.param
