"""The catalogue of bad inputs (readers, feature files, config, data that cannot train) and the id
policy (`graphrec.data.ids`).

Each catalogue row writes one bad file (or builds one bad config or split), calls graphrec on it and
states the error it must get: a graphrec error of the given type whose message is ONE line that
names the culprit (file, row, line, id or key). A row's culprit substring is what a user needs to
find the problem; ``{dir}`` stands for the row's temporary directory.
"""
from __future__ import annotations

import bz2
import gzip
import io
import logging
import zipfile
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import pytest
import torch

from graphrec.config import check_config, load_config, parse_set
from graphrec.data import IdMap, Interactions, ItemFeatures, load_features, load_npy, load_table
from graphrec.data.checks import check_trainable
from graphrec.data.filters import dedupe, kcore, to_implicit
from graphrec.errors import UnknownIdError, UnknownKeyError
from graphrec.data.readers import (from_columns, read_interactions, read_mmrec_inter, read_movielens,
                                   read_recbole_inter, read_table)
from graphrec.data.split import split_from_labels
from graphrec.datasets.mmrec import load_mmrec
from graphrec.datasets.recbole_seq import load_recbole_seq
from graphrec.errors import ConfigError, DataError, GraphrecError, MissingFileError

pa = pytest.importorskip("pyarrow")
pq = pytest.importorskip("pyarrow.parquet")


# -- writers -------------------------------------------------------------------------------------
def _put(d, name: str, content: Any) -> str:
    p = d / name
    p.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        p.write_bytes(content)
    else:
        p.write_text(content, encoding="utf-8")
    return str(p)


def _parquet(d, name: str, **cols) -> str:
    p = str(d / name)
    pq.write_table(pa.table(cols), p)
    return p


def _npy(d, name: str, x: np.ndarray) -> str:
    p = str(d / name)
    np.save(p, x, allow_pickle=True)
    return p


GOOD_INTER = "userID\titemID\trating\ttimestamp\tx_label\n0\t0\t5\t1\t0\n0\t1\t4\t2\t1\n1\t1\t3\t3\t0\n1\t0\t2\t4\t2\n"
SEQ_HEAD = "user_id:token\titem_id_list:token_seq\titem_id:token\n"
IMAP = IdMap(np.array(["a", "b", "c"]), "item")


def _mmrec_dir(d, inter: str = GOOD_INTER, **files: Any) -> str:
    root = d / "mm"
    _put(root, "d.inter", inter)
    for name, content in files.items():
        name = name.replace("__", ".")
        if isinstance(content, np.ndarray):
            _npy(root, name, content)
        else:
            _put(root, name, content)
    return str(root)


def _seq_dir(d, test: str, **files: str) -> str:
    root = d / "seq"
    _put(root, "S.test.inter", SEQ_HEAD + test)
    for name, content in files.items():
        _put(root, "S." + name, content)
    return str(root)


def _cfg(*sets: str) -> Callable[[Any], Any]:
    return lambda d: load_config("lightgcn", "synthetic", overrides=parse_set(list(sets)))


def _cfg_file(text: Any, name: str = "c.yaml") -> Callable[[Any], Any]:
    return lambda d: load_config("lightgcn", "synthetic", [_put(d, name, text)])


def _inter(users: list, items: list, n_users: int, n_items: int) -> Interactions:
    return Interactions(torch.tensor(users), torch.tensor(items), IdMap(np.arange(n_users), "user"),
                        IdMap(np.arange(n_items), "item"), source="log.csv")


def _split(rows: list[tuple[int, int, int]], n_users: int = 3, n_items: int = 4):
    u, i, lab = zip(*rows)
    return split_from_labels(_inter(list(u), list(i), n_users, n_items), np.array(lab), "random")


def _table(name: str, content: Any, **kw) -> Callable[[Any], Any]:
    return lambda d: read_table(_put(d, name, content), **kw)


def _mm(content: str, name: str = "x.inter", **kw) -> Callable[[Any], Any]:
    return lambda d: read_mmrec_inter(_put(d, name, content), **kw)


def _pq_table(name: str = "t.parquet", **cols) -> Callable[[Any], Any]:
    return lambda d: read_table(_parquet(d, name, **cols))


def _feat_npy(x: Any, n: int = 3, name: str = "f.npy") -> Callable[[Any], Any]:
    return lambda d: load_npy(_npy(d, name, x), n)


def _feat_table(content: str, name: str = "f.csv", **kw) -> Callable[[Any], Any]:
    return lambda d: load_table(_put(d, name, content), IMAP, **kw)


def _truncated_npy(d) -> Any:
    p = _npy(d, "t.npy", np.ones((3, 4), dtype=np.float32))
    with open(p, "r+b") as f:
        f.truncate(140)  # the header is 128 bytes, the data 48
    return load_npy(p, 3)


@dataclass
class Case:
    id: str
    call: Callable[[Any], Any]  # (tmp_path) -> writes the bad input, calls graphrec on it
    error: type
    culprit: str


