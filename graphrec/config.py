"""Configuration: nested dicts from layered YAML files plus command-line overrides.

Order (later wins): ``configs/default.yaml`` -> ``configs/models/<model>.yaml`` ->
``configs/datasets/<dataset>.yaml`` -> user file(s) -> ``--set key=value`` overrides.
A model file's top-level keys are the model's hyper-parameters (section ``model_params``);
its ``train``/``eval``/``data`` sections override those sections. A dataset file may hold
``train``/``eval``/``data`` and a ``models: {<model>: {...}}`` block of per-model settings.
Unknown keys are errors (a typo must not silently fall back to a default).
"""
from __future__ import annotations

import copy
import os
from importlib import resources
from typing import Any, Iterable, Optional

import yaml

from graphrec.utils import content_hash

SECTIONS = ("data", "train", "eval")
FREE_FORM = ("dataset_args",)  # mappings whose keys belong to someone else (a dataset loader)


def _read_yaml(path: str) -> dict:
    with open(path) as f:
        try:
            obj = yaml.safe_load(f)
        except yaml.YAMLError as e:
            raise ValueError(f"{path}: not valid YAML: {e}") from None
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a mapping at the top level, got {type(obj).__name__}")
    return obj


def _packaged(rel: str) -> Optional[str]:
    p = resources.files("graphrec").joinpath("configs", rel)
    return str(p) if p.is_file() else None


def _coerce(value: Any, like: Any) -> Any:
    """YAML reads '1e-4' as a string; coerce to the default's type where that is unambiguous."""
    if isinstance(like, bool) or like is None:
        return value
    if isinstance(like, float) and isinstance(value, (int, str)) and not isinstance(value, bool):
        try:
            return float(value)
        except ValueError:
            return value
    if isinstance(like, int) and isinstance(value, str):
        try:
            return int(value)
        except ValueError:
            return value
    return value


def merge(base: dict, over: dict, where: str, strict: bool = True, path: str = "") -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        key = f"{path}{k}"
        if strict and k not in out:
            known = ", ".join(sorted(map(str, out)))
            raise KeyError(f"{where}: unknown config key '{key}' (known here: {known})")
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v, where, strict and k not in FREE_FORM, key + ".")
        else:
            out[k] = _coerce(v, out.get(k))
    return out


def parse_set(items: Iterable[str]) -> dict:
    """``["train.lr=0.01", "model.n_layers=3"]`` -> nested dict (``model.`` = model_params)."""
    out: dict = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"--set expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        value = yaml.safe_load(raw) if raw.strip() else None
        parts = key.strip().split(".")
        if parts[0] == "model" and len(parts) > 1:
            parts[0] = "model_params"
        node = out
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return out


def _model_layer(path: str) -> dict:
    return _model_layer_from_dict(_read_yaml(path))


def load_config(model: Optional[str] = None, dataset: Optional[str] = None,
                files: Iterable[str] = (), overrides: Optional[dict] = None) -> dict:
    """Resolve the full configuration for a run (see module docstring for the layer order)."""
    cfg = _read_yaml(_packaged("default.yaml"))
    cfg["model_params"] = {}
    user_layers = [(_read_yaml(f), f) for f in files]
    overrides = overrides or {}
    # model / dataset names may come from any later layer; resolve them first
    for layer, _ in user_layers + [(overrides, "")]:
        cfg["model"] = layer.get("model", cfg["model"])
        cfg["dataset"] = layer.get("dataset", cfg["dataset"])
    cfg["model"] = model or cfg["model"]
    cfg["dataset"] = dataset or cfg["dataset"]

    mpath = _packaged(f"models/{cfg['model']}.yaml")
    if mpath:
        cfg = merge(cfg, _model_layer(mpath), mpath, strict=False)
    dname = str(cfg["dataset"]).split(":", 1)[0]
    dpath = _packaged(f"datasets/{dname}.yaml")
    if dpath:
        d = _read_yaml(dpath)
        per_model = (d.pop("models", None) or {}).get(cfg["model"], {})
        cfg = merge(cfg, d, dpath)
        if per_model:
            cfg = merge(cfg, _model_layer_from_dict(per_model), dpath, strict=False)
    for layer, f in user_layers:
        cfg = merge(cfg, _split_model_keys(layer), f, strict=True)
    if overrides:
        cfg = merge(cfg, _split_model_keys(overrides), "--set", strict=True)
    cfg["model"] = model or cfg["model"]
    cfg["dataset"] = dataset or cfg["dataset"]
    return cfg


def _model_layer_from_dict(d: dict) -> dict:
    d = dict(d)
    layer = {s: d.pop(s) for s in SECTIONS if s in d}
    layer["model_params"] = d
    return layer


def _split_model_keys(layer: dict) -> dict:
    """A user layer may write model hyper-parameters under ``model_params:`` (or ``model:`` as a
    mapping)."""
    layer = dict(layer)
    if isinstance(layer.get("model"), dict):
        layer["model_params"] = {**layer.get("model_params", {}), **layer.pop("model")}
    return layer


def config_hash(cfg: dict) -> str:
    keep = {k: v for k, v in cfg.items() if k not in ("out",)}
    return content_hash(keep)


def dump(cfg: dict, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.replace(tmp, path)
