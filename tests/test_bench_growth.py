"""benchmarks/sampled_training.py's growth figures: growth per 4x the pairs and the log-log slope
against hand-computed records, and the cost table's rows and columns from result files."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def st(monkeypatch):
    monkeypatch.syspath_prepend(str(ROOT / "benchmarks"))  # its tables import scale_out
    spec = importlib.util.spec_from_file_location("sampled_training", ROOT / "benchmarks" / "sampled_training.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _rec(scale: float, s_per_epoch: float, steps: int, batch: int = 64) -> dict:
    return {"scale": scale, "n_train": int(1000 * scale), "n_users": int(60 * scale), "n_items": int(40 * scale),
            "train_cpu_s_per_epoch": s_per_epoch, "full_steps_per_epoch": steps, "batch_size": batch,
            "label": "test"}


def test_growth_per_4x_and_slope_match_hand_computed_powers(st):
    for power in (1.0, 1.5, 2.0):
        recs = {sc: _rec(sc, 3.0 * sc ** power, 10) for sc in (0.25, 0.5, 1.0, 4.0)}
        assert st.slope(recs) == pytest.approx(power)
        assert st.per4(recs[0.25], recs[1.0]) == pytest.approx(4 ** power)
        assert st.per4(recs[0.5], recs[1.0]) == pytest.approx(4 ** power)  # a 2x step, normalised to 4x
        assert st.per4(recs[1.0], recs[4.0]) == pytest.approx(4 ** power)


def test_cost_table_has_a_row_per_scale_and_a_column_group_per_series(st, tmp_path):
    def write(name, recs):
        (tmp_path / name).write_text(json.dumps({"records": recs}))
    write("scale_exact_growth.json", [_rec(0.25, 1.0, 5, 2048), _rec(1.0, 16.0, 20, 2048)])
    write("scale_sampled_growth_b64.json", [_rec(sc, 10.0 * sc, int(40 * sc)) for sc in (0.25, 0.5, 1.0)])
    write("scale_sampled_growth_b512.json", [_rec(sc, 20.0 * sc ** 1.5, int(5 * sc) or 1, 512) for sc in (0.25, 1.0)])
    write("scale_sampled_subgraphs.json", [{"batch_size": 64, "scale": 0.25, "sub_nodes": 5.0}])
    rows = st.cost_table(st.load_costs(str(tmp_path)))
    assert len(rows) == 2 + 3 and all(r.count("|") == rows[0].count("|") for r in rows)
    cells = {r.split("|")[1].strip(): [c.strip() for c in r.split("|")[2:-1]] for r in rows[2:]}
    # by scale: pairs, nodes | exact ms, s, growth | 64: subgraph, ms, s, growth | 512: subgraph, ms, s, growth
    assert cells["0.25"][5] == "5 (20%)" and cells["0.25"][4] == "-" and cells["0.25"][6] == "250.0"
    assert cells["0.5"][2:5] == ["-", "-", "-"] and cells["0.5"][8] == "4.00x" and cells["0.5"][9:] == ["-"] * 4
    assert cells["1"][4] == "16.00x" and cells["1"][8] == "4.00x" and cells["1"][12] == "8.00x"
