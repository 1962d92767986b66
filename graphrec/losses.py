"""Loss functions; each names the equation it implements and any deviation from the paper.

All losses return a scalar mean over the rows they are given (papers often write sums; a sum only
rescales the learning rate, and means keep the weights α, β comparable across batch sizes).
"""
from __future__ import annotations

import math
from typing import Optional, Union

import torch
import torch.nn.functional as F


def bpr_loss(pos: torch.Tensor, neg: torch.Tensor, log_base: float = math.e) -> torch.Tensor:
    r"""BPR (Rendle et al. 2009, Eq. 4; SAND Eq. 16):
    :math:`-\frac{1}{B}\sum_{(u,i,j)} \log_b \sigma(\hat y_{ui} - \hat y_{uj})`.

    ``log_base`` = e (FREEDOM, LightGCN) or 2 (SAND/DRAGON code: ``-mean(log2(sigmoid(.)))``,
    i.e. the natural-log loss divided by ln 2). Mean instead of the paper's sum (see module doc).
    """
    loss = -F.logsigmoid(pos - neg).mean()
    if log_base != math.e:
        loss = loss / math.log(log_base)
    return loss


def multi_negative_bpr(pos: torch.Tensor, neg: torch.Tensor) -> torch.Tensor:
    r"""BPR over K negatives per pair (MixGCF's ``create_bpr_loss``):
    :math:`\frac1B\sum_b \log(1 + \sum_k \exp(\hat y_{b,k}^- - \hat y_b^+))`, computed as
    ``softplus(logsumexp_k(neg - pos))`` (no overflow); with K = 1 it is :func:`bpr_loss`.
    ``pos`` [B], ``neg`` [B, K]."""
    return F.softplus(torch.logsumexp(neg - pos.unsqueeze(1), dim=1)).mean()


def l2_reg(*embeddings: torch.Tensor) -> torch.Tensor:
    r"""MMRec/RecBole ``EmbLoss``: :math:`\frac{1}{B}\sum_k \|E_k\|_F` (Frobenius norms, not squared),
    B = rows of the last tensor. Kept unsquared for parity with MMRec's reported numbers."""
    return sum(torch.linalg.norm(e) for e in embeddings) / embeddings[-1].shape[0]


def l2_sq_reg(*embeddings: torch.Tensor) -> torch.Tensor:
    r"""Squared L2 regulariser (LightGCN Eq. 15 / VBPR's :math:`\lambda\|\Theta\|^2` on the batch):
    :math:`\frac{1}{2B}\sum_k \|E_k\|_F^2`, B = rows of the last tensor."""
    return sum(e.pow(2).sum() for e in embeddings) / (2.0 * embeddings[-1].shape[0])


def bce_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    r"""Binary cross-entropy on logits:
    :math:`-\frac{1}{N}\sum y\log\sigma(s) + (1-y)\log(1-\sigma(s))` (numerically stable form)."""
    return F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))


#: entries of one row block of an N x N logit matrix held at a time: 4 MB of float32, so a block's
#: logits stay in cache between the product that writes them and the pass that reads them. At
#: Clothing scale (23,033 items, 32-d heads, 2 threads) forward + backward took 5.1 s with 64 MB
#: blocks and 1.6 s with these (measured 2026-11, 2 threads).
CONTRASTIVE_BLOCK = 1 << 20

#: the same for bf16 blocks (mixed precision): 16M logits (32 MB). bf16 products of few rows run far
#: below float32's rate, whatever the cache (each call re-packs the N-row operand), so these blocks
#: are sized by rows: at Clothing scale 728 rows, and forward + backward took 0.64 s against 1.0 s
#: with the float32 path's 45-row blocks (2 threads, 2026-12-05; 512 and 2048 rows: 0.65, 0.64 s)
CONTRASTIVE_BLOCK_LOWP = 1 << 24


