r"""Component-wise transfer of a pre-trained PMMRec (Li et al., ICDE 2024, Section IV-D, Table V).

A pre-training run's model is saved as a directory of components (`save_components`):
``manifest.json`` (format, width, max length, modalities, each component's configuration, the
objective, the sources) and one safe checkpoint per component (``text_encoder.pt``,
``vision_encoder.pt``, ``fusion.pt``, ``user_encoder.pt``, ``nid_head.pt``), keys relative to
the component. No tensor's shape depends on a catalogue, so every component loads into a model
of any target catalogue.

`load_components` loads the components a transfer setting names, each strictly (every key present,
every shape equal; a user encoder's position table may be cut to a shorter ``max_len``), and
returns a `TransferReport` naming what was loaded, what got the public backbone weights and what
stayed at fresh initialisation. The settings (``model.transfer``):

=========  ============  ==============  ======  ============  =============================
setting    text_encoder  vision_encoder  fusion  user_encoder  item vector
=========  ============  ==============  ======  ============  =============================
full       load          load            load    load          :math:`e^{cls}`
item       load          load            load    fresh         :math:`e^{cls}`
user       public        public          fresh   load          :math:`e^{cls}`
text       load          (not built)     --      load          :math:`t^{cls}`
vision     --            load            --      load          :math:`v^{cls}`
none       public        public          fresh   fresh         as the model's modalities
=========  ============  ==============  ======  ============  =============================

"public" means the cached-hidden back-end's top blocks start from the public backbone
(all-MiniLM-L6-v2) weights; the other back-ends have none and start fresh. The official code
loads the user encoder of its "user encoder only" setting with ``strict=False`` under mismatched
key prefixes, so it silently loads nothing; here a component either loads completely or the call
fails naming the file and the key.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Callable, Dict, Iterable, Optional

import torch
from torch import nn

from graphrec.errors import ConfigError, DataError, MissingFileError
from graphrec.train import checkpoint
from graphrec.utils import atomic_write_bytes, log, torch_save_atomic

FORMAT = 1
COMPONENTS = ("text_encoder", "vision_encoder", "fusion", "user_encoder", "nid_head")
SETTINGS: Dict[str, tuple] = {
    "full": ("text_encoder", "vision_encoder", "fusion", "user_encoder"),
    "item": ("text_encoder", "vision_encoder", "fusion"),
    "user": ("user_encoder",),
    "text": ("text_encoder", "user_encoder"),
    "vision": ("vision_encoder", "user_encoder"),
    "none": (),
}
#: configuration keys that must agree between a stored component and the model it loads into
_STRUCTURAL_SKIP = {"max_len"}


@dataclass
class TransferReport:
    """What `load_components` did: component names ``loaded`` from the directory, set to the
    ``public`` backbone weights, or left ``fresh`` (random init); ``absent``: not built."""

    setting: str
    loaded: list = field(default_factory=list)
    public: list = field(default_factory=list)
    fresh: list = field(default_factory=list)
    absent: list = field(default_factory=list)
    source: str = ""

    def summary(self) -> str:
        return (f"transfer {self.setting!r} from {self.source or '-'}: loaded {self.loaded or 'nothing'}; "
                f"public backbone init {self.public or 'none'}; fresh init {self.fresh or 'none'}"
                + (f"; not built {self.absent}" if self.absent else ""))

    def as_dict(self) -> dict:
        return {"setting": self.setting, "loaded": self.loaded, "public": self.public, "fresh": self.fresh,
                "absent": self.absent, "source": self.source}


def save_components(model: nn.Module, directory: str, sources: Iterable[str] = (), extra: Optional[dict] = None) -> str:
    """Write ``model``'s components and ``manifest.json`` under ``directory``; returns its path."""
    os.makedirs(directory, exist_ok=True)
    manifest = {"format": FORMAT, **model.manifest(), "sources": list(sources), "files": {}, **(extra or {})}
    for name in COMPONENTS:
        module = getattr(model, name, None)
        if module is None:
            continue
        path = os.path.join(directory, f"{name}.pt")
        state = {k: v.detach().cpu() for k, v in module.state_dict().items()}
        torch_save_atomic(checkpoint.plain({"components": {name: state}, "format": FORMAT}), path)
        manifest["files"][name] = f"{name}.pt"
    atomic_write_bytes(os.path.join(directory, "manifest.json"), json.dumps(manifest, indent=1).encode())
    log.info("saved components %s to %s", sorted(manifest["files"]), directory)
    return directory


def is_components_dir(path: str) -> bool:
    """Whether ``path`` is a directory of components (`save_components`, ``graphrec export``)."""
    return os.path.isdir(path) and os.path.exists(os.path.join(path, "manifest.json"))


def read_manifest(directory: str) -> dict:
    path = os.path.join(directory, "manifest.json")
    if not os.path.isfile(path):
        raise MissingFileError(f"{directory}: no manifest.json (not a directory of transfer components)")
    try:
        with open(path) as f:
            m = json.load(f)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read ({e})") from None
    if not isinstance(m, dict) or m.get("format") != FORMAT or not isinstance(m.get("files"), dict):
        raise DataError(f"{path}: not a format-{FORMAT} component manifest")
    return m


