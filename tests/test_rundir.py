"""Run directories: never written where something else lives, one writer at a time, no half-made
run after a failed start, and resumed only against the config, data and split they began with."""
import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from graphrec.datasets import load
from graphrec.errors import ConfigError, RunDirError
from graphrec.experiment import run
from graphrec.rundir import RunLock

TINY = {"data": {"dataset_args": {"n_users": 120, "n_items": 60, "n_interactions": 2000, "seed": 4}},
        "train": {"batch_size": 256, "progress": False}, "threads": 1}


def _ov(**train):
    ov = json.loads(json.dumps(TINY))
    ov["train"].update(train)
    return ov


def _listing(path):
    return sorted(os.listdir(path)) if os.path.isdir(path) else None


def test_out_that_is_a_file_or_a_foreign_directory_is_refused_untouched(tmp_path):
    f = tmp_path / "notes.txt"
    f.write_text("mine")
    with pytest.raises(RunDirError, match="not a directory"):
        run(model="mf", dataset="synthetic", overrides=_ov(epochs=1), out=str(f), quiet=True)
    assert f.read_text() == "mine"
    d = tmp_path / "photos"
    d.mkdir()
    (d / "a.jpg").write_text("x")
    with pytest.raises(RunDirError, match="not empty and not a graphrec run"):
        run(model="mf", dataset="synthetic", overrides=_ov(epochs=1), out=str(d), quiet=True)
    assert _listing(d) == ["a.jpg"]
    empty = tmp_path / "empty"
    empty.mkdir()  # an empty directory the user made is fine
    run(model="mf", dataset="synthetic", overrides=_ov(epochs=1), out=str(empty), quiet=True)
    assert (empty / "result.json").exists() and (empty / "run.json").exists()


@pytest.mark.parametrize("kwargs, error", [
    (dict(model="no-such-model", dataset="synthetic"), ConfigError),
    (dict(model="mf", dataset="no-such-data"), ValueError),
    (dict(model="mf", dataset="synthetic", overrides={"train": {"no_such_key": 1}}), KeyError),
    (dict(model="vbpr", dataset="synthetic-seq"), ValueError),  # needs features the dataset lacks
    (dict(model="mf", dataset="synthetic-seq", overrides={"data": {"split": "user"}}), ConfigError),
])
def test_a_failed_start_leaves_no_run_directory(tmp_path, kwargs, error):
    out = tmp_path / "run"
    with pytest.raises(error):
        run(out=str(out), quiet=True, **kwargs)
    assert not out.exists()
    empty = tmp_path / "made-by-user"
    empty.mkdir()
    with pytest.raises(error):
        run(out=str(empty), quiet=True, **kwargs)
    assert _listing(empty) == []  # left as the user made it


def test_two_writers_of_one_run_cannot_both_proceed(tmp_path):
    out = tmp_path / "r"
    run(model="mf", dataset="synthetic", overrides=_ov(epochs=1), out=str(out), quiet=True)
    lock = RunLock(str(out))  # this process writes the run ...
    try:
        with pytest.raises(RunDirError, match=f"pid {os.getpid()}"):
            RunLock(str(out))
        # ... so a second process is refused, and says by whom
        res = subprocess.run([sys.executable, "-m", "graphrec", "train", "--resume", str(out), "--epochs", "2"],
                             capture_output=True, text=True, env=dict(os.environ, GRAPHREC_LOG="WARNING"))
        assert res.returncode == 2 and f"pid {os.getpid()}" in res.stderr
        assert len(res.stderr.strip().splitlines()) == 1
    finally:
        lock.release()
    RunLock(str(out)).release()  # released: the next writer may proceed


def test_resume_applies_more_epochs_and_refuses_what_would_change_the_run(tmp_path):
    out = str(tmp_path / "r")
    run(model="mf", dataset="synthetic", overrides=_ov(epochs=2, patience=50), seed=1, out=out, quiet=True)
    r = run(resume=out, epochs=4, quiet=True)
    assert r["epochs_run"] == 4 and len(open(os.path.join(out, "epochs.jsonl")).readlines()) == 4
    for kwargs, culprit in ((dict(seed=2), "--seed"), (dict(model="lightgcn"), "--model"),
                            (dict(dataset="ml-100k"), "--dataset"),
                            (dict(overrides={"train": {"lr": 0.1}}), "train.lr"),
                            (dict(overrides={"model_params": {"embedding_dim": 8}}), "model_params.embedding_dim")):
        with pytest.raises(RunDirError, match=culprit.replace(".", r"\.")):
            run(resume=out, quiet=True, **kwargs)
    assert len(open(os.path.join(out, "epochs.jsonl")).readlines()) == 4  # nothing ran


def test_resume_names_what_changed(tmp_path):
    data = load("synthetic", n_users=120, n_items=60, n_interactions=2000, seed=4)
    out = str(tmp_path / "r")
    ov = {"train": {"epochs": 1, "progress": False}, "threads": 1}
    run(model="vbpr", dataset=data, overrides=ov, out=out, quiet=True)
    cfg_path = os.path.join(out, "config.yaml")
    original = open(cfg_path).read()
    cfg = yaml.safe_load(original)
    cfg["train"]["lr"] = 0.5
    yaml.safe_dump(cfg, open(cfg_path, "w"))
    with pytest.raises(RunDirError, match="its config.yaml"):
        run(resume=out, dataset=data, quiet=True)
    open(cfg_path, "w").write(original)

    other = load("synthetic", n_users=120, n_items=60, n_interactions=2000, seed=5)
    with pytest.raises(RunDirError, match="interactions"):
        run(resume=out, dataset=other, quiet=True)
    image = data.features["image"]
    data.features.features["image"] = image + 1.0
    with pytest.raises(RunDirError, match="item features 'image'"):
        run(resume=out, dataset=data, quiet=True)
    data.features.features["image"] = image
    assert torch.isfinite(torch.tensor(run(resume=out, dataset=data, epochs=2, quiet=True)["test"]["recall@20"]))


def test_a_run_begun_before_a_new_config_key_existed_resumes(tmp_path):
    """A graphrec upgrade adds config keys with defaults; a run begun before it (its config.yaml
    without them) resumes with the new keys' defaults instead of being refused as changed."""
    import yaml

    from graphrec import config as config_mod
    from graphrec import rundir
    out = tmp_path / "old"
    run(model="mf", dataset="synthetic", overrides=_ov(epochs=1), out=str(out), quiet=True)
    cfg = yaml.safe_load((out / "config.yaml").read_text())
    del cfg["data"]["knn_index"], cfg["train"]["sampler"]  # as written before those keys existed
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    fp = rundir.read_fingerprint(str(out))
    rundir.write_fingerprint(str(out), {**fp, "config_hash": config_mod.config_hash(cfg)})
    r = run(resume=str(out), dataset=None, epochs=2, quiet=True)
    assert r["epochs_run"] == 2
    cfg["train"]["lr"] = 0.5  # an edit is still refused
    (out / "config.yaml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    with pytest.raises(RunDirError, match="config.yaml"):
        run(resume=str(out), epochs=3, quiet=True)
