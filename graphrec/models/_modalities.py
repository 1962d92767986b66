"""Helpers shared by the multimodal models: feature lookup and kNN-mixture weights."""
from __future__ import annotations

from typing import Any, Dict, Sequence

import torch

from graphrec.models.base import ModelContext

#: pseudo-modality: a learnable item-ID table used where a dataset has a single content modality
ID_MODALITY = "id"


def content_modalities(modalities: Sequence[str]) -> list[str]:
    return [m for m in modalities if m != ID_MODALITY]


def mixture_weights(modalities: Sequence[str], image_weight: float) -> Dict[str, float]:
    """FREEDOM/SAND's fixed mixture S = w S^image + (1-w) S^text, generalised: 'image' gets w and
    the other content modalities share 1-w equally; a single modality gets weight 1."""
    mods = content_modalities(modalities)
    if not mods:
        raise ValueError("at least one content modality (e.g. 'text' or 'image') is needed for the kNN item graph")
    if len(mods) == 1:
        return {mods[0]: 1.0}
    if "image" not in mods:
        return {m: 1.0 / len(mods) for m in mods}
    rest = [m for m in mods if m != "image"]
    return {"image": float(image_weight), **{m: (1.0 - float(image_weight)) / len(rest) for m in rest}}


def knn_spec(modalities: Sequence[str], k: int, image_weight: float) -> Dict[str, Any]:
    return {"kind": "knn_mix", "modalities": mixture_weights(modalities, image_weight), "k": int(k)}


def feature_matrix(ctx: ModelContext, modality: str) -> torch.Tensor:
    """The context's features of one modality on the model's device, with a clear error if absent."""
    if ctx.features is None or modality not in ctx.features:
        have = [] if ctx.features is None else ctx.features.modalities
        raise KeyError(f"model needs item features of modality '{modality}', the dataset has {have}; "
                       "set the model's 'modalities' hyper-parameter to the available ones")
    x = ctx.features[modality]
    if x.shape[0] != ctx.n_items:
        raise ValueError(f"features '{modality}' have {x.shape[0]} rows for {ctx.n_items} items")
    return x.to(ctx.device)


class FrozenItemGraphSpecs:
    """Graph declarations shared by FREEDOM and SAND: the symmetric-normalised user-item graph
    ("ui") and the frozen kNN item-graph mixture over the content modalities ("mm")."""

    @classmethod
    def graph_specs(cls, hp: Dict[str, Any]) -> Dict[str, Dict[str, Any]]:
        return {"ui": {"kind": "bipartite", "norm": "sym"},
                "mm": knn_spec(hp.get("modalities", ("image", "text")), hp.get("knn_k", 10),
                               hp.get("mm_image_weight", 0.1))}

    @classmethod
    def required_modalities(cls, hp: Dict[str, Any]) -> list[str]:
        return content_modalities(hp.get("modalities", ("image", "text")))
