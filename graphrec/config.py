"""Configuration: nested dicts from layered YAML files plus command-line overrides.

Order (later wins): ``configs/default.yaml`` -> ``configs/tasks/<the model's task>.yaml`` ->
the model's keyword defaults -> ``configs/models/<model>.yaml`` -> ``configs/datasets/<dataset>.yaml``
-> user file(s) -> ``--set key=value`` overrides.
A model file's top-level keys are the model's hyper-parameters (section ``model_params``);
its ``train``/``eval``/``data`` sections override those sections. A dataset file may hold
``train``/``eval``/``data`` and a ``models: {<model>: {...}}`` block of per-model settings.

Every user layer (config files, ``--set``) is checked before it is merged, so before any data is
loaded, and every failure is a `graphrec.errors.ConfigError` whose one line names the layer and
the key:

* unknown keys are errors (a typo must not silently fall back to a default); ``dataset_args`` is
  free-form (its keys belong to the dataset loader);
* a value must have its default's type: booleans only ``true``/``false`` (YAML 1.2: ``yes``,
  ``on`` and ``1`` are not booleans), integers for integer keys (a bool is not one), numbers for
  float keys (finite), strings for string keys, lists for list keys with their elements' type, a
  mapping for a section; null only where the default is null or `RULES` allows it. Model
  hyper-parameters are checked against the model yaml's defaults the same way (a null default or a
  null value is left to the model, which validates its own parameters);
* `RULES` adds ranges and choices to named keys (``train.batch_size >= 1``, ``eval.ks`` integers
  >= 1, ``device`` one of auto/cpu/cuda/cuda:N/mps, ...); keys it names that the defaults do not
  hold are ignored, keys the defaults add are type-checked by their default;
* after all layers: ``train.valid_metric`` is ``<metric>@<k>`` with a metric of ``eval.metrics`` or
  a next-item metric and ``k`` among the ``eval`` cut-offs (or ``loss``, which a pretraining
  stage's evaluator reports), and a CUDA/MPS ``device`` exists.

YAML is read with YAML 1.2 core scalars: ``1e-4`` is a float, ``010`` is ten, ``yes`` and
``2024-01-01`` are strings.
"""
from __future__ import annotations

import copy
import math
import os
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Callable, Iterable, Optional, Sequence

import yaml

from graphrec.errors import ConfigError, MissingFileError, UnknownKeyError
from graphrec.utils import content_hash

SECTIONS = ("data", "train", "eval")
FREE_FORM = ("dataset_args", "extra_features")  # mappings whose keys belong to someone else (a dataset
                                                 # loader; the user's own modality names)
NEXT_ITEM_METRICS = ("recall", "ndcg", "mrr", "hit")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")


# -- YAML 1.2 core scalars ------------------------------------------------------------------------
class _Loader(yaml.SafeLoader):
    """PyYAML's safe loader with YAML 1.2 core-schema scalars and duplicate keys refused."""


_Loader.yaml_implicit_resolvers = {}
_Loader.add_implicit_resolver("tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
                              list("tTfF"))
_Loader.add_implicit_resolver("tag:yaml.org,2002:int", re.compile(r"^(?:[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+)$"),
                              list("-+0123456789"))
_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^(?:[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)"
               r"|\.(?:nan|NaN|NAN))$"), list("-+0123456789."))
_Loader.add_implicit_resolver("tag:yaml.org,2002:null", re.compile(r"^(?:~|null|Null|NULL|)$"),
                              ["~", "n", "N", ""])


def _construct_bool(loader: yaml.SafeLoader, node: yaml.Node) -> bool:
    return str(loader.construct_scalar(node)).lower() == "true"


def _construct_int(loader: yaml.SafeLoader, node: yaml.Node) -> int:
    v = str(loader.construct_scalar(node))
    if v.startswith(("0o", "0x")):
        return int(v[2:], 8 if v[1] == "o" else 16)
    return int(v, 10)


def _construct_float(loader: yaml.SafeLoader, node: yaml.Node) -> float:
    v = str(loader.construct_scalar(node)).lower()
    if v.endswith(".inf"):
        return -math.inf if v.startswith("-") else math.inf
    if v == ".nan":
        return math.nan
    return float(v)


