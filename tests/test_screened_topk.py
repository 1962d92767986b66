"""The certified bfloat16 screen returns the float32 top-K: brute-force oracle, the error bound it
rests on, forced fall-backs, and the evaluator's metrics with the screen on and off. Every test
runs twice: with the compiled selection (`graphrec/native/screen_topk.c`) and with the torch one."""
import pytest
import torch
from conftest import run_on_kernel_and_torch

import graphrec.eval.screened_topk as screened_topk


@pytest.fixture(params=["native", "torch"], autouse=True)
def selection(request, monkeypatch):
    return run_on_kernel_and_torch(request, monkeypatch, screened_topk, "_select_kernel")

from graphrec.data.interactions import IdMap, Interactions
from graphrec.eval.ranking import RankingEvaluator
from graphrec.eval.screened_topk import BF16_SCORE_BOUND, ScreenedTopK
from graphrec.models.base import Recommender, Reps


def _brute(u, items, k, rows, cols):
    s = u @ items.T
    s[rows, cols] = float("-inf")
    vals, idx = s.topk(k, dim=1)
    return idx, torch.isfinite(vals), s


def _assert_same_topk(u, items, k, rows, cols, screen):
    idx, ok = screen.topk(u, k, rows, cols)
    idx0, ok0, s = _brute(u, items, k, rows, cols)
    assert torch.equal(ok, ok0)
    # the same scores in the same order (an exact float32 tie may pick another item)
    got = torch.where(ok, s.gather(1, idx), torch.zeros(()))
    want = torch.where(ok0, s.gather(1, idx0), torch.zeros(()))
    assert torch.allclose(got.sort(1).values, want.sort(1).values, rtol=1e-5, atol=1e-6)
    assert torch.all(idx[ok] < items.shape[0])
    # no masked item is ever returned as a finite entry
    masked = torch.zeros_like(s, dtype=torch.bool)
    masked[rows, cols] = True
    assert not masked.gather(1, idx)[ok].any()
    return idx, ok