CASES = [
    # ---- files -------------------------------------------------------------------------------
    Case("missing-file", lambda d: read_table(str(d / "absent.csv")), MissingFileError, "absent.csv: no such file"),
    Case("directory-for-file", lambda d: read_table(str(d)), DataError, "is a directory"),
    Case("empty-file", _table("e.csv", ""), DataError, "e.csv: the file is empty"),
    Case("blank-lines-only", _table("b.csv", "\n\n  \n"), DataError, "b.csv: the file is empty"),
    Case("header-no-rows", _table("h.csv", "user_id,item_id\n"), DataError, "h.csv: the file has a header but no rows"),
    Case("nul-binary", _table("n.csv", b"user_id,item_id\n1,2\n\x00\x01\x02,3\n"), DataError, "n.csv: line 3 holds a NUL"),
    Case("undecodable-byte", _table("u.csv", b"user_id,item_id\n1,2\n3,caf\xe9\n"), DataError,
         "u.csv: line 3, column 6: byte 0xe9 is not valid utf-8; set the encoding option"),
    Case("utf16-bom", _table("w.csv", "user_id,item_id\n1,2\n".encode("utf-16")), DataError, "encoding='utf-16'"),
    Case("bzip2-content", _table("z.csv", bz2.compress(b"user_id,item_id\n1,2\n")), DataError, "z.csv: the content is bzip2"),
    Case("zip-content", lambda d: read_table(_zip(d)), DataError, "a.csv: the content is a zip archive"),
    Case("corrupt-gzip", _table("g.csv", gzip.compress(b"user_id,item_id\n1,2\n" * 50)[:30]), DataError,
         "g.csv: gzip content that does not decompress"),
    Case("parquet-read-as-text", lambda d: read_table(_parquet(d, "p.csv", user_id=[1], item_id=[2])), DataError,
         "p.csv: the content is a parquet file"),
    Case("ragged-short-row", _table("r.csv", "user_id,item_id,rating\n1,2,3\n4,5\n"), DataError,
         "r.csv: line 3 has 2 field(s), the header has 3"),
    Case("ragged-long-row", _table("l.csv", "user_id,item_id\n1,2\n3,4,5\n"), DataError, "l.csv: line 3 has 3 field(s)"),
    Case("unclosed-quote", _table("q.csv", 'user_id,item_id\n1,2\n"3,4\n5,6\n'), DataError, "quote"),
    Case("duplicate-header", _table("dh.csv", "user_id,item_id,user_id\n1,2,3\n"), DataError,
         "dh.csv: column 'user_id' appears twice"),
    Case("missing-user-column", _table("m.csv", "user,item_id\n1,2\n"), DataError,
         "m.csv: no column 'user_id' for the user (columns: user, item_id)"),
    Case("missing-named-timestamp", _table("t.csv", "user_id,item_id\n1,2\n", columns={"timestamp": "ts"}),
         DataError, "t.csv: no column 'ts' for the timestamp"),
    Case("unknown-column-role", _table("k.csv", "user_id,item_id\n1,2\n", columns={"time": "t"}), ConfigError,
         "unknown column roles ['time']"),
    Case("unknown-table-format", _table("f.csv", "user_id,item_id\n1,2\n", fmt="xml"), ConfigError,
         "unknown table format 'xml'"),
    Case("unknown-reader-option", lambda d: read_interactions(_put(d, "o.csv", "user_id,item_id\n1,2\n"), colums={}),
         ConfigError, "unknown option(s) 'colums' for the table reader"),
    Case("unknown-interaction-format", lambda d: read_interactions(_put(d, "o.csv", "a\n1\n"), fmt="json"),
         ConfigError, "unknown interaction format 'json'"),
    # ---- ids and values in tables ------------------------------------------------------------
    Case("empty-user-id", _table("b.csv", "user_id,item_id\n1,2\n,3\n"), DataError, "b.csv: empty user id at row 2 (line 3"),
    Case("blank-item-id", _table("s.csv", "user_id,item_id\n1,2\n3,   \n"), DataError, "s.csv: empty item id at row 2"),
    Case("quoted-empty-id", _table("qe.csv", 'user_id,item_id\n"",2\n'), DataError, "empty user id at row 1"),
    Case("rating-not-number", _table("r.csv", "user_id,item_id,rating\n1,2,5\n1,3,x\n"), DataError,
         "r.csv: rating value 'x' at row 2 is not a finite number (line 3, column 'rating')"),
    Case("rating-nan", _table("n.csv", "user_id,item_id,rating\n1,2,nan\n"), DataError, "rating value 'nan' at row 1"),
    Case("timestamp-inf", _table("i.csv", "user_id,item_id,timestamp\n1,2,inf\n"), DataError,
         "timestamp value 'inf' at row 1"),
    Case("timestamp-empty", _table("te.csv", "user_id,item_id,timestamp\n1,2,\n"), DataError,
         "timestamp value '' at row 1"),
    Case("parquet-negative-id", _pq_table(user_id=[1, -3], item_id=[1, 2]), DataError,
         "t.parquet: negative user id -3 at row 2 (column 'user_id')"),
    Case("parquet-uint64-overflow", _pq_table(user_id=pa.array([1, 2**63 + 5], pa.uint64()), item_id=[1, 2]),
         DataError, f"user id {2**63 + 5} at row 2 does not fit int64"),
    Case("parquet-fractional-float-id", _pq_table(user_id=[1.0, 2.5], item_id=[1, 2]), DataError,
         "user id 2.5 at row 2 is not an integer"),
    Case("parquet-nan-float-id", _pq_table(user_id=pa.array([1.0, float("nan")], pa.float64()), item_id=[1, 2]),
         DataError, "user id NaN at row 2"),
    Case("parquet-null-id", _pq_table(user_id=pa.array([1, None], pa.int64()), item_id=[1, 2]), DataError,
         "empty user id at row 2"),
    Case("parquet-float-beyond-2^53", _pq_table(user_id=[1.0, 2.0**60], item_id=[1, 2]), DataError, "2^53"),
    Case("parquet-bool-id", _pq_table(user_id=[True, False], item_id=[1, 2]), DataError,
         "t.parquet: user ids are booleans (row 1"),
    Case("parquet-list-id", _pq_table(user_id=[[1], [2]], item_id=[1, 2]), DataError, "user ids are lists (row 1"),
    Case("parquet-bytes-id", _pq_table(item_id=[b"a", b"b"], user_id=[1, 2]), DataError, "item ids are bytes"),
    Case("parquet-timestamp-id", _pq_table(user_id=pa.array([1, 2], pa.timestamp("s")), item_id=[1, 2]), DataError,
         "user ids are of type timestamp"),
    Case("parquet-gzip", lambda d: read_table(_put(d, "g.parquet", gzip.compress(b"PAR1xxxx"))), DataError,
         "g.parquet: gzip-compressed"),
    Case("parquet-not-parquet", _table("n.parquet", "user_id,item_id\n1,2\n"), DataError, "n.parquet: not a parquet file"),
    Case("parquet-no-rows", _pq_table(user_id=pa.array([], pa.int64()), item_id=pa.array([], pa.int64())), DataError,
         "t.parquet: the file has a header but no rows"),
    Case("in-memory-bool-among-ids", lambda d: from_columns([1, True], [1, 2], source="mem"), DataError,
         "mem: user id True at row 2 is a boolean"),
    Case("in-memory-list-id", lambda d: from_columns(["a", ["b"]], [1, 2], source="mem"), DataError,
         "mem: user id at row 2 is a list"),
    Case("in-memory-2d-ids", lambda d: from_columns(np.zeros((2, 2)), [1, 2], source="mem"), DataError,
         "shape (2, 2)"),
    Case("in-memory-length-mismatch", lambda d: from_columns([1, 2], [1], source="mem"), DataError,
         "mem: user and item columns differ in length (2 vs 1)"),
    # ---- MMRec .inter: dense indices ---------------------------------------------------------
    Case("mmrec-negative-index", _mm("userID\titemID\n0\t1\n-3\t2\n", "neg.inter"), DataError,
         "neg.inter: negative user index -3 at row 2 (line 3, column 'userID')"),
    Case("mmrec-non-integer-index", _mm("userID\titemID\n0\t1\n1\tx7\n", "frac.inter"), DataError,
         "frac.inter: item index 'x7' at row 2 is not an integer"),
    Case("mmrec-fractional-index", _mm("userID\titemID\n0\t1\n1\t1.5\n"), DataError, "item index '1.5' at row 2"),
    Case("mmrec-typo-huge-index", _mm("userID\titemID\n" + "".join(f"0\t{i}\n" for i in range(50)) + "1\t10000000\n"),
         DataError, "x.inter: item index 10000000 at row 51 is far beyond the 51 distinct item indices"),
    Case("mmrec-int64-overflow", _mm("userID\titemID\n0\t1\n1\t99999999999999999999\n"), DataError,
         "item index 99999999999999999999 at row 2 does not fit int64"),
    Case("mmrec-bad-x-label", _mm("userID\titemID\tx_label\n0\t1\t0\n1\t1\t4\n", "lab.inter"), DataError,
         "lab.inter: x_label 4 at row 2 is not 0/1/2"),
    Case("mmrec-missing-item-column", _mm("userID\titem\n0\t1\n"), DataError, "x.inter: no column 'itemID'"),
    Case("mmrec-empty-index", _mm("userID\titemID\n0\t1\n\t2\n"), DataError, "empty user index at row 2"),
    Case("mmrec-index-beyond-known-size", _mm("userID\titemID\n0\t1\n0\t5\n", n_items=3), DataError,
         "item index 5 at row 2 is >= the 3 items"),
    # ---- MMRec directories -------------------------------------------------------------------
    Case("mmrec-dir-missing", lambda d: load_mmrec(str(d / "nope")), MissingFileError, "nope: no such directory"),
    Case("mmrec-dir-is-file", lambda d: load_mmrec(_put(d, "f.txt", "x")), DataError, "f.txt: is a file"),
    Case("mmrec-two-inter-files", lambda d: load_mmrec(_mmrec_dir(d, e__inter=GOOD_INTER)), MissingFileError,
         "expected exactly one <name>.inter file"),
    Case("mmrec-item-beyond-feature-rows", lambda d: load_mmrec(_mmrec_dir(d, image_feat__npy=np.ones((1, 2)))),
         DataError, "image_feat.npy: 1 feature rows, but"),
    Case("mmrec-feature-files-disagree",
         lambda d: load_mmrec(_mmrec_dir(d, image_feat__npy=np.ones((2, 2)), text_feat__npy=np.ones((3, 2)))),
         DataError, "the feature files disagree on the item count"),
    Case("mmrec-mapping-dense-repeated", lambda d: load_mmrec(_mmrec_dir(d, i_id_mapping__csv="item_id\titemID\na\t0\nb\t0\n")),
         DataError, "i_id_mapping.csv: dense item id '0' at row 2 repeats row 1 (line 3, column 'itemID'); each must appear once"),
    Case("mmrec-mapping-original-repeated",
         lambda d: load_mmrec(_mmrec_dir(d, i_id_mapping__csv="item_id\titemID\na\t0\na\t1\n")), DataError,
         "i_id_mapping.csv: original item id 'a' at row 2 repeats row 1 (line 3, column 'item_id')"),
    Case("mmrec-item-text-beyond", lambda d: load_mmrec(_mmrec_dir(d, item_text__tsv="itemID\ttext\n7\tx\n")),
         DataError, "item_text.tsv: item index 7 at row 1 is >= the 2 items"),
    Case("mmrec-item-text-repeated", lambda d: load_mmrec(_mmrec_dir(d, item_text__tsv="itemID\ttext\n1\tx\n1\ty\n")),
         DataError, "item_text.tsv: item '1' at row 2 repeats row 1 (line 3, column 'itemID')"),
    Case("mmrec-unknown-modality", lambda d: load_mmrec(_mmrec_dir(d), modalities=["audio"]), ConfigError,
         "unknown modalities ['audio']"),
    Case("mmrec-name-with-path", lambda d: load_mmrec(_mmrec_dir(d), name="../d"), ConfigError,
         "name must be a file name"),
    # ---- RecBole atomic and sequential files -------------------------------------------------
    Case("recbole-untyped-header", lambda d: read_recbole_inter(_put(d, "b.inter", "user_id\titem_id:token\n1\t2\n")),
         DataError, "b.inter: header field 'user_id' is not 'name:type'"),
    Case("recbole-unknown-type", lambda d: read_recbole_inter(_put(d, "t.inter", "user_id:int\titem_id:token\n1\t2\n")),
         DataError, "header field 'user_id:int'"),
    Case("recbole-duplicate-field",
         lambda d: read_recbole_inter(_put(d, "u.inter", "user_id:token\tuser_id:float\titem_id:token\n1\t2\t3\n")),
         DataError, "u.inter: header field 'user_id' appears twice"),
    Case("recbole-missing-item-field",
         lambda d: read_recbole_inter(_put(d, "m.inter", "user_id:token\titem:token\n1\t2\n")), DataError,
         "m.inter: no column 'item_id' for the item"),
    Case("seq-missing-list-field", lambda d: load_recbole_seq(_seq_missing_list(d)),
         DataError, "no column 'item_id_list'"),
    Case("seq-user-twice", lambda d: load_recbole_seq(_seq_dir(d, "0\t1 2\t3\n0\t1\t2\n")), DataError,
         "S.test.inter: user '0' at row 2 repeats row 1 (line 3, column 'user_id')"),
    Case("seq-bad-token-in-list", lambda d: load_recbole_seq(_seq_dir(d, "0\t1 2\t3\n1\t4 x 5\t6\n")), DataError,
         "S.test.inter: item index 'x' at row 2 is not an integer (line 3, column 'item_id_list')"),
    Case("seq-item-beyond-item2index",
         lambda d: load_recbole_seq(_seq_dir(d, "0\t0 1\t3\n", item2index="a\t0\nb\t1\nc\t2\n")), DataError,
         "S.item2index: 3 items, but"),
    Case("seq-item2index-repeated", lambda d: load_recbole_seq(_seq_dir(d, "0\t0\t1\n", item2index="a\t0\nb\t0\n")),
         DataError, "S.item2index: item index '0' at row 2 repeats row 1 (line 2, column 'index')"),
    Case("seq-item2index-three-columns", lambda d: load_recbole_seq(_seq_dir(d, "0\t0\t1\n", item2index="a\t0\tz\n")),
         DataError, "S.item2index: expected two tab-separated columns"),
    Case("seq-text-repeated",
         lambda d: load_recbole_seq(_seq_dir(d, "0\t0\t1\n", text="item_id:token\ttext:token_seq\n0\ta\n0\tb\n")),
         DataError, "S.text: item '0' at row 2 repeats row 1 (line 3, column 'item_id')"),
    # ---- MovieLens -----------------------------------------------------------------------------
    Case("movielens-three-columns", lambda d: read_movielens(_put(d, "u.data", "1\t2\t3\n")), DataError,
         "u.data: expected 4 columns"),
    Case("movielens-dat-with-tabs", lambda d: read_movielens(_put(d, "ratings.dat", "1::2::3::4\n1\t2\t3\t4\n")),
         DataError, "ratings.dat: line 2 holds a tab"),
    Case("movielens-ragged", lambda d: read_movielens(_put(d, "u.data", "1\t2\t3\t4\n1\t2\t3\n")), DataError,
         "u.data: line 2 has 3 field(s)"),
    # ---- feature files -------------------------------------------------------------------------
    Case("npy-missing", lambda d: load_npy(str(d / "no.npy"), 3), MissingFileError, "no.npy: no such feature file"),
    Case("npy-0d", _feat_npy(np.float32(1.0)), DataError, "f.npy: the feature array has shape (), expected (3, d)"),
    Case("npy-1d", _feat_npy(np.ones(3, np.float32)), DataError, "has shape (3,)"),
    Case("npy-empty-width", _feat_npy(np.ones((3, 0), np.float32)), DataError, "f.npy: the feature array has shape (3, 0): no feature columns"),
    Case("npy-complex", _feat_npy(np.ones((3, 2), np.complex64)), DataError, "f.npy: the feature array holds complex"),
    Case("npy-object-pickle", _feat_npy(np.array([[1, "a"]] * 3, dtype=object)), DataError, "f.npy: an object (pickled)"),
    Case("npy-strings", _feat_npy(np.array([["a", "b"]] * 3)), DataError, "has dtype <U1"),
    Case("npy-bool", _feat_npy(np.ones((3, 2), bool)), DataError, "holds booleans"),
    Case("npy-truncated", _truncated_npy, DataError, "t.npy: truncated"),
    Case("npy-gzip", lambda d: load_npy(_put(d, "g.npy", gzip.compress(b"\x93NUMPY....")), 3), DataError,
         "g.npy: gzip-compressed"),
    Case("npy-not-npy", lambda d: load_npy(_put(d, "t.npy", "1,2\n3,4\n"), 3), DataError, "t.npy: not a .npy file"),
    Case("npy-row-count", _feat_npy(np.ones((4, 2), np.float32)), DataError, "f.npy: 4 feature rows, but the dataset has 3"),
    Case("npy-nan", _feat_npy(np.array([[1, 2], [np.nan, 1], [0, 0]], np.float32)), DataError,
         "f.npy: the feature array has NaN/inf in 1 row(s); first rows [1]"),
    Case("npy-float64-overflow", _feat_npy(np.array([[1, 2], [1e300, 1], [0, 0]], np.float64)), DataError,
         "beyond float32's range"),
    Case("npy-nan-names-item-id", lambda d: load_features({"image": _npy(d, "n.npy", np.array([[1.0], [np.inf], [0]]))}, IMAP),
         DataError, "modality 'image' has NaN/inf in 1 row(s); first item indices [1] (original ids ['b'])"),
    Case("table-non-numeric", _feat_table("item_id,x\na,1\nb,oops\nc,2\n"), DataError,
         "f.csv: non-numeric, NaN, inf or beyond-float32 feature values in 1 row(s); first data rows [2] (item ids ['b'])"),
    Case("table-complex-string", _feat_table("item_id,x\na,1\nb,1+2j\nc,2\n"), DataError, "'1+2j' in column 'x'"),
    Case("table-float32-overflow", _feat_table("item_id,x\na,1\nb,1e39\nc,2\n"), DataError, "'1e39' in column 'x'"),
    Case("table-unknown-id", _feat_table("item_id,x\na,1\nz,2\n", missing="zeros"), UnknownIdError,
         "f.csv: 1 unknown item id(s) (not among the 3 known): 'z' (row 2)"),
    Case("table-repeated-id", _feat_table("item_id,x\na,1\na,2\nb,1\nc,1\n"), DataError,
         "f.csv: item id 'a' has more than one feature row (rows [1, 2])"),
    Case("table-missing-item", _feat_table("item_id,x\na,1\nc,2\n"), DataError, "no feature row for 1 item(s), e.g. ids ['b']"),
    Case("table-no-feature-columns", _feat_table("item_id\na\nb\nc\n"), DataError, "f.csv: no feature columns besides 'item_id'"),
    Case("table-missing-policy", _feat_table("item_id,x\na,1\nb,1\nc,1\n", missing="drop"), ConfigError, "missing='drop'"),
    Case("feature-file-type", lambda d: load_features({"image": _put(d, "f.pt", b"x")}, IMAP), DataError,
         "f.pt: unsupported feature file type for modality 'image'"),
    Case("features-in-memory-complex", lambda d: ItemFeatures({"text": torch.ones(3, 2, dtype=torch.complex64)}, IMAP),
         DataError, "modality 'text' holds complex numbers"),
    Case("features-in-memory-wrong-rows", lambda d: ItemFeatures({"text": torch.ones(2, 2)}, IMAP), DataError,
         "2 feature rows, but the dataset has 3 items"),
    # ---- config --------------------------------------------------------------------------------
    Case("cfg-unknown-key", _cfg("train.lrr=0.1"), UnknownKeyError, "--set: unknown config key 'train.lrr'"),
    Case("cfg-unknown-model-key", _cfg("model.n_layer=3"), UnknownKeyError, "unknown config key 'model.n_layer'"),
    Case("cfg-bool-yes", _cfg("train.amp=yes"), ConfigError, "--set: train.amp must be true or false, got 'yes'"),
    Case("cfg-bool-one", _cfg("train.deterministic=1"), ConfigError, "train.deterministic must be true or false, got 1"),
    Case("cfg-batch-size-zero", _cfg("train.batch_size=0"), ConfigError, "train.batch_size must be >= 1, got 0"),
    Case("cfg-batch-size-float", _cfg("train.batch_size=2.5"), ConfigError, "train.batch_size must be an integer, got 2.5"),
    Case("cfg-lr-negative", _cfg("train.lr=-0.1"), ConfigError, "train.lr must be >= 0"),
    Case("cfg-lr-text", _cfg("train.lr=fast"), ConfigError, "train.lr must be a number, got 'fast'"),
    Case("cfg-lr-inf", _cfg("train.lr=.inf"), ConfigError, "train.lr must be a finite number"),
    Case("cfg-weight-decay-negative", _cfg("train.weight_decay=-1e-4"), ConfigError, "train.weight_decay must be >= 0"),
    Case("cfg-ks-zero", _cfg("eval.ks=[0,10]"), ConfigError, "eval.ks[0] must be >= 1, got 0"),
    Case("cfg-ks-scalar", _cfg("eval.ks=10"), ConfigError, "eval.ks must be a list"),
    Case("cfg-ks-float", _cfg("eval.ks=[10.5]"), ConfigError, "eval.ks[0] must be an integer"),
    Case("cfg-ks-repeated", _cfg("eval.ks=[10,10,20]"), ConfigError, "eval.ks lists 10 twice"),
    Case("cfg-threads-zero", _cfg("threads=0"), ConfigError, "threads must be >= 1, got 0"),
    Case("cfg-user-chunk-zero", _cfg("eval.user_chunk=0"), ConfigError, "eval.user_chunk must be >= 1"),
    Case("cfg-epochs-negative", _cfg("train.epochs=-1"), ConfigError, "train.epochs must be >= 0, got -1"),
    Case("cfg-patience-float", _cfg("train.patience=2.5"), ConfigError, "train.patience must be an integer"),
    Case("cfg-valid-metric-unknown", _cfg("train.valid_metric=auc@10"), ConfigError,
         "train.valid_metric 'auc@10' names metric 'auc', which is not computed"),
    Case("cfg-valid-metric-k", _cfg("train.valid_metric=recall@5"), ConfigError,
         "train.valid_metric 'recall@5' needs k=5 among the evaluated cut-offs"),
    Case("cfg-valid-metric-form", _cfg("train.valid_metric=recall"), ConfigError,
         "train.valid_metric: 'recall' is not a valid value (expected <metric>@<k>"),
    Case("cfg-device-unknown", _cfg("device=gpu"), ConfigError, "device: 'gpu' is not a valid value"),
    Case("cfg-device-absent", _cfg("device=cuda:97"), ConfigError, "device 'cuda:97' does not exist on this machine"),
    Case("cfg-section-as-value", _cfg("train=3"), ConfigError, "--set: train is a section"),
    Case("cfg-value-as-section", _cfg("train.lr.x=3"), ConfigError, "train.lr must be a number"),
    Case("cfg-set-no-equals", lambda d: parse_set(["train.lr"]), ConfigError, "--set expects key=value, got 'train.lr'"),
    Case("cfg-set-bad-yaml", lambda d: parse_set(["eval.ks=[1,"]), ConfigError, "--set eval.ks: not valid YAML"),
    Case("cfg-set-empty-key-part", lambda d: parse_set(["train..lr=1"]), ConfigError, "the key must be dotted names"),
    Case("cfg-set-conflict", lambda d: parse_set(["train=1", "train.lr=2"]), ConfigError,
         "--set train.lr: conflicts with --set train"),
    Case("cfg-file-missing", lambda d: load_config("lightgcn", "synthetic", [str(d / "none.yaml")]), MissingFileError,
         "none.yaml: no such config file"),
    Case("cfg-file-bad-yaml", _cfg_file("train:\n  lr: [1,\n"), ConfigError, "c.yaml: not valid YAML (line"),
    Case("cfg-file-top-level-list", _cfg_file("- 1\n- 2\n"), ConfigError, "c.yaml: expected a mapping at the top level"),
    Case("cfg-file-duplicate-key", _cfg_file("train:\n  lr: 0.1\n  lr: 0.2\n"), ConfigError,
         "c.yaml: not valid YAML (line 3, column 3: key 'lr' appears twice)"),
    Case("cfg-file-not-utf8", _cfg_file(b"train:\n  optimizer: caf\xe9\n"), ConfigError, "c.yaml: line 2"),
    Case("cfg-file-directory", lambda d: load_config("lightgcn", "synthetic", [str(d)]), ConfigError, "is a directory"),
    Case("cfg-file-bool-yes", _cfg_file("train:\n  progress: no\n"), ConfigError, "c.yaml: train.progress must be true or false, got 'no'"),
    Case("cfg-file-section-null-value", _cfg_file("train:\n  lr: null\n"), ConfigError, "c.yaml: train.lr must be a number, got null"),
    Case("cfg-model-path", _cfg("model=../../etc/passwd"), ConfigError, "model name '../../etc/passwd'"),
    Case("cfg-metrics-unknown", _cfg("eval.metrics=[recall,auc]"), ConfigError, "eval.metrics[1] must be one of"),
    Case("cfg-split-unknown", _cfg("data.split=stratified"), ConfigError, "data.split must be one of"),
    Case("cfg-optimizer-unknown", _cfg("train.optimizer=adamx"), ConfigError, "train.optimizer must be one of"),
    Case("cfg-ratios-length", _cfg("data.ratios=[0.9,0.1]"), ConfigError, "data.ratios must hold 3 values, got 2"),
    Case("cfg-ratios-range", _cfg("data.ratios=[1.5,0.1,0.1]"), ConfigError, "data.ratios[0] must be <= 1"),
    Case("cfg-model-param-type", _cfg("model.n_layers=deep"), ConfigError, "model.n_layers must be an integer, got 'deep'"),
    Case("cfg-model-param-list", _cfg("model.readout=[mean]"), ConfigError, "model.readout must be a string"),
    Case("cfg-resumed-config-bad", lambda d: check_config({"model": "lightgcn", "dataset": "synthetic",
                                                           "train": {"batch_size": -2}}, "runs/x/config.yaml"),
         ConfigError, "runs/x/config.yaml: train.batch_size must be >= 1"),
    # ---- data that cannot train ----------------------------------------------------------------
    Case("split-empty-valid", lambda d: check_trainable(_split([(0, 0, 0), (0, 1, 2), (1, 1, 0), (1, 2, 2)])),
         DataError, "log.csv: the valid part of the random split is empty"),
    Case("split-empty-test", lambda d: check_trainable(_split([(0, 0, 0), (0, 1, 1), (1, 1, 0), (1, 2, 1)])),
         DataError, "the test part of the random split is empty"),
    Case("split-one-interaction-each", lambda d: check_trainable(_split([(0, 0, 0), (1, 1, 1), (2, 2, 2)])),
         DataError, "log.csv: every one of the 3 users has a single interaction"),
    Case("split-train-pair-in-test",
         lambda d: check_trainable(_split([(0, 0, 0), (0, 1, 0), (0, 1, 2), (1, 2, 0), (1, 3, 1), (1, 0, 2)])),
         DataError, "log.csv: 1 test pair(s) of the random split are also training pairs, e.g. user 0 item 1"),
    Case("split-cold-valid",
         lambda d: check_trainable(_split([(0, 0, 0), (0, 1, 2), (1, 2, 1), (1, 3, 1)])), DataError,
         "none of the 1 valid users of the random split has a training interaction"),
    # ---- cleaning ------------------------------------------------------------------------------
    Case("kcore-empty", lambda d: kcore(_inter([0, 1], [0, 1], 2, 2), 5, 5), DataError,
         "log.csv: the (5, 5)-core is empty"),
    Case("kcore-bad-k", lambda d: kcore(_inter([0, 1], [0, 1], 2, 2), -1, 5), ConfigError, "kcore: user_k must be"),
    Case("implicit-no-rating", lambda d: to_implicit(_inter([0], [0], 1, 1), 3), DataError,
         "log.csv: a rating threshold needs a rating column"),
    Case("dedupe-keep", lambda d: dedupe(_inter([0], [0], 1, 1), keep="middle"), ConfigError,
         "dedupe: keep must be 'first' or 'last'"),
    Case("idmap-repeated-ids", lambda d: IdMap(np.array(["a", "b", "a"]), "item").index("a"), DataError,
         "IdMap(item): original id 'a' appears more than once"),
    Case("idmap-unknown-id", lambda d: IdMap(np.array([3, 5]), "user").index("4"), UnknownIdError,
         "unknown user id '4' (not among the 2 known ids)"),
]