#: a row's shift is max(|q_i|) max(|k_j|) / tau when that is at most this (normalised inputs: 1/tau):
#: exp(S - shift) >= exp(-2 * 40) stays a normal float32, so the row's largest term never underflows
_NORM_SHIFT_MAX = 40.0


class _DiagonalCE(torch.autograd.Function):
    r""":math:`\frac1N\sum_i [\ell_i - S_{ii}]`, :math:`\ell_i = \mathrm{logsumexp}_j S_{ij}`,
    :math:`S = QK^\top/\tau` (cross-entropy with targets on the diagonal), in row blocks, so no
    N x N matrix is ever held. Every block is written into one reused buffer (a fresh multi-MB
    tensor per block costs page faults).

    The gradient is formed in the same pass as the loss when it is needed (training): with
    :math:`E = \exp(S - c)` for a per-row shift :math:`c_i` and :math:`z_i = \sum_j E_{ij}`,
    :math:`P = E/z` and :math:`\partial Q = (P K - K)/(N\tau)`, :math:`\partial K = (P^\top Q -
    Q)/(N\tau)`, where :math:`P K = \mathrm{diag}(1/z)(E K)` and :math:`P^\top Q = E^\top
    \mathrm{diag}(1/z) Q` put the division on the N x d side. Three products per block instead
    of five (a separate backward re-forms every block) and one ``exp`` instead of two. The shift is
    :math:`c_i = |q_i| \max_j |k_j| / \tau` (Cauchy-Schwarz: no logit exceeds it) when that stays
    small, which saves the row maximum; otherwise the row maximum. Equal to
    ``F.cross_entropy(Q K^T / tau, arange(N))``.

    ``lowp=torch.bfloat16`` (mixed precision, `graphrec.nn.precision`): the N x N block lives in
    bfloat16. :math:`S - c` comes out of one product of :math:`[Q/\tau, -c]` and :math:`[K, 1]`
    (float32 accumulation, one rounding of the shifted logit, so the largest terms, near 0, are
    the most exact: absolute error :math:`\le 2^{-9}|S_{ij} - c_i|`), the ``exp`` runs on bf16
    (half the memory traffic: 3x faster here) and :math:`z_i` is summed in float32; the two
    gradient products take the bf16 block and return N x d rows that are accumulated in float32.
    The shift is the bf16-rounded :math:`c_i`, used identically in the product and in
    :math:`\ell_i`, so it cancels exactly. Tested against a float64 reference
    (tests/test_bf16_losses.py: loss within 2e-3 relative, gradients within 2e-2 relative L2)."""

    @staticmethod
    def forward(ctx, q: torch.Tensor, k: torch.Tensor, tau: float, block: int,
                lowp: Optional[torch.dtype] = None) -> torch.Tensor:
        n = q.shape[0]
        qs = q / tau  # 1/tau on the N x d side, not on the N x N logits
        need_grad = any(ctx.needs_input_grad[:2])
        bound = qs.norm(dim=1) * k.norm(dim=1).max()
        by_norm = bool(bound.max() <= _NORM_SHIFT_MAX)
        if need_grad:
            # the key-side gradient accumulates transposed in the bf16 path (see there)
            dq = torch.empty_like(qs)
            dk = torch.zeros_like(k) if lowp is None else k.new_zeros(k.shape[1], k.shape[0])
        lse = torch.empty(n, dtype=q.dtype, device=q.device)
        if lowp is not None:
            kl = k.to(lowp)
            ka = torch.cat([k, k.new_ones(k.shape[0], 1)], 1).to(lowp)
            if by_norm:
                shift = bound.to(lowp)
                ql = torch.cat([qs, shift.neg().to(qs.dtype).unsqueeze(1)], 1).to(lowp)
                shift = shift.to(q.dtype)
            else:
                qb = qs.to(lowp)
            buf = torch.empty(min(block, n), k.shape[0], dtype=lowp, device=q.device)
            for s in range(0, n, block):
                e = min(n, s + block)
                if by_norm:
                    ex = torch.mm(ql[s:e], ka.T, out=buf[:e - s])
                    row_shift = shift[s:e]
                else:  # large logits: the row maxima first, then S - max from one product (one rounding)
                    top = torch.mm(qb[s:e], kl.T, out=buf[:e - s]).amax(1, keepdim=True)
                    ex = torch.mm(torch.cat([qb[s:e], top.neg()], 1), ka.T, out=buf[:e - s])
                    row_shift = top.squeeze(1).to(q.dtype)
                # the row sums leave the product in bf16 (accumulated in float32, one rounding of
                # the sum: relative 2^-9): a float32-typed reduction of bf16 runs ~25x slower on CPUs
                z = ex.exp_().sum(1).to(q.dtype)
                lse[s:e] = z.log().add_(row_shift)
                if need_grad:
                    inv_z = z.reciprocal_().unsqueeze(1)
                    dq[s:e] = torch.mm(ex, kl).to(q.dtype).mul_(inv_z)
                    # (Q^T E)^T rather than E^T Q: the block read in its stored order, ~10% faster
                    dk.add_(torch.mm((qs[s:e] * inv_z).to(lowp).T, ex))
        else:
            kt = k.T
            neg_shift = bound.neg().unsqueeze(1)
            buf = torch.empty(min(block, n), k.shape[0], dtype=q.dtype, device=q.device)
            for s in range(0, n, block):
                e = min(n, s + block)
                if by_norm:
                    ex = torch.addmm(neg_shift[s:e], qs[s:e], kt, out=buf[:e - s])
                    shift = bound[s:e]
                else:
                    ex = torch.mm(qs[s:e], kt, out=buf[:e - s])
                    top = ex.amax(1, keepdim=True)
                    ex.sub_(top)
                    shift = top.squeeze(1)
                z = ex.exp_().sum(1)
                lse[s:e] = z.log().add_(shift)
                if need_grad:
                    inv_z = z.reciprocal_().unsqueeze(1)
                    torch.mm(ex, k, out=dq[s:e]).mul_(inv_z)
                    dk.addmm_(ex.T, qs[s:e] * inv_z)
        if need_grad:
            if lowp is not None:
                dk = dk.T
            dq.sub_(k)  # the diagonal targets: P - I
            dk.sub_(qs)
            ctx.save_for_backward(dq, dk)
            ctx.scale_q = 1.0 / (n * tau)
            ctx.scale_k = 1.0 / n
        return (lse - torch.einsum("nd,nd->n", qs, k)).mean()

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        dq, dk = ctx.saved_tensors
        return dq * (grad * ctx.scale_q), dk * (grad * ctx.scale_k), None, None, None