@pytest.mark.parametrize("seed", range(12))
def test_screen_matches_brute_force_topk(seed):
    g = torch.Generator().manual_seed(seed)
    n = int(torch.randint(60, 2500, (1,), generator=g))
    d = int(torch.randint(2, 70, (1,), generator=g))
    b = int(torch.randint(1, 200, (1,), generator=g))
    # norms spanning three orders of magnitude, as popular and cold items do
    items = torch.randn(n, d, generator=g) * torch.logspace(-2, 1, n)[torch.randperm(n, generator=g)][:, None]
    u = torch.randn(b, d, generator=g) * torch.rand(b, 1, generator=g) * 5
    if seed % 3 == 0:
        items[: n // 3] = items[0]  # exact duplicates: ties at the top
    if seed % 3 == 1:
        items, u = items.round(decimals=1), u.round(decimals=1)
    k = min(n, int(torch.randint(1, 50, (1,), generator=g)))
    nm = int(torch.randint(0, b * n // 2 + 1, (1,), generator=g))
    rows, cols = torch.randint(0, b, (nm,), generator=g), torch.randint(0, n, (nm,), generator=g)
    screen = ScreenedTopK(items, block=int(torch.randint(1, 20, (1,), generator=g)),
                          extra_blocks=int(torch.randint(0, 30, (1,), generator=g)))
    _assert_same_topk(u, items, k, rows, cols, screen)


def test_bf16_error_bound_holds_over_a_wide_dynamic_range():
    g = torch.Generator().manual_seed(0)
    for d in (3, 64, 512):
        items = torch.randn(500, d, generator=g) * torch.logspace(-3, 3, d)  # columns of very different scale
        u = torch.randn(300, d, generator=g) * torch.logspace(3, -3, d)
        exact = (u.double() @ items.double().T)
        approx = (u.bfloat16() @ items.bfloat16().T).double()
        bound = BF16_SCORE_BOUND * u.norm(dim=1, keepdim=True).double() * items.norm(dim=1).double()
        assert torch.all((approx - exact).abs() <= bound)


def test_near_ties_fall_back_and_stay_exact():
    # every item within 1e-4 relative of the others: no row can be certified from bf16 scores
    g = torch.Generator().manual_seed(1)
    base = torch.randn(1, 16, generator=g)
    items = base + 1e-4 * torch.randn(800, 16, generator=g)
    u = base.repeat(40, 1) + 0.01 * torch.randn(40, 16, generator=g)
    screen = ScreenedTopK(items)
    empty = torch.empty(0, dtype=torch.long)
    _assert_same_topk(u, items, 10, empty, empty, screen)
    assert screen.last_fallback_rows == 40


def test_clear_winners_are_certified_without_fallback():
    g = torch.Generator().manual_seed(2)
    items = torch.randn(3000, 32, generator=g)
    u = torch.randn(64, 32, generator=g)
    items[:20] = u[0] * 3  # far above everything else for the first user
    screen = ScreenedTopK(items)
    empty = torch.empty(0, dtype=torch.long)
    idx, _ = _assert_same_topk(u, items, 20, empty, empty, screen)
    assert set(idx[0].tolist()) == set(range(20))
    assert screen.last_fallback_rows == 0


def test_scores_beyond_the_bf16_range_fall_back():
    g = torch.Generator().manual_seed(4)
    items = torch.randn(2000, 16, generator=g) * 1e18
    u = torch.randn(30, 16, generator=g) * 1e15  # |u||i| ~ 1e34: above the screen's 1e30 limit
    screen = ScreenedTopK(items)
    empty = torch.empty(0, dtype=torch.long)
    _assert_same_topk(u, items, 10, empty, empty, screen)
    assert screen.last_fallback_rows == 30


def test_rows_with_fewer_unmasked_items_than_k():
    items = torch.randn(400, 8)
    u = torch.randn(3, 8)
    rows = torch.cat([torch.zeros(395, dtype=torch.long), torch.ones(400, dtype=torch.long)])
    cols = torch.cat([torch.arange(395), torch.arange(400)])  # row 0 keeps 5 items, row 1 none
    idx, ok = _assert_same_topk(u, items, 20, rows, cols, ScreenedTopK(items))
    assert ok[0].sum() == 5 and ok[1].sum() == 0 and ok[2].all()


class _Factored(Recommender):
    name = "factored"

    def __init__(self, users, items):
        torch.nn.Module.__init__(self)
        self.u, self.i = users, items

    def propagate(self):
        return Reps(user=self.u, item=self.i)

    def loss(self, batch, reps):
        raise NotImplementedError


class _Custom(_Factored):
    def score(self, users, reps):  # not an inner product of the reps: must take the exact path
        return -(reps.user[users] @ reps.item.T)


def _random_split(n_users, n_items, g):
    def inter(p):
        keep = torch.rand(n_users, n_items, generator=g) < p
        u, i = keep.nonzero(as_tuple=True)
        return Interactions(u, i, IdMap(list(range(n_users)), "user"), IdMap(list(range(n_items)), "item"))
    return inter(0.05), inter(0.01)


def test_evaluator_metrics_are_identical_with_and_without_screen():
    g = torch.Generator().manual_seed(3)
    n_users, n_items = 300, 1500
    train, test = _random_split(n_users, n_items, g)
    model = _Factored(torch.randn(n_users, 24, generator=g),
                      torch.randn(n_items, 24, generator=g) * torch.rand(n_items, 1, generator=g))
    ev = RankingEvaluator(test, [train], ks=[5, 20], user_chunk=64, screen="off")
    exact = ev.evaluate(model)
    ev.screen = "bf16"
    screened = ev.evaluate(model)
    assert screened == pytest.approx(exact, abs=1e-12)
    assert exact["recall@20"] > 0
    assert model.score_factors(model.propagate()) is not None
    assert _Custom(model.u, model.i).score_factors({}) is None
    custom = ev.evaluate(_Custom(model.u, model.i))  # exact path, reversed ranking: other metrics
    assert custom != exact


def test_evaluator_drops_the_screen_when_most_rows_fall_back():
    # near-identical item vectors: the bf16 bound separates no row, so after the first chunk the
    # evaluator ranks in float32 directly; metrics equal the exact path's either way
    g = torch.Generator().manual_seed(5)
    n_users, n_items = 200, 900
    train, test = _random_split(n_users, n_items, g)
    base = torch.randn(1, 16, generator=g)
    model = _Factored(base + 0.01 * torch.randn(n_users, 16, generator=g),
                      base + 1e-4 * torch.randn(n_items, 16, generator=g))
    ev = RankingEvaluator(test, [train], ks=[10], user_chunk=50, screen="off")
    exact = ev.evaluate(model)
    assert ev.screen_dropped_at is None
    ev.screen = "bf16"
    assert ev.evaluate(model) == pytest.approx(exact, abs=1e-12)
    assert ev.screen_dropped_at == 0
    clear = _Factored(torch.randn(n_users, 16, generator=g), torch.randn(n_items, 16, generator=g))
    ev.evaluate(clear)
    assert ev.screen_dropped_at is None  # well-separated scores keep the screen


def test_evaluator_rejects_unknown_screen():
    train = Interactions(torch.tensor([0]), torch.tensor([0]), IdMap([0], "user"), IdMap([0, 1], "item"))
    with pytest.raises(ValueError, match="screen"):
        RankingEvaluator(train, [train], screen="fp8")
