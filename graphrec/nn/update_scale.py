r"""A learning rate of its own for part of a model, under the one optimiser the trainer builds.

PAMD fine-tunes its pretrained encoder at 1e-4 while the embeddings learn at 1e-3 (Han et al.
2022, Sec. 5.1). The trainer has one optimiser over the model's parameters; :class:`UpdateScale`
shrinks, before the parameters are next read, each update the optimiser made to them:

.. math:: \theta \leftarrow \theta_{prev} + f\,(\theta - \theta_{prev}),

where :math:`\theta_{prev}` is the value at the previous read. For every optimiser whose step is
linear in its learning rate (SGD, Adam, AdamW without decay, Adagrad, RMSprop: the moments do not
depend on the learning rate) this is exactly that optimiser at learning rate :math:`f \cdot lr`
for these parameters. ``f = 0`` freezes them instead (``requires_grad=False``: bit-identical
values, no optimiser state). The module's ``state_dict`` always holds the corrected values (a
state-dict pre-hook syncs first) and a loaded state resets the reference, so checkpoints and
resumed runs see the true parameters.
"""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn


class UpdateScale:
    """Scale every optimiser update of ``module``'s parameters by ``factor`` (see module doc).
    Call :meth:`sync` before the parameters are read (each training forward, each evaluation)."""

    def __init__(self, module: nn.Module, factor: float):
        if factor < 0:
            raise ValueError(f"a learning-rate factor must be >= 0, got {factor}")
        self.module = module
        self.factor = float(factor)
        self._prev: Optional[list[torch.Tensor]] = None
        if self.factor == 0.0:
            for p in module.parameters():
                p.requires_grad_(False)
        elif self.factor != 1.0:
            module.register_state_dict_pre_hook(lambda *_a, **_k: self.sync())
            module.register_load_state_dict_pre_hook(lambda *_a, **_k: self.reset())

    def reset(self) -> None:
        """Forget the reference: the next :meth:`sync` takes the current values as they are."""
        self._prev = None

    @torch.no_grad()
    def sync(self) -> None:
        if self.factor in (0.0, 1.0):
            return
        params = [p for p in self.module.parameters()]
        if self._prev is None or any(q.device != p.device for q, p in zip(self._prev, params)):
            self._prev = [p.detach().clone() for p in params]
            return
        for p, q in zip(params, self._prev):
            p.sub_(q).mul_(self.factor).add_(q)  # q + f (p - q)
            q.copy_(p)
