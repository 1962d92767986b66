"""train.amp: what each setting resolves to, the one native-bf16 detection shared with the evaluation
screen, bf16 regions only under a step's policy, float32 parameters and optimiser state, and the
precision named in run records."""
import pytest
import torch
from torch import nn

from graphrec import environment
from graphrec.config import load_config, parse_set
from graphrec.errors import ConfigError
from graphrec.eval import screened_topk
from graphrec.nn import precision


def test_resolve_settings(monkeypatch):
    cpu = torch.device("cpu")
    for off in (False, None, "float32"):
        assert precision.resolve(off, cpu) is None
    assert precision.resolve("bf16", cpu) == torch.bfloat16 and precision.resolve(True, cpu) == torch.bfloat16
    monkeypatch.setattr(precision, "native_bf16", lambda d: True)
    assert precision.resolve("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(precision, "native_bf16", lambda d: False)
    assert precision.resolve("auto", cpu) is None  # auto never picks an emulated bf16
    assert precision.resolve("bf16", cpu) == torch.bfloat16  # an explicit bf16 is honoured (with a warning)
    assert precision.resolve("auto", torch.device("meta")) is None
    with pytest.raises(ValueError, match="train.amp"):
        precision.resolve("fp8", cpu)
    assert precision.precision_name(torch.bfloat16) == "bf16" and precision.precision_name(None) == "float32"


def test_config_values():
    for v, want in (("bf16", "bf16"), ("auto", "auto"), ("float32", "float32"), ("true", True), ("false", False)):
        assert load_config("lightgcn", "synthetic", overrides=parse_set([f"train.amp={v}"]))["train"]["amp"] == want
    assert load_config("lightgcn", "synthetic")["train"]["amp"] is False  # float32 stays the default
    with pytest.raises(ConfigError, match=r"train.amp must be true or false, got 'fp16' \(or one of float32, bf16, auto\)"):
        load_config("lightgcn", "synthetic", overrides=parse_set(["train.amp=fp16"]))


def test_one_detection_shared_with_the_screen(monkeypatch):
    calls = []
    monkeypatch.setattr(screened_topk, "native_bf16", lambda d: calls.append(d) or True)
    assert screened_topk.bf16_matmul_is_fast(torch.device("cpu")) and calls == [torch.device("cpu")]
    # the screen's compiled selection is for the host: never on a GPU, whatever the GPU can do
    assert not screened_topk.bf16_matmul_is_fast(torch.device("cuda"))
    assert screened_topk.native_bf16 is environment.native_bf16 or calls  # the same function, patched here
    assert "native_bf16" in environment.environment(torch.device("cpu"))


def test_regions_are_bf16_only_under_a_policy():
    lin = nn.Linear(8, 4)
    x = torch.randn(3, 8)
    with precision.region():
        assert lin(x).dtype == torch.float32  # no step policy: float32 (evaluation, float32 runs)
    with precision.policy(torch.bfloat16, "cpu"):
        with precision.region():
            y = lin(x)
            with precision.full_precision():
                assert lin(x).dtype == torch.float32
        assert lin(x).dtype == torch.float32  # outside the marked region
    assert y.dtype == torch.bfloat16
    assert precision.active() is None  # the policy ends with its block
    assert torch.allclose(y.float(), lin(x), rtol=0.02, atol=0.02)


def test_lowered_buffer_is_cast_once_and_refreshed_on_change():
    owner = nn.Module()
    x = torch.randn(5, 3)
    assert precision.lowered(owner, "x", x) is x  # no policy: the float32 buffer itself
    with precision.policy(torch.bfloat16, "cpu"):
        a = precision.lowered(owner, "x", x)
        assert a.dtype == torch.bfloat16 and precision.lowered(owner, "x", x) is a
        x.mul_(2)  # an in-place change bumps the version: cast again
        b = precision.lowered(owner, "x", x)
    assert b is not a and torch.allclose(b.float(), x, rtol=1e-2)


@pytest.mark.parametrize("model", ["vbpr", "sasrec"])
def test_bf16_run_keeps_float32_state_and_records_precision(tmp_path, model):
    from graphrec.experiment import run
    ds = "synthetic-seq" if model == "sasrec" else "synthetic"
    r = run(model=model, dataset=ds, seed=0, out=str(tmp_path / "r"), quiet=True, epochs=1,
            overrides={"train": {"amp": "bf16", "progress": False}, "threads": 1})
    assert r["precision"] == "bf16"
    state = torch.load(tmp_path / "r" / "last.pt", weights_only=False)
    tensors = [v for comp in state["components"].values() for v in comp.values()
               if torch.is_tensor(v) and v.is_floating_point()]
    assert tensors and all(v.dtype == torch.float32 for v in tensors)
    opt = state["trainer"]["optimizer"]["state"]
    assert opt and all(t.dtype == torch.float32 for s in opt.values() for t in s.values()
                       if torch.is_tensor(t) and t.is_floating_point())
