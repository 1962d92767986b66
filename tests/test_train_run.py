"""End-to-end runs: outputs, valid-only selection, resume after a kill, stages, recommend."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from graphrec.errors import RunDirError
from graphrec.experiment import run
from graphrec.experiment import load_run

TINY = {"data": {"dataset_args": {"n_users": 150, "n_items": 80, "n_interactions": 3000, "seed": 3}},
        "train": {"batch_size": 256, "progress": False, "deterministic": True}}


def _ov(**train):
    ov = json.loads(json.dumps(TINY))
    ov["train"].update(train)
    return ov


def test_run_writes_everything_and_selects_by_valid(tmp_path):
    r = run(model="lightgcn", dataset="synthetic", overrides=_ov(epochs=4, patience=50), seed=1,
            out=str(tmp_path / "r"), quiet=True)
    d = tmp_path / "r"
    for f in ("config.yaml", "split.npz", "split.json", "epochs.jsonl", "best.pt", "last.pt", "result.json"):
        assert (d / f).exists(), f
    for k in ("model", "dataset", "device", "best_epoch", "valid", "test", "train_s_per_epoch", "eval_s", "peak_mem_mb"):
        assert k in r
    assert "recall@20" in r["test"] and "ndcg@20" in r["valid"]
    epochs = [json.loads(line) for line in open(d / "epochs.jsonl")]
    assert len(epochs) == 4 and all("bpr" in e and "reg" in e for e in epochs)
    best = max(epochs, key=lambda e: (e["valid"]["recall@20"], -e["epoch"]))
    assert r["best_epoch"] == best["epoch"]  # first epoch reaching the max valid score
    assert r["valid"] == best["valid"]


def test_existing_run_dir_is_not_overwritten(tmp_path):
    run(model="pop", dataset="synthetic", overrides=_ov(), out=str(tmp_path / "p"), quiet=True)
    with pytest.raises(RunDirError, match="already holds a graphrec run"):
        run(model="pop", dataset="synthetic", overrides=_ov(), out=str(tmp_path / "p"), quiet=True)


def test_resume_after_kill_equals_uninterrupted(tmp_path):
    full = run(model="lightgcn", dataset="synthetic", overrides=_ov(epochs=8, patience=50), seed=2,
               out=str(tmp_path / "full"), quiet=True)
    cfg = tmp_path / "c.yaml"
    import yaml
    cfg.write_text(yaml.safe_dump(_ov(epochs=8, patience=50)))
    out = tmp_path / "killed"
    env = dict(os.environ, GRAPHREC_TEST_EPOCH_SLEEP="0.4")
    proc = subprocess.Popen([sys.executable, "-m", "graphrec.cli", "train", "--model", "lightgcn", "--dataset",
                             "synthetic", "--config", str(cfg), "--seed", "2", "--out", str(out), "--quiet"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        log = out / "epochs.jsonl"
        if log.exists() and len(log.read_text().splitlines()) >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "result.json").exists()
    resumed = run(resume=str(out), quiet=True)
    assert resumed["best_epoch"] == full["best_epoch"]
    assert resumed["valid"] == full["valid"]
    assert resumed["test"] == full["test"]
    lines = [json.loads(x) for x in (out / "epochs.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in lines] == list(range(1, 9))


def test_stage_init_from_previous_run(tmp_path):
    first = run(model="mf", dataset="synthetic", overrides=_ov(epochs=3), seed=1, out=str(tmp_path / "a"), quiet=True)
    ov = _ov(epochs=0)
    ov["train"]["init_from"] = first["run_dir"]
    second = run(model="mf", dataset="synthetic", overrides=ov, seed=5, out=str(tmp_path / "b"), quiet=True)
    # no training: the loaded weights alone give the first run's best valid metrics
    assert second["valid"] == pytest.approx(first["valid"])
    a = load_run(first["run_dir"]).model.user_emb.weight
    b = load_run(second["run_dir"]).model.user_emb.weight
    assert torch.equal(a, b)


def test_recommend_excludes_training_items(tmp_path):
    from graphrec.commands.recommend import recommend

    r = run(model="lightgcn", dataset="synthetic", overrides=_ov(epochs=2), out=str(tmp_path / "r"), quiet=True)
    p = load_run(r["run_dir"])
    users = p.split.user_map.ids[:3].tolist()
    recs = recommend(p, users, k=10)
    train_pairs = set(zip(p.split.train.user.tolist(), p.split.train.item.tolist()))
    for u in users:
        ui = p.split.user_map.index(u)
        items = [p.split.item_map.index(i) for i in recs[str(u)]]
        assert len(items) == 10 and len(set(items)) == 10
        assert not any((ui, i) in train_pairs for i in items)
    with pytest.raises(KeyError, match="unknown user id"):
        recommend(p, ["no-such-user"], k=5)


def test_lightgcn_recovers_planted_structure(tmp_path):
    pop = run(model="pop", dataset="synthetic", overrides={"train": {"progress": False}}, out=str(tmp_path / "pop"), quiet=True)
    lg = run(model="lightgcn", dataset="synthetic", overrides={"train": {"progress": False, "epochs": 25}},
             out=str(tmp_path / "lg"), quiet=True)
    assert lg["test"]["recall@20"] >= 3 * pop["test"]["recall@20"]
