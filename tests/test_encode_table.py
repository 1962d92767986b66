"""Item tables and CLI plumbing of `graphrec encode` (no encoder models needed)."""
from __future__ import annotations

import numpy as np
import pytest

from graphrec.commands.encode import ids_from_dir, ids_path, read_ids, write_features
from graphrec.data.encode.table import item_texts, join_text, read_columns


def _csv(tmp_path, text: str, name: str = "items.csv"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_item_texts_joins_columns_in_file_order(tmp_path):
    p = _csv(tmp_path, 'id,title,genres,plot\n7,Heat,"Crime, Drama","A  heist\n goes wrong"\n3,Up,,Balloons\n')
    ids, texts = item_texts(p, "id", ["title", "genres", "plot"])
    assert ids == ["7", "3"]  # file order, not sorted
    # empty parts are skipped (no ". ." runs), whitespace (incl. the quoted newline) collapsed
    assert texts == ["Heat. Crime, Drama. A heist goes wrong", "Up. Balloons"]
    assert item_texts(p, "id", ["plot", "title"], sep=" | ")[1] == ["A heist goes wrong | Heat", "Balloons | Up"]


def test_tsv_and_parquet_read_the_same(tmp_path):
    pd = pytest.importorskip("pandas")
    pytest.importorskip("pyarrow")
    tsv = _csv(tmp_path, "id\ttitle\n1\tA\n2\tB\n", "items.tsv")
    pq = tmp_path / "items.parquet"
    pd.DataFrame({"id": [1, 2], "title": ["A", "B"]}).to_parquet(pq)
    assert read_columns(tsv, ["id", "title"]) == read_columns(pq, ["id", "title"]) == \
        {"id": ["1", "2"], "title": ["A", "B"]}


def test_missing_column_names_file_column_and_available(tmp_path):
    p = _csv(tmp_path, "id,title\n1,A\n")
    with pytest.raises(ValueError) as e:
        item_texts(p, "id", ["title", "overview"])
    msg = str(e.value)
    assert str(p) in msg and "'overview'" in msg and "available columns: id, title" in msg


def test_duplicate_and_empty_ids_are_errors(tmp_path):
    with pytest.raises(ValueError, match=r"id '1' appears twice.*rows 0 and 2"):
        item_texts(_csv(tmp_path, "id,t\n1,a\n2,b\n1,c\n"), "id", ["t"])
    with pytest.raises(ValueError, match="empty id"):
        item_texts(_csv(tmp_path, "id,t\n1,a\n,b\n"), "id", ["t"])


def test_wrong_delimiter_is_reported(tmp_path):
    p = _csv(tmp_path, "id\tt\n1\ta,b\n", "items.csv")  # tab file named .csv
    with pytest.raises(ValueError, match="no column"):
        item_texts(p, "id", ["t"])


def test_join_text_all_empty():
    assert join_text([None, "  ", ""]) == ""


def test_write_features_and_ids_roundtrip(tmp_path):
    out = tmp_path / "sub" / "feat.npy"
    x = np.arange(6, dtype=np.float64).reshape(3, 2)
    write_features(out, x, ["a", "b", "c"])
    assert ids_path(out).name == "feat.ids.txt"
    y = np.load(out)
    assert y.dtype == np.float32 and np.array_equal(y, x.astype(np.float32))
    assert read_ids(ids_path(out)) == ["a", "b", "c"]
    with pytest.raises(ValueError, match=".npy"):
        write_features(tmp_path / "feat.txt", x, ["a", "b", "c"])


def test_read_ids_rejects_blank_and_duplicate_lines(tmp_path):
    p = tmp_path / "ids.txt"
    p.write_text("1\n\n2\n")
    with pytest.raises(ValueError, match="blank id on line 2"):
        read_ids(p)
    p.write_text("1\n2\n1\n")
    with pytest.raises(ValueError, match="lines 1 and 3"):
        read_ids(p)


def test_ids_from_dir_matches_pattern_and_sorts_numerically(tmp_path):
    for name in ["10.jpg", "9.jpg", "2.jpg", "notes.txt", "x.png"]:
        (tmp_path / name).write_bytes(b"")
    assert ids_from_dir(tmp_path, "{id}.jpg") == ["2", "9", "10"]
    with pytest.raises(ValueError, match="no file matches"):
        ids_from_dir(tmp_path, "poster_{id}.jpg")
    with pytest.raises(ValueError, match="exactly once"):
        ids_from_dir(tmp_path, "poster.jpg")


def test_cli_missing_column_exits_2_with_message(tmp_path, capsys):
    from graphrec.cli import main

    p = _csv(tmp_path, "id,title\n1,A\n")
    rc = main(["encode", "text", "--items", str(p), "--id-col", "id", "--text-cols", "title,plot",
               "--out", str(tmp_path / "t.npy")])
    err = capsys.readouterr().err
    assert rc == 2 and "'plot'" in err and "available columns: id, title" in err
    assert not (tmp_path / "t.npy").exists()
