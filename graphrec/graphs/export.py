"""Exports so graphs can be handed to networkx or to any PyG layer."""
from __future__ import annotations

from typing import Optional

import torch

from graphrec.data.interactions import Interactions
from graphrec.graphs.bipartite import unique_edges
from graphrec.graphs.sparse import SparseGraph

NX_MAX_EDGES = 5_000_000


def to_networkx(graph: SparseGraph, directed: Optional[bool] = None, weight: str = "weight"):
    """A networkx (Di)Graph with the stored values as ``weight``; nodes 0..n-1 of a square graph.

    ``directed=None`` gives a DiGraph unless the matrix is symmetric. Refuses graphs above
    5e6 edges (networkx holds Python objects per edge).
    """
    import networkx as nx

    if graph.shape[0] != graph.shape[1]:
        raise ValueError(f"to_networkx: needs a square adjacency, got {graph.shape}")
    if graph.nnz > NX_MAX_EDGES:
        raise ValueError(f"to_networkx: {graph.nnz} edges is too many for networkx (limit {NX_MAX_EDGES})")
    ei = graph.edge_index().cpu()
    val = graph.values.detach().cpu()
    if directed is None:
        coo = graph.coo().cpu()
        directed = not bool((coo - coo.t()).coalesce().values().abs().max() < 1e-7) if graph.nnz else False
    g = nx.DiGraph() if directed else nx.Graph()
    g.add_nodes_from(range(graph.shape[0]))
    g.add_weighted_edges_from(zip(ei[0].tolist(), ei[1].tolist(), val.tolist()), weight=weight)
    return g


def to_pyg(graph: SparseGraph):
    """``torch_geometric.data.Data(edge_index, edge_weight, num_nodes)`` of a square graph in PyG's
    orientation (``edge_index[0]`` the source j, ``[1]`` the target i of ``A[i, j]``, so
    ``LGConv(normalize=False)`` computes ``A @ x`` also for a directed graph; `graphrec.graphs.pyg`);
    use with ``LGConv(normalize=False)`` / ``GCNConv(normalize=False)``: values are pre-normalised."""
    from torch_geometric.data import Data

    from graphrec.graphs import pyg

    if graph.shape[0] != graph.shape[1]:
        raise ValueError(f"to_pyg: needs a square adjacency, got {graph.shape}; use to_hetero for user-item")
    ei, w = pyg.edge_index(graph)
    return Data(edge_index=ei, edge_weight=w.clone(), num_nodes=graph.shape[0])


def to_hetero(train: Interactions, norm: str = "sym"):
    """``HeteroData`` with node types "user"/"item" and edge types ("user", "interacts", "item") and
    its reverse ("item", "rev_interacts", "user"): distinct training edges, with ``edge_weight``
    ``1/sqrt(d_u d_i)`` (norm="sym") or 1 (norm="none")."""
    from torch_geometric.data import HeteroData

    if norm not in ("sym", "none"):
        raise ValueError(f"to_hetero: unknown norm {norm!r} (expected 'sym' or 'none')")
    u, i = unique_edges(train)
    if norm == "sym":
        du = torch.bincount(u, minlength=train.n_users).float()
        di = torch.bincount(i, minlength=train.n_items).float()
        w = du[u].rsqrt() * di[i].rsqrt()
    else:
        w = torch.ones(u.numel())
    data = HeteroData()
    data["user"].num_nodes = train.n_users
    data["item"].num_nodes = train.n_items
    data["user", "interacts", "item"].edge_index = torch.stack([u, i])
    data["user", "interacts", "item"].edge_weight = w
    data["item", "rev_interacts", "user"].edge_index = torch.stack([i, u])
    data["item", "rev_interacts", "user"].edge_weight = w.clone()
    return data
