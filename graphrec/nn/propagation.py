"""Graph propagation layers on prebuilt, pre-normalised sparse adjacencies."""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from graphrec.graphs.sparse import spmm


def readout_weight(num_layers: int, readout: str) -> float:
    """The weight of each layer in the pooled embedding: :math:`1/(K+1)` for "mean", 1 for "sum"."""
    return 1.0 / (num_layers + 1) if readout == "mean" else 1.0


class LightGCNPropagation(nn.Module):
    r"""LightGCN propagation (He et al. 2020, Eq. 3-4; SAND Eq. 3-4):

    .. math::
        E^{(l+1)} = \hat{A} E^{(l)}, \qquad
        E = \frac{1}{K+1} \sum_{l=0}^{K} E^{(l)} \;(\text{readout="mean"}) \;\text{or}\;
        \sum_{l=0}^{K} E^{(l)} \;(\text{"sum"})

    with :math:`\hat{A} = D^{-1/2} A D^{-1/2}` the symmetric-normalised (U+I)x(U+I) bipartite
    graph, given already normalised. ``readout="last"`` returns :math:`E^{(K)}`. Products go
    through `graphrec.graphs.spmm` (a CSR product whose backward reuses the graph's cached
    transpose: the graph itself, being symmetric).
    """

    def __init__(self, num_layers: int = 2, readout: str = "mean"):
        super().__init__()
        if readout not in ("mean", "sum", "last"):
            raise ValueError(f"readout must be 'mean', 'sum' or 'last', got {readout!r}")
        if num_layers < 0:
            raise ValueError(f"num_layers must be >= 0, got {num_layers}")
        self.num_layers = num_layers
        self.readout = readout

    def forward(self, graph: Any, x: torch.Tensor) -> torch.Tensor:
        if self.num_layers == 0:
            return x
        h = x
        acc = x if self.readout != "last" else None
        for _ in range(self.num_layers):
            h = spmm(graph, h)
            if acc is not None:
                acc = acc + h
        if self.readout == "last":
            return h
        return acc / (self.num_layers + 1) if self.readout == "mean" else acc

    def extra_repr(self) -> str:
        return f"num_layers={self.num_layers}, readout={self.readout}"
