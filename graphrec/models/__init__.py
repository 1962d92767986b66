"""Model registry: ``get_model(name)`` -> Recommender class; defaults in configs/models/<name>.yaml."""
from __future__ import annotations

import importlib
from typing import Dict, Type

from graphrec.models.base import ModelContext, Recommender

_REGISTRY: Dict[str, Type[Recommender]] = {}
# name -> module that defines it (imported lazily so optional models cost nothing at start-up)
_MODULES = {
    "pop": "graphrec.models.pop",
    "mf": "graphrec.models.mf",
    "lightgcn": "graphrec.models.lightgcn",
    "mixgcf": "graphrec.models.mixgcf",
    "vbpr": "graphrec.models.vbpr",
    "freedom": "graphrec.models.freedom",
    "sand": "graphrec.models.sand",
    "sand-a": "graphrec.models.sand",
    "sand-b": "graphrec.models.sand",
    "sand-c": "graphrec.models.sand",
    "sand-d": "graphrec.models.sand",
    "vbpr+sand": "graphrec.models.sand_plugin",
    "freedom+sand": "graphrec.models.sand_plugin",
}


def register_model(name: str):
    def deco(cls: Type[Recommender]) -> Type[Recommender]:
        _REGISTRY[name] = cls
        return cls
    return deco


def get_model(name: str) -> Type[Recommender]:
    if name not in _REGISTRY and name in _MODULES:
        try:
            importlib.import_module(_MODULES[name])
        except ModuleNotFoundError as e:
            if e.name != _MODULES[name]:
                raise
    if name not in _REGISTRY:
        raise KeyError(f"unknown model '{name}'; known models: {', '.join(list_models())}")
    return _REGISTRY[name]


def list_models() -> list[str]:
    avail = []
    for name, mod in _MODULES.items():
        if name in _REGISTRY or importlib.util.find_spec(mod) is not None:
            avail.append(name)
    return avail + sorted(n for n in _REGISTRY if n not in _MODULES)


__all__ = ["ModelContext", "Recommender", "register_model", "get_model", "list_models"]
