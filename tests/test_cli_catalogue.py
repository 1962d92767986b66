"""Bad input through the command line, as a user meets it: every row exits 2 with ONE stderr line
that names the culprit (file, row, id or key), no traceback, and nothing written where it should
not be. (The readers' own catalogue, in-process and larger, is tests/test_bad_inputs.py.)"""
import gzip
import os

import numpy as np
import pytest

from graphrec.cli import main


def _tiny_mmrec(d, inter=None, image=None, name="tiny"):
    """An MMRec directory: 6 users x 5 items, a valid and a test row per user."""
    d.mkdir(parents=True, exist_ok=True)
    if inter is None:
        rows = ["userID\titemID\tx_label"]
        for u in range(6):
            rows += [f"{u}\t{(u + k) % 5}\t{lab}" for k, lab in enumerate((0, 0, 0, 1, 2))]
        inter = "\n".join(rows) + "\n"
    (d / f"{name}.inter").write_bytes(inter if isinstance(inter, bytes) else inter.encode())
    np.save(d / "image_feat.npy", np.ones((5, 4), np.float32) if image is None else image)
    return d


def _info(d):
    return ["datasets", "info", f"mmrec:{d}"]


def _inter(*rows):
    return "userID\titemID\tx_label\n" + "".join(r + "\n" for r in rows)


GOOD = [f"{u}\t{(u + k) % 5}\t{lab}" for u in range(6) for k, lab in enumerate((0, 0, 0, 1, 2))]