def _zip(d) -> str:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr("log.csv", "user_id,item_id\n1,2\n")
    return _put(d, "a.csv", buf.getvalue())


def _seq_missing_list(d) -> str:
    root = d / "seq"
    _put(root, "S.test.inter", "user_id:token\titem_id:token\n0\t1\n")
    return str(root)


def test_catalogue_is_large_and_distinct():
    ids = [c.id for c in CASES]
    assert len(ids) == len(set(ids)) and len(ids) >= 60


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input(tmp_path, case: Case):
    with pytest.raises(GraphrecError) as info:
        case.call(tmp_path)
    err = info.value
    msg = str(err)
    assert isinstance(err, case.error), f"{type(err).__name__}: {msg}"
    assert "\n" not in msg and msg.strip() == msg and msg, repr(msg)
    assert case.culprit.format(dir=tmp_path) in msg, msg
    assert "Traceback" not in msg


# -- the id policy, one test per decision -----------------------------------------------------------
def test_ids_1_and_01_are_different_ids(tmp_path):
    it = read_table(_put(tmp_path, "a.csv", "user_id,item_id\n1,x\n01,x\n1,y\n"))
    assert it.user_map.ids.tolist() == ["01", "1"] and it.n_users == 2  # strings, sorted as strings
    assert it.user.tolist() == [1, 0, 1]


