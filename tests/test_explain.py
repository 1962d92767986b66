"""`graphrec explain RUN_DIR --user ID [--target ITEM]` on a tiny Demure run: the table names every
history item read, the JSON is the model's explanation in original ids, the PNG is a real image of
items x modalities, and bad input is one line naming the culprit."""
import json

import pytest

from graphrec.cli import main

SMALL = ["--set", "data.dataset_args={n_users: 120, n_items: 50, n_interactions: 1200, seed: 1}",
         "--set", "threads=1", "--set", "data.split=loo", "--set", "model.max_len=8",
         "--set", "model.embedding_dim=16", "--set", "model.min_prefix=1", "--set", "train.batch_size=64",
         "--set", "eval.protocol=next_item_comirec"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("explain") / "demure"
    rc = main(["train", "--model", "demure", "--dataset", "synthetic", "--epochs", "1", "--seed", "0",
               "--quiet", "--out", str(out), *SMALL])
    assert rc == 0
    return out


def _user_and_history(run_dir):
    from graphrec.data.sequences import Sequences
    from graphrec.data.split import Split
    sp = Split.load(str(run_dir))
    seqs = Sequences.from_interactions(sp.train.concat(sp.valid).concat(sp.test))
    u = 3
    return sp, str(sp.user_map.ids[u]), [str(x) for x in sp.item_map.to_original(seqs[u][-8:])]


def test_the_run_reports_comirec_metrics_beside_the_standard_ones(run_dir):
    r = json.loads((run_dir / "result.json").read_text())
    for k in (10, 20):
        assert {f"recall@{k}", f"ndcg@{k}", f"comirec_recall@{k}", f"comirec_ndcg@{k}"} <= set(r["test"])
        # one target per user under leave-one-out: ComiRec's recall is the standard recall
        assert r["test"][f"comirec_recall@{k}"] == pytest.approx(r["test"][f"recall@{k}"])
        # ... and its NDCG discounts by the target's index in the target list (0): it is the hit rate
        assert r["test"][f"comirec_ndcg@{k}"] == pytest.approx(r["test"][f"hit@{k}"])


def test_table_json_and_png(run_dir, tmp_path, capsys):
    _, user, hist = _user_and_history(run_dir)
    png = tmp_path / "e.png"
    assert main(["explain", str(run_dir), "--user", user, "--png", str(png)]) == 0
    out = capsys.readouterr().out
    assert f"user {user}" in out and "modality profile" in out
    rows = [line.split() for line in out.splitlines() if line[:3].strip().isdigit()]
    assert [r[1] for r in rows] == hist               # every history item read, oldest first
    head = png.read_bytes()[:8]
    assert head == b"\x89PNG\r\n\x1a\n"
    import matplotlib.image
    img = matplotlib.image.imread(str(png))
    assert img.shape[0] > 100 and img.shape[1] > 100

    assert main(["explain", str(run_dir), "--user", user, "--target", hist[0], "--json", "--png", "none",
                 "--score-mode", "grad_mean"]) == 0
    ex = json.loads(capsys.readouterr().out)
    assert str(ex["target"]) == hist[0] and ex["target_given"] and ex["score_mode"] == "grad_mean"
    assert [str(it["item"]) for it in ex["items"]] == hist
    assert set(ex["modality_profile"]) == {"image", "text"}
    n_poi = sum(it["poi"] for it in ex["items"])
    assert n_poi == int(len(hist) * 0.4 + 1e-9)        # ⌊L·γ_i⌋ point-of-interests
    for it in ex["items"]:
        assert it["dominant_modality"] in ("image", "text") and not (it["poi"] and it["noise"])


def _errors(capsys) -> list[str]:
    """stderr lines but the data loader's log lines."""
    return [x for x in capsys.readouterr().err.strip().splitlines() if not x.startswith("[graphrec]")]


def test_unknown_user_and_item_are_one_line_errors(run_dir, capsys):
    assert main(["explain", str(run_dir), "--user", "no-such-user", "--png", "none"]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "no-such-user" in err[0] and "--user" in err[0]
    _, user, _ = _user_and_history(run_dir)
    assert main(["explain", str(run_dir), "--user", user, "--target", "nope-item", "--png", "none"]) == 2
    err = _errors(capsys)
    assert len(err) == 1 and "nope-item" in err[0]