# (id, argv builder(tmp) -> argv, culprit that the one line must name)
CASES = [
    # configuration: refused before any data loads
    ("lr-negative", lambda t: ["train", "--set", "train.lr=-1"], "train.lr"),
    ("batch-zero", lambda t: ["train", "--set", "train.batch_size=0"], "train.batch_size"),
    ("ks-zero", lambda t: ["train", "--set", "eval.ks=[0]"], "eval.ks"),
    ("ks-not-list", lambda t: ["train", "--set", "eval.ks=ten"], "eval.ks"),
    ("threads-zero", lambda t: ["train", "--set", "threads=0"], "threads"),
    ("user-chunk-zero", lambda t: ["train", "--set", "eval.user_chunk=0"], "eval.user_chunk"),
    ("bool-yes", lambda t: ["train", "--set", "train.deterministic=yes"], "train.deterministic"),
    ("bool-one", lambda t: ["train", "--set", "train.progress=1"], "train.progress"),
    ("valid-metric", lambda t: ["train", "--set", "train.valid_metric=foo@20"], "valid_metric"),
    ("valid-metric-k", lambda t: ["train", "--set", "train.valid_metric=recall@7"], "valid_metric"),
    ("epochs-negative", lambda t: ["train", "--epochs", "-1"], "epochs"),
    ("device-missing", lambda t: ["train", "--device", "cuda:7"], "cuda:7"),
    ("device-unknown", lambda t: ["train", "--set", "device=tpu"], "device"),
    ("unknown-key", lambda t: ["train", "--set", "train.no_such=1"], "no_such"),
    ("unknown-model-key", lambda t: ["train", "--model", "lightgcn", "--set", "model.no_such=1"], "no_such"),
    ("model-param-type", lambda t: ["train", "--model", "lightgcn", "--set", "model.n_layers=two"], "n_layers"),
    ("optimizer", lambda t: ["train", "--set", "train.optimizer=lbfgs"], "optimizer"),
    ("split-method", lambda t: ["train", "--set", "data.split=weird"], "data.split"),
    ("protocol", lambda t: ["train", "--set", "eval.protocol=nope"], "eval.protocol"),
    ("ratios", lambda t: ["train", "--set", "data.ratios=[0.8,0.1]"], "data.ratios"),
    ("set-no-equals", lambda t: ["train", "--set", "train.lr"], "train.lr"),
    ("model-path", lambda t: ["train", "--model", "../default"], "../default"),
    ("model-unknown", lambda t: ["train", "--model", "lightgnc"], "lightgnc"),
    ("dataset-unknown", lambda t: ["train", "--dataset", "movielenz"], "movielenz"),
    ("config-missing", lambda t: ["train", "--config", str(t / "nope.yaml")], "nope.yaml"),
    ("config-bad-yaml", lambda t: (t / "bad.yaml").write_text("train: [1\n") and
     ["train", "--config", str(t / "bad.yaml")], "bad.yaml"),
    ("config-not-mapping", lambda t: (t / "list.yaml").write_text("- 1\n- 2\n") and
     ["train", "--config", str(t / "list.yaml")], "list.yaml"),
    ("config-dup-key", lambda t: (t / "dup.yaml").write_text("seed: 1\nseed: 2\n") and
     ["train", "--config", str(t / "dup.yaml")], "dup.yaml"),
    # MMRec directories
    ("mmrec-missing", lambda t: ["datasets", "info", f"mmrec:{t / 'nowhere'}"], "nowhere"),
    ("mmrec-a-file", lambda t: (t / "f").write_text("x") and ["datasets", "info", f"mmrec:{t / 'f'}"], "f"),
    ("mmrec-no-inter", lambda t: (t / "empty").mkdir() or ["datasets", "info", f"mmrec:{t / 'empty'}"], ".inter"),
    ("mmrec-no-item-col", lambda t: _info(_tiny_mmrec(t / "c", "userID\tx_label\n0\t0\n")), "itemID"),
    ("mmrec-ragged", lambda t: _info(_tiny_mmrec(t / "r", _inter(*GOOD[:3], "1\t2\t0\t9", *GOOD[3:]))), "tiny.inter"),
    ("mmrec-bad-byte", lambda t: _info(_tiny_mmrec(t / "b", _inter(*GOOD).encode() + b"7\t\xff\t0\n")), "encoding"),
    ("mmrec-binary", lambda t: _info(_tiny_mmrec(t / "bin", bytes(range(256)) * 4)), "tiny.inter"),
    ("mmrec-gzip-as-text", lambda t: _info(_tiny_mmrec(t / "gz", gzip.compress(b"not a table" * 50)[:40])),
     "tiny.inter"),
    ("mmrec-typo-id", lambda t: _info(_tiny_mmrec(t / "typo", _inter(*GOOD, "0\t10000000\t0"))), "10000000"),
    ("mmrec-negative-id", lambda t: _info(_tiny_mmrec(t / "neg", _inter(*GOOD, "-1\t2\t0"))), "-1"),
    ("mmrec-bad-label", lambda t: _info(_tiny_mmrec(t / "lab", _inter(*GOOD, "0\t1\t3"))), "x_label"),
    ("mmrec-nan-feature", lambda t: _info(_tiny_mmrec(t / "nan", image=np.full((5, 4), np.nan, np.float32))),
     "image_feat.npy"),
    ("mmrec-feature-rows", lambda t: _info(_tiny_mmrec(t / "rows", image=np.ones((3, 4), np.float32))),
     "image_feat.npy"),
    ("mmrec-feature-1d", lambda t: _info(_tiny_mmrec(t / "oned", image=np.ones(5, np.float32))), "image_feat.npy"),
    ("mmrec-feature-complex", lambda t: _info(_tiny_mmrec(t / "cx", image=np.ones((5, 4), np.complex64))),
     "image_feat.npy"),
    ("mmrec-feature-empty-width", lambda t: _info(_tiny_mmrec(t / "w0", image=np.ones((5, 0), np.float32))),
     "image_feat.npy"),
    # RecBole sequential directories
    ("recbole-no-test", lambda t: (t / "rb").mkdir() or ["datasets", "info", f"recbole-seq:{t / 'rb'}"], "test.inter"),
    ("recbole-bad-index", lambda t: (t / "rb2").mkdir() or (t / "rb2" / "S.test.inter").write_text(
        "user_id:token\titem_id_list:token_seq\titem_id:token\n0\t1 2\tx\n") and
     ["datasets", "info", f"recbole-seq:{t / 'rb2'}"], "S.test.inter"),
    # names that would become paths
    ("encode-id-escapes", lambda t: (t / "imgs").mkdir() or (t / "ids.txt").write_text("a\n../../etc/passwd\n") and
     ["encode", "image", "--images", str(t / "imgs"), "--ids", str(t / "ids.txt"), "--id-pattern", "{id}",
      "--out", str(t / "f.npy")], "../../etc/passwd"),
    ("export-name", lambda t: ["datasets", "export", "synthetic", "--out", str(t / "exp"), "--name", "../x"], "../x"),
]


