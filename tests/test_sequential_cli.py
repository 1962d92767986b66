"""The command line with a sequence model: train, evaluate, recommend (from a user's history and from
a history given on the command line) and bench, on planted transitions the model must recover."""
import json
import os
import subprocess
import sys

import pytest

from graphrec.cli import main
from graphrec.datasets import load

SMALL = ["--set", "data.dataset_args={n_users: 300, n_items: 60, seed: 1}", "--set", "threads=1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("seq") / "sasrec"
    rc = main(["train", "--model", "sasrec", "--dataset", "synthetic-seq", "--epochs", "40", "--seed", "0",
               "--quiet", "--out", str(out), "--set", "model.n_layers=1", "--set", "model.dropout=0.1",
               "--set", "model.attn_dropout=0.1", "--set", "train.lr=0.005", *SMALL])
    assert rc == 0
    return out


def test_train_writes_a_next_item_run_on_a_leave_one_out_split(run_dir):
    r = json.loads((run_dir / "result.json").read_text())
    assert r["task"] == "next_item" and r["split_method"] == "loo"  # data.split=auto: the task's rule
    split = json.loads((run_dir / "split.json").read_text())
    assert split["sizes"]["test"] == split["sizes"]["valid"] == 300  # one target per user
    pop = subprocess.run([sys.executable, "-m", "graphrec", "train", "--model", "pop", "--dataset", "synthetic-seq",
                          "--quiet", "--out", str(run_dir.parent / "pop"), "--set", "data.split=loo",
                          "--set", "eval.protocol=next_item", *SMALL], capture_output=True, text=True)
    assert pop.returncode == 0, pop.stderr[-1500:]
    p = json.loads((run_dir.parent / "pop" / "result.json").read_text())
    assert p["split_hash"] == r["split_hash"]  # the same split, judged by the same protocol
    # 80% of the transitions follow the planted successor: the model finds them, popularity cannot
    assert r["test"]["ndcg@10"] > max(0.5, 2.5 * p["test"]["ndcg@10"])


def test_evaluate_reproduces_the_run_metrics(run_dir, tmp_path):
    out = tmp_path / "eval.json"
    assert main(["evaluate", str(run_dir), "--json", str(out)]) == 0
    r = json.loads((run_dir / "result.json").read_text())
    assert json.loads(out.read_text())["test"] == pytest.approx(r["test"], abs=1e-9)


def test_recommend_follows_the_planted_successor(run_dir, capsys):
    data = load("synthetic-seq", n_users=300, n_items=60, seed=1)
    succ = data.ground_truth["successor"]
    ids = data.interactions.item_map.ids
    a = 7
    b = int(succ[a])
    assert main(["recommend", str(run_dir), "--history", f"{ids[a]},{ids[b]}", "--k", "3", "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)["history"]
    assert recs[0] == ids[int(succ[b])]  # what follows b is b's successor
    assert str(ids[a]) not in map(str, recs) and str(ids[b]) not in map(str, recs)  # history masked
    user = data.interactions.user_map.ids[0]
    assert main(["recommend", str(run_dir), "--user", str(user), "--k", "5", "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)[str(user)]) == 5


def test_bench_measures_a_sequence_model():
    env = dict(os.environ, GRAPHREC_LOG="WARNING")
    cmd = [sys.executable, "-m", "graphrec.bench.worker", "--model", "sasrec", "--dataset", "synthetic-seq",
           "--epochs", "2", "--threads", "1", "--set", "data.dataset_args={n_users: 200, n_items: 50}"]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    assert out.returncode == 0, out.stderr[-1500:]
    from graphrec.bench.worker import parse_record
    rec = parse_record(out.stdout)
    assert rec["steps_per_epoch"] == rec["full_steps_per_epoch"] == 1  # 200 users' windows: one batch
    assert rec["train_s_per_epoch"] > 0 and rec["eval_s"] > 0 and rec["n_valid_users"] == 200
