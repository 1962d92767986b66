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

    def with_item_tables(self, tables: dict[str, Any]) -> "Dataset":
        """This dataset with item-feature modalities read from exported or plain ``.npy`` tables
        added (``data.extra_features``: ``{modality: path}`` or ``{modality: {path: ..., missing:
        error|mean|zeros}}``), aligned to its items by original id where an ``export.json`` is
        beside the file. A modality already read from the same path is kept (idempotent); one of
        the same name from elsewhere is an error. Other tensors are shared, not copied."""
        from dataclasses import replace

        from graphrec.data.vectors import read_item_table
        from graphrec.errors import ConfigError

        have = dict(self.features.features) if self.features is not None else {}
        sources = dict(self.features.sources) if self.features is not None else {}
        added = {}
        for modality, spec in tables.items():
            where = f"data.extra_features.{modality}"
            spec = {"path": spec} if isinstance(spec, str) else spec
            if not isinstance(spec, dict) or not isinstance(spec.get("path"), str) or set(spec) - {"path", "missing"}:
                raise ConfigError(f"{where}: expected a path, or {{path: ..., missing: error|mean|zeros}}; got {spec!r}")
            if modality in have:
                if sources.get(modality) == spec["path"]:
                    continue
                raise ConfigError(f"{where}: dataset {self.name!r} already has a modality of that name")
            added[modality] = read_item_table(spec["path"], self.interactions.item_map, modality,
                                              spec.get("missing", "error"))
            sources[modality] = spec["path"]
        if not added:
            return self
        return replace(self, features=ItemFeatures({**have, **added}, self.interactions.item_map, sources))

    @property
    def n_users(self) -> int:
        return self.interactions.n_users

    @property
    def n_items(self) -> int:
        return self.interactions.n_items
