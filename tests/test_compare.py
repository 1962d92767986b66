"""`graphrec.compare.Experiment` and `graphrec compare`: the table equals numpy over the runs'
result.json files, the paired tests equal hand computations (and scipy), finished runs are re-read
not retrained, grid points are selected by valid only, TensorBoard scalars match the epoch log."""
from __future__ import annotations

import importlib.util
import json
import math
import os
import sys

import numpy as np
import pytest

from graphrec.compare import Experiment
from graphrec.stats import betainc, paired_t, t_two_sided_p, wilcoxon_exact
from graphrec.errors import RunDirError

TINY = ["data.dataset_args={n_users: 150, n_items: 80, n_interactions: 3000}", "train.epochs=3", "threads=1"]
SHOWN = ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]


def _results(runs_dir: str) -> dict:
    """{(model, seed): result.json} of every run under ``runs_dir``, read independently."""
    out = {}
    for root, _, files in os.walk(runs_dir):
        if "result.json" in files:
            with open(os.path.join(root, "result.json")) as f:
                r = json.load(f)
            out[(r["model"], r["seed"])] = r
    return out


@pytest.fixture(scope="module")
def done(tmp_path_factory):
    runs = str(tmp_path_factory.mktemp("cmp") / "runs")
    exp = Experiment(["lightgcn", "mf"], "synthetic", seeds=[0, 1, 2], sets=TINY, runs_dir=runs).run()
    return exp, runs


def test_table_means_and_stds_equal_numpy_over_result_files(done):
    exp, runs = done
    res = _results(runs)
    assert len(res) == 6 and exp.counts == {"reused": 0, "resumed": 0, "trained": 6}
    rows = {r["model"]: r for r in exp.summary()}
    for model in ("lightgcn", "mf"):
        for m in res[(model, 0)]["test"]:
            v = np.array([res[(model, s)]["test"][m] for s in (0, 1, 2)])
            assert rows[model][f"test_{m}"] == pytest.approx(v.mean(), abs=1e-12)
            assert rows[model][f"test_{m}_std"] == pytest.approx(v.std(ddof=1), abs=1e-12)
        assert rows[model]["seeds"] == 3
    md = exp.markdown()
    r = rows["mf"]
    assert f"| mf | 3 | {r['test_recall@10']:.4f} ± {r['test_recall@10_std']:.4f} |" in md
    assert exp.shown_metrics() == SHOWN


def test_paired_tests_equal_hand_computation(done):
    exp, runs = done
    res = _results(runs)
    row = {r["model"]: r for r in exp.summary()}["mf"]
    for m in SHOWN:
        d = np.array([res[("mf", s)]["test"][m] - res[("lightgcn", s)]["test"][m] for s in (0, 1, 2)])
        t = d.mean() / (d.std(ddof=1) / math.sqrt(3))
        # df = 2: P(|T| >= t) = 1 - |t| / sqrt(2 + t^2) in closed form
        assert row[f"t_{m}"] == pytest.approx(t, rel=1e-9)
        assert row[f"p_t_{m}"] == pytest.approx(1 - abs(t) / math.sqrt(2 + t * t), rel=1e-9)
        assert row[f"diff_{m}"] == pytest.approx(d.mean(), abs=1e-12)
        # exact Wilcoxon with 3 distinct nonzero |d|: W = min(W+, W-), 8 equally likely sign patterns
        if np.all(d != 0) and len(set(np.abs(d))) == 3:
            ranks = np.argsort(np.argsort(np.abs(d))) + 1
            w = min(ranks[d > 0].sum(), ranks[d < 0].sum())
            sums = [sum(r for r, s in zip((1, 2, 3), signs) if s) for signs in np.ndindex(2, 2, 2)]
            assert row[f"w_{m}"] == w
            assert row[f"p_wilcoxon_{m}"] == pytest.approx(min(1.0, 2 * sum(x <= w for x in sums) / 8))
        if importlib.util.find_spec("scipy"):
            from scipy import stats
            a = [res[("lightgcn", s)]["test"][m] for s in (0, 1, 2)]
            b = [res[("mf", s)]["test"][m] for s in (0, 1, 2)]
            ref = stats.ttest_rel(b, a)
            assert (row[f"t_{m}"], row[f"p_t_{m}"]) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-9)


