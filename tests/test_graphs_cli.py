"""`graphrec build-graphs`: prints the table, writes JSON, fills the cache (second run hits it)."""
from __future__ import annotations

import json

import pytest

from graphrec.cli import main


def test_build_graphs_cli(tmp_path, capsys):
    pytest.importorskip("graphrec.datasets.synthetic")
    out = tmp_path / "g.json"
    args = ["build-graphs", "--dataset", "synthetic", "--knn-k", "5", "--cointeraction-topk", "20",
            "--cache-dir", str(tmp_path / "cache"), "--json", str(out)]
    assert main(args) == 0
    first = json.loads(out.read_text())
    kinds = {g["spec"]["kind"] for g in first["graphs"]}
    assert {"bipartite", "interaction", "cointeraction", "knn", "knn_mix"} <= kinds
    knn = [g for g in first["graphs"] if g["spec"]["kind"] == "knn"]
    assert all(g["degree_min"] == g["degree_max"] == 5 for g in knn)
    co = [g for g in first["graphs"] if g["spec"]["kind"] == "cointeraction"]
    assert all(g["degree_max"] <= 20 for g in co)
    assert not any(g["cached"] for g in first["graphs"])
    assert "kNN mix (FREEDOM)" in capsys.readouterr().out
    assert main(args) == 0
    second = json.loads(out.read_text())
    assert all(g["cached"] for g in second["graphs"])
    assert [g["hash"] for g in second["graphs"]] == [g["hash"] for g in first["graphs"]]
    assert main(["build-graphs", "--dataset", "no-such-set"]) == 2