def _construct_mapping(loader: yaml.SafeLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: dict = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=True)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(None, None, "a mapping key that is not a scalar",
                                                    key_node.start_mark) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice", key_node.start_mark)
        seen[key] = True
    return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)


_Loader.add_constructor("tag:yaml.org,2002:bool", _construct_bool)
_Loader.add_constructor("tag:yaml.org,2002:int", _construct_int)
_Loader.add_constructor("tag:yaml.org,2002:float", _construct_float)
_Loader.add_constructor("tag:yaml.org,2002:timestamp", yaml.SafeLoader.construct_yaml_str)
_Loader.construct_mapping = _construct_mapping  # type: ignore[method-assign]


def _yaml_problem(e: yaml.YAMLError) -> str:
    mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
    problem = " ".join(str(getattr(e, "problem", None) or e).split())
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    return f"{where}{problem}"


def parse_yaml(text: str, where: str) -> Any:
    """YAML 1.2 core scalars (see the module docstring); errors are one-line `ConfigError`s."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as e:
        raise ConfigError(f"{where}: not valid YAML ({_yaml_problem(e)})") from None
    except (ValueError, OverflowError, RecursionError) as e:
        raise ConfigError(f"{where}: not valid YAML ({' '.join(str(e).split())[:200]})") from None


def _read_yaml(path: str) -> dict:
    from graphrec.data.textio import read_text
    from graphrec.errors import DataError

    if not isinstance(path, (str, os.PathLike)):
        raise ConfigError(f"config file names must be paths, got {path!r}")
    path = os.fspath(path)
    if not os.path.exists(path):
        raise MissingFileError(f"{path}: no such config file")
    try:
        text = read_text(path, what="config file")
    except DataError as e:
        if os.path.isfile(path) and os.path.getsize(path) == 0:
            return {}
        raise ConfigError(str(e)) from None
    obj = parse_yaml(text, path)
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(obj).__name__}")
    return obj


def _packaged(rel: str) -> Optional[str]:
    p = resources.files("graphrec").joinpath("configs", rel)
    return str(p) if p.is_file() else None


# -- value rules ----------------------------------------------------------------------------------
def _choices_of(module: str, name: str, extra: Sequence[str] = ()) -> Callable[[], Optional[tuple]]:
    """Choices read from the module that owns them, when it is asked (imports stay lazy)."""
    def get() -> Optional[tuple]:
        import importlib
        try:
            return tuple(extra) + tuple(getattr(importlib.import_module(module), name))
        except (ImportError, AttributeError):  # pragma: no cover - a renamed constant: type checks only
            return None
    return get


@dataclass(frozen=True)
class Rule:
    """Range and choices of one key; ``kind`` is used when the default is null."""

    kind: Optional[type] = None
    ge: Optional[float] = None
    gt: Optional[float] = None
    le: Optional[float] = None
    lt: Optional[float] = None
    nullable: bool = False
    choices: Optional[Callable[[], Optional[tuple]]] = None
    pattern: Optional[str] = None
    min_len: int = 0
    length: Optional[int] = None
    elem: Optional[type] = None  # list element type when the default list is empty or null
    repeats: bool = False  # a list whose values may repeat (per-hop counts); cut-offs and names may not


def _fixed(*values: str) -> Callable[[], tuple]:
    return lambda: values


RULES: dict[str, Rule] = {
    "model": Rule(str, pattern=_NAME.pattern),
    "dataset": Rule(str),
    "seed": Rule(int, ge=0),
    "device": Rule(str, pattern=r"^(auto|cpu|mps|cuda(:[0-9]+)?)$"),
    "threads": Rule(int, ge=1, nullable=True),
    "out": Rule(str, min_len=1),
    "data.split": Rule(str, choices=_choices_of("graphrec.data.split", "METHODS", ("auto",))),
    "data.ratios": Rule(list, ge=0, le=1, length=3, elem=float),
    "data.holdout": Rule(float, gt=0, lt=1),
    "data.repeated_pairs": Rule(str, choices=_fixed("error", "warn")),
    "data.split_seed": Rule(int, ge=0),
    "data.folds": Rule(int, ge=3),
    "data.fold": Rule(int, ge=0),
    "data.item_holdout": Rule(float, gt=0, lt=0.5),
    "data.cache_dir": Rule(str, nullable=True, min_len=1),
    "data.knn_index": Rule(str, choices=_choices_of("graphrec.graphs.knn", "INDEXES")),
    "data.knn_nprobe": Rule(int, ge=1, nullable=True),
    "train.epochs": Rule(int, ge=0),
    "train.batch_size": Rule(int, ge=1),
    "train.optimizer": Rule(str, choices=_choices_of("graphrec.train.trainer", "_OPTIMISERS")),
    "train.lr": Rule(float, ge=0),
    "train.weight_decay": Rule(float, ge=0),
    "train.betas": Rule(list, ge=0, lt=1, length=2, elem=float),
    "train.lr_decay": Rule(float, gt=0),
    "train.lr_decay_step": Rule(int, ge=1),
    "train.neg_sampling": Rule(str, choices=_fixed("uniform", "popularity")),  # samplers.UniformNegatives
    "train.neg_alpha": Rule(float, ge=0),
    "train.num_neg": Rule(int, ge=1),
    "train.sampler": Rule(str, choices=_fixed("exact", "neighbor")),
    "train.num_neighbors": Rule(list, nullable=True, ge=1, min_len=1, elem=int, repeats=True),
    "train.shard_tables": Rule(str, choices=_fixed("none", "row_wise", "table_wise")),  # graphrec.train.sharding
    "train.patience": Rule(int, ge=-1),
    "train.valid_metric": Rule(str, pattern=r"^([a-z_]+@[0-9]+|loss)$"),
    "train.eval_every": Rule(int, ge=1),
    "train.grad_clip": Rule(float, gt=0, nullable=True),
    "train.aux_lr": Rule(float, ge=0, nullable=True),
    "train.max_time_s": Rule(float, gt=0, nullable=True),
    "train.max_steps_per_epoch": Rule(int, ge=1, nullable=True),
    "train.amp": Rule(bool, choices=_choices_of("graphrec.nn.precision", "AMP_CHOICES")),  # or a named mode
    "train.init_from": Rule(str, nullable=True, min_len=1),
    "train.init_components": Rule(list, nullable=True, elem=str),
    "eval.ks": Rule(list, ge=1, min_len=1, elem=int),
    "eval.seq_ks": Rule(list, ge=1, min_len=1, elem=int),
    "eval.metrics": Rule(list, min_len=1, elem=str, choices=_choices_of("graphrec.eval.metrics", "METRICS")),
    "eval.user_chunk": Rule(int, ge=1),
    "eval.sampled_negatives": Rule(int, ge=1),
    "eval.sampled_cutoffs": Rule(list, ge=1, min_len=1, elem=int),
    "eval.protocol": Rule(str, choices=_choices_of("graphrec.train.tasks", "_TASKS", ("task",))),
    "eval.screen": Rule(str, choices=_choices_of("graphrec.eval.ranking", "SCREENS")),
}


def _type_name(t: Optional[type]) -> str:
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
            dict: "a mapping"}.get(t, "a value") if t is not None else "a value"


def _show(v: Any) -> str:
    r = repr(v)
    return r if len(r) <= 60 else r[:57] + "..."


_FLOAT_TEXT = re.compile(r"^[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?$")
_INT_TEXT = re.compile(r"^[-+]?[0-9]+$")


def _as_kind(v: Any, kind: type, what: str) -> Any:
    """``v`` as ``kind`` (bool/int/float/str) or a ConfigError. A string that is a plain decimal
    number is accepted for a number (Python callers pass argparse strings)."""
    if kind is bool:
        if isinstance(v, bool):
            return v
        raise ConfigError(f"{what} must be true or false, got {_show(v)}")
    if kind is int:
        if isinstance(v, str) and _INT_TEXT.match(v.strip()):
            return int(v.strip())
        if isinstance(v, bool) or not isinstance(v, int):
            raise ConfigError(f"{what} must be an integer, got {_show(v)}")
        return v
    if kind is float:
        if isinstance(v, str) and _FLOAT_TEXT.match(v.strip()):
            v = float(v.strip())
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ConfigError(f"{what} must be a number, got {_show(v)}")
        v = float(v)
        if not math.isfinite(v):
            raise ConfigError(f"{what} must be a finite number, got {v}")
        return v
    if kind is str:
        if not isinstance(v, str):
            raise ConfigError(f"{what} must be a string, got {_show(v)} (quote it to pass text)")
        return v
    return v


def _bounds(v: Any, rule: Rule, what: str) -> None:
    if not isinstance(v, (int, float)) or isinstance(v, bool):
        return
    for op, bound, ok in (("ge", rule.ge, lambda x, b: x >= b), ("gt", rule.gt, lambda x, b: x > b),
                          ("le", rule.le, lambda x, b: x <= b), ("lt", rule.lt, lambda x, b: x < b)):
        if bound is not None and not ok(v, bound):
            sym = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}[op]
            raise ConfigError(f"{what} must be {sym} {bound:g}, got {v!r}")


def _choice(v: Any, rule: Rule, what: str) -> None:
    if rule.choices is None or not isinstance(v, str):
        return
    opts = rule.choices()
    if opts is not None and v not in opts:
        raise ConfigError(f"{what} must be one of {', '.join(opts)}, got {_show(v)}")


def check_value(key: str, value: Any, default: Any, where: str = "config", free_null: bool = False) -> Any:
    """``value`` for ``key`` checked against ``default``'s type and `RULES` (module docstring);
    returns it coerced (ints to floats for float keys, tuples to lists). ``free_null``: null is
    always allowed (model hyper-parameters)."""
    rule = RULES.get(key, Rule())
    what = f"{where}: {_display(key)}"
    if value is None:
        if default is None or rule.nullable or free_null:
            return None
        raise ConfigError(f"{what} must be {_type_name(type(default))}, got null")
    kind: Optional[type] = type(default) if default is not None else rule.kind
    if kind is tuple:
        kind = list
    if isinstance(default, dict) or kind is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{what} is a section: set its keys ({_display(key)}.<name>=...), not {_show(value)}")
        return value
    if kind is list:
        if isinstance(value, tuple):
            value = list(value)
        if not isinstance(value, list):
            raise ConfigError(f"{what} must be a list such as {_show(default if default else [1, 2])}, got "
                              f"{_show(value)}")
        elem = rule.elem
        if isinstance(default, list) and default and len({type(x) for x in default}) == 1:
            elem = type(default[0])
            elem = float if elem is int and rule.elem is float else elem
        if rule.length is not None and len(value) != rule.length:
            raise ConfigError(f"{what} must hold {rule.length} values, got {len(value)}")
        if len(value) < rule.min_len:
            raise ConfigError(f"{what} must not be empty")
        out = []
        for j, x in enumerate(value):
            if isinstance(x, (list, dict)) or x is None:
                raise ConfigError(f"{what}[{j}] must be {_type_name(elem)}, got {_show(x)}")
            x = _as_kind(x, elem, f"{what}[{j}]") if elem in (bool, int, float, str) else x
            _bounds(x, rule, f"{what}[{j}]")
            _choice(x, rule, f"{what}[{j}]")
            out.append(x)
        if len(set(map(repr, out))) != len(out) and elem in (int, str) and not rule.repeats:
            dup = next(x for x in out if out.count(x) > 1)
            raise ConfigError(f"{what} lists {dup!r} twice")
        return out
    if kind is None:
        return value  # null default, no rule: the consumer checks it
    if kind is bool and isinstance(value, str) and rule.choices is not None and rule.choices():
        opts = rule.choices()  # a switch that also takes named modes (train.amp: true | false | bf16 | auto)
        if value not in opts:
            raise ConfigError(f"{what} must be true or false, got {_show(value)} (or one of {', '.join(opts)})")
        return value
    if kind in (bool, int, float, str):
        if isinstance(value, (list, dict)):
            raise ConfigError(f"{what} must be {_type_name(kind)}, got {_show(value)}")
        value = _as_kind(value, kind, what)
    _bounds(value, rule, what)
    _choice(value, rule, what)
    if rule.pattern is not None and isinstance(value, str) and not re.match(rule.pattern, value):
        raise ConfigError(f"{what}: {_show(value)} is not a valid value (expected {_PATTERN_HELP.get(key, rule.pattern)})")
    if isinstance(value, str) and len(value) < rule.min_len:
        raise ConfigError(f"{what} must not be empty")
    return value


_PATTERN_HELP = {"device": "auto, cpu, cuda, cuda:N or mps", "model": "a model name such as lightgcn",
                 "train.valid_metric": "<metric>@<k> such as recall@20, or loss (a pretraining stage's "
                                       "held-out loss, smaller is better)"}


def _quoted(key: str) -> str:
    """``'key'``, escaped when it holds line breaks or control characters (messages stay one line)."""
    return f"'{key}'" if key.isprintable() else repr(key)


def _display(key: str) -> str:
    """Model hyper-parameters are written ``model.<name>`` on the command line."""
    return "model." + key[len("model_params."):] if key.startswith("model_params.") else key


def check_layer(layer: Any, base: dict, where: str, path: str = "", free_null: bool = False) -> dict:
    """A user layer checked (and coerced) against ``base`` (the defaults merged so far): unknown
    keys, types and ranges (module docstring). Returns the checked layer."""
    if layer is None:
        return {}
    if not isinstance(layer, dict):
        raise ConfigError(f"{where}: {path.rstrip('.') or 'the top level'} must be a mapping, got {_show(layer)}")
    out = {}
    for k, v in layer.items():
        if not isinstance(k, str) or not k:
            raise ConfigError(f"{where}: config keys must be non-empty strings, got {_show(k)} under "
                              f"{path.rstrip('.') or 'the top level'}")
        key = f"{path}{k}"
        if k not in base:
            known = ", ".join(sorted(map(str, base))) or "none"
            raise UnknownKeyError(f"{where}: unknown config key {_quoted(_display(key))} (known here: {known})")
        d = base[k]
        if isinstance(d, dict):
            if v is None:
                v = {}
            if not isinstance(v, dict):
                raise ConfigError(f"{where}: {_display(key)} is a section: set its keys ({_display(key)}.<name>=...), "
                                  f"not {_show(v)}")
            if k in FREE_FORM:
                out[k] = v
            else:
                out[k] = check_layer(v, d, where, key + ".", free_null or key == "model_params")
        else:
            out[k] = check_value(key, v, d, where, free_null)
    return out


def _coerce(value: Any, like: Any) -> Any:
    """Packaged layers: YAML numbers written for a float key stay floats."""
    if isinstance(like, float) and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    return value


def merge(base: dict, over: dict, where: str, strict: bool = True, path: str = "") -> dict:
    """``over`` merged into a copy of ``base`` (sections recursively). ``strict``: keys unknown to
    ``base`` are errors. Values are not type-checked here (see `check_layer`)."""
    if not isinstance(over, dict):
        raise ConfigError(f"{where}: {path.rstrip('.') or 'the top level'} must be a mapping, got {_show(over)}")
    out = copy.deepcopy(base)
    for k, v in over.items():
        key = f"{path}{k}"
        if strict and k not in out:
            known = ", ".join(sorted(map(str, out)))
            raise UnknownKeyError(f"{where}: unknown config key {_quoted(key)} (known here: {known})")
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merge(out[k], v, where, strict and k not in FREE_FORM, key + ".")
        else:
            out[k] = _coerce(v, out.get(k))
    return out


def parse_set(items: Iterable[str]) -> dict:
    """``["train.lr=0.01", "model.n_layers=3"]`` -> nested dict (``model.`` = model_params). Values
    are YAML 1.2 scalars or flow collections (``eval.ks=[5,10]``); an empty value is null."""
    if isinstance(items, str):
        items = [items]
    out: dict = {}
    owner: dict = {}
    for item in items:
        if not isinstance(item, str) or "=" not in item:
            raise ConfigError(f"--set expects key=value, got {_show(item)}")
        key, raw = item.split("=", 1)
        key = key.strip()
        parts = key.split(".")
        if not key or not key.isprintable() or any(not p.strip() or p != p.strip() for p in parts):
            raise ConfigError(f"--set {_show(item)}: the key must be dotted names such as train.lr")
        value = parse_yaml(raw, f"--set {key}") if raw.strip() else None
        if parts[0] == "model" and len(parts) > 1:
            parts[0] = "model_params"
        node = out
        for j, p in enumerate(parts[:-1]):
            prefix = ".".join(parts[: j + 1])
            if p in node and not isinstance(node[p], dict):
                raise ConfigError(f"--set {key}: conflicts with --set {owner[prefix]} (a value, not a section)")
            node = node.setdefault(p, {})
            owner.setdefault(prefix, key)
        last = parts[-1]
        if isinstance(node.get(last), dict) and node[last] and not isinstance(value, dict):
            raise ConfigError(f"--set {key}: conflicts with --set {owner.get('.'.join(parts), key)} (a section)")
        node[last] = value
        owner[".".join(parts)] = key
    return out


def _model_layer(path: str) -> dict:
    return _model_layer_from_dict(_read_yaml(path))


def _name(value: Any, what: str, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{where}: {what} must be a non-empty name, got {_show(value)}")
    if what == "dataset" and value.lower().endswith((".yaml", ".yml")) and ":" not in value.split(os.sep, 1)[0]:
        # a dataset card (graphrec.data.card): a path, accepted only when the file exists
        if os.path.isfile(value):
            return value
        raise MissingFileError(f"{where}: dataset card {_show(value)}: no such file")
    head = value.split(":", 1)[0] if what == "dataset" else value
    if not _NAME.match(head) or ".." in head:
        raise ConfigError(f"{where}: {what} name {_show(value)} holds characters a name cannot have "
                          f"(letters, digits, '_', '.', '+', '-'; no path)")
    return value


def _model_defaults(name: str) -> tuple[str, dict]:
    """(task, hyper-parameter defaults) of a registered model: the keyword defaults of its
    ``__init__`` with plain values (a model file needs no config file of its own; one in
    ``configs/models/<name>.yaml`` overrides them). Unknown names raise here, before any data loads."""
    import inspect

    from graphrec.models import get_model

    cls = get_model(name)
    params = {}
    for p in inspect.signature(cls.__init__).parameters.values():
        if p.kind is p.KEYWORD_ONLY or (p.kind is p.POSITIONAL_OR_KEYWORD and p.name not in ("self", "ctx")):
            v = list(p.default) if isinstance(p.default, tuple) else p.default
            if v is not p.empty and (v is None or isinstance(v, (bool, int, float, str, list))):
                params[p.name] = v
    return cls.task, params


def load_config(model: Optional[str] = None, dataset: Optional[str] = None,
                files: Iterable[str] = (), overrides: Optional[dict] = None) -> dict:
    """Resolve the full configuration for a run (see module docstring for the layer order)."""
    cfg = _read_yaml(_packaged("default.yaml"))
    cfg["model_params"] = {}
    if isinstance(files, (str, os.PathLike)):
        files = [files]
    files = list(files or ())
    user_layers = [(_split_model_keys(_read_yaml(f), os.fspath(f)), os.fspath(f)) for f in files]
    overrides = overrides or {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"--set: overrides must be a mapping, got {_show(overrides)}")
    overrides = _split_model_keys(overrides, "--set")
    # model / dataset names may come from any later layer; resolve them first
    for layer, where in user_layers + [(overrides, "--set")]:
        if "model" in layer:
            cfg["model"] = _name(layer["model"], "model", where)
        if "dataset" in layer:
            cfg["dataset"] = _name(layer["dataset"], "dataset", where)
    cfg["model"] = _name(model, "model", "arguments") if model is not None else cfg["model"]
    cfg["dataset"] = _name(dataset, "dataset", "arguments") if dataset is not None else cfg["dataset"]

    task, params = _model_defaults(cfg["model"])
    tpath = _packaged(f"tasks/{task}.yaml")
    if tpath:
        cfg = merge(cfg, _read_yaml(tpath), tpath)
    cfg["model_params"] = params
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
        cfg = merge(cfg, check_layer(layer, cfg, f), f, strict=True)
    if overrides:
        cfg = merge(cfg, check_layer(overrides, cfg, "--set"), "--set", strict=True)
    cfg["model"] = model or cfg["model"]
    cfg["dataset"] = dataset or cfg["dataset"]
    check_consistency(cfg)
    return cfg


def check_consistency(cfg: dict, where: str = "config") -> None:
    """Checks across keys, after all layers: the valid metric is computed, the device exists."""
    train, ev = cfg.get("train") or {}, cfg.get("eval") or {}
    metric = train.get("valid_metric")
    if isinstance(metric, str) and metric != "loss" and isinstance(ev.get("metrics"), list):
        name, _, k = metric.partition("@")
        metrics = list(dict.fromkeys(list(ev["metrics"]) + list(NEXT_ITEM_METRICS)))
        ks = sorted({int(x) for key, v in ev.items() if (key == "ks" or key.endswith("_ks")) and isinstance(v, list)
                     for x in v if isinstance(x, int)})
        if name not in metrics:
            raise ConfigError(f"{where}: train.valid_metric {metric!r} names metric {name!r}, which is not computed "
                              f"(eval.metrics and next-item metrics: {', '.join(metrics)})")
        if not k.isdigit() or int(k) not in ks:
            raise ConfigError(f"{where}: train.valid_metric {metric!r} needs k={k} among the evaluated cut-offs "
                              f"(eval.ks: {ks}); add it to eval.ks")
    check_device(cfg.get("device", "auto"), where)


def check_device(device: Any, where: str = "config") -> None:
    """``device`` is auto/cpu/cuda/cuda:N/mps and, for CUDA or MPS, exists on this machine."""
    if device is None or device == "auto":
        return
    check_value("device", device, "auto", where)
    if device == "cpu":
        return
    import torch

    if device == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise ConfigError(f"{where}: device 'mps' does not exist on this machine (no Apple GPU available)")
        return
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    index = int(device.split(":", 1)[1]) if ":" in device else 0
    if index >= n:
        have = f"{n} CUDA device(s): cuda:0..cuda:{n - 1}" if n else "no CUDA device"
        raise ConfigError(f"{where}: device {device!r} does not exist on this machine ({have})")


def check_config(cfg: dict, where: str = "config") -> dict:
    """A whole resolved config (a run's saved ``config.yaml``) checked against the defaults of its
    model and dataset: unknown keys, types, ranges and the cross-key checks. Returns it coerced."""
    if not isinstance(cfg, dict):
        raise ConfigError(f"{where}: expected a mapping at the top level, got {_show(cfg)}")
    base = load_config(_name(cfg.get("model"), "model", where), _name(cfg.get("dataset"), "dataset", where))
    checked = check_layer(cfg, base, where)
    out = merge(base, checked, where)
    check_consistency(out, where)
    return out


def _model_layer_from_dict(d: dict) -> dict:
    d = dict(d)
    layer = {s: d.pop(s) for s in SECTIONS if s in d}
    layer["model_params"] = d
    return layer


def _split_model_keys(layer: dict, where: str = "config") -> dict:
    """A user layer may write model hyper-parameters under ``model_params:`` (or ``model:`` as a
    mapping)."""
    if not isinstance(layer, dict):
        raise ConfigError(f"{where}: expected a mapping, got {_show(layer)}")
    layer = dict(layer)
    if isinstance(layer.get("model"), dict):
        mp = layer.get("model_params") or {}
        if not isinstance(mp, dict):
            raise ConfigError(f"{where}: model_params must be a mapping, got {_show(mp)}")
        layer["model_params"] = {**mp, **layer.pop("model")}
    return layer


def config_hash(cfg: dict) -> str:
    keep = {k: v for k, v in cfg.items() if k not in ("out",)}
    return content_hash(keep)


def dump(cfg: dict, path: str) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        yaml.safe_dump(cfg, f, sort_keys=False)
    os.replace(tmp, path)
