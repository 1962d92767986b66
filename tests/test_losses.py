"""graphrec.losses: each loss against a value computed by hand (or a brute-force oracle)."""
import math

import pytest
import torch
import torch.nn.functional as F

from graphrec import losses


def test_bpr_hand_value_and_log2():
    pos, neg = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0])
    # -mean(ln σ(1), ln σ(-1)) = mean(ln(1+e^-1), ln(1+e))
    want = 0.5 * (math.log(1 + math.exp(-1)) + math.log(1 + math.e))
    assert losses.bpr_loss(pos, neg).item() == pytest.approx(want, rel=1e-6)
    assert losses.bpr_loss(pos, neg, log_base=2).item() == pytest.approx(want / math.log(2), rel=1e-6)


def test_l2_regularisers():
    a = torch.tensor([[3.0, 4.0]])  # ||a|| = 5
    b = torch.tensor([[0.0, 0.0], [6.0, 8.0]])  # ||b||_F = 10, 2 rows
    assert losses.l2_reg(a, b).item() == pytest.approx((5 + 10) / 2)
    assert losses.l2_sq_reg(a, b).item() == pytest.approx((25 + 100) / (2 * 2))


def test_bce_hand_value():
    got = losses.bce_loss(torch.tensor([0.0, 2.0]), torch.tensor([1, 0]))
    want = 0.5 * (math.log(2) + math.log(1 + math.exp(2)))
    assert got.item() == pytest.approx(want, rel=1e-6)


def test_solosim_hand_value_and_scale_invariance():
    # two items, orthogonal unit codes: logits = I / tau
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    tau = 0.5
    want = -math.log(math.exp(2) / (math.exp(2) + 1))
    assert losses.solosim(a, a, tau).item() == pytest.approx(want, rel=1e-6)
    x, y = torch.randn(7, 4), torch.randn(7, 4)
    assert losses.solosim(3 * x, 0.1 * y, 0.2).item() == pytest.approx(losses.solosim(x, y, 0.2).item(), rel=1e-5)
    ref = F.cross_entropy(F.normalize(x, dim=1) @ F.normalize(y, dim=1).T / 0.2, torch.arange(7))
    assert losses.solosim(x, y, 0.2).item() == pytest.approx(ref.item(), rel=1e-6)
    # tau -> 0 with perfectly aligned orthonormal codes: loss -> 0
    assert losses.solosim(torch.eye(5), torch.eye(5), 0.01).item() < 1e-6


def test_infonce_symmetric_and_reduces_to_solosim():
    x, y = torch.randn(6, 3), torch.randn(6, 3)
    s = losses.infonce(x, y, 0.3)
    assert s.item() == pytest.approx(losses.infonce(y, x, 0.3).item(), rel=1e-6)
    want = 0.5 * (losses.solosim(x, y, 0.3) + losses.solosim(y, x, 0.3))
    assert s.item() == pytest.approx(want.item(), rel=1e-6)
    assert losses.infonce(x, y, 0.3, symmetric=False).item() == pytest.approx(losses.solosim(x, y, 0.3).item(), rel=1e-6)
    # intra negatives: brute-force NT-Xent row for row 0
    xn, yn = F.normalize(x, dim=1), F.normalize(y, dim=1)
    got = losses.infonce(x, y, 0.3, symmetric=False, intra_negatives=True)
    rows = []
    for i in range(6):
        pos = xn[i] @ yn[i] / 0.3
        den = torch.logsumexp(torch.cat([xn[i] @ yn.T / 0.3, torch.stack([xn[i] @ xn[j] / 0.3 for j in range(6) if j != i])]), 0)
        rows.append(den - pos)
    assert got.item() == pytest.approx(torch.stack(rows).mean().item(), rel=1e-5)


def test_gaussian_log_likelihood_hand_value():
    mu, logvar, y = torch.tensor([[0.0, 1.0]]), torch.tensor([[0.0, math.log(4.0)]]), torch.tensor([[1.0, 3.0]])
    want = (-1 / 2 - 0) + (-4 / 8 - math.log(4.0) / 2)
    assert losses.gaussian_log_likelihood(mu, logvar, y).item() == pytest.approx(want, rel=1e-6)


def test_club_bound_all_matches_brute_force_and_sample_is_permutation():
    torch.manual_seed(0)
    mu, logvar, y = torch.randn(5, 3), 0.3 * torch.randn(5, 3), torch.randn(5, 3)
    ll = torch.stack([torch.stack([losses.gaussian_log_likelihood(mu[i:i + 1], logvar[i:i + 1], y[j:j + 1])[0]
                                   for j in range(5)]) for i in range(5)])  # ll[i, j] = log q(y_j | x_i)
    brute = (ll.diag() - ll.mean(1)).mean()
    got = losses.club_bound(mu, logvar, y, estimator="all", half=False, clamp=False)
    assert got.item() == pytest.approx(brute.item(), rel=1e-5)
    g = torch.Generator().manual_seed(3)
    perm = torch.randperm(5, generator=torch.Generator().manual_seed(3))
    want = 0.5 * (ll.diag() - ll[torch.arange(5), perm]).mean()
    got = losses.club_bound(mu, logvar, y, estimator="sample", generator=g, clamp=False)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    assert losses.club_bound(mu, logvar, -100 * y.abs(), estimator="all").item() >= 0.0  # clamp


