"""Readers on small files, bad input, and the MMRec round trip."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from graphrec.data import (export_mmrec, make_split, read_interactions, read_mmrec_inter, read_movielens,
                           read_recbole_inter, read_table)

pd = pytest.importorskip("pandas")


def _write(path, text):
    path.write_text(text)
    return str(path)


def test_csv_with_column_mapping(tmp_path):
    p = _write(tmp_path / "log.csv", "uid,iid,when,stars\nu10,b,5,4\nu2,a,3,5\nu10,a,1,2\n")
    it = read_table(p, columns={"user": "uid", "item": "iid", "timestamp": "when", "rating": "stars"})
    assert it.user_map.ids.tolist() == ["u10", "u2"] and it.item_map.ids.tolist() == ["a", "b"]
    assert it.user.tolist() == [0, 1, 0] and it.item.tolist() == [1, 0, 0]
    assert it.timestamp.tolist() == [5, 3, 1] and it.rating.tolist() == [4, 5, 2]


def test_tsv_and_parquet_numeric_ids_sort_numerically(tmp_path):
    p = _write(tmp_path / "log.tsv", "user_id\titem_id\n10\t7\n2\t7\n9\t1\n")
    it = read_table(p)
    assert it.user_map.ids.tolist() == [2, 9, 10] and it.user.tolist() == [2, 0, 1]
    assert it.timestamp is None and it.rating is None
    pq = tmp_path / "log.parquet"
    pd.DataFrame({"u": [3, 1], "i": ["x", "y"]}).to_parquet(pq)
    it2 = read_table(str(pq), columns={"user": "u", "item": "i"})
    assert it2.user_map.ids.tolist() == [1, 3] and it2.item.tolist() == [0, 1]


def test_mmrec_inter_and_predefined_split(tmp_path):
    p = _write(tmp_path / "x.inter", "userID\titemID\trating\ttimestamp\tx_label\n0\t2\t5\t10\t0\n1\t0\t3\t11\t1\n"
                                     "1\t1\t4\t12\t2\n0\t1\t1\t13\t0\n")
    it, lab = read_mmrec_inter(p)
    assert it.n_users == 2 and it.n_items == 3 and lab.tolist() == [0, 1, 2, 0]
    s = make_split(it, "predefined", labels=lab)
    assert s.sizes() == {"train": 2, "valid": 1, "test": 1}


def test_recbole_atomic(tmp_path):
    p = _write(tmp_path / "a.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
                                     "196\t242\t3\t881250949\n186\t302\t3.5\t891717742\n")
    it = read_recbole_inter(p)
    assert it.user_map.ids.tolist() == [186, 196] and it.rating.tolist() == [3.0, 3.5]
    assert read_interactions(p).content_hash() == it.content_hash()
    bad = _write(tmp_path / "b.inter", "user_id\titem_id:token\n1\t2\n")
    with pytest.raises(ValueError, match="b.inter.*'user_id'"):
        read_recbole_inter(bad)


def test_movielens_udata(tmp_path):
    p = _write(tmp_path / "u.data", "196\t242\t3\t881250949\n186\t302\t3\t891717742\n196\t302\t1\t878887116\n")
    it = read_movielens(p)
    assert len(it) == 3 and it.n_users == 2 and it.n_items == 2 and it.timestamp.dtype == torch.int64
    assert read_interactions(p).content_hash() == it.content_hash()


BAD_INPUTS = [
    # (file name, content, reader, reader kwargs, expected message)
    ("e.csv", "", "table", {}, "e.csv: the file is empty"),
    ("h.csv", "user_id,item_id\n", "table", {}, "no rows"),
    ("m.csv", "user,item_id\n1,2\n", "table", {}, r"m.csv: no column 'user_id' for the user \(columns: user, item_id\)"),
    ("n.csv", "user_id,item_id\n1,2\n", "table", {"columns": {"timestamp": "ts"}}, "no column 'ts'"),
    ("neg.inter", "userID\titemID\n0\t1\n-3\t2\n", "mmrec", {}, r"neg.inter: negative user index -3 at row 2"),
    ("frac.inter", "userID\titemID\n0\t1\n1\tx7\n", "mmrec", {}, r"frac.inter: item index 'x7' at row 2 is not an integer"),
    ("lab.inter", "userID\titemID\tx_label\n0\t1\t0\n1\t1\t4\n", "mmrec", {}, "x_label 4 at row 2"),
    ("b.csv", "user_id,item_id\n1,2\n,3\n", "table", {}, "empty user id at row 2"),
]


@pytest.mark.parametrize("name,content,reader,kwargs,message", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_inputs(tmp_path, name, content, reader, kwargs, message):
    path = _write(tmp_path / name, content)
    read = read_table if reader == "table" else read_mmrec_inter
    with pytest.raises(ValueError, match=message):
        read(path, **kwargs)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_table(str(tmp_path / "absent.csv"))


def test_mmrec_roundtrip_small(tmp_path):
    text = ("userID\titemID\trating\ttimestamp\tx_label\n0\t2\t5\t10\t0\n0\t1\t1\t13\t0\n0\t0\t2\t9\t2\n"
            "1\t0\t3\t11\t1\n1\t1\t4\t12\t2\n")
    (tmp_path / "in").mkdir()
    _write(tmp_path / "in" / "d.inter", text)
    from graphrec.datasets import load
    ds = load(f"mmrec:{tmp_path / 'in'}")
    export_mmrec(ds, ds.split, str(tmp_path / "out"), "d")
    assert (tmp_path / "out" / "d.inter").read_text() == text
    back = load(f"mmrec:{tmp_path / 'out'}")
    assert back.split.hash() == ds.split.hash()


def test_mmrec_roundtrip_reference(shared_data, tmp_path):
    src = shared_data / "mmrec_format" / "ml100k_mm"
    if not src.exists():
        pytest.skip(f"{src} absent")
    from graphrec.datasets import load
    ds = load(f"mmrec:{src}")
    assert ds.split.sizes() == {"train": 80367, "valid": 9596, "test": 10037}
    assert ds.features.dims() == {"image": 1280, "text": 384}
    out = export_mmrec(ds, ds.split, str(tmp_path), "ml100k_mm")
    for f in ("ml100k_mm.inter", "u_id_mapping.csv", "i_id_mapping.csv"):
        assert (tmp_path / f).read_bytes() == (src / f).read_bytes(), f
    for f in ("image_feat.npy", "text_feat.npy"):
        assert np.array_equal(np.load(tmp_path / f), np.load(src / f))
    assert set(out) >= {"inter", "image_feat", "text_feat"}