def test_canonical_integer_ids_are_int64_sorted_numerically(tmp_path):
    it = read_table(_put(tmp_path, "a.csv", "user_id,item_id\n10,7\n2,7\n9,1\n"))
    assert it.user_map.ids.dtype == np.int64 and it.user_map.ids.tolist() == [2, 9, 10]
    big = read_table(_put(tmp_path, "b.csv", "user_id,item_id\n99999999999999999999,1\n2,1\n"))
    assert big.user_map.ids.tolist() == ["2", "99999999999999999999"]  # beyond int64: strings, not an error
    neg = read_table(_put(tmp_path, "c.csv", "user_id,item_id\n-1,1\n2,1\n"))
    assert neg.user_map.ids.tolist() == ["-1", "2"]  # a sign makes a token


def test_whitespace_is_stripped_and_counted_once_per_file(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="graphrec")
    from graphrec.utils import log
    log.addHandler(caplog.handler)
    try:
        it = read_table(_put(tmp_path, "a.csv", "user_id,item_id\n 1,a\n1 ,a \n1,b\n"))
    finally:
        log.removeHandler(caplog.handler)
    assert it.n_users == 1 and it.item_map.ids.tolist() == ["a", "b"]
    lines = [r.getMessage() for r in caplog.records if "stripped" in r.getMessage()]
    assert lines == [f"{tmp_path / 'a.csv'}: stripped surrounding whitespace from 3 id value(s)"]


