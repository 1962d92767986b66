"""Property-based fuzzing of the readers and the config layer (hypothesis).

Properties: whatever bytes, rows, quoting or override strings come in, the only exception that
leaves graphrec is a `GraphrecError` with a one-line message; files written correctly by Python's
``csv`` module read back as the id policy says (ids stripped, all-canonical-integer columns int64).

The default budget is small and derandomised (the same examples every run, for CI, a few seconds
in all); ``GRAPHREC_FUZZ_EXAMPLES=2000`` runs a larger, randomly seeded search.
"""
from __future__ import annotations

import atexit
import csv
import gzip
import io
import os
import re
import shutil
import tempfile

import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from graphrec.config import load_config, parse_set  # noqa: E402
from graphrec.data.readers import read_mmrec_inter, read_recbole_inter, read_table  # noqa: E402
from graphrec.datasets.recbole_seq import load_recbole_seq  # noqa: E402
from graphrec.errors import GraphrecError  # noqa: E402

_BIG = int(os.environ.get("GRAPHREC_FUZZ_EXAMPLES", "0"))


def fuzz(n: int):
    """``n`` examples, derandomised, no example database in the repository; more when asked."""
    return settings(max_examples=_BIG or n, deadline=None, derandomize=not _BIG, database=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


_DIR = tempfile.mkdtemp(prefix="graphrec-fuzz-")
atexit.register(shutil.rmtree, _DIR, ignore_errors=True)


def _write(name: str, content: bytes | str) -> str:
    path = os.path.join(_DIR, name)
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


def _only_graphrec_errors(call, *args, **kwargs):
    """Run ``call``; any exception must be a GraphrecError with a one-line message."""
    try:
        return call(*args, **kwargs)
    except GraphrecError as e:
        msg = str(e)
        assert msg and "\n" not in msg and "\r" not in msg, repr(msg)
        return None


# text that stresses the parser: delimiters, quotes, line breaks, spaces, digits, non-ASCII
_piece = st.sampled_from([",", "\t", '"', '""', "\n", "\r\n", " ", "  ", "0", "1", "01", "-1", "7", "x", "é",
                          "user_id", "item_id", "rating", "timestamp", "userID", "itemID", "x_label", ":token",
                          "nan", "inf", "1e9", "3.5", "\ufeff", "\x00", "\u00a0"])
_noisy_text = st.lists(_piece, max_size=40).map("".join)
_field = st.text(alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=8)


@fuzz(150)
@given(data=st.one_of(st.binary(max_size=300), _noisy_text.map(lambda s: s.encode("utf-8", "surrogatepass"))),
       name=st.sampled_from(["f.csv", "f.tsv", "f.inter", "f.csv.gz"]), gz=st.booleans())
def test_table_reader_random_bytes(data, name, gz):
    path = _write(name, gzip.compress(data) if gz else data)
    _only_graphrec_errors(read_table, path)
    _only_graphrec_errors(read_table, path, encoding="latin-1")


@fuzz(100)
@given(data=st.one_of(st.binary(max_size=300), _noisy_text.map(str.encode)))
def test_mmrec_and_recbole_readers_random_bytes(data):
    path = _write("r.inter", data)
    _only_graphrec_errors(read_mmrec_inter, path)
    _only_graphrec_errors(read_recbole_inter, path)


_ids = st.one_of(
    st.lists(st.integers(0, 10**20).map(str), min_size=1, max_size=12),
    st.lists(st.sampled_from(["1", "01", " 1", "1 ", "2", "10", "a", "A", "a b", "é", "-3", "+4", "1.0"]),
             min_size=1, max_size=12),
    st.lists(_field, min_size=1, max_size=12),
)


def _policy(ids: list[str]) -> list:
    """The id policy, written independently of graphrec: strip; all canonical ints in int64 -> ints."""
    s = [x.strip() for x in ids]
    if all(re.fullmatch(r"0|[1-9][0-9]*", x) and int(x) < 2**63 for x in s):
        return [int(x) for x in s]
    return s


@fuzz(150)
@given(users=_ids, items_seed=st.data(), sep=st.sampled_from([",", "\t"]),
       quoting=st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]),
       header_quoted=st.booleans())
def test_written_csv_round_trips_by_the_id_policy(users, items_seed, sep, quoting, header_quoted):
    items = items_seed.draw(st.lists(_field, min_size=len(users), max_size=len(users)))
    buf = io.StringIO()
    w = csv.writer(buf, delimiter=sep, quoting=quoting, lineterminator="\r\n")  # RFC 4180: CR LF, so both get quoted
    head = ["user_id", "item_id"]
    if header_quoted:
        buf.write(sep.join(f'"{h}"' for h in head) + "\r\n")
    else:
        w.writerow(head)
    w.writerows(zip(users, items))
    path = _write("w.csv" if sep == "," else "w.tsv", buf.getvalue())
    it = _only_graphrec_errors(read_table, path)
    clean = all(u.strip() for u in users) and all(i.strip() for i in items)
    if not clean:
        assert it is None  # an empty id is an error, never a silent row
        return
    assert it is not None, buf.getvalue()
    got_users = it.user_map.to_original(it.user).tolist()
    got_items = it.item_map.to_original(it.item).tolist()
    assert got_users == _policy(users) and got_items == _policy(items)


