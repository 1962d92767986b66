"""graphrec bench: the worker's record, the Table-5 markdown, the RSS probe, growth and the report."""
from __future__ import annotations

import json
import os

import pytest
import torch

from graphrec.bench import reference as ref
from graphrec.bench import tables
from graphrec.train.probe import PhaseProbe, reset_peak_rss
from graphrec.bench.runner import REQUIRED_KEYS, available_models, read_records, run_bench, to_csv, write_json


def test_worker_record_has_required_keys_and_sane_values():
    """A real worker process: one epoch of LightGCN on a tiny synthetic set."""
    msgs: list[str] = []
    recs = run_bench(["lightgcn", "no-such-model"], "synthetic", epochs=1, scales=[0.1], threads=1,
                     echo=msgs.append, timeout=120)
    assert any("skipping model 'no-such-model'" in m for m in msgs)  # skipped with a clear message
    assert len(recs) == 1
    r = recs[0]
    assert "error" not in r, r.get("error")
    for k in REQUIRED_KEYS:
        assert k in r, k
    assert r["model"] == "lightgcn" and r["dataset"] == "synthetic" and r["scale"] == 0.1
    assert r["n_users"] == 150 and r["n_items"] == 80  # the generator's 1500 x 800 at scale 0.1
    assert r["params"] == (r["n_users"] + r["n_items"]) * 64  # one 64-d table for users and items
    assert r["train_s_per_epoch"] > 0 and r["eval_s"] > 0 and r["graph_build_s"] > 0
    assert r["train_s_epochs"] == [r["train_s_per_epoch"]]  # one epoch: it is the timed one
    assert r["device"] == "cpu" and r["device_name"]
    assert r["torch"] == torch.__version__ and r["threads"] == 1
    assert r["mem_method"] == "rss_hwm_over_baseline"
    assert set(r["phase_mem_mb"]) == {"graph_build", "train", "eval"}
    assert r["peak_mem_mb"] == max(r["phase_mem_mb"].values())
    assert 0 <= r["peak_mem_mb"] < 4096
    assert r["peak_rss_mb"] >= r["baseline_rss_mb"] > 50  # python + torch alone is well over 50 MB
    assert len(r["config_hash"]) == 16 and r["git_commit"]
    assert r["graphs"]["ui"]["nnz"] == 2 * r["n_train"]  # symmetric bipartite: each pair twice