def test_student_t_tail_matches_closed_forms_and_scipy():
    for t in (0.0, 0.3, 1.0, 2.5, 12.0):
        assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), abs=1e-12)
        assert t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), abs=1e-12)
        # df = 4: two-sided tail = 1 - x (3 - x^2) / 2 with x = t / sqrt(4 + t^2)
        x = t / math.sqrt(4 + t * t)
        assert t_two_sided_p(-t, 4) == pytest.approx(1 - x * (3 - x * x) / 2, abs=1e-12)
    assert betainc(2.0, 3.0, 0.4) == pytest.approx(0.5248, abs=1e-12)  # I_0.4(2, 3) = 1 - 0.6^4 - 4 * 0.4 * 0.6^3
    assert paired_t([1, 2, 3], [2, 3, 4]) == (math.inf, 0.0)
    assert all(math.isnan(x) for x in paired_t([1, 2], [1, 2]))
    if importlib.util.find_spec("scipy"):
        from scipy import stats
        rng = np.random.default_rng(0)
        for n in (2, 3, 5, 10, 30):
            a, b = rng.normal(size=n), rng.normal(0.3, 1.0, size=n)
            ref = stats.ttest_rel(b, a)
            assert paired_t(a, b) == pytest.approx((ref.statistic, ref.pvalue), rel=1e-9)
            w = stats.wilcoxon(b, a, method="exact")
            assert wilcoxon_exact(a, b) == pytest.approx((w.statistic, w.pvalue), rel=1e-12)


def test_wilcoxon_with_ties_and_zeros_by_enumeration():
    # d = (0, 1, -1, 2): the zero is dropped; |d| ranks (1.5, 1.5, 3); W+ = 4.5, W- = 1.5 -> W = 1.5;
    # of the 8 sign patterns, sums of ranks with positive sign <= 1.5: {}, {1.5}, {1.5'} -> 3
    assert wilcoxon_exact([0, 0, 0, 0], [0, 1, -1, 2]) == (1.5, pytest.approx(2 * 3 / 8))
    assert all(math.isnan(x) for x in wilcoxon_exact([1, 2], [1, 2]))


def test_second_call_rereads_finished_runs_without_training(done):
    exp, runs = done
    stamps = {k: os.path.getmtime(os.path.join(r["run_dir"], "result.json")) for k, r in _results(runs).items()}
    again = Experiment(["lightgcn", "mf"], "synthetic", seeds=[0, 1, 2], sets=TINY, runs_dir=runs).run()
    assert again.counts == {"reused": 6, "resumed": 0, "trained": 0}
    assert {k: os.path.getmtime(os.path.join(r["run_dir"], "result.json")) for k, r in _results(runs).items()} == stamps
    assert again.summary() == exp.summary()


def test_interrupted_run_is_resumed_and_other_config_refused(tmp_path):
    runs = str(tmp_path / "runs")
    first = Experiment(["mf"], "synthetic", seeds=[0], sets=TINY, runs_dir=runs).run()
    run_dir = os.path.join(runs, "mf", "seed0")
    os.remove(os.path.join(run_dir, "result.json"))  # as if killed after its last epoch's checkpoint
    again = Experiment(["mf"], "synthetic", seeds=[0], sets=TINY, runs_dir=runs).run()
    assert again.counts == {"reused": 0, "resumed": 1, "trained": 0}
    with open(os.path.join(run_dir, "epochs.jsonl")) as f:
        assert [json.loads(line)["epoch"] for line in f] == [1, 2, 3]  # continued, not retrained
    assert again.summary()[0]["test_recall@20"] == first.summary()[0]["test_recall@20"]
    with pytest.raises(RunDirError, match="train.lr"):
        Experiment(["mf"], "synthetic", seeds=[0], sets=TINY + ["train.lr=0.05"], runs_dir=runs).run()


def test_grid_selects_by_valid_only(tmp_path):
    runs = str(tmp_path / "runs")
    grid = {"model.n_layers": [1, 2], "train.lr": [0.01]}  # mf has no n_layers: one point for it
    exp = Experiment(["mf", "lightgcn"], "synthetic", seeds=[0, 1], sets=TINY, grid=grid, runs_dir=runs).run()
    assert exp.counts["trained"] == 2 + 4
    assert sorted(exp.results["lightgcn"]) == ["model.n_layers=1, train.lr=0.01", "model.n_layers=2, train.lr=0.01"]
    # plant a disagreement: n_layers=1 best on valid, n_layers=2 best on test
    for seed in (0, 1):
        for point, valid, test in (("n_layers=1+lr=0.01", 0.9, 0.1), ("n_layers=2+lr=0.01", 0.5, 0.8)):
            path = os.path.join(runs, "lightgcn", point, f"seed{seed}", "result.json")
            with open(path) as f:
                r = json.load(f)
            r["valid"]["recall@20"] = valid + 0.01 * seed
            r["test"] = {k: test + 0.01 * seed for k in r["test"]}
            with open(path, "w") as f:
                json.dump(r, f)
    exp = Experiment(["mf", "lightgcn"], "synthetic", seeds=[0, 1], sets=TINY, grid=grid, runs_dir=runs).run()
    assert exp.counts == {"reused": 6, "resumed": 0, "trained": 0}
    assert exp.selected["lightgcn"] == "model.n_layers=1, train.lr=0.01"
    row = {r["model"]: r for r in exp.summary()}["lightgcn"]
    assert row["test_recall@20"] == pytest.approx(0.105)  # the valid-selected point's test, not the better 0.805
    table = {(g["model"], g["point"]): g for g in exp.grid_table()}
    assert table[("lightgcn", "model.n_layers=2, train.lr=0.01")]["valid_recall@20"] == pytest.approx(0.505)
    assert table[("lightgcn", "model.n_layers=1, train.lr=0.01")]["selected"]
    assert "* | 2 |" in exp.markdown()