def _check_config(name: str, stored: dict, now: dict, where: str) -> None:
    for k in sorted(set(stored) | set(now)):
        if k in _STRUCTURAL_SKIP:
            continue
        if stored.get(k) != now.get(k):
            raise DataError(f"{where}: component {name!r} was saved with {k}={stored.get(k)!r}, the model has "
                            f"{k}={now.get(k)!r}")


def backbone_top_state(backbone: str, top_layers: int) -> Dict[str, torch.Tensor]:
    """The public weights of a backbone's top ``top_layers`` blocks as the state of a ``ModuleList``
    of `graphrec.nn.bert_layer.BertLayer` (keys ``"0.query.weight"``, ...)."""
    from graphrec.data.encode.hidden import top_layer_tensors
    from graphrec.nn.bert_layer import hf_bert_layer_state
    state, first = top_layer_tensors(None if backbone == "all-MiniLM-L6-v2" else backbone, top_layers)
    return {f"{j}.{k}": v for j in range(int(top_layers))
            for k, v in hf_bert_layer_state(state, f"encoder.layer.{first + j}.").items()}


def public_init(model: nn.Module, names: Iterable[str],
                backbone_state: Optional[Callable[[str, int], Dict[str, torch.Tensor]]] = None) -> list[str]:
    """Give the cached-hidden encoders among ``names`` the public backbone weights of their top
    blocks (`backbone_top_state`, or ``backbone_state(backbone, k)``);
    returns the names initialised this way. Other back-ends have no public weights."""
    from graphrec.nn.item_encoders import CachedHiddenEncoder
    done = []
    for name in names:
        enc = getattr(model, name, None)
        if not isinstance(enc, CachedHiddenEncoder):
            continue
        if backbone_state is None:
            backbone_state = backbone_top_state
        state = backbone_state(enc.backbone, enc.top_layers)
        enc.blocks.load_state_dict(state, strict=True)
        done.append(name)
    return done


def load_components(model: nn.Module, directory: Optional[str], setting: Optional[str] = None,
                    components: Optional[Iterable[str]] = None,
                    backbone_state: Optional[Callable[[str, int], Dict[str, torch.Tensor]]] = None,
                    public: bool = True) -> TransferReport:
    """Load the components of ``setting`` (default: ``model.transfer``) or the explicit
    ``components`` from ``directory`` into ``model``, strictly per component (module docstring);
    then, when ``public``, the public backbone weights into the encoders not loaded. ``directory``
    may be None only for a setting that loads nothing."""
    setting = setting or getattr(model, "transfer", "none")
    if setting not in SETTINGS:
        raise ConfigError(f"unknown transfer setting {setting!r}; known: {', '.join(SETTINGS)}")
    names = list(components) if components is not None else list(SETTINGS[setting])
    report = TransferReport(setting, source=directory or "")
    if names:
        if directory is None:
            raise ConfigError(f"transfer setting {setting!r} loads {names}: it needs a components directory")
        man = read_manifest(directory)
        where = os.path.join(directory, "manifest.json")
        if int(man.get("dim", -1)) != int(model.dim):
            raise DataError(f"{where}: components of width {man.get('dim')} cannot load into a model of width "
                            f"{model.dim}")
        for name in names:
            module = getattr(model, name, None)
            if module is None:
                raise ConfigError(f"transfer setting {setting!r} loads {name!r}, which this model does not build "
                                  f"(modalities {getattr(model, 'modalities', '?')})")
            if name not in man["files"]:
                raise DataError(f"{where}: no component {name!r} (it has {sorted(man['files'])})")
            if name in man.get("components", {}) and hasattr(module, "config"):
                _check_config(name, man["components"][name], module.config(), where)
            path = os.path.join(directory, man["files"][name])
            state = checkpoint.load_file(path)["components"].get(name)
            if state is None:
                raise DataError(f"{path}: holds no component {name!r}")
            if name == "user_encoder" and "pos.weight" in state:
                have, want = state["pos.weight"].shape[0], module.pos.weight.shape[0]
                if want > have:
                    raise DataError(f"{path}: position table of {have} rows, the model needs max_len={want}")
                state = {**state, "pos.weight": state["pos.weight"][:want]}
            try:
                module.load_state_dict(state, strict=True)
            except RuntimeError as e:
                raise DataError(f"{path} does not fit component {name!r}: {' '.join(str(e).split())[:300]}") from None
            report.loaded.append(name)
    built = [n for n in COMPONENTS if getattr(model, n, None) is not None]
    report.absent = [n for n in COMPONENTS if n not in built]
    rest = [n for n in built if n not in report.loaded]
    if public:
        report.public = public_init(model, rest, backbone_state)
    report.fresh = [n for n in rest if n not in report.public]
    log.info("%s", report.summary())
    return report