def test_typed_ids_whole_floats_and_uint_within_int64(tmp_path):
    p = _parquet(tmp_path, "t.parquet", user_id=pa.array([3, 1], pa.uint64()), item_id=[2.0, 5.0])
    it = read_table(p)
    assert it.user_map.ids.tolist() == [1, 3] and it.item_map.ids.tolist() == [2, 5]
    assert it.item_map.ids.dtype == np.int64


def test_idmap_int_and_string_ids_meet_but_01_does_not():
    m = IdMap(np.array([1, 12]), "item")
    assert m.index("12") == 1 and m.index(12) == 1 and m.index(" 12") == 1
    with pytest.raises(KeyError):  # an UnknownIdError is a KeyError too
        m.index("012")


def test_dense_index_slack_allows_gaps_but_not_a_typo(tmp_path):
    ok = "userID\titemID\n" + "".join(f"0\t{2 * i}\n" for i in range(20))  # 20 distinct, max 38 < 2*20+1000
    it, _ = read_mmrec_inter(_put(tmp_path, "ok.inter", ok))
    assert it.n_items == 39
    with pytest.raises(DataError, match="item index 10000000 at row 21 is far beyond"):
        read_mmrec_inter(_put(tmp_path, "bad.inter", ok + "0\t10000000\n"))


