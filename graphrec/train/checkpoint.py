"""Checkpoints: atomic writes; model components stored separately so any one loads alone."""
from __future__ import annotations

import os
from typing import Any, Iterable, Optional

import torch
from torch import nn

from graphrec.utils import log, torch_save_atomic


def components(model: nn.Module) -> dict[str, dict[str, torch.Tensor]]:
    """State dict split by top-level submodule (``""`` holds the model's own params/buffers)."""
    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, value in model.state_dict().items():
        head, _, rest = key.partition(".")
        comp, name = (head, rest) if rest else ("", head)
        out.setdefault(comp, {})[name] = value
    return out


def save(path: str, model: nn.Module, **extra: Any) -> None:
    torch_save_atomic({"components": components(model), **extra}, path)


def load_file(path: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:  # truncated or foreign file: say which
        raise ValueError(f"{path}: cannot read checkpoint ({e})") from None


def load_into(model: nn.Module, ckpt: dict, only: Optional[Iterable[str]] = None, strict: bool = True) -> list[str]:
    """Load components into ``model``; ``only`` restricts to some components (pretrain -> fine-tune).
    Returns the component names loaded."""
    comps = ckpt["components"]
    names = list(only) if only is not None else list(comps)
    missing = [n for n in names if n not in comps]
    if missing:
        raise KeyError(f"checkpoint has no component(s) {missing}; it has {sorted(comps)}")
    state = {}
    for comp in names:
        for k, v in comps[comp].items():
            state[f"{comp}.{k}" if comp else k] = v
    if only is None and strict:
        model.load_state_dict(state)
    else:
        res = model.load_state_dict(state, strict=False)
        if res.unexpected_keys:
            raise KeyError(f"checkpoint keys not in the model: {res.unexpected_keys[:5]}")
        log.info("loaded components %s (%d tensors)", names, len(state))
    return names


def resolve_init(path: str) -> str:
    """A run directory means its best checkpoint."""
    if os.path.isdir(path):
        for name in ("best.pt", "last.pt"):
            p = os.path.join(path, name)
            if os.path.exists(p):
                return p
        raise FileNotFoundError(f"{path}: no best.pt or last.pt in this run directory")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: checkpoint not found")
    return path
