"""Dataset cards (graphrec.data.card) and in-memory datasets (graphrec.data.frames): a user's own files
from the command line and from Python.

What is proved: `graphrec datasets init` + one `graphrec train --dataset card.yaml` trains FREEDOM on
text encoded from a column (the features equal graphrec's text encoder on the same strings, and the
run records their hash); the reader's interactions equal a brute-force cleaning of the CSV rows;
feature files in any row order land on the right items; bad cards give one line naming the card and
the key; precomputed .npy + ids features train VBPR; the card's split is the dataset's own split.
"""
import collections
import gzip
import json
import os

import numpy as np
import pytest
import torch
import yaml

from graphrec.cli import main
from graphrec.data.card import guess_columns, load_card
from graphrec.data.frames import dataset_from_frames
from graphrec.errors import ConfigError, GraphrecError, MissingFileError

TINY = ["--set", "threads=1", "--set", "train.progress=false", "--set", "train.batch_size=256",
        "--set", "eval.user_chunk=64", "--quiet"]


def _planted_log(n_users=60, n_items=30, per_user=8, seed=0):
    """Users in two halves prefer two halves of the catalogue; original ids are sparse (u*7+3, 100+i*3)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        half = u % 2
        pool = np.arange(n_items)[np.arange(n_items) % 2 == half]
        for j, i in enumerate(rng.choice(pool, per_user, replace=False)):
            rows.append((u * 7 + 3, 100 + int(i) * 3, 1_000 + u * 50 + j, int(rng.integers(1, 6))))
    return rows


def _write_csv(path, header, rows, sep=","):
    text = sep.join(header) + "\n" + "".join(sep.join(map(str, r)) + "\n" for r in rows)
    if str(path).endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)
    return path


def _items_table(path, item_ids):
    lines = ["item_id,title,genre"]
    for i in item_ids:
        lines.append(f'{i},"Item {i}, the {"red" if (i - 100) // 3 % 2 else "blue"} one",genre {i % 5}')
    path.write_text("\n".join(lines) + "\n")
    return {i: f"Item {i}, the {'red' if (i - 100) // 3 % 2 else 'blue'} one. genre {i % 5}" for i in item_ids}


def _card(path, **sections):
    path.write_text(yaml.safe_dump(sections, sort_keys=False))
    return path


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHREC_CACHE", str(tmp_path / "cache"))  # encoder rows and graphs stay in the test
    torch.set_num_threads(1)


# -- the Done-when, end to end ---------------------------------------------------------------------
def test_init_then_train_freedom_on_a_text_column(tmp_path, monkeypatch, capsys):
    pytest.importorskip("sentence_transformers")
    from graphrec.data.encode import encode_text

    rows = _planted_log()
    _write_csv(tmp_path / "interactions.csv", ["user_id", "item_id", "timestamp", "rating"], rows)
    texts = _items_table(tmp_path / "items.csv", sorted({r[1] for r in rows}) + [999])  # 999: never bought
    monkeypatch.chdir(tmp_path)

    assert main(["datasets", "init", "interactions.csv"]) == 0
    card = yaml.safe_load((tmp_path / "card.yaml").read_text())
    assert card["interactions"]["columns"] == {"user": "user_id", "item": "item_id", "timestamp": "timestamp",
                                               "rating": "rating"}
    assert card["interactions"]["delimiter"] == ","
    card["items"] = {"text": {"path": "items.csv", "id_column": "item_id", "columns": ["title", "genre"]}}
    (tmp_path / "card.yaml").write_text(yaml.safe_dump(card))

    assert main(["train", "--dataset", "card.yaml", "--model", "freedom", "--epochs", "2", "--out", "run",
                 "--set", "model.modalities=[text]", "--set", "model.knn_k=5", *TINY]) == 0
    result = json.loads((tmp_path / "run" / "result.json").read_text())
    # the run records the card's absolute path, so evaluate works from any directory
    assert result["dataset"] == str(tmp_path / "card.yaml") and result["n_items"] == 30
    assert "recall@20" in result["test"]

    ds = load_card("card.yaml")
    ids = ds.interactions.item_map.ids.tolist()
    want = encode_text([texts[i] for i in ids], cache=False, progress=False)  # the encoder, direct
    assert ds.features.dims() == {"text": 384}
    torch.testing.assert_close(ds.features["text"], want, rtol=0, atol=1e-5)
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["feature_hashes"] == {"text": ds.features.hash("text")}  # the model read exactly these rows

    capsys.readouterr()
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    assert main(["evaluate", str(tmp_path / "run")]) == 0  # from another working directory
    monkeypatch.chdir(tmp_path)
    assert main(["datasets", "info", "card.yaml"]) == 0
    assert "text (384-d)" in capsys.readouterr().out
    assert main(["datasets", "export", "card.yaml", "--out", "exp"]) == 0
    assert np.load(tmp_path / "exp" / "text_feat.npy").shape == (30, 384)
    assert main(["datasets", "init", "interactions.csv"]) == 2  # never overwrites the edited card
    assert yaml.safe_load((tmp_path / "card.yaml").read_text())["items"]


# -- the reader against brute force -----------------------------------------------------------------
def _oracle(rows, threshold, k):
    kept = [r for r in rows if r[3] >= threshold]
    seen, out = set(), []
    for r in kept:  # dedupe, keep the first
        if (r[0], r[1]) not in seen:
            seen.add((r[0], r[1]))
            out.append(r)
    while True:  # iterative k-core on both sides
        du = collections.Counter(r[0] for r in out)
        di = collections.Counter(r[1] for r in out)
        nxt = [r for r in out if du[r[0]] >= k and di[r[1]] >= k]
        if len(nxt) == len(out):
            return out
        out = nxt


@pytest.mark.parametrize("layout", ["csv", "tsv.gz", "parquet", "semicolon"])
def test_interactions_equal_the_csv_rows_after_the_documented_cleaning(tmp_path, layout):
    rng = np.random.default_rng(1)
    rows = [(int(u), int(i), int(t), int(r)) for u, i, t, r in
            zip(rng.integers(0, 40, 900), rng.integers(0, 25, 900), rng.integers(0, 10**9, 900), rng.integers(1, 6, 900))]
    rows += rows[:50]  # exact repeats
    header = ["uid", "pid", "when", "stars"]
    inter = {"columns": {"user": "uid", "item": "pid", "timestamp": "when", "rating": "stars"}}
    if layout == "parquet":
        import pandas as pd
        pd.DataFrame(rows, columns=header).to_parquet(tmp_path / "log.parquet")
        inter["path"] = "log.parquet"
    elif layout == "semicolon":
        _write_csv(tmp_path / "log.txt", header, rows, ";")
        inter.update(path="log.txt", delimiter=";")
    else:
        _write_csv(tmp_path / "log.tsv.gz", header, rows, "\t")
        inter.update(path="log.tsv.gz") if layout == "tsv.gz" else None
        if layout == "csv":
            _write_csv(tmp_path / "log.csv", header, rows)
            inter["path"] = "log.csv"
    card = _card(tmp_path / "c.yaml", name="mine", interactions=inter,
                 cleaning={"implicit_threshold": 3, "dedupe": True, "kcore": 4})
    ds = load_card(str(card))
    got = ds.interactions
    want = _oracle(rows, 3, 4)
    pairs = list(zip(got.user_map.to_original(got.user).tolist(), got.item_map.to_original(got.item).tolist()))
    assert pairs == [(r[0], r[1]) for r in want]  # the same rows, in the file's order
    assert got.timestamp.tolist() == [r[2] for r in want]
    assert got.rating is None  # implicit after the threshold
    assert ds.name == "mine" and ds.split is None and ds.features is None


def test_feature_files_in_another_order_land_on_their_items(tmp_path):
    import pandas as pd

    rows = _planted_log(n_users=20, n_items=12, per_user=4)
    _write_csv(tmp_path / "log.csv", ["user_id", "item_id", "ts", "r"], rows)
    items = sorted({r[1] for r in rows})
    rng = np.random.default_rng(3)
    extra = [5000, 5001]  # items nobody interacted with: their rows are dropped
    order = rng.permutation(items + extra).tolist()
    planted = lambda i: [float(i), 2.0 * i, -1.0]  # noqa: E731 - row content names its item
    np.save(tmp_path / "img.npy", np.array([planted(i) for i in order], np.float32))
    (tmp_path / "img.ids.txt").write_text("".join(f"{i}\n" for i in order))
    order2 = rng.permutation(items).tolist()
    pd.DataFrame({"a": [i / 10 for i in order2], "item": [str(i) for i in order2], "b": [1.0] * len(order2)}) \
        .to_parquet(tmp_path / "txt.parquet")
    card = _card(tmp_path / "c.yml", interactions={"path": "log.csv", "columns": {"user": "user_id", "item": "item_id"}},
                 items={"features": {"image": {"path": "img.npy", "ids": "img.ids.txt"},
                                     "text": {"path": "txt.parquet", "id_column": "item", "columns": ["a"]}}})
    ds = load_card(str(card))
    ids = ds.interactions.item_map.ids.tolist()
    assert ids == items and ds.name == "c"
    np.testing.assert_array_equal(ds.features["image"].numpy(), np.array([planted(i) for i in ids], np.float32))
    np.testing.assert_allclose(ds.features["text"].numpy()[:, 0], np.array(ids) / 10, rtol=1e-6)


def test_card_with_npy_features_trains_vbpr(tmp_path):
    import graphrec.experiment

    rows = _planted_log(n_users=40, n_items=20, per_user=6)
    _write_csv(tmp_path / "log.csv", ["user_id", "item_id", "timestamp", "rating"], rows)
    items = sorted({r[1] for r in rows})[::-1]  # rows given in descending id order
    rng = np.random.default_rng(0)
    np.save(tmp_path / "image.npy", rng.normal(size=(len(items), 16)).astype(np.float32))
    (tmp_path / "image.ids.txt").write_text("".join(f"{i}\n" for i in items))
    card = _card(tmp_path / "shop.yaml", interactions={"path": "log.csv"},
                 split={"method": "random", "ratios": [0.6, 0.2, 0.2], "seed": 5},
                 items={"features": {"image": {"path": "image.npy", "ids": "image.ids.txt"}}})
    r = graphrec.experiment.run(model="vbpr", dataset=str(card), epochs=1, out=str(tmp_path / "run"),
                                overrides={"threads": 1, "model_params": {"modalities": ["image"]},
                                           "train": {"progress": False}}, quiet=True)
    assert r["best_epoch"] == 1 and 0.0 <= r["test"]["recall@20"] <= 1.0
    ds = load_card(str(card))
    from graphrec.data.split import make_split
    assert r["split_hash"] == ds.split.hash() == make_split(ds.interactions, "random", (0.6, 0.2, 0.2), 5).hash()
    run = json.loads((tmp_path / "run" / "run.json").read_text())
    assert run["feature_hashes"] == {"image": ds.features.hash("image")}
    x = np.load(tmp_path / "image.npy")
    np.testing.assert_array_equal(ds.features["image"].numpy(), x[::-1])  # ids ascending = rows reversed


# -- bad cards: one line naming the card and the key ----------------------------------------------------
GOOD = {"interactions": {"path": "log.csv"}}
BAD = [
    ("missing-file", {"interactions": {"path": "nope.csv"}}, "interactions.path"),
    ("unknown-top-key", {**GOOD, "splitt": {"method": "random"}}, "splitt"),
    ("unknown-nested-key", {**GOOD, "cleaning": {"kcor": 5}}, "cleaning.kcor"),
    ("unknown-column", {"interactions": {"path": "log.csv", "columns": {"user": "uid"}}}, "interactions.columns.user"),
    ("unknown-role", {"interactions": {"path": "log.csv", "columns": {"shop": "x"}}}, "interactions.columns.shop"),
    ("bad-format", {"interactions": {"path": "log.csv", "format": "xlsx"}}, "interactions.format"),
    ("kcore-negative", {**GOOD, "cleaning": {"kcore": -1}}, "cleaning.kcore"),
    ("dedupe-string", {**GOOD, "cleaning": {"dedupe": "yes please"}}, "cleaning.dedupe"),
    ("threshold-no-rating", {"interactions": {"path": "log.csv", "columns": {"rating": None}},
                             "cleaning": {"implicit_threshold": 4}}, "cleaning.implicit_threshold"),
    ("split-method", {**GOOD, "split": {"method": "by-magic"}}, "split.method"),
    ("split-ratios", {**GOOD, "split": {"method": "random", "ratios": [0.5, 0.5]}}, "split.ratios"),
    ("feature-ids-mismatch", {**GOOD, "items": {"features": {"image": {"path": "f.npy", "ids": "other.ids.txt"}}}},
     "items.features.image"),
    ("feature-ids-count", {**GOOD, "items": {"features": {"image": {"path": "f.npy", "ids": "short.ids.txt"}}}},
     "items.features.image.ids"),
    ("npy-without-ids", {**GOOD, "items": {"features": {"image": {"path": "f.npy"}}}}, "items.features.image.ids"),
    ("feature-missing-items", {**GOOD, "items": {"features": {"image": {"path": "f.npy", "ids": "part.ids.txt"}}}},
     "items.features.image"),
    ("text-unknown-column", {**GOOD, "items": {"text": {"path": "log.csv", "columns": ["title"]}}},
     "items.text.columns"),
    ("images-no-dir", {**GOOD, "items": {"images": {"dir": "posters"}}}, "items.images.dir"),
    ("modality-escape", {**GOOD, "items": {"features": {"../x": {"path": "f.npy", "ids": "f.ids.txt"}}}},
     "items.features.../x"),
    ("not-a-mapping", ["interactions"], "mapping"),
]


@pytest.mark.parametrize("case,card,culprit", BAD, ids=[c[0] for c in BAD])
def test_bad_card_gives_one_line_naming_card_and_key(tmp_path, capsys, case, card, culprit):
    rows = [(u, i, 10 * u + i, 5) for u in range(6) for i in range(4)]
    _write_csv(tmp_path / "log.csv", ["user_id", "item_id", "timestamp", "rating"], rows)
    np.save(tmp_path / "f.npy", np.ones((4, 3), np.float32))
    (tmp_path / "f.ids.txt").write_text("0\n1\n2\n3\n")
    (tmp_path / "other.ids.txt").write_text("a\nb\nc\nd\n")
    (tmp_path / "short.ids.txt").write_text("0\n1\n")
    (tmp_path / "part.ids.txt").write_text("0\n1\n2\n9\n")
    path = tmp_path / "card.yaml"
    path.write_text(yaml.safe_dump(card))
    assert main(["datasets", "info", str(path)]) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()  # log lines (INFO counts) may precede the one error line
    assert "Traceback" not in err and lines[-1].startswith("graphrec: error: "), err
    assert sum("error" in line.lower() for line in lines) == 1, err
    assert str(path) in lines[-1] and culprit in lines[-1], lines[-1]


def test_config_accepts_a_card_path_and_nothing_else_that_looks_like_a_path(tmp_path):
    from graphrec.config import load_config

    _write_csv(tmp_path / "log.csv", ["user_id", "item_id"], [(0, 1)])
    card = _card(tmp_path / "c.yaml", **GOOD)
    assert load_config("lightgcn", str(card))["dataset"] == str(card)
    with pytest.raises(MissingFileError, match="no such file"):
        load_config("lightgcn", str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="no path"):
        load_config("lightgcn", str(tmp_path / "log.csv"))  # a path, but not a card
    from graphrec.datasets import load
    with pytest.raises(MissingFileError, match="no such dataset card"):
        load("absent.yml")


def test_init_guesses_delimiter_and_roles_and_refuses_to_overwrite(tmp_path, capsys):
    _write_csv(tmp_path / "events.csv", ["customerId", "productId", "event_time", "overall"],
               [(1, 2, 3, 4), (2, 2, 5, 1)], ";")
    out = tmp_path / "my.yaml"
    assert main(["datasets", "init", str(tmp_path / "events.csv"), "--out", str(out)]) == 0
    card = yaml.safe_load(out.read_text())
    assert card["interactions"]["delimiter"] == ";" and card["interactions"]["path"] == "events.csv"
    assert card["interactions"]["columns"] == {"user": "customerId", "item": "productId", "timestamp": "event_time",
                                               "rating": "overall"}
    assert len(load_card(str(out)).interactions) == 2  # the draft loads as written
    before = out.read_text()
    capsys.readouterr()
    assert main(["datasets", "init", str(tmp_path / "events.csv"), "--out", str(out)]) == 2
    assert "already exists" in capsys.readouterr().err and out.read_text() == before
    assert guess_columns(["a", "b"]) == {"user": "a", "item": "b", "timestamp": None, "rating": None}


def test_dataset_from_frames_equals_the_card_of_the_same_files(tmp_path):
    import pandas as pd

    rows = _planted_log(n_users=30, n_items=16, per_user=5)
    df = pd.DataFrame(rows, columns=["u", "i", "t", "r"])
    _write_csv(tmp_path / "log.csv", ["u", "i", "t", "r"], rows)
    items = sorted({r[1] for r in rows})
    rng = np.random.default_rng(2)
    order = rng.permutation(items)
    x = rng.normal(size=(len(items), 5)).astype(np.float32)
    np.save(tmp_path / "v.npy", x)
    (tmp_path / "v.ids.txt").write_text("".join(f"{i}\n" for i in order))
    card = _card(tmp_path / "c.yaml", interactions={"path": "log.csv", "columns": {
        "user": "u", "item": "i", "timestamp": "t", "rating": "r"}}, cleaning={"implicit_threshold": 2, "kcore": 2},
        items={"features": {"visual": {"path": "v.npy", "ids": "v.ids.txt"}}})
    a = load_card(str(card))
    b = dataset_from_frames(df, user="u", item="i", timestamp="t", rating="r", features={"visual": (x, order)},
                            name="c", implicit_threshold=2, kcore=2)
    assert a.interactions.content_hash() == b.interactions.content_hash()
    assert a.features.hash() == b.features.hash()
    with pytest.raises(GraphrecError, match="none of its"):
        dataset_from_frames(df, user="u", item="i", features={"visual": (x, [f"z{k}" for k in range(len(items))])})


# -- the examples, run as a user runs them ---------------------------------------------------------
def _run_example(name, tmp_path):
    import subprocess
    import sys

    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, GRAPHREC_LOG="WARNING", PYTHONPATH=root, TMPDIR=str(tmp_path))
    out = subprocess.run([sys.executable, os.path.join(root, "examples", name)], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    last = out.stdout.strip().splitlines()[-1]
    assert last.startswith("test recall@20: "), out.stdout[-2000:]
    return out.stdout, float(last.split(":")[1])


def test_example_own_csv_learns_the_shopper_groups(tmp_path):
    out, recall = _run_example("own_csv.py", tmp_path)
    assert "user: customer_id" in out and "300 users, 200 items, 3600 interactions" in out  # duplicate dropped
    # random ranking of the 188 unbought items gives 20/188 = 0.106; knowing the group gives ~0.23
    assert recall > 0.15


@pytest.mark.slow
def test_example_text_and_images_trains_freedom_on_both_modalities(tmp_path):
    pytest.importorskip("sentence_transformers")
    out, recall = _run_example("text_and_images.py", tmp_path)
    assert "features {'text': 384, 'image': 1280}" in out
    assert recall > 0.7  # text and posters name the group: random ranks give 20/50 = 0.4, the group alone 1.0


def test_items_without_text_are_named_unless_missing_is_empty(tmp_path, capsys):
    pytest.importorskip("sentence_transformers")
    _write_csv(tmp_path / "log.csv", ["user_id", "item_id"], [(u, i) for u in range(3) for i in range(3)])
    (tmp_path / "items.csv").write_text("item_id,title\n0,red\n1,\n")  # item 1 blank, item 2 absent
    text = {"path": "items.csv", "columns": ["title"]}
    card = _card(tmp_path / "c.yaml", interactions={"path": "log.csv"}, items={"text": text})
    assert main(["datasets", "info", str(card)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "c.yaml: items.text: items.csv: 2 item(s) without text, e.g. ids [1, 2]" in err
    card = _card(tmp_path / "c.yaml", interactions={"path": "log.csv"}, items={"text": {**text, "missing": "empty"}})
    x = load_card(str(card)).features["text"]
    torch.testing.assert_close(x[1], x[2])  # both the empty string's embedding
    assert not torch.allclose(x[0], x[1])
