"""CLUB's compiled fitting step (graphrec/native/club_fit.c) against a float64 oracle and against the
torch code it replaces: loss and all four parameter gradients, for SAND's shape (32-d codes, 16
hidden units, the specialised path), for other multiples of 16 (the generic path), for row counts
that leave ragged tiles and thread shares, and for 1 and 2 threads; shapes it cannot take, other
dtypes and a missing library fall back to torch; under mixed precision its codes stay float32."""
import pytest
import torch

from graphrec.nn import mi, precision
from graphrec.nn.mi import CLUB, _FittedNLL

needs_native = pytest.mark.skipif(mi._kernel() is None, reason="no compiled CLUB step here")


def _oracle(x, y, params):
    """Loss and gradients of CLUB's fitting loss in float64 by autograd of the plain expression."""
    ps = [p.detach().double().requires_grad_() for p in params]
    w1, b1, w2m, w2s, b2 = ps
    h = torch.relu(x.double() @ w1.T + b1)
    dy, hm = y.shape[1], w2m.shape[1]
    mu, s = h[:, :hm] @ w2m.T + b2[:dy], torch.tanh(h[:, hm:] @ w2s.T + b2[dy:])
    loss = (0.5 * ((mu - y.double()) ** 2 * torch.exp(-s) + s).sum(1)).mean()
    loss.backward()
    return loss.detach(), [p.grad for p in ps]


def _ours(x, y, params):
    ps = [p.detach().clone().requires_grad_() for p in params]
    loss = _FittedNLL.apply(x, y, *ps)
    loss.backward()
    return loss.detach(), [p.grad for p in ps]


def _rel(a, b):
    return float((a.double() - b.double()).norm() / b.double().norm().clamp_min(1e-30))


def _case(n, dx, dy, hidden, seed):
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    club = CLUB(dx, dy, hidden)
    x = torch.randn(n, dx, generator=g)
    y = 0.5 * torch.randn(n, dy, generator=g) + x @ torch.randn(dx, dy, generator=g) * (0.3 / dx ** 0.5)  # y depends on x
    return x, y, [p.detach() for p in club._stacked()]


@needs_native
@pytest.mark.parametrize("n,dx,dy,hidden", [(4000, 32, 32, 16), (777, 48, 16, 32), (33, 16, 32, 16), (1, 32, 32, 16)])
@pytest.mark.parametrize("threads", [1, 2])
def test_compiled_step_matches_float64_and_torch(monkeypatch, n, dx, dy, hidden, threads):
    monkeypatch.setattr(mi, "_ONE_THREAD_WORK", 0)  # small cases too on the requested threads
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    x, y, params = _case(n, dx, dy, hidden, seed=n + dx)
    assert mi._compiled(x, y, params[0].shape[0])
    ref, ref_grads = _oracle(x, y, params)
    got, grads = _ours(x, y, params)
    assert got.dtype == torch.float32 and all(gr.dtype == torch.float32 for gr in grads)
    assert abs(float(got) - float(ref)) <= 2e-6 * abs(float(ref))
    for a, b in zip(grads, ref_grads):
        assert _rel(a, b) <= 2e-5
    with monkeypatch.context() as m:  # the torch code it stands in for, on the same float32 inputs
        m.setattr(mi, "_kernel", lambda: None)
        assert not mi._compiled(x, y, params[0].shape[0])
        t_loss, t_grads = _ours(x, y, params)
    assert abs(float(got) - float(t_loss)) <= 2e-6 * abs(float(t_loss))
    for a, b in zip(grads, t_grads):
        assert _rel(a, b) <= 2e-5


@needs_native
@pytest.mark.parametrize("hm", [0, 3, 13, 16])
def test_compiled_step_uneven_branch_widths(hm):
    """Hidden units split unevenly between the branches (remainders of the 4-way partial sums, an
    empty branch): still the float64 oracle."""
    x, y, (w1, b1, _, _, b2) = _case(300, 32, 16, 16, seed=hm)
    g = torch.Generator().manual_seed(hm)
    w2m, w2s = 0.3 * torch.randn(16, hm, generator=g), 0.3 * torch.randn(16, 16 - hm, generator=g)
    params = [w1, b1, w2m, w2s, b2]
    ref, ref_grads = _oracle(x, y, params)
    got, grads = _ours(x, y, params)
    assert abs(float(got) - float(ref)) <= 2e-6 * abs(float(ref))
    for a, b in zip(grads, ref_grads):
        if b.numel():
            assert _rel(a, b) <= 2e-5


@needs_native
def test_compiled_step_extreme_log_variances_stay_finite():
    """Pre-activations far outside tanh's linear range (|r| up to 200) and large residuals: the
    polynomial exp's clamp keeps every value finite and within float32 rounding of the oracle."""
    x, y, params = _case(500, 32, 32, 16, seed=7)
    params = [p * 40 for p in params]
    y = y * 30
    ref, ref_grads = _oracle(x, y, params)
    got, grads = _ours(x, y, params)
    assert torch.isfinite(got) and all(torch.isfinite(gr).all() for gr in grads)
    assert abs(float(got) - float(ref)) <= 1e-5 * abs(float(ref))
    for a, b in zip(grads, ref_grads):
        assert _rel(a, b) <= 1e-4


def test_shapes_and_dtypes_it_cannot_take_fall_back_to_torch(monkeypatch):
    calls = []
    real = mi._compiled_fit
    monkeypatch.setattr(mi, "_compiled_fit", lambda *a: calls.append(1) or real(*a))
    for n, dx, dy, hidden, dtype in [(300, 8, 8, 16, torch.float32), (300, 32, 32, 8, torch.float32),
                                     (300, 32, 32, 16, torch.float64), (300, 32, 32, 16, torch.bfloat16)]:
        x, y, params = _case(n, dx, dy, hidden, seed=1)
        x, y = x.to(dtype), y.to(dtype)
        params = [p.to(dtype) if dtype == torch.float64 else p for p in params]
        ref, _ = _oracle(x, y, params)
        got, _ = _ours(x, y, params)
        tol = 2e-3 if dtype == torch.bfloat16 else 1e-5
        assert abs(float(got) - float(ref)) <= tol * abs(float(ref))
    assert calls == []


@needs_native
def test_under_mixed_precision_the_codes_stay_float32_for_the_compiled_step():
    club = CLUB(32, 32, 16)
    x, y = torch.randn(600, 32), torch.randn(600, 32)
    plain = club.learning_loss(x, y)
    with precision.policy(torch.bfloat16, "cpu"):
        low = club.learning_loss(x, y)
    assert not getattr(club, "_lowered_cache", {})  # nothing cast to bf16
    assert low.item() == plain.item()


@needs_native
def test_rejects_layers_that_do_not_fit_the_codes():
    x, y, params = _case(64, 32, 32, 16, seed=2)
    w1, b1, w2m, w2s, b2 = params
    with pytest.raises(ValueError, match="do not fit"):
        mi._compiled_fit(x, y, w1[:, :16], b1, w2m, w2s, b2)
