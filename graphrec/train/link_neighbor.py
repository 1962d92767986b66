"""Sampled-subgraph training batches: PyG's link-level neighbour loader (`LinkNeighborLoader`) over
the user-item training graph (``train.sampler: neighbor``).

Each batch seeds ``batch_size`` training pairs (u, i+) with one uniform negative item i- each (PyG's
triplet negative sampling) and samples, hop by hop, at most ``num_neighbors[h]`` neighbours of the
nodes reached so far (the subgraph a model with ``len(num_neighbors)`` propagation layers needs).
A step then costs O(batch x fanout^hops), not a pass over the graph, so an epoch grows linearly
with the interactions. Departure from the exact path: PyG draws negatives uniformly over all items,
a user's training items included (a positive is drawn as negative with probability = the user's
share of the catalogue: 6% at ml-100k's density, under 0.1% on Amazon categories).

The sampler needs PyG's compiled neighbour sampling: ``pyg-lib`` or ``torch_sparse`` (the ``ext``
extra). Batches are dicts of tensors: ``user``, ``pos``, ``neg`` (global ids) and the subgraph:
``sub_users`` / ``sub_items`` (its nodes' global ids), ``sub_ui`` (edges user -> item, local
indices: messages into items) and ``sub_iu`` (item -> user).
"""
from __future__ import annotations

from typing import Dict, Iterator, Sequence

import torch

from graphrec.data.interactions import Interactions
from graphrec.errors import MissingExtraError

UI, IU = ("user", "to", "item"), ("item", "rev_to", "user")


def available() -> bool:
    """Whether PyG can sample neighbours here (pyg-lib or torch_sparse is installed)."""
    import torch_geometric.typing as t
    return bool(t.WITH_PYG_LIB or t.WITH_TORCH_SPARSE)


class LinkNeighborBatches:
    """Training batches of sampled subgraphs around (user, positive, negative) triples. Models read
    their tables' rows with sparse gradients on these batches (``row_sparse``): a step's cost is its
    subgraph's, and the trainer's optimiser updates only those rows (`graphrec.train.row_sparse`)."""

    row_sparse = True

    def __init__(self, train: Interactions, batch_size: int, num_neighbors: Sequence[int],
                 device: torch.device | str = "cpu"):
        if not available():
            raise MissingExtraError("train.sampler=neighbor samples with PyG's LinkNeighborLoader, which needs "
                                    "pyg-lib or torch_sparse: pip install 'graphrec[ext]' (torch_sparse builds "
                                    "from source, about 17 minutes)")
        from torch_geometric.data import HeteroData
        from torch_geometric.loader import LinkNeighborLoader
        from torch_geometric.sampler import NegativeSampling
        if not num_neighbors or any(int(k) < 1 for k in num_neighbors):
            raise ValueError(f"train.num_neighbors must be positive counts per hop, got {list(num_neighbors)}")
        keys = torch.unique(train.user * train.n_items + train.item)
        user, item = keys // train.n_items, keys % train.n_items
        data = HeteroData()
        data["user"].num_nodes, data["item"].num_nodes = train.n_users, train.n_items
        data[UI].edge_index = torch.stack([user, item])
        data[IU].edge_index = torch.stack([item, user])
        fanout = {UI: [int(k) for k in num_neighbors], IU: [int(k) for k in num_neighbors]}
        self.pairs = torch.stack([user, item])
        # built once (its CSC copy of the graph too) and used for its sampling only: the epochs
        # order the seed pairs themselves (`epoch_shares`)
        self.loader = LinkNeighborLoader(data, num_neighbors=fanout, edge_label_index=(UI, self.pairs),
                                         neg_sampling=NegativeSampling("triplet"), batch_size=int(batch_size),
                                         filter_per_worker=True)
        self.batch_size = int(batch_size)
        self.device = torch.device(device)

    def __len__(self) -> int:
        return (self.pairs.shape[1] + self.batch_size - 1) // self.batch_size

    def epoch(self, generator: torch.Generator) -> Iterator[Dict[str, torch.Tensor]]:
        for _, batch in self.epoch_shares(generator, 0, 1):
            yield batch

    def epoch_shares(self, generator: torch.Generator, rank: int, size: int
                     ) -> Iterator[tuple[float, Dict[str, torch.Tensor]]]:
        """Rank ``rank``'s contiguous share of each global batch's seed pairs (of ``size`` ranks;
        every rank draws the same order), with the subgraph sampled around that share only, and
        the share's fraction of the global batch (data-parallel training's gradient weight)."""
        # the order comes from our generator; PyG draws negatives and neighbours from torch's global
        # generator (seeded by the run)
        order = torch.randperm(self.pairs.shape[1], generator=torch.Generator().manual_seed(
            int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))))
        to = self.device
        for s in range(0, order.numel(), self.batch_size):
            seeds = order[s:s + self.batch_size]
            bounds = torch.linspace(0, seeds.numel(), size + 1).round().long().tolist()
            lo, hi = bounds[rank], bounds[rank + 1]
            weight = (hi - lo) / seeds.numel()
            if hi <= lo:  # a final batch smaller than the world: one seed at weight 0 keeps ranks in step
                lo, hi = 0, 1
            b = self.loader.collate_fn(seeds[lo:hi])
            users, items = b["user"].n_id, b["item"].n_id
            yield weight, {
                "user": users[b["user"].src_index].to(to), "pos": items[b["item"].dst_pos_index].to(to),
                "neg": items[b["item"].dst_neg_index.view(-1)].to(to),
                "sub_users": users.to(to), "sub_items": items.to(to),
                "sub_ui": b[UI].edge_index.to(to), "sub_iu": b[IU].edge_index.to(to)}
