"""Turn a Dataset's raw item content (``item_text``, ``item_images``) into ItemFeatures."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Optional, Sequence

import torch

from graphrec.data.encode.image import encode_images
from graphrec.data.encode.text import encode_text
from graphrec.data.features import ItemFeatures

if TYPE_CHECKING:
    from graphrec.data.dataset import Dataset

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


def attach_encoded(dataset: "Dataset", encode: Optional[bool] = None, **kwargs) -> "Dataset":
    """Encode the dataset's raw content and merge the result into ``dataset.features`` (in place).

    ``encode=None`` (auto): encode when the ``encode`` extra is installed, otherwise log how to
    install it and keep the raw content only. ``encode=True``: the extra is required.
    ``encode=False``: do nothing. Only modalities with content are encoded; rows are cached, so a
    second load costs hashing the content only. ``kwargs`` go to :func:`encode_dataset`.
    """
    from graphrec.data.encode.offline import extra_available, require_extra
    from graphrec.utils import log

    if encode is False:
        return dataset
    mods = [m for m, c in (("text", dataset.item_text), ("image", dataset.item_images)) if c is not None]
    if not mods:
        if encode:
            raise ValueError(f"dataset {dataset.name!r} has no raw item content to encode")
        return dataset
    if encode:
        require_extra()  # raises EncodeExtraMissing naming the package and the install command
    elif not extra_available():
        log.info("%s: raw item content kept, not encoded (install `graphrec[encode]` to get "
                 "text/image features)", dataset.name)
        return dataset
    kwargs.setdefault("modalities", mods)
    new = encode_dataset(dataset, **kwargs)
    if dataset.features is not None:
        merged = {**dataset.features.features, **new.features}
        sources = {**dataset.features.sources, **new.sources}
        new = ItemFeatures(merged, dataset.features.item_map, sources)
    dataset.features = new
    return dataset
