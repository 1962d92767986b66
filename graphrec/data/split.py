"""Train/valid/test splits of an `Interactions` log.

A `Split` holds three `Interactions` that share the full log's id maps, the name of the rule that
made it, its seed and a content hash of the (user, item) pairs of each part. It is saved with every
run and reloads bit for bit.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Optional

import numpy as np
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.utils import atomic_write_json, content_hash


@dataclass
class Split:
    train: Interactions
    valid: Interactions
    test: Interactions
    method: str = "predefined"
    seed: Optional[int] = None
    params: dict = field(default_factory=dict)

    @property
    def n_users(self) -> int:
        return self.train.n_users

    @property
    def n_items(self) -> int:
        return self.train.n_items

    @property
    def user_map(self) -> IdMap:
        return self.train.user_map

    @property
    def item_map(self) -> IdMap:
        return self.train.item_map

    def sizes(self) -> dict:
        return {"train": len(self.train), "valid": len(self.valid), "test": len(self.test)}

    def hash(self) -> str:
        return content_hash(self.train.user, self.train.item, self.valid.user, self.valid.item,
                            self.test.user, self.test.item, self.user_map.ids.astype(str),
                            self.item_map.ids.astype(str))

    # -- persistence ---------------------------------------------------------------------------
    def save(self, directory: str) -> str:
        """Write ``split.npz`` + ``split.json`` (method, seed, sizes, hash) into ``directory``."""
        os.makedirs(directory, exist_ok=True)
        arrays = {}
        for part in ("train", "valid", "test"):
            it: Interactions = getattr(self, part)
            arrays[f"{part}_user"] = it.user.numpy()
            arrays[f"{part}_item"] = it.item.numpy()
            if it.timestamp is not None:
                arrays[f"{part}_timestamp"] = it.timestamp.numpy()
            if it.rating is not None:
                arrays[f"{part}_rating"] = it.rating.numpy()
        ids_u, ids_i = self.user_map.ids, self.item_map.ids
        arrays["user_ids"] = ids_u.astype(str) if ids_u.dtype == object else ids_u
        arrays["item_ids"] = ids_i.astype(str) if ids_i.dtype == object else ids_i
        path = os.path.join(directory, "split.npz")
        tmp = path + ".tmp.npz"
        np.savez_compressed(tmp, **arrays)
        os.replace(tmp, path)
        atomic_write_json(os.path.join(directory, "split.json"),
                          {"method": self.method, "seed": self.seed, "params": self.params,
                           "sizes": self.sizes(), "hash": self.hash()})
        return path

    @classmethod
    def load(cls, directory: str) -> "Split":
        path = os.path.join(directory, "split.npz")
        with np.load(path, allow_pickle=False) as z:
            umap, imap = IdMap(z["user_ids"], "user"), IdMap(z["item_ids"], "item")
            parts = {}
            for part in ("train", "valid", "test"):
                opt = (lambda k: torch.from_numpy(z[f"{part}_{k}"]) if f"{part}_{k}" in z else None)
                parts[part] = Interactions(torch.from_numpy(z[f"{part}_user"]), torch.from_numpy(z[f"{part}_item"]),
                                           umap, imap, timestamp=opt("timestamp"), rating=opt("rating"),
                                           source=path)
        with open(os.path.join(directory, "split.json")) as f:
            info = json.load(f)
        split = cls(parts["train"], parts["valid"], parts["test"], method=info["method"], seed=info["seed"],
                    params=info.get("params", {}))
        if split.hash() != info["hash"]:
            raise ValueError(f"{path}: split content hash {split.hash()} does not match the recorded "
                             f"{info['hash']} (file changed or corrupt)")
        return split
