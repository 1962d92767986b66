"""SAND's CLUB estimator and the planted-structure property: generic parts align across modalities."""
import pytest
import torch

from graphrec.datasets.synthetic import generate
from graphrec.graphs import build
from graphrec.models import ModelContext, get_model
from graphrec.nn.fusion import SANDHeads, linear_cka
from graphrec import losses
from graphrec.nn.mi import CLUB


def fit_club(x, y, steps=300):
    torch.manual_seed(0)
    club = CLUB(x.shape[1], y.shape[1], hidden=16)
    opt = torch.optim.Adam(club.parameters(), lr=1e-2)
    first = None
    for _ in range(steps):
        opt.zero_grad()
        loss = club.learning_loss(x, y)
        loss.backward()
        opt.step()
        first = first if first is not None else loss.item()
    return club, first, float(loss)


def test_club_bound_separates_dependent_from_independent_codes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(512, 4, generator=g)
    dep = x + 0.1 * torch.randn(512, 4, generator=g)
    ind = torch.randn(512, 4, generator=g)
    club_d, first, last = fit_club(x, dep)
    assert last < first  # the max-likelihood fit makes progress
    club_i, _, _ = fit_club(x, ind)
    b_dep = float(club_d.bound(x, dep, torch.Generator().manual_seed(1)))
    b_ind = float(club_i.bound(x, ind, torch.Generator().manual_seed(1)))
    assert b_dep > 1.0 and b_ind < 0.2 and b_ind >= 0.0


def test_linear_cka_oracle():
    x = torch.randn(100, 5)
    q, _ = torch.linalg.qr(torch.randn(5, 5))
    assert abs(float(linear_cka(x, 3 * x @ q)) - 1.0) < 1e-5  # invariant to rotation and scale
    assert float(linear_cka(x, torch.randn(100, 7))) < 0.3


def test_sand_heads_estimator_parameters_are_only_club():
    heads = SANDHeads({"image": 8, "text": 6}, align="solosim", distance="club")
    est = {id(p) for p in heads.estimator_parameters()}
    assert est == {id(p) for p in heads.club.parameters()}
    assert not est & {id(p) for p in heads.heads.parameters()}


@pytest.mark.slow
def test_generic_parts_become_more_aligned_than_unique_parts():
    """Planted data: both modalities share a generic factor and each has its own unique one. After
    training SAND, the cross-modal CKA of the generic halves grows more than that of the unique
    halves and ends above it."""
    ds = generate(n_users=200, n_items=160, n_interactions=3000, n_clusters=8, dims={"image": 24, "text": 16},
                  seed=0)
    train = ds.interactions
    cls = get_model("sand-a")
    hp = dict(alpha=0.5, beta=0.05, club_steps=3, mlp_hidden=32)
    graphs = {k: build(s, train, ds.features, None) for k, s in cls.graph_specs(hp).items()}
    ctx = ModelContext(train.n_users, train.n_items, train, graphs, ds.features)
    torch.manual_seed(0)
    model = cls(ctx, **hp)

    def cka():
        with torch.no_grad():
            return model.sand.alignment_report(model.modality_projections())

    before = cka()
    opt = torch.optim.Adam(model.main_parameters(), lr=3e-3)
    aopt = torch.optim.Adam(model.auxiliary_parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(60):
        idx = torch.randint(0, len(train), (256,), generator=g)
        b = {"user": train.user[idx], "pos": train.item[idx], "neg": torch.randint(0, train.n_items, (256,), generator=g)}
        for _ in range(model.auxiliary_steps):
            aopt.zero_grad()
            sum(model.auxiliary_loss(b).values()).backward()
            aopt.step()
        opt.zero_grad()
        sum(model.loss(b, model.propagate()).values()).backward()
        opt.step()
    after = cka()
    assert after["generic"] - before["generic"] > after["unique"] - before["unique"]
    assert after["generic"] > after["unique"]


def test_club_fused_heads_equal_the_two_branches():
    """CLUB.heads (stacked first layers, block-diagonal second layers) gives the same μ and s, and
    the same parameter gradients, as running the mu and logvar branches separately."""
    from graphrec.nn.mi import CLUB
    torch.manual_seed(0)
    club = CLUB(6, 5, hidden=8).double()
    x, y = torch.randn(40, 6, dtype=torch.float64), torch.randn(40, 5, dtype=torch.float64)
    mu, s = club.heads(x)
    torch.testing.assert_close(mu, club.mu(x))
    torch.testing.assert_close(s, club.logvar(x))
    params = list(club.parameters())
    fused = torch.autograd.grad(club.learning_loss(x, y), params)
    plain = torch.autograd.grad(-((-(club.mu(x) - y).pow(2) / (2.0 * club.logvar(x).exp())
                                   - 0.5 * club.logvar(x)).sum(-1).mean()), params)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b)


def test_club_fused_fitting_loss_equals_autograd_of_the_formula():
    """The fused estimator loss (detached codes) has the value and parameter gradients of the plain
    expression -mean log q(y|x), in float64, including rows where the ReLU is off."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(41, 6, dtype=torch.float64, generator=g)
    y = torch.randn(41, 5, dtype=torch.float64, generator=g)
    club = CLUB(6, 5, hidden=8).double()
    params = list(club.parameters())
    fused = club.learning_loss(x, y)
    assert fused.grad_fn is not None and "FittedNLL" in type(fused.grad_fn).__name__
    got = torch.autograd.grad(fused * 3.0, params)  # an upstream factor must scale every gradient
    plain = -losses.gaussian_log_likelihood(club.mu(x), club.logvar(x), y).mean()
    want = torch.autograd.grad(plain * 3.0, params)
    torch.testing.assert_close(fused, plain)
    for a, b in zip(got, want):
        torch.testing.assert_close(a, b)
    with torch.no_grad():  # no gradient wanted: the plain path
        torch.testing.assert_close(club.learning_loss(x, y), plain.detach())
