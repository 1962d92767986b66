"""The scripts under examples/ run as a user would run them, and do what their docstrings say."""
import os
import runpy
import subprocess
import sys

import torch

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES = os.path.join(ROOT, "examples")


def test_add_a_model_registers_scores_and_trains(tmp_path):
    ns = runpy.run_path(os.path.join(EXAMPLES, "add_a_model.py"), run_name="example")
    from graphrec.datasets import load
    from graphrec.models import ModelContext, get_model

    assert get_model("biased-mf") is ns["BiasedMF"]  # registered by its decorator alone
    train = load("synthetic").interactions
    model = ns["BiasedMF"](ModelContext(train.n_users, train.n_items, train))
    reps = model.propagate()
    users = torch.tensor([0, 3])
    expect = model.user[users] @ model.item[:, :-1].T + model.item[:, -1]  # e_u . e_i + b_i
    torch.testing.assert_close(model.score(users, reps), expect)

    env = dict(os.environ, GRAPHREC_LOG="WARNING", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "add_a_model.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    recall = float(out.stdout.strip().splitlines()[-1].split(":")[1])
    losses = [l for l in (tmp_path / "runs").glob("biased-mf-*/epochs.jsonl")][0].read_text().splitlines()
    import json
    bpr = [json.loads(l)["bpr"] for l in losses]
    assert bpr[-1] < bpr[0] and recall > 0


def test_benchmark_example_measures_both_models(tmp_path):
    env = dict(os.environ, GRAPHREC_LOG="WARNING", PYTHONPATH=ROOT)
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "benchmark_models.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    lines = {line.split(":")[0]: line for line in out.stdout.splitlines() if "s/epoch, evaluation" in line}
    assert set(lines) == {"mf", "lightgcn"}
    assert all(float(line.split(": ")[1].split(" ")[0]) > 0 for line in lines.values())


def test_every_example_is_run_by_a_test():
    # an example nobody runs rots: each file under examples/ must be named by some test
    tests = "".join(open(os.path.join(ROOT, "tests", f)).read()
                    for f in os.listdir(os.path.join(ROOT, "tests")) if f.endswith(".py"))
    missing = [f for f in os.listdir(EXAMPLES) if f.endswith(".py") and f not in tests]
    assert not missing, f"examples without a test: {missing}"


def test_compare_models_prints_the_table(tmp_path):
    env = dict(os.environ, GRAPHREC_LOG="WARNING", PYTHONPATH=ROOT, GRAPHREC_EXAMPLE_OUT=str(tmp_path / "cmp"))
    out = subprocess.run([sys.executable, os.path.join(EXAMPLES, "compare_models.py")], cwd=tmp_path, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "| lightgcn | 2 |" in out.stdout and "| freedom | 2 |" in out.stdout
    assert (tmp_path / "cmp" / "compare.csv").exists()
