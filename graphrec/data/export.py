"""Write a dataset and split in MMRec's layout, readable by MMRec and by ``mmrec:<dir>``."""
from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np
import torch

from graphrec.data.split import Split
from graphrec.utils import atomic_write_bytes, safe_name

if TYPE_CHECKING:  # the datasets package imports graphrec.data; avoid the cycle at run time
    from graphrec.data.dataset import Dataset


def _col(t: torch.Tensor) -> list[str]:
    arr = t.numpy()
    if arr.dtype.kind == "f":
        return [repr(float(v)) for v in arr.tolist()]
    return [str(v) for v in arr.tolist()]


def export_mmrec(dataset: "Dataset", split: Split, out_dir: str, name: str) -> dict[str, str]:
    """Write ``<name>.inter`` (TSV ``userID itemID [rating] [timestamp] x_label``, rows grouped by
    user, then train/valid/test, each part in its own row order: MMRec's layout, so an MMRec file
    read and written back is byte-identical), ``u_id_mapping.csv`` / ``i_id_mapping.csv`` and
    ``<modality>_feat.npy`` for the image/text features present. Returns {kind: path}.
    ``name`` and the modality names become file names: checked before anything is written."""
    safe_name(name, "export name")
    for m in (dataset.features.modalities if dataset.features is not None else []):
        safe_name(m, "modality name")
    os.makedirs(out_dir, exist_ok=True)
    parts = [split.train, split.valid, split.test]
    user = torch.cat([p.user for p in parts])
    item = torch.cat([p.item for p in parts])
    label = torch.cat([torch.full((len(p),), k, dtype=torch.long) for k, p in enumerate(parts)])
    order = torch.sort(user, stable=True).indices
    cols = {"userID": _col(user[order]), "itemID": _col(item[order])}
    for field in ("rating", "timestamp"):
        if all(getattr(p, field) is not None for p in parts):
            cols[field] = _col(torch.cat([getattr(p, field) for p in parts])[order])
    cols["x_label"] = _col(label[order])
    lines = ["\t".join(cols)] + ["\t".join(row) for row in zip(*cols.values())]
    written = {}
    path = os.path.join(out_dir, f"{name}.inter")
    atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
    written["inter"] = path
    for side, m, col in (("u", split.user_map, "user_id\tuserID"), ("i", split.item_map, "item_id\titemID")):
        p = os.path.join(out_dir, f"{side}_id_mapping.csv")
        body = "\n".join(f"{orig}\t{i}" for i, orig in enumerate(m.ids.tolist()))
        atomic_write_bytes(p, f"{col}\n{body}\n".encode())
        written[f"{side}_id_mapping"] = p
    if dataset.features is not None:
        for m in dataset.features.modalities:
            p = os.path.join(out_dir, f"{m}_feat.npy")
            tmp = p + ".tmp.npy"
            np.save(tmp, dataset.features[m].numpy().astype(np.float32))
            os.replace(tmp, p)
            written[f"{m}_feat"] = p
    return written