def test_parallel_jobs_equal_in_process_runs(done, tmp_path):
    _, runs = done
    par = Experiment(["mf"], "synthetic", seeds=[0, 1], sets=TINY, runs_dir=str(tmp_path / "par"), jobs=2).run()
    assert par.counts["trained"] == 2
    here = _results(runs)
    for (model, seed), r in _results(str(tmp_path / "par")).items():
        assert r["test"] == pytest.approx(here[(model, seed)]["test"], abs=1e-6)


def test_cli_prints_the_table_and_writes_the_files(tmp_path, capsys):
    from graphrec.cli import main
    out = str(tmp_path / "cmp")
    args = ["compare", "--models", "lightgcn,mf", "--dataset", "synthetic", "--seeds", "0,1", "--out", out, "--quiet"]
    for s in TINY:
        args += ["--set", s]
    assert main(args + ["--grid", "train.lr=0.001,1e-2", "train.batch_size=1024"]) == 0
    printed = capsys.readouterr().out
    with open(os.path.join(out, "compare.md")) as f:
        assert printed == f.read()
    with open(os.path.join(out, "compare.csv")) as f:
        header = f.readline().strip().split(",")
    assert {"model", "point", "test_recall@20", "test_recall@20_std", "p_t_recall@20"} <= set(header)
    with open(os.path.join(out, "compare.json")) as f:
        rec = json.load(f)
    assert len(rec["grid_table"]) == 4 and rec["configs"]["mf"]["train"]["epochs"] == 3
    for model in ("lightgcn", "mf"):  # the printed point is the one with the best mean valid metric
        points = [g for g in rec["grid_table"] if g["model"] == model]
        best = max(points, key=lambda g: g["valid_recall@20"])["point"]
        assert f"| {model} | {best} | 2 |" in printed and best.startswith("train.lr=")
    if importlib.util.find_spec("matplotlib"):
        with open(os.path.join(out, "compare_valid_curves.png"), "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_grid_values_split_on_top_level_commas_only():
    from graphrec.commands.compare import parse_grid
    assert parse_grid(["eval.ks=[10,20],[5,50]", "train.lr=1e-3,0.01"]) == {
        "eval.ks": [[10, 20], [5, 50]], "train.lr": [0.001, 0.01]}


def test_valid_curves_and_missing_matplotlib(done, tmp_path, monkeypatch, caplog):
    exp, runs = done
    curves = exp.curves()
    vals = []
    for s in (0, 1, 2):
        with open(os.path.join(runs, "mf", f"seed{s}", "epochs.jsonl")) as f:
            vals.append([json.loads(line)["valid"]["recall@20"] for line in f])
    assert curves["mf"] == [(e + 1, pytest.approx(np.mean([v[e] for v in vals]))) for e in range(3)]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # `import matplotlib` raises ImportError
    with caplog.at_level("WARNING", logger="graphrec"):
        assert exp.plot(str(tmp_path / "x.png")) is None
    assert "matplotlib" in caplog.text and not os.path.exists(tmp_path / "x.png")


def test_no_tensorboard_means_no_callback_and_no_error(monkeypatch, tmp_path):
    from graphrec.train.tensorboard import tensorboard_callback
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)
    assert tensorboard_callback(str(tmp_path)) is None


def test_tensorboard_scalars_equal_the_epoch_log(tmp_path):
    pytest.importorskip("tensorboard")
    pytest.importorskip("torch.utils.tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from graphrec.config import parse_set
    from graphrec.experiment import run
    out = str(tmp_path / "run")
    run(model="lightgcn", dataset="synthetic", overrides=parse_set(TINY), out=out, quiet=True)
    acc = EventAccumulator(os.path.join(out, "tb"))
    acc.Reload()
    with open(os.path.join(out, "epochs.jsonl")) as f:
        log = [json.loads(line) for line in f]
    for tag, key in (("loss/bpr", lambda r: r["bpr"]), ("valid/recall@20", lambda r: r["valid"]["recall@20"]),
                     ("seconds/train", lambda r: r["train_s"])):
        events = acc.Scalars(tag)
        assert [e.step for e in events] == [1, 2, 3]
        assert [e.value for e in events] == pytest.approx([key(r) for r in log], rel=1e-6)
