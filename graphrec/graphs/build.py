"""`build(spec, train, features, cache)`: the one place models declare the graphs they need.

Spec kinds (every other key is an option of the named builder, with its defaults):

- ``{"kind": "bipartite", "norm": "sym"}`` -> `bipartite_adjacency`
- ``{"kind": "interaction", "norm": "none"}`` -> `interaction_matrix`
- ``{"kind": "knn", "modality": "image", "k": 10, "norm": "sym"}`` -> `knn_graph`
- ``{"kind": "knn_mix", "modalities": {"image": 0.1, "text": 0.9}, "k": 10}`` -> FREEDOM's frozen
  graph: one `knn_graph` per modality (same options) mixed by `mix_graphs`
- ``{"kind": "cointeraction", "side": "item", "topk": 10, ...}`` -> `cointeraction_graph`

The cache key holds the training pairs' hash, the index ranges, the features' hash of every
modality used and the spec with its defaults filled in, so any change of input or parameter
gives a new entry.
"""
from __future__ import annotations

import inspect
from typing import Any, Callable, Optional

from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import Interactions
from graphrec.graphs.bipartite import bipartite_adjacency, interaction_matrix, train_hash
from graphrec.graphs.cache import GraphCache
from graphrec.graphs.cointeraction import cointeraction_graph
from graphrec.graphs.knn import knn_graph, mix_graphs
from graphrec.graphs.sparse import SparseGraph

GRAPH_VERSION = 1  # bump when a builder's output changes for the same inputs
KINDS = ("bipartite", "interaction", "knn", "knn_mix", "cointeraction")
# options that change speed/placement but never the graph (kept out of the cache key)
_NOT_IN_KEY = {"backend", "chunk_size", "device", "recall_rows"}


def _options(fn: Callable, spec: dict, skip: tuple[str, ...]) -> dict:
    """The builder's keyword options with the spec's values over the defaults; unknown keys raise."""
    sig = inspect.signature(fn)
    known = {n: p.default for n, p in sig.parameters.items() if n not in skip and p.default is not inspect._empty}
    extra = set(spec) - set(known) - {"kind", "modality", "modalities"}
    if extra:
        raise ValueError(f"graph spec {spec}: unknown option(s) {sorted(extra)} for kind "
                         f"{spec['kind']!r}; known: {sorted(known)}")
    return {n: spec.get(n, d) for n, d in known.items()}


def _features(features: Optional[ItemFeatures], modality: Any, spec: dict, train: Interactions):
    if not isinstance(modality, str):
        raise ValueError(f"graph spec {spec}: 'modality' must name one modality")
    if features is None:
        raise ValueError(f"graph spec {spec}: needs item features for modality {modality!r}, none given")
    if modality not in features:
        raise ValueError(f"graph spec {spec}: modality {modality!r} missing (have {features.modalities})")
    x = features[modality]
    if x.shape[0] != train.n_items:
        raise ValueError(f"graph spec {spec}: modality {modality!r} has {x.shape[0]} rows but the "
                         f"interactions have {train.n_items} items")
    return x


def build(spec: dict, train: Interactions, features: Optional[ItemFeatures] = None,
          cache: Optional[GraphCache] = None) -> SparseGraph:
    """Build (or load from ``cache``) the graph described by ``spec``; see the module doc."""
    if not isinstance(spec, dict) or "kind" not in spec:
        raise ValueError(f"graph spec {spec!r} must be a dict with a 'kind' (one of {KINDS})")
    kind = spec["kind"]
    key: dict[str, Any] = {"kind": kind, "version": GRAPH_VERSION, "train": train_hash(train)}
    if kind == "bipartite":
        opts = _options(bipartite_adjacency, spec, ("train",))
        builder = lambda: bipartite_adjacency(train, **opts)  # noqa: E731
    elif kind == "interaction":
        opts = _options(interaction_matrix, spec, ("train",))
        builder = lambda: interaction_matrix(train, **opts)  # noqa: E731
    elif kind == "cointeraction":
        opts = _options(cointeraction_graph, spec, ("train",))
        builder = lambda: cointeraction_graph(train, **opts)  # noqa: E731
    elif kind == "knn":
        if "modality" not in spec:
            raise ValueError(f"graph spec {spec}: kind 'knn' needs 'modality'")
        x = _features(features, spec["modality"], spec, train)
        opts = _options(knn_graph, spec, ("features",))
        key["features"] = {spec["modality"]: features.hash(spec["modality"])}
        builder = lambda: knn_graph(x, **opts)  # noqa: E731
    elif kind == "knn_mix":
        mods = spec.get("modalities")
        if not isinstance(mods, dict) or not mods:
            raise ValueError(f"graph spec {spec}: kind 'knn_mix' needs 'modalities': {{name: weight}}")
        xs = {m: _features(features, m, spec, train) for m in mods}
        opts = _options(knn_graph, spec, ("features",))
        key["features"] = {m: features.hash(m) for m in mods}
        key["modalities"] = {m: float(w) for m, w in mods.items()}

        def builder() -> SparseGraph:
            parts = {m: knn_graph(xs[m], **opts) for m in mods}
            g = mix_graphs(parts, mods)
            g.meta["build_s"] = sum(p.meta["build_s"] for p in parts.values()) + g.meta["build_s"]
            g.meta["params"].update({n: v for n, v in opts.items() if n not in _NOT_IN_KEY})
            recall = {m: p.meta["recall"] for m, p in parts.items() if "recall" in p.meta}
            if recall:  # approximate parts: the mix is as good as its worst part
                g.meta.update(recall=min(recall.values()), recall_parts=recall)
                g.meta["params"]["index"] = next(p.meta["params"]["index"] for p in parts.values())
            return g
    else:
        raise ValueError(f"graph spec {spec}: unknown kind {kind!r}; expected one of {KINDS}")
    key["options"] = {n: v for n, v in opts.items() if n not in _NOT_IN_KEY}
    if "modality" in spec:
        key["modality"] = spec["modality"]
    if cache is None:
        g = builder()
    else:
        g = cache.get_or_build(key, builder)
    g.meta["spec"] = dict(spec)
    return g
