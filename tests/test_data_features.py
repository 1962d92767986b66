"""ItemFeatures loaders: .npy by row, tables by id, missing-item policy, bad values."""
from __future__ import annotations

import numpy as np
import pytest

from graphrec.data import IdMap, ItemFeatures, load_features, load_npy, load_table


def test_npy_rows_and_wrong_count(tmp_path):
    x = np.arange(12, dtype=np.float32).reshape(4, 3)
    np.save(tmp_path / "f.npy", x)
    assert load_npy(str(tmp_path / "f.npy"), 4).numpy().tolist() == x.tolist()
    with pytest.raises(ValueError, match=r"f.npy: 4 feature rows, but the dataset has 5 items"):
        load_npy(str(tmp_path / "f.npy"), 5)


def test_table_aligned_by_id_and_missing_policies(tmp_path):
    pytest.importorskip("pandas")
    m = IdMap(np.array(["a", "b", "c"]), "item")
    (tmp_path / "f.csv").write_text("item_id,x,y\nc,1,2\na,3,4\n")
    with pytest.raises(ValueError, match=r"no feature row for 1 item\(s\), e.g. ids \['b'\]"):
        load_table(str(tmp_path / "f.csv"), m)
    mean = load_table(str(tmp_path / "f.csv"), m, missing="mean").numpy()
    assert mean.tolist() == [[3, 4], [2, 3], [1, 2]]
    zeros = load_table(str(tmp_path / "f.csv"), m, missing="zeros").numpy()
    assert zeros[1].tolist() == [0, 0]
    (tmp_path / "g.csv").write_text("item_id,x\na,1\nz,2\n")
    with pytest.raises(KeyError, match="'z'"):
        load_table(str(tmp_path / "g.csv"), m, missing="zeros")
    (tmp_path / "n.csv").write_text("item_id,x\na,1\nb,nan\nc,2\n")
    with pytest.raises(ValueError, match=r"n.csv: .*NaN.*rows \[2\] \(item ids \['b'\]\)"):
        load_table(str(tmp_path / "n.csv"), m)
    with pytest.raises(ValueError, match="no column 'iid'"):
        load_table(str(tmp_path / "f.csv"), m, id_col="iid")


def test_nan_rows_named_and_hash(tmp_path):
    m = IdMap(np.arange(3) + 7, "item")
    x = np.ones((3, 2), dtype=np.float32)
    x[2, 1] = np.nan
    np.save(tmp_path / "nan.npy", x)
    with pytest.raises(ValueError, match=r"nan.npy: modality 'image' has NaN/inf in 1 row.*\[2\].*\[9\]"):
        load_features({"image": str(tmp_path / "nan.npy")}, m)
    x[2, 1] = 0
    np.save(tmp_path / "ok.npy", x)
    f = load_features({"image": str(tmp_path / "ok.npy"), "text": str(tmp_path / "ok.npy")}, m)
    assert f.hash("image") == f.hash("text")
    g = ItemFeatures({"image": f["image"] + 1}, m)
    assert g.hash("image") != f.hash("image")