def test_negative_l2_modes():
    g, q = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0]])
    assert losses.negative_l2(g, q, "normalized").item() == pytest.approx(-2.0)
    assert losses.negative_l2(g, q, "raw").item() == pytest.approx(-(1 + 4) / 2)
    assert losses.negative_l2(g, q, "neglog").item() == pytest.approx(-math.log(2.5), rel=1e-6)
    # bounded in [-4, 0] on normalised codes, and its gradient pushes the codes apart
    x, z = torch.randn(10, 4, requires_grad=True), torch.randn(10, 4)
    v = losses.negative_l2(x, z)
    assert -4.0 <= v.item() <= 0.0
    v.backward()
    with torch.no_grad():
        assert losses.negative_l2(x - 0.1 * x.grad, z).item() < v.item()
    with pytest.raises(ValueError):
        losses.negative_l2(g, q, "bogus")


@pytest.mark.parametrize("scale", [0.1, 1.0, 30.0])  # 30: past the norm shift's bound, row-max path
def test_blocked_diagonal_ce_equals_full_matrix_value_and_gradients(monkeypatch, scale):
    """Row-blocked contrastive CE (no N x N matrix) equals F.cross_entropy on the full logits."""
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(0)
    q = (scale * torch.randn(37, 5, dtype=torch.float64, generator=g)).requires_grad_()
    k = (scale * torch.randn(37, 5, dtype=torch.float64, generator=g)).requires_grad_()
    want = F.cross_entropy(q @ k.T / 0.2, torch.arange(37))
    gq, gk = torch.autograd.grad(want, [q, k])
    monkeypatch.setattr(losses, "CONTRASTIVE_BLOCK", 37 * 8)  # blocks of 8 rows, the last one short
    got = losses.diagonal_ce(q, k, 0.2)
    hq, hk = torch.autograd.grad(got, [q, k])
    torch.testing.assert_close(got, want)
    torch.testing.assert_close(hq, gq)
    torch.testing.assert_close(hk, gk)
    with torch.no_grad():  # the loss alone, no gradient formed
        torch.testing.assert_close(losses.diagonal_ce(q, k, 0.2), want.detach())
    (hk_only,) = torch.autograd.grad(losses.diagonal_ce(q.detach(), k, 0.2), [k])
    torch.testing.assert_close(hk_only, gk)
    # and through the public losses
    x, y = torch.randn(37, 4, generator=g), torch.randn(37, 4, generator=g)
    full = F.cross_entropy(F.normalize(x, dim=-1) @ F.normalize(y, dim=-1).T / 0.3, torch.arange(37))
    assert losses.solosim(x, y, 0.3).item() == pytest.approx(full.item(), rel=1e-5)
    monkeypatch.setattr(losses, "CONTRASTIVE_BLOCK", 1 << 24)
    assert losses.infonce(x, y, 0.3).item() == pytest.approx(
        0.5 * (losses.solosim(x, y, 0.3) + losses.solosim(y, x, 0.3)).item(), rel=1e-5)


def test_blocked_diagonal_ce_float32_matches_within_rounding(monkeypatch):
    """In float32 the backward's exp(S - lse) (lse from the forward's diagonal) stays a softmax:
    gradients match the full-matrix autograd to float rounding, for blocks that split the rows unevenly."""
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(1)
    q = F.normalize(torch.randn(301, 16, generator=g), dim=-1).requires_grad_()
    k = F.normalize(torch.randn(301, 16, generator=g), dim=-1).requires_grad_()
    want = F.cross_entropy(q @ k.T / 0.1, torch.arange(301))
    gq, gk = torch.autograd.grad(want, [q, k])
    monkeypatch.setattr(losses, "CONTRASTIVE_BLOCK", 301 * 13)
    got = losses.diagonal_ce(q, k, 0.1)
    hq, hk = torch.autograd.grad(got, [q, k])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(hq, gq, rtol=1e-4, atol=1e-7)
    torch.testing.assert_close(hk, gk, rtol=1e-4, atol=1e-7)


def test_gaussian_log_likelihood_backward_is_autograd_of_the_formula():
    """The hand-written backward equals autograd of the plain expression (and passes gradcheck)."""
    g = torch.Generator().manual_seed(3)
    mu, logvar, y = (torch.randn(7, 5, dtype=torch.float64, generator=g, requires_grad=True) for _ in range(3))
    torch.autograd.gradcheck(losses.gaussian_log_likelihood, (mu, logvar, y))
    w = torch.rand(7, dtype=torch.float64, generator=g)
    plain = ((-(mu - y).pow(2) / (2.0 * logvar.exp()) - 0.5 * logvar).sum(-1) * w).sum()
    fused = (losses.gaussian_log_likelihood(mu, logvar, y) * w).sum()
    torch.testing.assert_close(fused, plain)
    for a, b in zip(torch.autograd.grad(fused, [mu, logvar, y]), torch.autograd.grad(plain, [mu, logvar, y])):
        torch.testing.assert_close(a, b)
    # a detached target (CLUB's estimator fit) and a broadcast row
    ll = losses.gaussian_log_likelihood(mu, logvar, y.detach()[:1])
    assert ll.shape == (7,) and torch.autograd.grad(ll.sum(), logvar)[0].shape == (7, 5)
