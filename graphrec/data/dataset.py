"""The `Dataset` record every loader returns (loaders live in `graphrec.datasets`)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Optional

from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import Interactions
from graphrec.data.split import Split


@dataclass
class Dataset:
    """A loaded dataset: the full interaction log, optional predefined split, item content.

    ``split`` is set when the source fixes one (MMRec ``x_label``, RecBole-seq files); otherwise the
    trainer makes one with the configured rule. ``ground_truth`` carries planted structure of
    synthetic data for tests (cluster ids, latent factors).
    """

    name: str
    interactions: Interactions
    split: Optional[Split] = None
    features: Optional[ItemFeatures] = None
    item_text: Optional[list[str]] = None
    item_images: Optional[list[Optional[str]]] = None
    ground_truth: dict = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return self.interactions.n_items