def test_truncated_epochs_give_seconds_per_step():
    """``train.max_steps_per_epoch`` ends each epoch after that many batches; the record says how
    many ran, how many a full epoch has, the time per step, and projects s/epoch from it."""
    recs = run_bench(["mf"], "synthetic", epochs=2, scales=[0.1], threads=1, timeout=120,
                     sets=["train.batch_size=64", "train.max_steps_per_epoch=3"], echo=lambda m: None)
    r = recs[0]
    assert "error" not in r, r.get("error")
    assert r["steps_per_epoch"] == 3
    assert r["full_steps_per_epoch"] == -(-r["n_train"] // 64) > 3
    # both are rounded (4 and 5 decimals) from the same unrounded median
    assert r["train_s_per_step"] == pytest.approx(r["train_s_epochs"][1] / 3, rel=1e-3, abs=1e-4)
    assert r["train_s_per_epoch_projected"] is True
    assert r["train_s_per_epoch"] == pytest.approx(r["train_s_per_step"] * r["full_steps_per_epoch"], rel=1e-3, abs=1e-3)
    # CPU seconds are projected the same way: on one thread they stay below the wall seconds, by
    # how much depends on other load on the machine (0.4 of them seen on a busy 2-core VM); unprojected
    # they would be 3 / full_steps (under 0.05) of them
    assert 3 / r["full_steps_per_epoch"] < 0.1
    assert r["train_cpu_s_per_epoch"] == pytest.approx(r["train_s_per_epoch"], rel=0.9)


def test_unknown_model_is_reported_not_run():
    ok, skipped = available_models(["mf", "definitely-not-a-model"])
    assert ok == ["mf"] and "definitely-not-a-model" in skipped


def test_scale_needs_a_synthetic_dataset():
    with pytest.raises(ValueError, match="synthetic"):
        run_bench(["mf"], "ml-100k", scales=[0.5], echo=lambda m: None)


def _rec(model, dataset, mem_mb, train_s, scale=1.0, n_train=1000, eval_s=0.5, rss=1500.0, repeat=0):
    return {"model": model, "dataset": dataset, "scale": scale, "repeat": repeat, "n_train": n_train,
            "n_users": 10, "n_items": 5, "params": 123, "graph_build_s": 0.1, "train_s_per_epoch": train_s,
            "eval_s": eval_s, "peak_mem_mb": mem_mb, "peak_rss_mb": rss, "phase_mem_mb": {"train": mem_mb},
            "device": "cpu", "device_name": "Test CPU", "threads": 2, "torch": "x", "torch_geometric": "y"}


def test_table5_layout_and_paper_figures():
    recs = []
    for ds, mem in (("synthetic-baby", 512.0), ("synthetic-sports", 1024.0), ("synthetic-clothing", 2048.0)):
        recs.append(_rec("lightgcn", ds, mem, 1.5))
        recs.append(_rec("freedom", ds, mem * 2, 3.25))
    md = tables.table5(recs)
    lines = [ln for ln in md.splitlines() if ln.startswith("|")]
    assert lines[0] == ("| Dataset | Metric | LightGCN (ours) | LightGCN (paper) | FREEDOM (ours) | "
                        "FREEDOM (paper) |")
    body = lines[2:]
    assert [ln.split(" | ")[0].strip("| ") for ln in body] == ["Baby", "Baby", "Sports", "Sports",
                                                              "Clothing", "Clothing"]
    assert [ln.split(" | ")[1] for ln in body] == ["Memory (GB)", "Time (s/epoch)"] * 3
    cloth_mem = body[4].strip("| ").split(" | ")
    cloth_time = body[5].strip("| ").split(" | ")
    assert cloth_mem[2:] == ["2.000", "2.43", "4.000", "4.15"]  # ours MB/1024 beside Table 5
    assert cloth_time[2:] == ["1.50", "4.58", "3.25", "5.74"]
    assert ref.PAPER_DEVICE in md and "Test CPU" in md


def test_aggregate_takes_median_over_repeats_and_drops_errors():
    recs = [_rec("mf", "synthetic", 100, t, repeat=i) for i, t in enumerate((3.0, 1.0, 2.0))]
    recs.append({"model": "mf", "dataset": "synthetic", "scale": 1.0, "error": "boom"})
    agg = tables.aggregate(recs)
    a = agg[("mf", "synthetic", 1.0)]
    assert a["train_s_per_epoch"] == 2.0 and a["n_repeats"] == 3 and a["train_s_per_epoch_range"] == (1.0, 3.0)


def test_growth_per_4x_from_power_law():
    rows = [{"n_train": 1000, "t": 1.0}, {"n_train": 4000, "t": 4.0}, {"n_train": 16000, "t": 16.0}]
    x, y, per4 = tables.growth(rows, "t")
    assert x == 16 and y == 16 and per4 == pytest.approx(4.0)
    quad = [{"n_train": 1000, "t": 1.0}, {"n_train": 2000, "t": 4.0}]
    assert tables.growth(quad, "t")[2] == pytest.approx(16.0)  # t ~ n^2: 16x per 4x interactions
    md = tables.scaling_table([_rec("mf", "synthetic", 10 * s, 1.0 * s, scale=s, n_train=int(1000 * s))
                               for s in (1, 4)])
    assert "4.00x per 4x interactions (meets" in md


def test_mmrec_table_ratios():
    recs = [_rec("lightgcn", "synthetic-clothing", 300, 2.0, rss=800.0)]
    md = tables.mmrec_table(recs, {("synthetic-clothing", "lightgcn"):
                                   {"train_s": (16.0, 18.0), "eval_s": (8.0, 9.0), "rss_gb": (1.6, 1.6)}})
    row = [ln for ln in md.splitlines() if ln.startswith("| Clothing")][0].strip("| ").split(" | ")
    assert row[2] == "16.00-18.00" and row[3] == "2.000" and row[4] == "8.5x" and row[5] == "yes"
    assert row[10] == f"{(800 / 1024) / 1.6:.2f}" and row[11] == "yes"


def test_probe_sees_a_200mb_allocation():
    probe = PhaseProbe("cpu")
    with probe.phase("alloc"):
        x = torch.ones(200 * 2**20 // 4, dtype=torch.float32)  # 200 MiB, every page touched
        x.add_(1)
    del x
    grown = probe.phases["alloc"]["peak_rss_mb"] - probe.phases["alloc"]["start_rss_mb"]
    assert 195 <= grown < 400
    with probe.phase("idle"):
        y = torch.ones(1024)
    if reset_peak_rss():  # with a per-phase reset the idle phase must not inherit the 200 MB peak
        assert probe.phases["idle"]["peak_rss_mb"] - probe.phases["idle"]["start_rss_mb"] < 100
    del y


def test_json_csv_and_report(tmp_path):
    res = tmp_path / "results"
    res.mkdir()
    recs = [_rec("lightgcn", "synthetic-clothing", 700, 2.0), _rec("lightgcn", "synthetic-clothing", 900, 2.2,
                                                                  scale=2.0, n_train=2000)]
    write_json(str(res / "bench_clothing.json"), recs, {"label": "shared machine, preliminary"})
    back = read_records([str(res / "bench_clothing.json")])
    assert [r["train_s_per_epoch"] for r in back] == [2.0, 2.2] and back[0]["label"] == "shared machine, preliminary"
    csv_text = to_csv(recs)
    assert csv_text.splitlines()[0].startswith("model,dataset,scale") and len(csv_text.splitlines()) == 3
    (res / "accuracy_cf.md").write_text("# Accuracy of CF models\n\n| m | r |\n|---|---|\n| mf | 0.1 |\n")
    (res / "graphs_knn.json").write_text(json.dumps({"x": 1}))
    from graphrec.bench.report import build_report
    out = tmp_path / "BENCHMARKS.md"
    text = build_report(str(res), str(out))
    assert out.read_text() == text
    assert "| Clothing | Memory (GB) |" in text and "shared machine, preliminary" in text
    assert "### Accuracy of CF models" in text  # included, heading nested under ours
    assert "[graphs_knn.json](results/graphs_knn.json)" in text
    assert "15.70-18.50" in text  # MMRec reference column, labelled as such
    assert "reference column" in text
    assert "Growth with the number of interactions" in text


def test_cli_report(tmp_path):
    from graphrec.cli import main
    res = tmp_path / "results"
    res.mkdir()
    write_json(str(res / "bench_a.json"), [_rec("mf", "synthetic-baby", 100, 0.5)])
    assert main(["bench", "--report", str(res), "--md", str(tmp_path / "B.md")]) == 0
    assert "| Baby | Time (s/epoch) | 0.50 | 0.86 |" in (tmp_path / "B.md").read_text()
    assert os.path.exists(tmp_path / "B.md")


def test_report_keeps_differently_configured_runs_apart(tmp_path):
    """Two runs (different labels, e.g. thread counts) must not be merged into one median."""
    res = tmp_path / "results"
    res.mkdir()
    write_json(str(res / "bench_a.json"), [_rec("lightgcn", "synthetic-clothing", 700, 2.0)], {"label": "two threads"})
    write_json(str(res / "bench_b.json"), [_rec("lightgcn", "synthetic-clothing", 700, 9.0)], {"label": "one thread"})
    from graphrec.bench.report import build_report
    text = build_report(str(res), str(tmp_path / "B.md"))
    rows = [ln for ln in text.splitlines() if ln.startswith("| Clothing | Time (s/epoch)")]
    assert sorted(r.split(" | ")[2] for r in rows) == ["2.00", "9.00"]
    assert "### two threads" in text and "### one thread" in text


def test_details_table_marks_projected_epochs_and_says_so():
    full = {"model": "lightgcn", "dataset": "synthetic-clothing", "train_s_per_epoch": 3.4,
            "train_cpu_s_per_epoch": 6.8, "eval_s": 1.2}
    cut = {"model": "sand-a", "dataset": "synthetic-clothing", "train_s_per_epoch": 392.0,
           "train_cpu_s_per_epoch": 735.0, "train_s_per_epoch_projected": True, "steps_per_epoch": 4,
           "full_steps_per_epoch": 98, "eval_s": 3.0}
    md = tables.details_table([full, cut])
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ") for line in md.splitlines() if line.startswith("| ")}
    assert rows["lightgcn"][8] == "3.40" and rows["lightgcn"][9] == "6.80"
    assert rows["sand-a"][8] == "392 (p)" and rows["sand-a"][9] == "735"
    assert "(p): epochs cut" in md
    assert "(p)" not in tables.details_table([full])
