"""graphrec graphs -> PyTorch Geometric layers -> graphrec's trainer.

Builds the normalised user-item graph of a dataset, hands it to a stock PyG layer (no copy of the
weights), then trains NGCF (written with a PyG MessagePassing layer) under graphrec's trainer.

Run: python examples/pyg_model.py        (about 10 s on a laptop CPU)
"""
import torch
from torch_geometric.nn import LGConv

import graphrec.experiment
from graphrec.data import make_split
from graphrec.datasets import load
from graphrec.graphs import bipartite_adjacency, pyg

ARGS = {"n_users": 300, "n_items": 150, "n_interactions": 6000}  # a small embedded synthetic dataset

# 1. graphrec's graph: D^-1/2 A D^-1/2 over users + items, a torch sparse CSR (A[i, j] = weight j -> i)
dataset = load("synthetic", **ARGS)
graph = bipartite_adjacency(make_split(dataset.interactions).train)

# 2. into PyG: edge_index[0] = source, [1] = target; edge_weight is the graph's own value tensor
edge_index, edge_weight = pyg.edge_index(graph)
x = torch.randn(graph.shape[0], 16)
h = LGConv(normalize=False)(x, edge_index, edge_weight)
assert torch.allclose(h, LGConv(normalize=False)(x, pyg.adj_t(graph)), atol=1e-5)  # CSR as adj_t
print(f"{graph}: one LGConv hop -> {tuple(h.shape)}")

# 3. a model written with PyG layers, trained and evaluated by graphrec (graphrec/models/ngcf.py)
result = graphrec.experiment.run(model="ngcf", dataset="synthetic", epochs=10, seed=0, quiet=True,
                                 overrides={"data": {"dataset_args": ARGS}, "train": {"batch_size": 512}})
print("NGCF test recall@20:", round(result["test"]["recall@20"], 4), "| run directory:", result["run_dir"])