def _the_error_line(err: str) -> str:
    """The one error line: the last line of stderr (progress lines may precede it), the only one
    that says error, and no traceback anywhere."""
    lines = err.splitlines()
    assert "Traceback" not in err and lines and lines[-1].startswith("graphrec: error: "), err
    assert sum("error" in line.lower() for line in lines) == 1, err
    return lines[-1]


def _snapshot(root):
    out = {}
    for dirpath, _, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            st = os.stat(p)
            out[p] = (st.st_size, st.st_mtime_ns)
    return out


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_line_and_writes_nothing(case, tmp_path, monkeypatch, capsys):
    _, build, culprit = case
    monkeypatch.chdir(tmp_path)  # default run directories would go under ./runs
    argv = build(tmp_path)
    before = _snapshot(tmp_path)
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2, err
    assert _the_error_line(err) and culprit in _the_error_line(err), err
    assert _snapshot(tmp_path) == before  # no run directory, no export, no cache file


def test_debug_shows_the_traceback(monkeypatch):
    monkeypatch.setenv("GRAPHREC_DEBUG", "")  # main() sets it for its workers; restored after the test
    with pytest.raises(Exception, match="train.lr"):
        main(["--debug", "train", "--set", "train.lr=-1"])


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs") / "mf"
    assert main(["train", "--model", "mf", "--dataset", "synthetic", "--epochs", "1", "--quiet", "--out", str(out),
                 "--set", "data.dataset_args={n_users: 80, n_items: 40, n_interactions: 1200}",
                 "--set", "threads=1"]) == 0
    return out


RUN_CASES = [
    ("out-is-a-file", lambda t, r: (t / "notes.txt").write_text("mine") and
     ["train", "--model", "mf", "--out", str(t / "notes.txt")], "notes.txt"),
    ("out-foreign-dir", lambda t, r: (t / "photos").mkdir() or (t / "photos" / "a.jpg").write_text("x") and
     ["train", "--model", "mf", "--out", str(t / "photos")], "not empty"),
    ("out-existing-run", lambda t, r: ["train", "--model", "mf", "--out", str(r)], "already holds"),
    ("resume-not-a-run", lambda t, r: (t / "plain").mkdir() or ["train", "--resume", str(t / "plain")],
     "not a graphrec run"),
    ("resume-with-seed", lambda t, r: ["train", "--resume", str(r), "--seed", "3"], "--seed"),
    ("resume-with-model", lambda t, r: ["train", "--resume", str(r), "--model", "lightgcn"], "--model"),
    ("resume-with-set", lambda t, r: ["train", "--resume", str(r), "--set", "train.lr=0.5"], "train.lr"),
    ("evaluate-missing", lambda t, r: ["evaluate", str(t / "gone")], "gone"),
    ("evaluate-escaping-checkpoint", lambda t, r: ["evaluate", str(r), "--checkpoint", "../x.pt"], "../x.pt"),
    ("evaluate-missing-checkpoint", lambda t, r: ["evaluate", str(r), "--checkpoint", "nope.pt"], "nope.pt"),
    ("recommend-unknown-user", lambda t, r: ["recommend", str(r), "--user", "no-such-user"], "no-such-user"),
    ("recommend-nobody", lambda t, r: ["recommend", str(r)], "--user"),
    ("recommend-history-pairwise", lambda t, r: ["recommend", str(r), "--history", "1,2"], "history"),
]


@pytest.mark.parametrize("case", RUN_CASES, ids=[c[0] for c in RUN_CASES])
def test_bad_run_directory_use_is_one_line_and_changes_nothing(case, finished_run, tmp_path, monkeypatch, capsys):
    _, build, culprit = case
    monkeypatch.chdir(tmp_path)
    argv = build(tmp_path, finished_run)
    before = {**_snapshot(tmp_path), **_snapshot(finished_run)}
    rc = main(argv)
    err = capsys.readouterr().err.strip()
    assert rc == 2 and culprit in _the_error_line(err), err
    assert {**_snapshot(tmp_path), **_snapshot(finished_run)} == before
