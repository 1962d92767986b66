"""PMMRec through the run path: a pretraining run, `graphrec export` of its components, and a
fine-tuning run on another catalogue whose `train.init_from` is that directory load exactly the
components of its transfer setting, recorded in result.json; a setting that loads components
without a directory is a one-line error."""
import json

import pytest

from graphrec.data.dataset import Dataset
from graphrec.errors import ConfigError
from graphrec.experiment import run

from pmmrec_world import MODEL_HP, make_domain, make_world


def _dataset(world, seed, domain, name):
    dom = make_domain(world, n_users=60, n_items=40, domain=domain, seed=seed)
    return Dataset(name, dom.inter, features=dom.features)


def test_pretrain_export_then_fine_tune_loads_the_settings_components(tmp_path):
    from graphrec.commands.export import export
    world = make_world(0)
    src, dst = _dataset(world, 1, 0, "source"), _dataset(world, 2, 1, "target")
    hp = {**MODEL_HP, "modalities": ["text", "image"]}
    common = {"threads": 1, "data": {"repeated_pairs": "warn"},  # the world repeats items in a sequence
              "train": {"progress": False, "batch_size": 32, "valid_metric": "ndcg@10"}}
    run(model="pmmrec", dataset=src, overrides={**common, "model_params": {**hp, "stage": "pretrain"}},
        epochs=1, out=str(tmp_path / "pre"), quiet=True)
    paths = export(str(tmp_path / "pre"), str(tmp_path / "components"), dataset=src)
    man = json.loads((tmp_path / "components" / "manifest.json").read_text())
    assert paths["components"].endswith("manifest.json") and "user_encoder" in man["files"]
    ft = {**common, "model_params": {**hp, "stage": "finetune", "transfer": "user"},
          "train": {**common["train"], "init_from": str(tmp_path / "components")}}
    r = run(model="pmmrec", dataset=dst, overrides=ft, epochs=1, out=str(tmp_path / "ft"), quiet=True)
    assert r["transfer"]["loaded"] == ["user_encoder"]  # the official code loads nothing here
    assert set(r["transfer"]["fresh"]) >= {"fusion"}
    assert json.loads((tmp_path / "ft" / "result.json").read_text())["transfer"] == r["transfer"]
    no_dir = {**ft, "train": common["train"]}
    with pytest.raises(ConfigError, match="transfer setting 'user' loads \\['user_encoder'\\]: it needs a components"):
        run(model="pmmrec", dataset=dst, overrides=no_dir, epochs=1, out=str(tmp_path / "bad"), quiet=True)
    assert not (tmp_path / "bad").exists()  # refused before the run directory stays
