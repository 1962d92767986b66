"""Item content features: one float32 matrix per modality, row i = item index i."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional

import torch

from graphrec.data.interactions import IdMap
from graphrec.utils import content_hash


@dataclass
class ItemFeatures:
    """``{modality: FloatTensor[n_items, d]}`` aligned to ``item_map`` (row i = item index i)."""

    features: Dict[str, torch.Tensor]
    item_map: IdMap
    sources: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.item_map)
        for m, x in list(self.features.items()):
            x = torch.as_tensor(x, dtype=torch.float32)
            if x.ndim != 2 or x.shape[0] != n:
                src = self.sources.get(m, m)
                raise ValueError(f"{src}: feature matrix for modality '{m}' has shape {tuple(x.shape)}, "
                                 f"expected ({n}, d) for the {n} items")
            bad = ~torch.isfinite(x).all(dim=1)
            if bool(bad.any()):
                rows = torch.nonzero(bad).flatten()[:10].tolist()
                raise ValueError(f"{self.sources.get(m, m)}: modality '{m}' has NaN/inf in {int(bad.sum())} "
                                 f"row(s); first item indices {rows} (original ids "
                                 f"{self.item_map.to_original(rows).tolist()})")
            self.features[m] = x.contiguous()

    def __getitem__(self, modality: str) -> torch.Tensor:
        return self.features[modality]

    def __contains__(self, modality: str) -> bool:
        return modality in self.features

    @property
    def modalities(self) -> list[str]:
        return list(self.features)

    def dims(self) -> Dict[str, int]:
        return {m: int(x.shape[1]) for m, x in self.features.items()}

    def hash(self, modality: Optional[str] = None) -> str:
        if modality is not None:
            return content_hash(self.features[modality])
        return content_hash({m: content_hash(x) for m, x in self.features.items()})

    def select(self, modalities: list[str]) -> "ItemFeatures":
        missing = [m for m in modalities if m not in self.features]
        if missing:
            raise KeyError(f"modalities {missing} not available (have {self.modalities})")
        return ItemFeatures({m: self.features[m] for m in modalities}, self.item_map,
                            {m: self.sources.get(m, "") for m in modalities})
