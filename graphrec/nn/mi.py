"""Mutual-information upper bound estimator: CLUB (Cheng et al., ICML 2020), as used by SAND."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn
from torch.nn import functional as F

from graphrec import losses, native
from graphrec.nn import precision

#: below this many code entries (rows x dx) the compiled step runs on one thread
_ONE_THREAD_WORK = 1 << 16


def _kernel():
    return native.load("club_fit")


def _compiled(x: torch.Tensor, y: torch.Tensor, hidden: int) -> bool:
    """Whether the compiled fitting step (graphrec/native/club_fit.c) takes these codes: float32
    rows on the CPU, code widths and the ``hidden`` units of both branches together multiples of
    16 (whole vectors), and the library built. It reads float32 and beats torch's bf16 passes
    (4.8 ms against 9.5 ms per step, float32 torch 13 ms, at Clothing scale on 2 threads), so
    mixed precision leaves its codes in float32."""
    return (x.device.type == "cpu" and x.dtype == y.dtype == torch.float32 and x.dim() == y.dim() == 2
            and x.shape[0] > 0 and x.shape[1] % 16 == 0 and y.shape[1] % 16 == 0 and hidden % 16 == 0
            and _kernel() is not None)


def _compiled_fit(x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor, w2m: torch.Tensor,
                  w2s: torch.Tensor, b2: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """(loss, dW1, db1, dWm, dWs, db2) of :class:`_FittedNLL` from the compiled kernel (float32)."""
    n, dx = x.shape
    dy, hidden, hm = y.shape[1], w1.shape[0], w2m.shape[1]
    if (w1.shape != (hidden, dx) or w2m.shape != (dy, hm) or w2s.shape != (dy, hidden - hm)
            or b1.shape != (hidden,) or b2.shape != (2 * dy,)):
        raise ValueError(f"CLUB fit: layer shapes {tuple(w1.shape)}, {tuple(w2m.shape)}, {tuple(w2s.shape)} do not "
                         f"fit codes [{n}, {dx}] -> [{n}, {dy}]")
    x, y = x.contiguous(), y.contiguous()
    w1t, b1c, b2c = w1.T.float().contiguous(), b1.float().contiguous(), b2.float().contiguous()
    w2t = torch.cat([w2m.T, w2s.T]).float().contiguous()  # [H, dy]: rows of the mean's units, then the variance's
    w2bd = torch.block_diag(w2m, w2s).float().contiguous()  # [2dy, H], for dh
    g_w1, g_b1 = torch.empty(hidden, dx), torch.empty(hidden)
    g_w2t, g_b2 = torch.empty(hidden, dy), torch.empty(2 * dy)
    loss = torch.empty(1, dtype=torch.float64)
    threads = native.threads_for(n * dx, _ONE_THREAD_WORK)
    rc = _kernel().graphrec_club_fit(x.data_ptr(), y.data_ptr(), n, dx, dy, hidden, hm, w1t.data_ptr(),
                                     b1c.data_ptr(), w2bd.data_ptr(), w2t.data_ptr(), b2c.data_ptr(), g_w1.data_ptr(),
                                     g_b1.data_ptr(), g_w2t.data_ptr(), g_b2.data_ptr(), loss.data_ptr(), threads)
    if rc == 1:
        raise MemoryError(f"CLUB fit: no memory for {threads} threads' gradient buffers")
    if rc:
        raise ValueError(f"CLUB fit: widths {dx}, {dy}, {hidden} are not positive multiples of 16")
    return loss.float().squeeze(0), g_w1, g_b1, g_w2t[:hm].T.contiguous(), g_w2t[hm:].T.contiguous(), g_b2


class _FittedNLL(torch.autograd.Function):
    r"""CLUB's fitting loss :math:`-\frac1N\sum_i \ell_i` (:meth:`CLUB.learning_loss`) for
    data that carries no gradient, with the parameter gradients formed in the same pass:

    .. math::
        h = \mathrm{ReLU}(x W_1^\top + b_1), \quad \mu = h_{:m} W_\mu^\top + b_\mu, \quad
        r = h_{m:} W_s^\top + b_s, \quad s = \tanh r, \quad \delta = \mu - y, \quad w = e^{-s}

    (the two branches' first layers stacked in :math:`W_1`, their m and H - m hidden units each
    feeding its own second layer)

    :math:`\partial/\partial\mu = \delta w / N`, :math:`\partial/\partial r = \frac{1}{2N}
    (1 - \delta^2 w)(1 - s^2)`, then the two linear layers' products. The estimator takes 50 such
    steps per batch on every item's codes (46k rows at Clothing); written out, one step makes about
    half the passes over the N-row tensors that autograd's graph of the same expression makes.

    bfloat16 ``x``/``y`` (mixed precision, `graphrec.nn.precision`; the caller casts the codes
    once for all 50 steps): the N-row tensors and products run in bf16 (half the memory traffic
    of these narrow, memory-bound passes: 1.6x faster here), every sum over the N rows (the loss,
    the bias gradients, and the weight gradients inside the products) accumulates in float32 (the
    bias gradients are then rounded once to bf16: CPU column sums with a float32 output are ~6x
    slower), and the loss and gradients are returned in float32, the parameters' dtype. Tested against a
    float64 reference (tests/test_bf16_losses.py: loss within 2e-3 relative, gradients within
    2e-2 relative L2; measured 4e-4 and 5e-3, the inputs' own bf16 rounding included).

    On CPUs with float32 codes the compiled kernel `graphrec/native/club_fit.c` computes the same
    loss and gradients in one pass over the rows (float32 throughout; tested against float64 and
    against this torch code, which stays the fallback and the path for other devices)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
                w2m: torch.Tensor, w2s: torch.Tensor, b2: torch.Tensor) -> torch.Tensor:
        if _compiled(x, y, w1.shape[0]) and w1.dtype == torch.float32:
            loss, *grads = _compiled_fit(x, y, w1, b1, w2m, w2s, b2)
            ctx.save_for_backward(*grads)
            return loss
        n, dy, hm = x.shape[0], y.shape[1], w2m.shape[1]
        out_dtype = w1.dtype
        if x.dtype != out_dtype:  # reduced precision: the parameters in x's dtype for the N-row passes
            w1, b1, w2m, w2s, b2 = (t.to(x.dtype) for t in (w1, b1, w2m, w2s, b2))
        acc = out_dtype  # accumulation dtype of the row sums
        h = torch.addmm(b1, x, w1.T).relu_()
        hmu, hs = h[:, :hm], h[:, hm:]
        s = torch.addmm(b2[dy:], hs, w2s.T).tanh_()
        d = torch.addmm(b2[:dy], hmu, w2m.T).sub_(y)  # delta = mu - y
        dw = s.neg().exp_().mul_(d)  # delta * w
        q = dw * d  # delta^2 w
        # 1/(2N) sum(s + delta^2 w). Row sums: `.to(acc).sum()` rather than `sum(dtype=acc)`, the
        # same float32 sum ~15x faster on CPUs; column sums (bias gradients) leave in x's dtype,
        # accumulated in float32 and rounded once (relative 2^-9), as `sum(0, dtype=)` is slow too
        loss = (s.to(acc).sum() + q.to(acc).sum()) * (0.5 / n)
        grad_s = q.neg_().add_(1.0).mul_(torch.mul(s, s).neg_().add_(1.0)).mul_(0.5 / n)
        grad_mu = dw.mul_(1.0 / n)
        g_w2m, g_w2s = (grad_mu.T @ hmu).to(out_dtype), (grad_s.T @ hs).to(out_dtype)
        g_b2 = torch.cat([grad_mu.sum(0), grad_s.sum(0)]).to(acc)
        dh = torch.cat([grad_mu @ w2m, grad_s @ w2s], 1).mul_(h > 0)
        g_w1, g_b1 = (dh.T @ x).to(out_dtype), dh.sum(0).to(acc)
        ctx.save_for_backward(g_w1, g_b1, g_w2m, g_w2s, g_b2)
        return loss

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return (None, None) + tuple(g * grad for g in ctx.saved_tensors)


