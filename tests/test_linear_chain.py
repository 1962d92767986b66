"""Re-associated linear consumers (graphrec.nn.linear_chain) equal the materialised product, in
value and gradient, and SAND's training loss is unchanged by never materialising Z_m."""
import pytest
import torch
from torch import nn

from graphrec.nn.linear_chain import linear_consumers, reassociation_pays

from test_models_mm import batch_of, make, tiny


def _grads(module_list, out):
    return torch.autograd.grad(out, [p for m in module_list for p in m.parameters()])


@pytest.mark.parametrize("bias", [True, False])
def test_reassociated_equals_materialised_values_and_gradients(bias):
    torch.manual_seed(0)
    x = torch.randn(40, 24, dtype=torch.float64)
    proj = nn.Linear(24, 20, bias=bias).double()
    a, b = nn.Linear(20, 7).double(), nn.Linear(8, 3, bias=False).double()
    consumers = [(a, slice(None)), (b, slice(0, 8)), (None, slice(8, None))]
    w = torch.randn(40, 7 + 3 + 12, dtype=torch.float64)  # a random linear functional of all outputs
    got = {}
    for flag in (False, True):
        outs = linear_consumers(x, proj, consumers, reassociate=flag)
        assert [o.shape for o in outs] == [(40, 7), (40, 3), (40, 12)]
        y = torch.cat(outs, 1)
        got[flag] = (y, _grads([proj, a, b], (y * w).sum()))
    z = x @ proj.weight.T + (proj.bias if bias else 0)  # oracle: the explicit product
    torch.testing.assert_close(got[True][0], torch.cat([a(z), b(z[:, :8]), z[:, 8:]], 1))
    torch.testing.assert_close(got[True][0], got[False][0])
    for g1, g2 in zip(got[True][1], got[False][1]):
        torch.testing.assert_close(g1, g2)


def test_cost_model_prefers_the_cheaper_order():
    wide = [(nn.Linear(4096, 256), slice(None)), (nn.Linear(2048, 64), slice(0, 2048))]
    assert reassociation_pays(23033, 4096, 4096, wide)        # SAND at Clothing: full-width Z
    narrow = [(nn.Linear(64, 256), slice(None))]
    assert not reassociation_pays(23033, 4096, 64, narrow)    # a 64-d projection is cheaper to build


@pytest.mark.parametrize("name", ["sand-a", "sand-d"])
def test_sand_loss_without_materialising_z_equals_loss_on_z(name):
    train, feats = tiny()
    model, _ = make(name, train, feats, mlp_hidden=4, head_hidden=4, code_dim=2)  # heads narrower than Z
    model.train()
    b = batch_of(train)
    reps = model.propagate()
    assert not any(k.startswith("z_") for k in reps.extras)
    torch.manual_seed(5)
    terms = model.loss(b, reps)
    torch.manual_seed(5)
    on_z = model.sand(model.modality_projections())  # the heads applied to the materialised Z
    for k in on_z:
        torch.testing.assert_close(terms[k], on_z[k])
    if model.sand.club is None:
        return
    # the estimator's cached codes are the codes of the materialised Z
    model.auxiliary_loss(b)
    g, q = model.sand.estimator_codes(model.modality_projections())
    torch.testing.assert_close(model._aux_codes[0], g)
    torch.testing.assert_close(model._aux_codes[1], q)