def test_dense_index_limit_is_exact(tmp_path):
    base = "userID\titemID\n" + "".join(f"0\t{i}\n" for i in range(20))
    it, _ = read_mmrec_inter(_put(tmp_path, "a.inter", base + "0\t1041\n"))  # 21 distinct: limit 1042
    assert it.n_items == 1042
    with pytest.raises(DataError, match="item index 1042 at row 21 is far beyond the 21 distinct"):
        read_mmrec_inter(_put(tmp_path, "b.inter", base + "0\t1042\n"))


def test_dense_indices_below_a_known_size_may_leave_items_unused(tmp_path):
    root = _mmrec_dir(tmp_path, image_feat__npy=np.ones((5000, 2), np.float32))
    ds = load_mmrec(root)
    assert ds.n_items == 5000 and ds.interactions.n_items == 5000


def test_dense_indices_allow_leading_zeros_and_spaces(tmp_path):
    it, _ = read_mmrec_inter(_put(tmp_path, "a.inter", "userID\titemID\n 0\t01\n1\t0\n"))
    assert it.user.tolist() == [0, 1] and it.item.tolist() == [1, 0]


# -- text files are read as the formats they claim -----------------------------------------------
def test_rfc4180_quoting_header_ids_and_fields(tmp_path):
    p = _put(tmp_path, "q.csv", '"user_id","item_id","note"\n"u,1","i ""2""","a\nb"\nu2,i3,plain"quote\n')
    from graphrec.data.textio import read_delimited
    t = read_delimited(p, ",")
    assert t.names == ["user_id", "item_id", "note"]
    assert t.column("user_id").to_pylist() == ["u,1", "u2"]
    assert t.column("item_id").to_pylist() == ['i "2"', "i3"]
    assert t.column("note").to_pylist() == ["a\nb", 'plain"quote']
    it = read_table(p)
    assert it.user_map.ids.tolist() == ["u,1", "u2"] and it.item_map.ids.tolist() == ['i "2"', "i3"]
    with pytest.raises(DataError, match=r"line 4 has 2 field"):
        read_delimited(_put(tmp_path, "r.csv", '"a","b","c"\n1,"x\ny",3\n4,5\n'), ",")  # lines count physically


