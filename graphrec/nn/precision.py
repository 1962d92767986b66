r"""Mixed precision: bfloat16 products in the regions of a model where they pay, float32 elsewhere.

``train.amp`` (`resolve`): ``false``/``float32`` trains in float32; ``true``/``bf16`` in bfloat16
regions on any CPU or CUDA device (on a device without native bf16 products it is emulated and
slower: a warning says so); ``auto`` picks bf16 where the device multiplies bf16 natively
(`graphrec.environment.native_bf16`: AVX512-BF16/AMX CPUs, CUDA capability >= 8), else float32.

The trainer enters :func:`policy` around each step; a model marks the regions whose matrix
products should run in bfloat16 with :func:`region` (projections of the content features,
contrastive heads, attention and feed-forward blocks). Inside a region ``torch.autocast`` runs
``mm``/``addmm``/``linear``/``matmul``/``bmm`` with bf16 inputs and float32 accumulation (bf16
outputs); everything outside a region, and everything when no policy is active (evaluation,
float32 runs), stays float32: graph propagation (the compiled float32 CSR kernels), reductions,
losses (the fused losses take bf16 inputs and accumulate in float32), parameters and optimiser
state (autocast casts a float32 parameter for the product; its gradient is float32).

A bf16 product of d-long rows has relative error about :math:`2^{-8}` per input rounding
(:math:`|\tilde s - s| \le (2^{-7} + 2^{-8})\|u\|\|v\|` roughly, `graphrec.eval.screened_topk`),
far below the noise of a stochastic gradient step; ``benchmarks/accuracy_bf16.py`` checks that test
accuracy matches float32 within the seed spread.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, Dict, Iterator, Optional

import torch

from graphrec.environment import native_bf16
from graphrec.utils import log

#: values of ``train.amp`` besides the booleans false (float32) and true (bf16)
AMP_CHOICES = ("float32", "bf16", "auto")

_active: Optional[tuple[str, torch.dtype]] = None  # (device type, dtype) of the step being run


def resolve(setting: Any, device: torch.device) -> Optional[torch.dtype]:
    """The reduced precision ``train.amp`` asks for on ``device`` (None = float32)."""
    if setting is None or setting is False or setting == "float32":
        return None
    if setting is True or setting == "bf16":
        if device.type not in ("cpu", "cuda"):
            log.warning("train.amp=bf16: no bfloat16 autocast on %s; training in float32", device)
            return None
        if not native_bf16(device):
            log.warning("train.amp=bf16: %s has no native bfloat16 products, they are emulated (slower than "
                        "float32); train.amp=auto would pick float32 here", device)
        return torch.bfloat16
    if setting == "auto":
        return torch.bfloat16 if device.type in ("cpu", "cuda") and native_bf16(device) else None
    raise ValueError(f"train.amp must be false, true, {', '.join(AMP_CHOICES)}; got {setting!r}")


def precision_name(dtype: Optional[torch.dtype]) -> str:
    """``"bf16"`` or ``"float32"``: what run and bench records call the precision used."""
    return "bf16" if dtype == torch.bfloat16 else "float32"


@contextmanager
def policy(dtype: Optional[torch.dtype], device_type: str) -> Iterator[None]:
    """Within this block, :func:`region` runs in ``dtype`` (None: regions stay float32)."""
    global _active
    saved = _active
    _active = (device_type, dtype) if dtype is not None else None
    try:
        yield
    finally:
        _active = saved


def active() -> Optional[torch.dtype]:
    """The reduced dtype of the current step, None when training in float32 (or not training)."""
    return _active[1] if _active is not None else None


def region():
    """Context of a region whose matrix products pay in reduced precision: ``torch.autocast``
    under an active :func:`policy`, else nothing."""
    if _active is None:
        return nullcontext()
    return torch.autocast(_active[0], dtype=_active[1])


def full_precision():
    """A float32 island inside a region (reductions, normalisations, losses)."""
    if _active is None:
        return nullcontext()
    return torch.autocast(_active[0], enabled=False)


def lowered(owner: torch.nn.Module, name: str, x: torch.Tensor) -> torch.Tensor:
    """``x`` (a constant buffer such as a content-feature table, or CLUB's codes reused by its 50
    steps) in the active reduced dtype, cast once and kept on ``owner`` under ``name`` until another
    tensor (or an in-place change) comes (autocast would cast it again in every product: at
    Clothing scale a 23,033 x 4096 table is 377 MB of float32 read per cast). ``x`` itself when no
    policy is active."""
    dtype = active()
    if dtype is None or x.dtype == dtype:
        return x
    cache: Dict[str, tuple] = owner.__dict__.setdefault("_lowered_cache", {})
    hit = cache.get(name)
    # the cache holds ``x`` itself: identity and version say it is unchanged (a freed tensor's
    # address may be reused by the next one, so an address would not)
    if hit is None or hit[0] is not x or hit[1] != x._version or hit[2].dtype != dtype:
        hit = (x, x._version, x.detach().to(dtype))
        cache[name] = hit
    return hit[2]
