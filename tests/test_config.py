"""Config layering and override parsing."""
import pytest

from graphrec.config import load_config, parse_set


def test_layers_and_overrides(tmp_path):
    f = tmp_path / "c.yaml"
    f.write_text("train:\n  lr: 0.01\n  batch_size: 128\n")
    cfg = load_config("lightgcn", "synthetic", [str(f)], parse_set(["train.lr=1e-4", "model.n_layers=3"]))
    assert cfg["train"]["lr"] == pytest.approx(1e-4) and isinstance(cfg["train"]["lr"], float)
    assert cfg["train"]["batch_size"] == 128
    assert cfg["model_params"]["n_layers"] == 3
    assert cfg["model_params"]["reg_weight"] == pytest.approx(1e-4)  # from models/lightgcn.yaml


def test_model_file_overrides_train_section():
    assert load_config("pop", "synthetic")["train"]["epochs"] == 0


def test_unknown_keys_are_errors(tmp_path):
    with pytest.raises(KeyError, match="train.lrr"):
        load_config("lightgcn", "synthetic", overrides=parse_set(["train.lrr=0.1"]))
    with pytest.raises(KeyError, match="n_layer"):
        load_config("lightgcn", "synthetic", overrides=parse_set(["model.n_layer=3"]))
    with pytest.raises(ValueError, match="key=value"):
        parse_set(["train.lr"])