def test_encoding_option_bom_and_gzip(tmp_path):
    text = "user_id,item_id\nJosé,café\n"
    latin = _put(tmp_path, "l.csv", text.encode("latin-1"))
    with pytest.raises(DataError, match="encoding"):
        read_table(latin)
    assert read_table(latin, encoding="latin-1").user_map.ids.tolist() == ["José"]
    bom = read_table(_put(tmp_path, "b.csv", b"\xef\xbb\xbf" + text.encode()))
    assert bom.item_map.ids.tolist() == ["café"]  # the BOM is not part of the first header name
    gz = read_table(_put(tmp_path, "g.csv.gz", gzip.compress(text.encode())))
    assert gz.content_hash() == bom.content_hash()
    u16 = read_table(_put(tmp_path, "w.csv", text.encode("utf-16")), encoding="utf-16")
    assert u16.content_hash() == bom.content_hash()


def test_mmrec_and_recbole_real_data_against_a_plain_parse(shared_data):
    """The RFC 4180 readers give the pairs a plain split of each line gives (these files hold no
    quotes in id fields), and ml100k_mm's item_text.tsv is unquoted as the csv module reads it."""
    import csv
    mm = shared_data / "mmrec_format" / "ml100k_mm"
    sci = shared_data / "amazon_scientific_seq"
    if not (mm.exists() and sci.exists()):
        pytest.skip("shared data absent")
    from graphrec.datasets import load
    ds = load(f"mmrec:{mm}")
    rows = [line.split("\t") for line in (mm / "ml100k_mm.inter").read_text().splitlines()[1:]]
    assert ds.interactions.user.tolist() == [int(r[0]) for r in rows]
    assert ds.interactions.item.tolist() == [int(r[1]) for r in rows]
    with open(mm / "item_text.tsv", newline="", encoding="utf-8") as f:
        want = {int(r["itemID"]): r["text"] for r in csv.DictReader(f, delimiter="\t")}
    assert ds.item_text == [want[i] for i in range(len(want))]
    assert sum(t.startswith('"') for t in ds.item_text) == 0 and sum('"' in t for t in ds.item_text) == 169
    seq = load(f"recbole-seq:{sci}")
    pairs = []
    for line in (sci / "Scientific.test.inter").read_text().splitlines()[1:]:
        u, hist, target = line.split("\t")
        pairs += [(int(u), int(i)) for i in hist.split() + [target]]
    it = seq.interactions
    assert list(zip(it.user.tolist(), it.item.tolist())) == pairs
    assert it.n_users == 2928 and it.n_items == 1585


