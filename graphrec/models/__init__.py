"""Model registry: ``get_model(name)`` -> Recommender class; defaults in configs/models/<name>.yaml.

A model registers itself with ``@register_model("name")`` in its own module: every module of this
package (and every ``graphrec.models`` entry point of an installed plugin) is imported the first time
a name is looked up that is not registered yet, so adding a model edits no central list.
"""
from __future__ import annotations

import importlib
import pkgutil
from importlib import metadata
from typing import Dict, Type

from graphrec.models.base import ModelContext, Recommender

_REGISTRY: Dict[str, Type[Recommender]] = {}
_UNLOADABLE: Dict[str, str] = {}  # module -> why it could not be imported (a missing optional extra)
_discovered = False


def register_model(name: str):
    def deco(cls: Type[Recommender]) -> Type[Recommender]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"model name {name!r} is registered twice ({_REGISTRY[name].__module__} "
                             f"and {cls.__module__})")
        _REGISTRY[name] = cls
        return cls
    return deco


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for info in pkgutil.iter_modules(__path__):
        if info.name.startswith("_") or info.name == "base":
            continue
        _import(f"{__name__}.{info.name}")
    for ep in metadata.entry_points(group="graphrec.models"):
        _import(ep.value.split(":")[0])


def _import(module: str) -> None:
    try:
        importlib.import_module(module)
    except ImportError as e:  # an optional dependency of that model: say so when it is asked for
        _UNLOADABLE[module] = str(e)


def get_model(name: str) -> Type[Recommender]:
    if name not in _REGISTRY:
        _discover()
    if name not in _REGISTRY:
        from graphrec.errors import ConfigError
        hint = f" (not importable: {'; '.join(f'{m}: {e}' for m, e in _UNLOADABLE.items())})" if _UNLOADABLE else ""
        raise ConfigError(f"unknown model {name!r}; known models: {', '.join(list_models())}{hint}")
    return _REGISTRY[name]


def list_models() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


__all__ = ["ModelContext", "Recommender", "register_model", "get_model", "list_models"]
