"""RowSparseAdam against torch's Adam, AdamW and SparseAdam (the oracles for its two paths)."""
import pytest
import torch
import torch.nn.functional as F

from graphrec.train.row_sparse import RowSparseAdam


def _run(opt_cls, steps, rows_per_step, sparse, seed=0, **kw):
    torch.manual_seed(seed)
    table = torch.nn.Parameter(torch.randn(50, 8, dtype=torch.float64))
    opt = opt_cls([table], lr=0.05, **kw)
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        ids = torch.randint(0, 50, (rows_per_step,), generator=gen)  # duplicates included
        target = torch.randn(rows_per_step, 8, generator=gen, dtype=torch.float64)
        opt.zero_grad()
        ((F.embedding(ids, table, sparse=sparse) - target) ** 2).sum().backward()
        opt.step()
    return table.detach(), opt


@pytest.mark.parametrize("wd", [0.0, 0.1])
def test_dense_gradients_take_adams_step(wd):
    ours, _ = _run(RowSparseAdam, 6, 30, sparse=False, weight_decay=wd)
    ref, _ = _run(torch.optim.Adam, 6, 30, sparse=False, weight_decay=wd)
    assert torch.allclose(ours, ref, atol=1e-12)


def test_decoupled_dense_is_adamw():
    ours, _ = _run(RowSparseAdam, 6, 30, sparse=False, weight_decay=0.1, decoupled=True)
    ref, _ = _run(torch.optim.AdamW, 6, 30, sparse=False, weight_decay=0.1)
    assert torch.allclose(ours, ref, atol=1e-12)


def test_sparse_gradients_match_sparse_adam():
    ours, opt = _run(RowSparseAdam, 8, 12, sparse=True)
    ref, _ = _run(torch.optim.SparseAdam, 8, 12, sparse=True)
    assert torch.allclose(ours, ref, atol=1e-12)
    assert float(opt.state[opt.param_groups[0]["params"][0]]["step"]) == 8


def test_untouched_rows_and_moments_stay_put():
    torch.manual_seed(0)
    table = torch.nn.Parameter(torch.randn(20, 4))
    before = table.detach().clone()
    opt = RowSparseAdam([table], lr=0.1, weight_decay=0.5)
    F.embedding(torch.tensor([3, 3, 7]), table, sparse=True).sum().backward()
    opt.step()
    moved = (table.detach() != before).any(1)
    assert moved.nonzero().flatten().tolist() == [3, 7]
    st = opt.state[table]
    assert (st["exp_avg"].abs().sum(1) > 0).nonzero().flatten().tolist() == [3, 7]
    # row 3 was read twice: its gradient is the sum (2 per entry), plus the L2 term
    g3 = 2 + 0.5 * before[3]
    assert torch.allclose(st["exp_avg"][3], 0.1 * g3)


def test_every_row_read_is_the_dense_step():
    """A sparse gradient covering every row gives the same step as the dense gradient."""
    def run(sparse):
        torch.manual_seed(0)
        table = torch.nn.Parameter(torch.randn(10, 3, dtype=torch.float64))
        opt = RowSparseAdam([table], lr=0.05, weight_decay=0.01)
        for k in range(4):
            opt.zero_grad()
            (F.embedding(torch.arange(10), table, sparse=sparse) ** (k + 2)).sum().backward()
            opt.step()
        return table.detach()
    assert torch.allclose(run(True), run(False), atol=1e-12)


def test_rejects_bad_settings():
    with pytest.raises(ValueError, match="betas"):
        RowSparseAdam([torch.nn.Parameter(torch.zeros(2))], betas=(0.9, 1.0))


def test_train_betas_reach_the_optimiser_and_are_checked():
    from graphrec.config import load_config
    from graphrec.errors import ConfigError
    from graphrec.train.trainer import make_optimizer
    p = [torch.nn.Parameter(torch.zeros(3))]
    assert make_optimizer("adam", p, 0.1, 0.0, betas=[0.9, 0.99]).param_groups[0]["betas"] == (0.9, 0.99)
    assert make_optimizer("adam", p, 0.1, 0.0, row_sparse=True, betas=[0.8, 0.9]).param_groups[0]["betas"] == (0.8, 0.9)
    with pytest.raises(ConfigError, match="optimizer='sgd'"):
        make_optimizer("sgd", p, 0.1, 0.0, row_sparse=True)
    with pytest.raises(ConfigError, match="train.betas"):
        load_config(model="mf", dataset="synthetic", overrides={"train": {"betas": [0.9, 1.0]}})
