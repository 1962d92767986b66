"""Interaction logs: dense user/item indices with an IdMap per side.

`Interactions` is the one object every later stage consumes. Indices are int64 torch tensors on
the CPU, dense in ``[0, n_users)`` / ``[0, n_items)``; the `IdMap` of each side translates between
the user's original ids and those dense indices. Splits share the maps of the full log, so an index
means the same user/item in train, valid and test.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Optional, Sequence

import numpy as np
import torch

from graphrec.errors import DataError, UnknownIdError
from graphrec.utils import content_hash


class IdMap:
    """Original id <-> dense index (0..n-1). Index ``i`` holds original id ``ids[i]``."""

    def __init__(self, ids: Sequence[Any] | np.ndarray, name: str = "id"):
        arr = np.asarray(ids)
        if arr.ndim != 1:
            raise DataError(f"IdMap({name}): ids must be one-dimensional, got shape {arr.shape}")
        self.ids = arr
        self.name = name
        self._lookup: Optional[dict] = None

    @classmethod
    def from_values(cls, values: Iterable[Any], name: str = "id") -> "IdMap":
        """Dense ids = rank of the sorted distinct original ids (MMRec's re-indexing convention)."""
        arr = np.asarray(list(values) if not isinstance(values, np.ndarray) else values)
        uniq = np.unique(arr)
        return cls(uniq, name)

    def __len__(self) -> int:
        return int(self.ids.shape[0])

    def __eq__(self, other: object) -> bool:
        return isinstance(other, IdMap) and len(self) == len(other) and bool(
            np.all(self.ids.astype(str) == other.ids.astype(str)) if self.ids.dtype != other.ids.dtype
            else np.all(self.ids == other.ids))

    def __repr__(self) -> str:
        return f"IdMap({self.name}, n={len(self)})"

    @property
    def lookup(self) -> dict:
        if self._lookup is None:
            self._lookup = {self._key(v): i for i, v in enumerate(self.ids.tolist())}
            if len(self._lookup) != len(self):
                seen: set = set()
                dup = next(k for k in map(self._key, self.ids.tolist()) if k in seen or seen.add(k))  # type: ignore[func-returns-value]
                self._lookup = None
                raise DataError(f"IdMap({self.name}): original id {dup!r} appears more than once")
        return self._lookup

    @staticmethod
    def _key(v: Any) -> Any:
        # 12, np.int64(12) and "12" must all find the same entry: ids read from text files are
        # strings, ids given by users are often ints. "012" stays apart from 12 (the id policy,
        # graphrec.data.ids); surrounding whitespace is not part of an id.
        return str(v).strip() if isinstance(v, str) else str(v)

    def index(self, original: Any) -> int:
        try:
            return self.lookup[self._key(original)]
        except KeyError:
            raise UnknownIdError(f"unknown {self.name} id {original!r} (not among the {len(self)} known ids)") from None

    def to_index(self, originals: Iterable[Any], source: str = "") -> np.ndarray:
        """Map original ids to indices; raise naming the first unknown ids (and the source)."""
        lk = self.lookup
        vals = list(originals)
        out = np.fromiter((lk.get(self._key(v), -1) for v in vals), dtype=np.int64, count=len(vals))
        bad = np.flatnonzero(out < 0)
        if bad.size:
            shown = ", ".join(f"{vals[i]!r} (row {i + 1})" for i in bad[:5])
            where = f"{source}: " if source else ""
            raise UnknownIdError(f"{where}{bad.size} unknown {self.name} id(s) (not among the {len(self)} known): "
                                 f"{shown}")
        return out

    def to_original(self, index: Iterable[int] | torch.Tensor | np.ndarray) -> np.ndarray:
        idx = index.cpu().numpy() if isinstance(index, torch.Tensor) else np.asarray(index)
        return self.ids[idx]

    def hash(self) -> str:
        return content_hash(self.ids.astype(str))


@dataclass
class Interactions:
    """A log of (user, item[, timestamp, rating]) events with dense int64 indices.

    ``n_users``/``n_items`` come from the id maps, so a subset (e.g. the test split) still knows
    the full index range even when some users or items have no rows in it.
    """

    user: torch.Tensor
    item: torch.Tensor
    user_map: IdMap
    item_map: IdMap
    timestamp: Optional[torch.Tensor] = None
    rating: Optional[torch.Tensor] = None
    source: str = ""
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.user = torch.as_tensor(self.user, dtype=torch.long).reshape(-1)
        self.item = torch.as_tensor(self.item, dtype=torch.long).reshape(-1)
        n = self.user.numel()
        if self.item.numel() != n:
            raise DataError(f"{self._where()}user and item columns differ in length ({n} vs {self.item.numel()})")
        for name in ("timestamp", "rating"):
            v = getattr(self, name)
            if v is not None:
                v = torch.as_tensor(v)
                if v.numel() != n:
                    raise DataError(f"{self._where()}{name} column has {v.numel()} rows, expected {n}")
                setattr(self, name, v.reshape(-1))
        for side, idx, m in (("user", self.user, self.user_map), ("item", self.item, self.item_map)):
            if n and (int(idx.min()) < 0 or int(idx.max()) >= len(m)):
                bad = int(torch.nonzero((idx < 0) | (idx >= len(m)))[0])
                raise DataError(f"{self._where()}{side} index {int(idx[bad])} at row {bad + 1} is outside "
                                 f"[0, {len(m)})")

    def _where(self) -> str:
        return f"{self.source}: " if self.source else ""

    # -- sizes ---------------------------------------------------------------------------------
    def __len__(self) -> int:
        return int(self.user.numel())

    @property
    def n_users(self) -> int:
        return len(self.user_map)

    @property
    def n_items(self) -> int:
        return len(self.item_map)

    @property
    def density(self) -> float:
        return len(self) / max(1, self.n_users * self.n_items)

    def user_degree(self) -> torch.Tensor:
        return torch.bincount(self.user, minlength=self.n_users)

    def item_degree(self) -> torch.Tensor:
        return torch.bincount(self.item, minlength=self.n_items)

    # -- derived -------------------------------------------------------------------------------
    def subset(self, index: torch.Tensor) -> "Interactions":
        """Rows selected by a boolean mask or an index tensor; id maps are kept unchanged."""
        index = torch.as_tensor(index)
        pick = (lambda t: None if t is None else t[index])
        return Interactions(self.user[index], self.item[index], self.user_map, self.item_map,
                            timestamp=pick(self.timestamp), rating=pick(self.rating),
                            source=self.source, meta=dict(self.meta))

    def concat(self, other: "Interactions") -> "Interactions":
        if self.user_map is not other.user_map and self.user_map != other.user_map:
            raise DataError("cannot concatenate Interactions with different user id maps")
        if self.item_map is not other.item_map and self.item_map != other.item_map:
            raise DataError("cannot concatenate Interactions with different item id maps")
        cat = (lambda a, b: None if a is None or b is None else torch.cat([a, b]))
        return Interactions(torch.cat([self.user, other.user]), torch.cat([self.item, other.item]),
                            self.user_map, self.item_map, timestamp=cat(self.timestamp, other.timestamp),
                            rating=cat(self.rating, other.rating), source=self.source, meta=dict(self.meta))

    def csr(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(indptr[n_users+1], items sorted by user then item): each user's items, for masking."""
        key = self.user * self.n_items + self.item
        key = torch.unique(key)  # sorted, deduplicated
        u = key // self.n_items
        indptr = torch.zeros(self.n_users + 1, dtype=torch.long)
        indptr[1:] = torch.cumsum(torch.bincount(u, minlength=self.n_users), 0)
        return indptr, key % self.n_items

    def pairs_hash(self) -> str:
        return content_hash(self.user, self.item)

    def content_hash(self) -> str:
        return content_hash(self.user, self.item, self.timestamp, self.rating,
                            self.user_map.ids.astype(str), self.item_map.ids.astype(str))

    def __repr__(self) -> str:
        return (f"Interactions(n={len(self)}, users={self.n_users}, items={self.n_items}, "
                f"timestamp={self.timestamp is not None}, rating={self.rating is not None})")
