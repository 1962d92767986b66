"""Turn a Dataset's raw item content (``item_text``, ``item_images``) into ItemFeatures."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import torch

from graphrec.data.encode.image import encode_images
from graphrec.data.encode.text import encode_text
from graphrec.data.features import ItemFeatures

if TYPE_CHECKING:
    from graphrec.datasets.base import Dataset

MODALITIES = ("text", "image")


def encode_dataset(dataset: "Dataset", modalities: Sequence[str] = MODALITIES,
                   missing_image: str = "mean", empty_text: str = "error", cache: bool = True,
                   text_model: str | Path | None = None, device: str | torch.device | None = None,
                   batch_size: Optional[int] = None, progress: bool = True) -> ItemFeatures:
    """ItemFeatures ``{'text': [n_items, 384], 'image': [n_items, 1280]}`` aligned to the item index.

    ``dataset.item_text[i]`` / ``dataset.item_images[i]`` belong to item index i. Missing posters
    default to the mean of the encoded ones (MMRec's convention, as in the reference export).
    """
    unknown = [m for m in modalities if m not in MODALITIES]
    if unknown:
        raise ValueError(f"encode_dataset: unknown modalities {unknown} (choose from {MODALITIES})")
    item_map = dataset.interactions.item_map
    n = len(item_map)
    ids = item_map.ids.tolist()
    feats: dict[str, torch.Tensor] = {}
    sources: dict[str, str] = {}
    for m in modalities:
        content = dataset.item_text if m == "text" else dataset.item_images
        attr = "item_text" if m == "text" else "item_images"
        if content is None:
            raise ValueError(f"dataset {dataset.name!r} has no {attr}; cannot encode modality '{m}'")
        if len(content) != n:
            raise ValueError(f"dataset {dataset.name!r}: {attr} has {len(content)} entries for "
                             f"{n} items")
        kw = {"batch_size": batch_size} if batch_size else {}
        if m == "text":
            feats[m] = encode_text(list(content), model=text_model, device=device, progress=progress,
                                   cache=cache, empty=empty_text, ids=ids, **kw)
            sources[m] = f"{dataset.name}: item_text encoded with {text_model or 'all-MiniLM-L6-v2'}"
        else:
            feats[m] = encode_images(list(content), device=device, missing=missing_image,
                                     progress=progress, cache=cache, ids=ids, **kw)
            sources[m] = f"{dataset.name}: item_images encoded with efficientnet-lite0"
    return ItemFeatures(feats, item_map, sources)
