"""Linear layers read off column slices of one linear projection, without materialising it.

SAND's code projects each modality at full width (:math:`Z = X W^\\top + b`, a d x d map: 4096 x 4096
for Clothing images) and every consumer of Z starts with a narrow linear layer (the 256-wide MLP,
the 64-wide alignment head on the generic half, the 32-wide distancing codes on each half). A
product of linear maps can be re-associated exactly:

.. math::
    y_k = L_k\\,Z[:, c_k]^\\top + e_k = X\\,(L_k W[c_k, :])^\\top + (L_k b[c_k] + e_k)

so all consumers come out of one ``N x d_in x K`` product (K = their total width) instead of
``N x d_in x d_out`` for Z plus ``N x d_out x K`` for the consumers. Autograd differentiates the
re-associated form, so gradients of W, b, L_k and e_k are the same quantities (up to float
rounding). :func:`linear_consumers` picks whichever order costs fewer multiply-adds.
"""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple

import torch
from torch import nn
from torch.nn import functional as F

#: a consumer: a linear layer applied to ``Z[:, cols]``, or None for the slice itself
Consumer = Tuple[Optional[nn.Linear], slice]


def _cols(s: slice, width: int) -> range:
    r = range(*s.indices(width))
    if r.step != 1:
        raise ValueError(f"linear consumers read contiguous column slices, got {s}")
    return r


def reassociation_pays(n_rows: int, d_in: int, d_out: int, consumers: Sequence[Consumer]) -> bool:
    """True when the re-associated order costs fewer multiply-adds (forward; backward scales alike)."""
    # (slice width, output width, cost per row of applying the consumer to a materialised Z)
    shapes = [(len(_cols(c, d_out)), layer.out_features if layer is not None else len(_cols(c, d_out)),
               layer is not None) for layer, c in consumers]
    direct = n_rows * d_in * d_out + n_rows * sum(w * o for w, o, is_layer in shapes if is_layer)
    k = sum(o for _, o, _ in shapes)
    fused = k * d_out * d_in + n_rows * d_in * k  # the stacked map C W, then x (C W)^T
    return fused < direct


def linear_consumers(x: torch.Tensor, proj: nn.Linear, consumers: Sequence[Consumer],
                     reassociate: Optional[bool] = None) -> List[torch.Tensor]:
    r"""Outputs :math:`y_k = L_k(\mathrm{proj}(x)[:, c_k])` of every consumer, in order.

    ``reassociate=None`` chooses the cheaper order (:func:`reassociation_pays`); True/False forces
    one (tests compare both)."""
    d_out = proj.out_features
    if reassociate is None:
        reassociate = reassociation_pays(x.shape[0], x.shape[1], d_out, consumers)
    if not reassociate:
        z = proj(x)
        return [z[:, c] if layer is None else layer(z[:, c]) for layer, c in consumers]
    w, b = proj.weight, proj.bias
    # every consumer as a K_k x d_out block: its weight placed at its columns, zeros elsewhere, so
    # one product C W gives all maps (no per-slice gradients of W, each a zero-filled d_out x d_in)
    blocks, biases, widths = [], [], []
    for layer, c in consumers:
        cols = _cols(c, d_out)
        lw = layer.weight if layer is not None else torch.eye(len(cols), dtype=w.dtype, device=w.device)
        blocks.append(F.pad(lw, (cols.start, d_out - cols.stop)))
        e = layer.bias if layer is not None and layer.bias is not None else None
        biases.append(e if e is not None else lw.new_zeros(lw.shape[0]))
        widths.append(lw.shape[0])
    c_all = torch.cat(blocks)                          # K x d_out
    bias = torch.cat(biases)
    if b is not None:
        bias = torch.addmv(bias, c_all, b)
    y = F.linear(x, c_all @ w, bias)                   # one pass over x for all consumers
    return list(y.split(widths, dim=1))