def _lowp(lowp):
    """The dtype of the N x N blocks: ``"active"`` = the running step's mixed-precision dtype
    (`graphrec.nn.precision`; None outside a bf16 step), else the given dtype (None = float32)."""
    if isinstance(lowp, str):
        from graphrec.nn.precision import active  # same layer; imported late (nn imports losses)
        return active()
    return lowp


def diagonal_ce(q: torch.Tensor, k: torch.Tensor, tau: float, lowp: Union[torch.dtype, None, str] = "active"
                ) -> torch.Tensor:
    """``F.cross_entropy(q @ k.T / tau, arange(N))`` in row blocks of at most
    :data:`CONTRASTIVE_BLOCK` logits, :data:`CONTRASTIVE_BLOCK_LOWP` in bf16 (no N x N matrix:
    SAND aligns all 23k Clothing items).
    ``lowp``: dtype of the blocks (:class:`_DiagonalCE`); inputs and the loss are float32."""
    lowp = _lowp(lowp)
    block = max(1, (CONTRASTIVE_BLOCK if lowp is None else CONTRASTIVE_BLOCK_LOWP) // max(1, k.shape[0]))
    if q.dtype in (torch.float16, torch.bfloat16):  # under autocast: the softmax is taken in float32
        q, k = q.float(), k.float()
    if block >= q.shape[0] and lowp is None:  # small: one block, plain autograd
        return F.cross_entropy(q @ k.T / tau, torch.arange(q.shape[0], device=q.device))
    return _DiagonalCE.apply(q, k, float(tau), block, lowp)


def solosim(anchor: torch.Tensor, candidate: torch.Tensor, tau: float) -> torch.Tensor:
    r"""SAND's SoloSimLoss (Eq. 10) as the official code computes it: one-directional cross-modal
    InfoNCE, anchors (text) scored against all candidates (visual) of the same item set,

    .. math:: -\frac{1}{N}\sum_i \log \frac{\exp(\hat a_i\cdot\hat c_i/\tau)}
              {\sum_j \exp(\hat a_i\cdot\hat c_j/\tau)}

    with :math:`\hat x = x/\|x\|`. Deviation from the paper's text ("avoids negative sampling"):
    the softmax denominator does contain the other items as in-batch negatives, as in SAND's official code.
    """
    return diagonal_ce(F.normalize(anchor, dim=-1), F.normalize(candidate, dim=-1), tau)


def infonce(a: torch.Tensor, b: torch.Tensor, tau: float, symmetric: bool = True,
            intra_negatives: bool = False) -> torch.Tensor:
    r"""Cross-modal InfoNCE (CLIP form) for SAND_c/SAND_d; the paper does not define it, this is the
    CLIP form (Radford et al. 2021, the usual reading of "InfoNCE" across modalities): :math:`\frac12[\mathrm{CE}(a\to b) + \mathrm{CE}(b\to a)]` on
    cosine logits / τ, positives on the diagonal. ``symmetric=False`` is exactly :func:`solosim`
    with ``a`` as anchors. ``intra_negatives=True`` adds same-modality negatives
    :math:`\hat a_i\cdot\hat a_j, j\ne i` to each row's denominator (NT-Xent).
    """
    an = F.normalize(a, dim=-1)
    bn = F.normalize(b, dim=-1)
    if not intra_negatives:  # row-blocked, no N x N matrix held
        if not symmetric:
            return diagonal_ce(an, bn, tau)
        return 0.5 * (diagonal_ce(an, bn, tau) + diagonal_ce(bn, an, tau))
    n = an.shape[0]
    target = torch.arange(n, device=an.device)
    ab = an @ bn.T / tau

    def one_side(cross: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        if not intra_negatives:
            return F.cross_entropy(cross, target)
        intra = x @ x.T / tau
        intra = intra.masked_fill(torch.eye(n, dtype=torch.bool, device=x.device), float("-inf"))
        return F.cross_entropy(torch.cat([cross, intra], dim=1), target)

    if not symmetric:
        return one_side(ab, an)
    return 0.5 * (one_side(ab, an) + one_side(ab.T, bn))


class _GaussianLL(torch.autograd.Function):
    r"""Forward and hand-written backward of :func:`gaussian_log_likelihood`: with
    :math:`\delta = \mu - y` and :math:`w = e^{-s}`,
    :math:`\partial\ell_i/\partial\mu = -\delta w`, :math:`\partial\ell_i/\partial y = \delta w`,
    :math:`\partial\ell_i/\partial s = \tfrac12(\delta^2 w - 1)`. CLUB's estimator evaluates this
    50 times per batch on every item's codes; the fused form makes about half the passes over the
    N x D tensors that autograd's graph of the same expression does."""

    @staticmethod
    def forward(ctx, mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        d = mu - y
        dw = logvar.neg().exp_().mul_(d)
        ctx.save_for_backward(d, dw)
        return torch.addcmul(logvar, dw, d).sum(-1).mul_(-0.5)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        d, dw = ctx.saved_tensors
        g = grad.unsqueeze(-1)
        dmu = dw * g.neg() if ctx.needs_input_grad[0] or ctx.needs_input_grad[2] else None
        dlogvar = (dw * d).sub_(1.0).mul_(g * 0.5) if ctx.needs_input_grad[1] else None
        dy = dmu.neg() if ctx.needs_input_grad[2] else None
        return (dmu if ctx.needs_input_grad[0] else None), dlogvar, dy


def gaussian_log_likelihood(mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Per-row log-density of y under the diagonal Gaussian q(y|x) = N(μ(x), e^{s(x)}), up to the
    constant :math:`-\frac{D}{2}\log 2\pi`:
    :math:`\ell_i = \sum_d -\frac{(\mu_d-y_d)^2}{2e^{s_d}} - \frac{s_d}{2}`. Shape [N]."""
    mu, logvar, y = torch.broadcast_tensors(mu, logvar, y)
    return _GaussianLL.apply(mu, logvar, y)


def club_bound(mu: torch.Tensor, logvar: torch.Tensor, y: torch.Tensor, estimator: str = "sample",
               generator: Optional[torch.Generator] = None, half: bool = True,
               clamp: bool = True) -> torch.Tensor:
    r"""CLUB upper bound on I(x; y) (Cheng et al. 2020; SAND Eq. 13), with q_φ(y|x) given as
    (μ(x), s(x)) for the N rows:

    - ``estimator="all"`` (paper Eq. 13): :math:`\frac1N\sum_i[\ell(y_i|x_i) - \frac1N\sum_j
      \ell(y_j|x_i)]`, computed in O(N·D) via the Gaussian's sufficient statistics (no N×N).
    - ``estimator="sample"`` (official code, CLUBSample): the inner mean replaced by one random
      permutation π, :math:`\frac1N\sum_i[\ell(y_i|x_i) - \ell(y_{\pi(i)}|x_i)]`.

    ``half`` multiplies by 1/2 and ``clamp`` takes max(0, ·), both as in the official code.
    """
    pos = gaussian_log_likelihood(mu, logvar, y)
    if estimator == "sample":
        perm = torch.randperm(y.shape[0], device=y.device, generator=generator)
        neg = gaussian_log_likelihood(mu, logvar, y[perm])
    elif estimator == "all":
        # mean_j (mu - y_j)^2 = (mu - ybar)^2 + var_j(y): exact mean over all j, no N x N matrix.
        ybar = y.mean(0, keepdim=True)
        yvar = y.var(0, unbiased=False, keepdim=True)
        neg = (-((mu - ybar).pow(2) + yvar) / (2.0 * logvar.exp()) - 0.5 * logvar).sum(-1)
    else:
        raise ValueError(f"club estimator must be 'sample' or 'all', got {estimator!r}")
    bound = (pos - neg).mean()
    if half:
        bound = 0.5 * bound
    return bound.clamp_min(0.0) if clamp else bound


def negative_l2(g: torch.Tensor, q: torch.Tensor, mode: str = "normalized", eps: float = 1e-8) -> torch.Tensor:
    r"""SAND's negative ℓ2 distancing (Eq. 14), :math:`-\|E_q - E_g\|_2^2`, averaged over rows:

    - ``"normalized"`` (default; graphrec's choice, argued here): :math:`-\frac1N\sum_i\|\hat g_i-\hat q_i\|^2` on
      L2-normalised rows, bounded in [-4, 0] (the raw form is unbounded below: scaling the codes
      drives it to -∞ without separating any information).
    - ``"raw"`` (official code's commented line): :math:`-\mathrm{MSE}(g, q)` (mean over rows and dims).
    - ``"neglog"`` (the paper's "negative ℓ2 log(ℓ2)" wording): :math:`-\log(\mathrm{MSE}(g,q)+\epsilon)`.
    """
    if mode == "normalized":
        return -(F.normalize(g, dim=-1) - F.normalize(q, dim=-1)).pow(2).sum(-1).mean()
    if mode == "raw":
        return -F.mse_loss(g, q)
    if mode == "neglog":
        return -torch.log(F.mse_loss(g, q) + eps)
    raise ValueError(f"negative_l2 mode must be 'normalized', 'raw' or 'neglog', got {mode!r}")
