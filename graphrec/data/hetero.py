"""A PyTorch Geometric ``HeteroData`` graph of users and items as a graphrec `Dataset`.

`from_heterodata` reads:

- interactions: the ``edge_index`` of the user->item edge type (row 0 users, row 1 items), one
  interaction per edge, in edge order; the edge type is found when exactly one goes from the user
  node type to the item node type (reverse item->user types are ignored), else name it;
- timestamps: the edge attribute ``time`` or ``edge_time`` (PyG's temporal names), ratings: the
  edge attribute ``rating``, when present (one value per edge, finite);
- item features: ``data[item].x`` as one modality (named ``modality``, default ``"x"``);
- ids: indices ``0..n-1`` of each node type, whose original ids are the node attribute ``node_id``
  or ``n_id`` when present (PyG loaders' names), else the indices themselves. The number of nodes
  is ``num_nodes`` when set, else the rows of ``x``/``node_id``/``n_id``, else the largest edge
  id + 1.

Bad input raises `graphrec.errors.DataError` with one line naming the node type, edge type,
attribute or edge. PyG is not imported here: any object with HeteroData's ``node_types``,
``edge_types`` and ``data[type]`` access works.
"""
from __future__ import annotations

from typing import Any, Optional, Union

import numpy as np
import torch

from graphrec.data.dataset import Dataset
from graphrec.data.features import ItemFeatures
from graphrec.data.interactions import IdMap, Interactions
from graphrec.errors import DataError

EdgeType = tuple[str, str, str]
TIME_KEYS = ("time", "edge_time")
ID_KEYS = ("node_id", "n_id")


def _edge_type(data: Any, user: str, item: str, edge: Optional[Union[str, EdgeType]]) -> EdgeType:
    types = [tuple(t) for t in data.edge_types]
    if edge is None:
        cands = [t for t in types if t[0] == user and t[2] == item]
        if len(cands) != 1:
            what = "no" if not cands else f"{len(cands)} candidate"
            raise DataError(f"HeteroData: {what} edge types from '{user}' to '{item}' "
                            f"({cands or types}); pass edge=(src, relation, dst)")
        return cands[0]
    et = (user, edge, item) if isinstance(edge, str) else tuple(edge)
    if et not in types:
        raise DataError(f"HeteroData: no edge type {et} (edge types: {types})")
    if et[0] != user or et[2] != item:
        raise DataError(f"HeteroData: edge type {et} does not go from '{user}' to '{item}'")
    return et  # type: ignore[return-value]


def _num_nodes(store: Any, ntype: str, ids: torch.Tensor) -> int:
    sizes = {}
    if "num_nodes" in store and store["num_nodes"] is not None:
        sizes["num_nodes"] = int(store["num_nodes"])
    for key in ("x",) + ID_KEYS:
        if key in store and isinstance(store[key], torch.Tensor):
            sizes[key] = int(store[key].shape[0])
    if len(set(sizes.values())) > 1:
        raise DataError(f"HeteroData['{ntype}']: node counts disagree ({sizes})")
    if sizes:
        return next(iter(sizes.values()))
    return int(ids.max()) + 1 if ids.numel() else 0


def _id_map(store: Any, ntype: str, n: int) -> IdMap:
    for key in ID_KEYS:
        if key in store and store[key] is not None:
            ids = store[key]
            arr = ids.cpu().numpy() if isinstance(ids, torch.Tensor) else np.asarray(ids)
            if arr.ndim != 1 or arr.shape[0] != n:
                raise DataError(f"HeteroData['{ntype}'].{key}: shape {arr.shape}, expected ({n},)")
            if np.unique(arr).shape[0] != n:
                raise DataError(f"HeteroData['{ntype}'].{key}: original ids are not unique")
            return IdMap(arr, ntype)
    return IdMap(np.arange(n, dtype=np.int64), ntype)


def _edge_values(store: Any, keys: tuple[str, ...], n_edges: int, where: str) -> Optional[torch.Tensor]:
    for key in keys:
        if key in store and store[key] is not None:
            v = torch.as_tensor(store[key])
            if v.numel() != n_edges:
                raise DataError(f"{where}.{key}: {v.numel()} values for {n_edges} edges")
            v = v.reshape(-1)
            if v.is_floating_point() and not bool(torch.isfinite(v).all()):
                bad = int(torch.nonzero(~torch.isfinite(v))[0])
                raise DataError(f"{where}.{key}: non-finite value {float(v[bad])} at edge {bad}")
            return v
    return None


def from_heterodata(data: Any, user: str = "user", item: str = "item",
                    edge: Optional[Union[str, EdgeType]] = None, modality: str = "x",
                    name: str = "heterodata") -> Dataset:
    """A `Dataset` from a PyG ``HeteroData`` (see the module docstring for what is read).
    ``edge`` is the interaction edge type ``(user, relation, item)`` or its relation name."""
    if not (hasattr(data, "node_types") and hasattr(data, "edge_types")):
        raise DataError(f"from_heterodata: expected a torch_geometric HeteroData, got {type(data).__name__}")
    for ntype in (user, item):
        if ntype not in data.node_types:
            raise DataError(f"HeteroData: no node type '{ntype}' (node types: {list(data.node_types)})")
    et = _edge_type(data, user, item, edge)
    where = f"HeteroData[{et}]"
    estore = data[et]
    if "edge_index" not in estore or not isinstance(estore["edge_index"], torch.Tensor):
        raise DataError(f"{where}: no edge_index tensor")
    ei = estore["edge_index"]
    if hasattr(ei, "as_tensor"):  # a torch_geometric.EdgeIndex: its plain [2, E] tensor
        ei = ei.as_tensor()
    if ei.dim() != 2 or ei.shape[0] != 2:
        raise DataError(f"{where}.edge_index: shape {list(ei.shape)}, expected [2, E]")
    if ei.is_floating_point() or ei.dtype == torch.bool or ei.is_complex():
        raise DataError(f"{where}.edge_index: dtype {ei.dtype}, expected integer node ids")
    if ei.shape[1] == 0:
        raise DataError(f"{where}: no edges")
    ei = ei.detach().to("cpu", torch.long)
    u, i = ei[0].contiguous(), ei[1].contiguous()
    n_users = _num_nodes(data[user], user, u)
    n_items = _num_nodes(data[item], item, i)
    for ntype, row, ids, n in ((user, 0, u, n_users), (item, 1, i, n_items)):
        bad = (ids < 0) | (ids >= n)
        if bool(bad.any()):
            k = int(torch.nonzero(bad)[0])
            raise DataError(f"{where}.edge_index: {ntype} id {int(ids[k])} of edge {k} (row {row}) is outside "
                            f"[0, {n}) ({int(bad.sum())} such edges)")
    umap, imap = _id_map(data[user], user, n_users), _id_map(data[item], item, n_items)
    ts = _edge_values(estore, TIME_KEYS, u.numel(), where)
    rating = _edge_values(estore, ("rating",), u.numel(), where)
    inter = Interactions(u, i, umap, imap, timestamp=ts, rating=rating, source=where)
    features = None
    istore = data[item]
    if "x" in istore and istore["x"] is not None:
        x = torch.as_tensor(istore["x"]).detach().cpu()
        # ItemFeatures checks shape, dtype and finiteness, naming this source and the first bad items
        features = ItemFeatures({modality: x}, imap, {modality: f"HeteroData['{item}'].x"})
    return Dataset(name=name, interactions=inter, features=features,
                   meta={"source": "heterodata", "edge_type": list(et)})
