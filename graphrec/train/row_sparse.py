"""Adam whose sparse-gradient steps touch only the rows a step read (sampled-subgraph training).

A sampled-subgraph step (``train.sampler: neighbor``) reads a few thousand rows of tables with
millions; torch's Adam would still decay and update every row of every table on every step, so an
epoch would cost (steps x table size), quadratic in the interactions. Tables read with sparse
gradients (``F.embedding(..., sparse=True)``) are instead updated lazily, as TorchRec's row-wise
optimisers and ``torch.optim.SparseAdam`` do.
"""
from __future__ import annotations

from typing import Iterable

import torch


class RowSparseAdam(torch.optim.Optimizer):
    r"""Adam (Kingma & Ba 2015, Algorithm 1) with lazy rows for sparse gradients.

    A dense gradient takes the ordinary step (bias corrections from the parameter's step count t):

    .. math::
        m \leftarrow \beta_1 m + (1-\beta_1) g,\quad v \leftarrow \beta_2 v + (1-\beta_2) g^2,\quad
        \theta \leftarrow \theta - \eta\, \frac{m / (1-\beta_1^t)}{\sqrt{v / (1-\beta_2^t)} + \epsilon}

    with ``weight_decay`` w added to the gradient (``g + w θ``, Adam's L2) or, ``decoupled``,
    applied to the parameter (``θ(1 - η w)``, AdamW). A sparse gradient (rows R, duplicates summed)
    applies the same formulas to the rows in R only: the moments and weights of rows outside R are
    left as they are, not decayed (lazy Adam, ``torch.optim.SparseAdam``'s rule, which has no weight
    decay; here the decay reaches the rows a step reads). With every row in R it is the dense step.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0, decoupled: bool = False):
        if lr < 0 or eps < 0 or weight_decay < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"RowSparseAdam: invalid lr={lr}, betas={betas}, eps={eps} or "
                             f"weight_decay={weight_decay}")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay,
                                      decoupled=decoupled))

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (b1, b2), eps, wd = group["lr"], group["betas"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                st = self.state[p]
                if not st:
                    st["step"] = torch.zeros((), dtype=torch.float64)
                    st["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    st["exp_avg_sq"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                st["step"] += 1
                t = float(st["step"])
                bc1, bc2 = 1 - b1 ** t, 1 - b2 ** t
                m_all, v_all = st["exp_avg"], st["exp_avg_sq"]
                if p.grad.is_sparse:
                    g = p.grad.coalesce()
                    rows, g = g.indices()[0], g.values()
                    theta = p.index_select(0, rows)
                    m, v = m_all.index_select(0, rows), v_all.index_select(0, rows)
                else:
                    rows, g, theta, m, v = None, p.grad, p, m_all, v_all
                if wd and not group["decoupled"]:
                    g = g.add(theta, alpha=wd)
                m.mul_(b1).add_(g, alpha=1 - b1)
                v.mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = (v / bc2).sqrt_().add_(eps)
                if rows is None:
                    if wd and group["decoupled"]:
                        p.mul_(1 - lr * wd)
                    p.addcdiv_(m, denom, value=-lr / bc1)
                    continue
                new = theta.mul(1 - lr * wd) if wd and group["decoupled"] else theta.clone()
                new.addcdiv_(m, denom, value=-lr / bc1)
                m_all.index_copy_(0, rows, m)
                v_all.index_copy_(0, rows, v)
                p.index_copy_(0, rows, new)
        return loss