@fuzz(100)
@given(rows=st.lists(st.tuples(st.sampled_from(["0", "1", "2", "7", "-1", "x", "", " 3", "1.5", "99999999999999999999",
                                                "1000000"]),
                               st.sampled_from(["0", "1", "5", "2", "x", "", "3.0"]),
                               st.sampled_from(["0", "1", "2", "3", "9", ""])), min_size=1, max_size=15),
       header=st.sampled_from(["userID\titemID\tx_label", "userID\titemID", "user\titemID\tx_label",
                               '"userID"\t"itemID"\t"x_label"']))
def test_mmrec_inter_random_rows(rows, header):
    ncol = header.count("\t") + 1
    text = header + "\n" + "".join("\t".join(r[:ncol]) + "\n" for r in rows)
    got = _only_graphrec_errors(read_mmrec_inter, _write("m.inter", text))
    if got is not None:
        inter, labels = got
        assert int(inter.item.max()) < inter.n_items <= 2 * len(set(inter.item.tolist())) + 1000


_types = st.sampled_from(["token", "token_seq", "float", "float_seq", "int", ""])


@fuzz(80)
@given(names=st.lists(st.sampled_from(["user_id", "item_id", "rating", "timestamp", "x"]), min_size=1, max_size=4),
       types=st.lists(_types, min_size=4, max_size=4),
       rows=st.lists(st.lists(st.sampled_from(["1", "2", "a", "", "3.5", "nan", '"q"', "1 2"]), min_size=1,
                              max_size=5), min_size=1, max_size=6))
def test_recbole_random_headers_and_rows(names, types, rows):
    head = "\t".join(f"{n}:{t}" if t else n for n, t in zip(names, types))
    text = head + "\n" + "".join("\t".join(r) + "\n" for r in rows)
    _only_graphrec_errors(read_recbole_inter, _write("a.inter", text))


@fuzz(40)
@given(lines=st.lists(st.tuples(st.sampled_from(["0", "1", "2", "x", "", "5"]),
                                st.lists(st.sampled_from(["0", "1", "2", "3", "x", "-1", "99999"]), max_size=4),
                                st.sampled_from(["0", "1", "4", "x", ""])), min_size=1, max_size=6),
       item2index=st.one_of(st.none(), st.sampled_from(["a\t0\nb\t1\nc\t2\nd\t3\ne\t4\n", "a\t0\nb\t0\n", "a\t1\n"])))
def test_recbole_seq_random_directories(lines, item2index):
    root = tempfile.mkdtemp(dir=_DIR)
    with open(os.path.join(root, "S.test.inter"), "w") as f:
        f.write("user_id:token\titem_id_list:token_seq\titem_id:token\n")
        f.writelines(f"{u}\t{' '.join(h)}\t{t}\n" for u, h, t in lines)
    if item2index is not None:
        with open(os.path.join(root, "S.item2index"), "w") as f:
            f.write(item2index)
    _only_graphrec_errors(load_recbole_seq, root)


_keys = st.sampled_from(["train.lr", "train.batch_size", "train.epochs", "train.amp", "eval.ks", "eval.metrics",
                         "train.valid_metric", "device", "threads", "eval.user_chunk", "model.n_layers",
                         "model.readout", "data.ratios", "data.split", "seed", "train", "eval", "model",
                         "train.lrr", "data.dataset_args.scale", "train.init_components", "", "a..b", "train.lr.x"])
_values = st.one_of(
    st.sampled_from(["1", "0", "-1", "1e-4", "yes", "true", "null", "", "[1, 2]", "[0]", "{a: 1}", "recall@20",
                     "ndcg@7", "cuda:9", "cpu", "[", "'x", ".nan", "2.5", "[recall, foo]", "0x10", "~"]),
    st.text(max_size=12))


@fuzz(150)
@given(pairs=st.lists(st.tuples(_keys, _values), max_size=4), sep=st.sampled_from(["=", ":", ""]))
def test_config_random_overrides(pairs, sep):
    items = [f"{k}{sep}{v}" for k, v in pairs]
    ov = _only_graphrec_errors(parse_set, items)
    if ov is not None:
        cfg = _only_graphrec_errors(load_config, "lightgcn", "synthetic", (), ov)
        if cfg is not None:  # what passes the checks is well-typed
            assert isinstance(cfg["train"]["batch_size"], int) and cfg["train"]["batch_size"] >= 1
            assert all(isinstance(k, int) and k >= 1 for k in cfg["eval"]["ks"])
            assert isinstance(cfg["train"]["lr"], float) and cfg["train"]["lr"] >= 0


@fuzz(60)
@given(text=st.one_of(st.text(max_size=80),
                      st.lists(st.sampled_from(["train:\n", "  lr: ", "0.1\n", "yes\n", "eval:\n", "  ks: ",
                                                "[1, 2]\n", "- a\n", "&x [1]\n", "*x\n", "model:\n", "  n_layers: ",
                                                "3\n", "\t", ": ", "{", "}\n", "key: value\n"]), max_size=12)
                      .map("".join)))
def test_config_random_files(text):
    _only_graphrec_errors(load_config, "lightgcn", "synthetic", [_write("c.yaml", text)])


@fuzz(60)
@given(data=st.one_of(st.binary(max_size=200), _noisy_text.map(str.encode),
                      st.binary(max_size=120).map(lambda b: b"\x93NUMPY\x01\x00" + b)))
def test_feature_files_random_bytes(data):
    import numpy as np

    from graphrec.data import IdMap, load_npy, load_table

    _only_graphrec_errors(load_npy, _write("f.npy", data), 3)
    _only_graphrec_errors(load_table, _write("f.csv", data), IdMap(np.array(["a", "b", "0"]), "item"))
