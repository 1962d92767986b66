"""Streamed reading of large logs (`graphrec.data.stream`): block by block, the same interactions as
the whole-file reader (ids, their order, indices, timestamps, ratings) for CSV, TSV, gzip and
parquet, also when a later block turns an integer id column into strings; errors name the file,
the data row across blocks and the column; large files take this path by themselves."""
import gzip

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from graphrec.data import stream
from graphrec.data.readers import read_table
from graphrec.data.stream import stream_interactions
from graphrec.errors import DataError

NAMES = {"user": "user_id", "item": "item_id", "timestamp": "timestamp", "rating": "rating"}


def _rows(n=3000, seed=0, late_string=False):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 400, n)
    items = rng.integers(0, 250, n)
    lines = []
    for r, (u, i) in enumerate(zip(users, items)):
        item = f"{i}" if not (late_string and r == n - 5) else "0017"  # leading zero: the column is text
        user = f" u{u}" if r % 97 == 0 else f"u{u}"                      # whitespace is stripped
        lines.append(f"{user},{item},{1_600_000_000 + r},{(r % 5) + 0.5 * (r % 2)}")
    return "user_id,item_id,timestamp,rating\n" + "\n".join(lines) + "\n"


def _same(a, b):
    assert a.user_map == b.user_map and a.item_map == b.item_map
    assert a.user_map.ids.dtype == b.user_map.ids.dtype and a.item_map.ids.dtype == b.item_map.ids.dtype
    for f in ("user", "item", "timestamp", "rating"):
        x, y = getattr(a, f), getattr(b, f)
        assert x.dtype == y.dtype and torch.equal(x, y), f


@pytest.mark.parametrize("late_string", [False, True])
def test_blocks_give_the_whole_file_readers_interactions(tmp_path, late_string):
    path = tmp_path / "log.csv"
    path.write_text(_rows(late_string=late_string))
    got = stream_interactions(str(path), NAMES, ",", block_bytes=4096)  # ~20 blocks
    assert got.meta["read"]["blocks"] > 10 and got.meta["read"]["rows"] == 3000
    _same(got, read_table(str(path)))
    assert (got.item_map.ids.dtype.kind == "U") == late_string


def test_tsv_gzip_and_parquet_stream_alike(tmp_path):
    text = _rows(seed=1)
    want = None
    (tmp_path / "log.csv").write_text(text)
    want = read_table(str(tmp_path / "log.csv"))
    (tmp_path / "log.tsv").write_text(text.replace(",", "\t"))
    _same(stream_interactions(str(tmp_path / "log.tsv"), NAMES, "\t", block_bytes=4096), want)
    with gzip.open(tmp_path / "log.csv.gz", "wt") as f:
        f.write(text)
    _same(stream_interactions(str(tmp_path / "log.csv.gz"), NAMES, ",", block_bytes=4096), want)
    cols = [line.split(",") for line in text.strip().splitlines()[1:]]
    table = pa.table({"user_id": [c[0] for c in cols], "item_id": [int(c[1]) for c in cols],
                      "timestamp": [int(c[2]) for c in cols], "rating": [float(c[3]) for c in cols]})
    pq.write_table(table, tmp_path / "log.parquet", row_group_size=500)
    _same(stream_interactions(str(tmp_path / "log.parquet"), NAMES, block_bytes=4096), want)


def test_errors_name_the_row_across_blocks_and_the_column(tmp_path):
    lines = _rows(n=2000).splitlines()
    lines[1500] = "u1,,1600000000,3"  # data row 1500: an empty item id in a later block
    (tmp_path / "a.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"a.csv: empty item id at row 1500 \(column 'item_id'\)"):
        stream_interactions(str(tmp_path / "a.csv"), NAMES, ",", block_bytes=4096)
    lines = _rows(n=2000).splitlines()
    lines[1800] = "u1,5,1600000000,great"
    (tmp_path / "b.csv").write_text("\n".join(lines) + "\n")
    with pytest.raises(DataError, match=r"b.csv: rating value 'great' at row 1800 is not a finite number"):
        stream_interactions(str(tmp_path / "b.csv"), NAMES, ",", block_bytes=4096)
    with pytest.raises(DataError, match=r"b.csv: no user column 'uid' \(columns: user_id, item_id"):
        stream_interactions(str(tmp_path / "b.csv"), {**NAMES, "user": "uid"}, ",")
    (tmp_path / "c.csv").write_text("user_id,item_id\n")
    with pytest.raises(DataError, match="header but no rows"):
        stream_interactions(str(tmp_path / "c.csv"), {"user": "user_id", "item": "item_id"}, ",")


def test_large_files_take_the_streamed_path(tmp_path, monkeypatch):
    path = tmp_path / "log.csv"
    path.write_text(_rows(n=500))
    assert "read" not in read_table(str(path)).meta
    monkeypatch.setattr(stream, "STREAM_MIN_BYTES", 1)
    got = read_table(str(path))
    assert got.meta["read"]["streamed"] and got.meta["read"]["rows_per_s"] > 0
    monkeypatch.setattr(stream, "STREAM_MIN_BYTES", 1 << 40)
    _same(got, read_table(str(path)))


def test_a_card_streams_a_large_log(tmp_path, monkeypatch):
    from graphrec.data.card import load_card
    (tmp_path / "log.csv").write_text(_rows(n=800))
    (tmp_path / "card.yaml").write_text("name: big\ninteractions: {path: log.csv, columns: {user: user_id, item: item_id}}\n")
    whole = load_card(str(tmp_path / "card.yaml")).interactions
    monkeypatch.setattr(stream, "STREAM_MIN_BYTES", 1)
    streamed = load_card(str(tmp_path / "card.yaml")).interactions
    assert streamed.meta["read"]["streamed"]
    _same(streamed, whole)
