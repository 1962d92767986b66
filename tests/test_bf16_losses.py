"""bf16 paths of the fused losses against float64 references.

Stated tolerances (bfloat16 keeps 8 significant bits: unit roundoff 2^-9 = 0.2%):
- the blocked contrastive cross-entropy (`losses._DiagonalCE`, SoloSim/InfoNCE): loss within
  5e-4 relative; gradients within 2e-3 relative L2 for normalised rows (|logit| <= 1/tau, the
  SoloSim/InfoNCE case: measured 4.5e-4) and 2e-2 for logits of magnitude ~150 (the inputs' own
  bf16 rounding then moves a logit by ~0.3; measured 9e-3); float32 path: 1e-5 and 1e-4;
- CLUB's fused fitting loss (`nn.mi._FittedNLL`) on bf16 codes: loss within 2e-3 relative,
  parameter gradients within 2e-2 relative L2 (measured 4e-4 and 5e-3), returned in float32;
- every bf16 result is also compared with the float32 path, so a bf16 path that silently fell
  back to float32 would still pass the reference check, but not the "it did run in bf16" check.
"""
import pytest
import torch
import torch.nn.functional as F

from graphrec import losses
from graphrec.nn import precision

LOSS_RTOL_BF16 = 5e-4
LOSS_RTOL_F32, GRAD_RTOL_F32 = 1e-5, 1e-4


def _pair(n: int, d: int, scale: float = 1.0, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    q = F.normalize(torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)
    k = F.normalize(q + 0.8 * torch.randn(n, d, generator=g, dtype=torch.float64), dim=1)  # partly aligned
    return q * scale, k


def _reference(q64, k64, tau):
    q, k = q64.clone().requires_grad_(), k64.clone().requires_grad_()
    loss = F.cross_entropy(q @ k.T / tau, torch.arange(q.shape[0]))
    loss.backward()
    return float(loss.detach()), q.grad, k.grad


def _ours(q64, k64, tau, lowp):
    q, k = q64.float().requires_grad_(), k64.float().requires_grad_()
    loss = losses._DiagonalCE.apply(q, k, tau, 97, lowp)  # 97-row blocks: many blocks and a ragged last one
    loss.backward()
    return float(loss.detach()), q.grad.double(), k.grad.double()


def _rel(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("scale,grad_rtol", [(1.0, 2e-3), (30.0, 2e-2)])  # 30: the row-maximum path
def test_diagonal_ce_bf16_and_float32_match_float64(scale, grad_rtol):
    tau = 0.2
    q64, k64 = _pair(1500, 32, scale)
    ref, gq, gk = _reference(q64, k64, tau)
    f32, fq, fk = _ours(q64, k64, tau, None)
    b16, bq, bk = _ours(q64, k64, tau, torch.bfloat16)
    assert abs(f32 - ref) <= LOSS_RTOL_F32 * abs(ref)
    assert _rel(fq, gq) <= GRAD_RTOL_F32 and _rel(fk, gk) <= GRAD_RTOL_F32
    assert abs(b16 - ref) <= LOSS_RTOL_BF16 * abs(ref), (b16, ref)
    assert _rel(bq, gq) <= grad_rtol and _rel(bk, gk) <= grad_rtol, (_rel(bq, gq), _rel(bk, gk))
    # it did run in bf16: the bf16 gradient is further from the reference than the float32 one
    assert _rel(bq, gq) > 10 * _rel(fq, gq)


def test_solosim_follows_the_active_precision_policy():
    q64, k64 = _pair(1200, 16)
    q, k = q64.float(), k64.float()
    plain = losses.solosim(q, k, 0.2)
    with precision.policy(None, "cpu"):
        assert float(losses.solosim(q, k, 0.2)) == float(plain)  # float32 policy: the float32 path
    with precision.policy(torch.bfloat16, "cpu"):
        low = losses.solosim(q, k, 0.2)
    assert low.dtype == torch.float32 and float(low) != float(plain)
    assert abs(float(low) - float(plain)) <= LOSS_RTOL_BF16 * abs(float(plain))
    # explicit dtype wins over the policy
    with precision.policy(torch.bfloat16, "cpu"):
        assert float(losses.diagonal_ce(F.normalize(q, dim=1), F.normalize(k, dim=1), 0.2, None)) == float(plain)


def test_infonce_symmetric_bf16_within_tolerance_of_float64():
    q64, k64 = _pair(900, 24, seed=3)
    tau = 0.1
    ref = 0.5 * (F.cross_entropy(q64 @ k64.T / tau, torch.arange(900))
                 + F.cross_entropy(k64 @ q64.T / tau, torch.arange(900)))
    with precision.policy(torch.bfloat16, "cpu"):
        # 900 rows: the default block holds them all, and the bf16 path still takes the fused route
        got = losses.infonce(q64.float(), k64.float(), tau)
    assert abs(float(got) - float(ref)) <= LOSS_RTOL_BF16 * float(ref)


def test_club_fitting_loss_bf16_matches_float64():
    from graphrec.nn.mi import CLUB, _FittedNLL
    torch.manual_seed(0)
    club = CLUB(32, 32, 16)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4000, 32, generator=g)
    y = 0.5 * torch.randn(4000, 32, generator=g) + 0.3 * x

    def ours(xx, yy):
        ps = [t.detach().requires_grad_() for t in club._stacked()]
        loss = _FittedNLL.apply(xx, yy, *ps)
        loss.backward()
        return loss.detach(), [p.grad for p in ps]

    ps = [t.detach().double().requires_grad_() for t in club._stacked()]
    w1, b1, w2m, w2s, b2 = ps
    h = torch.relu(x.double() @ w1.T + b1)
    mu, s = h[:, :8] @ w2m.T + b2[:32], torch.tanh(h[:, 8:] @ w2s.T + b2[32:])
    ref = (0.5 * ((mu - y.double()) ** 2 * torch.exp(-s) + s).sum(1)).mean()
    ref.backward()
    f32, gf = ours(x, y)
    b16, gb = ours(x.bfloat16(), y.bfloat16())
    assert b16.dtype == torch.float32 and all(gr.dtype == torch.float32 for gr in gb)
    assert abs(float(f32) - float(ref)) <= 1e-5 * abs(float(ref))
    assert abs(float(b16) - float(ref)) <= 2e-3 * abs(float(ref))
    for p, a, b in zip(ps, gf, gb):
        assert _rel(a.double(), p.grad) <= 1e-5
        assert 1e-5 < _rel(b.double(), p.grad) <= 2e-2  # bf16 did run, within the stated tolerance


def test_club_learning_loss_uses_bf16_codes_only_under_a_policy(monkeypatch):
    from graphrec.nn import mi
    from graphrec.nn.mi import CLUB
    monkeypatch.setattr(mi, "_kernel", lambda: None)  # the torch path (the compiled one reads float32)
    club = CLUB(8, 8, 16)
    x, y = torch.randn(300, 8), torch.randn(300, 8)
    plain = club.learning_loss(x, y)
    with precision.policy(torch.bfloat16, "cpu"):
        low = club.learning_loss(x, y)
        cached = club._lowered_cache["codes_x"][2]
        club.learning_loss(x, y)
        assert club._lowered_cache["codes_x"][2] is cached  # cast once for the estimator's steps
    assert low.dtype == torch.float32 and float(low) != float(plain)
    assert abs(float(low) - float(plain)) <= 2e-3 * abs(float(plain))
