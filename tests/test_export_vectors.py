"""Exported vectors (`graphrec export`, `graphrec.data.vectors`, ``data.extra_features``): tables are
written with the original ids of their rows and read back aligned by id, whatever the reader's item
order; bad tables and manifests are refused with a line naming the file; a trained model's item
table becomes a modality another model reads, row for row."""
import json

import pytest
import torch

from graphrec.cli import main
from graphrec.data.interactions import IdMap
from graphrec.data.vectors import read_item_table, write_export
from graphrec.errors import ConfigError, DataError
from graphrec.models.mf import MF


def _export(tmp_path, items=("a", "b", "c", "d"), users=("u1", "u2")):
    x = torch.arange(len(items) * 3, dtype=torch.float32).reshape(len(items), 3)
    u = torch.ones(len(users), 2)
    out = tmp_path / "exp"
    paths = write_export(str(out), {"item/vec": x, "user/vec": u}, IdMap(list(users)), IdMap(list(items)),
                         {"model": "test"})
    return out, paths, x


def test_an_item_table_is_read_aligned_by_original_id(tmp_path):
    out, paths, x = _export(tmp_path)
    assert sorted(paths) == ["item/vec", "user/vec"]
    reader = IdMap(["d", "b", "a", "c"])  # another dataset, other order
    got = read_item_table(paths["item/vec"], reader, "vec")
    want = {k: x[i] for i, k in enumerate("abcd")}
    for row, key in enumerate(["d", "b", "a", "c"]):
        assert torch.equal(got[row], want[key])
    man = json.loads((out / "export.json").read_text())
    assert man["item_ids"] == list("abcd") and man["tables"]["item_vec.npy"]["shape"] == [4, 3]


def test_items_the_table_lacks_are_named_or_filled_as_asked(tmp_path):
    _, paths, x = _export(tmp_path, items=("a", "b"))
    with pytest.raises(DataError, match=r"no feature row for 1 item.*'z'"):
        read_item_table(paths["item/vec"], IdMap(["a", "z", "b"]), "vec")
    got = read_item_table(paths["item/vec"], IdMap(["a", "z", "b"]), "vec", missing="mean")
    assert torch.allclose(got[1], x.mean(0))
    with pytest.raises(DataError, match="item_vec.npy"):  # a table row for an item the reader lacks
        read_item_table(paths["item/vec"], IdMap(["a"]), "vec")


def test_bad_tables_and_manifests_are_refused(tmp_path):
    with pytest.raises(ValueError, match="expected 'user/<name>'"):
        write_export(str(tmp_path / "x"), {"vec": torch.ones(2, 2)}, IdMap(["u"]), IdMap(["a", "b"]), {})
    with pytest.raises(ValueError, match=r"shape \(3, 2\); expected \(2, d\)"):
        write_export(str(tmp_path / "x"), {"item/v": torch.ones(3, 2)}, IdMap(["u"]), IdMap(["a", "b"]), {})
    with pytest.raises(ValueError, match="NaN"):
        write_export(str(tmp_path / "x"), {"item/v": torch.full((2, 2), float("nan"))}, IdMap(["u"]),
                     IdMap(["a", "b"]), {})
    with pytest.raises(Exception, match="name"):
        write_export(str(tmp_path / "x"), {"item/../v": torch.ones(2, 2)}, IdMap(["u"]), IdMap(["a", "b"]), {})
    out, paths, _ = _export(tmp_path)
    man = json.loads((out / "export.json").read_text())
    (out / "export.json").write_text(json.dumps({**man, "format": "other"}))
    with pytest.raises(DataError, match="export.json: not a graphrec export manifest"):
        read_item_table(paths["item/vec"], IdMap(list("abcd")), "vec")
    (out / "export.json").write_text(json.dumps(man))
    with pytest.raises(DataError, match="lists no item table"):
        read_item_table(paths["user/vec"], IdMap(list("abcd")), "vec")


def test_a_trained_models_item_table_becomes_another_models_modality(tmp_path, monkeypatch):
    # MF exports nothing of its own: give it an export for this test
    monkeypatch.setattr(MF, "export_tables", lambda self: {"item/mfvec": self.item_emb.weight.detach(),
                                                           "user/mfvec": self.user_emb.weight.detach()},
                        raising=False)
    small = ["--set", "data.dataset_args={n_users: 120, n_items: 50, n_interactions: 1500, seed: 3}", "--set", "threads=1", "--quiet"]
    run = tmp_path / "mf"
    assert main(["train", "--model", "mf", "--dataset", "synthetic", "--epochs", "1", "--out", str(run), *small]) == 0
    assert main(["export", str(run), "--out", str(tmp_path / "exp")]) == 0
    item_path = str(tmp_path / "exp" / "item_mfvec.npy")

    from graphrec.config import load_config
    from graphrec.experiment import load_run, prepare
    trained = load_run(str(run))
    cfg = load_config(model="vbpr", dataset="synthetic", overrides={
        "data": {"dataset_args": {"n_users": 120, "n_items": 50, "n_interactions": 1500, "seed": 3}, "extra_features": {"mfvec": item_path}},
        "model_params": {"modalities": ["mfvec"]}})
    p = prepare(cfg)
    assert torch.equal(p.model.feat_mfvec, trained.model.item_emb.weight.detach())  # row for row
    # the same table again is a no-op; another table under a modality the dataset has is refused
    from graphrec.experiment import load_dataset
    ds = load_dataset(cfg)
    assert ds.with_item_tables({"mfvec": item_path}) is ds
    with pytest.raises(ConfigError, match="data.extra_features.image: dataset 'synthetic' already has"):
        ds.with_item_tables({"image": item_path})
    monkeypatch.undo()  # a model that exports nothing: one line, exit 2
    assert main(["export", str(run), "--out", str(tmp_path / "none")]) == 2
