"""Graph construction: sparse (CSR, float32) adjacencies built once from training interactions and
item features, normalised at build time, cached by content hash.

- `bipartite_adjacency`, `interaction_matrix`: user-item graphs (LightGCN / SAND Eq. 3).
- `cointeraction_graph`: user-user ``R R^T`` / item-item ``R^T R`` with top-k, chunked.
- `knn_graph`, `mix_graphs`: modality kNN item graphs (FAISS or chunked torch) and FREEDOM's mix.
- `DegreeSensitivePruner`, `RandomEdgeDropout`, `edge_dropout`: per-epoch sampled user-item graphs.
- `GraphCache`, `build`: declare a graph by spec, get it from the cache or build it.
- `to_networkx`, `to_pyg`, `to_hetero`, `spmm`: hand graphs to other libraries / propagate.
- `pyg`: the PyG hand-off in PyG's orientation (``edge_index``/``edge_weight``, ``adj_t`` without a
  copy, ``EdgeIndex`` / ``SparseTensor`` where the installed PyG has them).
"""
from graphrec.graphs.bipartite import bipartite_adjacency, interaction_matrix
from graphrec.graphs.build import KINDS, build
from graphrec.graphs.cache import GraphCache, default_cache_dir
from graphrec.graphs.cointeraction import cointeraction_graph
from graphrec.graphs.export import to_hetero, to_networkx, to_pyg
from graphrec.graphs.knn import knn_graph, mix_graphs
from graphrec.graphs.normalize import normalize_csr, normalize_values
from graphrec.graphs.prune import DegreeSensitivePruner, EdgeSampler, RandomEdgeDropout, edge_dropout
from graphrec.graphs.sparse import SparseGraph, csr_from_coo, spmm

__all__ = [
    "SparseGraph", "spmm", "csr_from_coo", "bipartite_adjacency", "interaction_matrix",
    "cointeraction_graph", "knn_graph", "mix_graphs", "DegreeSensitivePruner", "RandomEdgeDropout",
    "EdgeSampler", "edge_dropout", "GraphCache", "default_cache_dir", "build", "KINDS",
    "to_networkx", "to_pyg", "to_hetero", "normalize_values", "normalize_csr",
]