class CLUB(nn.Module):
    r"""Variational Gaussian :math:`q_\phi(y\mid x) = \mathcal N(\mu_\phi(x), \mathrm{diag}\,e^{s_\phi(x)})`
    and the CLUB bound it yields (SAND Eq. 11-13):

    .. math::
        \mu_\phi(x) = W_2\,\mathrm{ReLU}(W_1 x), \qquad
        s_\phi(x) = \tanh(W_4\,\mathrm{ReLU}(W_3 x))

    with hidden width ``hidden // 2`` per branch (SAND code: hidden 16 -> 8). φ is fitted by
    maximum likelihood on detached codes (:meth:`learning_loss`, SAND Eq. 12 written as a KL fit);
    :meth:`bound` is the upper bound minimised by the model (:func:`graphrec.losses.club_bound`).
    In SAND's code x is the generic code and y the unique code (the paper writes q(E^g|E^q)).
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 16, estimator: str = "sample",
                 half: bool = True, clamp: bool = True):
        super().__init__()
        h = max(1, hidden // 2)
        self.mu = nn.Sequential(nn.Linear(x_dim, h), nn.ReLU(), nn.Linear(h, y_dim))
        self.logvar = nn.Sequential(nn.Linear(x_dim, h), nn.ReLU(), nn.Linear(h, y_dim), nn.Tanh())
        if estimator not in ("sample", "all"):
            raise ValueError(f"CLUB estimator must be 'sample' or 'all', got {estimator!r}")
        self.estimator, self.half, self.clamp = estimator, half, clamp

    def _stacked(self) -> tuple[torch.Tensor, ...]:
        """(W1, b1, W_mu, W_s, b2): both branches' first layers stacked (one product and one ReLU
        for both), their second layers apart, their biases stacked."""
        m1, m2, v1, v2 = self.mu[0], self.mu[2], self.logvar[0], self.logvar[2]
        return (torch.cat([m1.weight, v1.weight]), torch.cat([m1.bias, v1.bias]), m2.weight, v2.weight,
                torch.cat([m2.bias, v2.bias]))

    def heads(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ(x), s(x)) with both branches' first layers in one product and one ReLU (the
        estimator runs 50 times per batch on every item's codes)."""
        w1, b1, w2m, w2s, b2 = self._stacked()
        h = F.relu(F.linear(x, w1, b1))
        hm, dy = w2m.shape[1], w2m.shape[0]
        return F.linear(h[..., :hm], w2m, b2[:dy]), torch.tanh(F.linear(h[..., hm:], w2s, b2[dy:]))

    def log_likelihood(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Mean over rows of log q_φ(y_i | x_i) (without the 2π constant)."""
        return losses.gaussian_log_likelihood(*self.heads(x), y).mean()

    def learning_loss(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Negative log-likelihood for fitting φ; callers pass detached codes (then the fused
        :class:`_FittedNLL` computes it)."""
        if torch.is_grad_enabled() and not (x.requires_grad or y.requires_grad) and x.dim() == 2:
            hidden = self.mu[0].out_features + self.logvar[0].out_features
            if precision.active() is not None and not _compiled(x, y, hidden):  # train.amp: bf16 codes, cast once
                x, y = precision.lowered(self, "codes_x", x), precision.lowered(self, "codes_y", y)
            return _FittedNLL.apply(x, y, *self._stacked())
        return -self.log_likelihood(x, y)

    def bound(self, x: torch.Tensor, y: torch.Tensor, generator: Optional[torch.Generator] = None) -> torch.Tensor:
        return losses.club_bound(*self.heads(x), y, estimator=self.estimator,
                                 generator=generator, half=self.half, clamp=self.clamp)