def test_trainable_splits_pass_and_overlap_can_be_allowed(synthetic_small):
    from graphrec.data.split import make_split
    check_trainable(make_split(synthetic_small.interactions, "random"))
    s = _split([(0, 0, 0), (0, 1, 0), (0, 1, 2), (1, 2, 0), (1, 3, 1), (1, 0, 2)])
    check_trainable(s, allow_overlap=True)
    check_trainable(s, train_masked=False)


def test_user_level_split_needs_no_training_history():
    s = split_from_labels(_inter([0, 0, 1, 1, 2, 2], [0, 1, 1, 2, 2, 3], 3, 4), np.array([0, 0, 1, 1, 2, 2]), "user")
    check_trainable(s)
    with pytest.raises(DataError, match="none of the 1 valid users"):
        check_trainable(s, warm=True)


# -- config: YAML 1.2 scalars and the rules' choices come from their owners -----------------------
def test_yaml_12_scalars_and_overrides():
    cfg = load_config("lightgcn", "synthetic", overrides=parse_set(
        ["train.lr=1e-4", "train.amp=true", "eval.ks=[5, 10]", "train.valid_metric=ndcg@5", "threads=",
         "train.max_time_s=30", "out=2024-01-01"]))
    assert cfg["train"]["lr"] == 1e-4 and cfg["train"]["amp"] is True and cfg["eval"]["ks"] == [5, 10]
    assert cfg["threads"] is None and cfg["train"]["max_time_s"] == 30.0 and cfg["out"] == "2024-01-01"
    assert parse_set(["seed=010"])["seed"] == 10  # YAML 1.2: not octal


def test_rule_choices_match_their_owners():
    from graphrec.config import RULES
    from graphrec.data.split import METHODS
    from graphrec.eval.metrics import METRICS
    from graphrec.eval.ranking import SCREENS
    from graphrec.train.trainer import _OPTIMISERS
    assert RULES["data.split"].choices() == ("auto",) + tuple(METHODS)
    assert RULES["eval.metrics"].choices() == tuple(METRICS)
    assert RULES["eval.screen"].choices() == tuple(SCREENS)
    assert RULES["train.optimizer"].choices() == tuple(_OPTIMISERS)


def test_saved_config_checks_clean(tmp_path):
    import yaml
    from graphrec.config import dump
    for model in ("lightgcn", "freedom", "mixgcf"):
        cfg = load_config(model, "synthetic", overrides=parse_set(["train.lr=1e-3", "model.reg_weight=0"]))
        dump(cfg, str(tmp_path / "config.yaml"))
        saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
        assert check_config(saved, "config.yaml") == cfg
