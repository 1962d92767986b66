"""benchmarks/compare_mmrec.py without MMRec: the copy, the four edits, the log parser, the export."""
from __future__ import annotations

import importlib.util
import os
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cm():
    spec = importlib.util.spec_from_file_location("compare_mmrec", ROOT / "benchmarks" / "compare_mmrec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _fake_checkout(root: Path) -> None:
    """A tiny tree with the patterns the edits target (written for this test, not MMRec's code)."""
    (root / "src" / "models").mkdir(parents=True)
    (root / "src" / "utils").mkdir(parents=True)
    (root / "src" / "configs" / "dataset").mkdir(parents=True)
    (root / ".git").mkdir()
    (root / ".git" / "HEAD").write_text("ref: x\n")
    (root / "data" / "big").mkdir(parents=True)
    (root / "data" / "big" / "image_feat.npy").write_bytes(b"x" * 10)
    (root / "src" / "models" / "gcn.py").write_text(textwrap.dedent("""\
        import scipy.sparse as sp
        import numpy as np
        import torch
        def adj(n, d):
            A = sp.dok_matrix((n, n), dtype=np.float32)
            A._update(d)
            return A
        def cached(path):
            return torch.load(path)
        def cached2(path):
            return torch.load(path, weights_only=False)
        class M:
            def build(self, n):
                self.e = nn.Parameter(
                    nn.init.xavier_normal_(torch.tensor(np.random.randn(n, 2)))).to(self.device)
        """))
    (root / "src" / "utils" / "metrics.py").write_text(textwrap.dedent("""\
        import numpy as np
        def r(x):
            a = np.asarray(x, dtype=np.float)
            b = np.asarray(x, dtype=np.float32)
            return a, b
        """))
    (root / "src" / "utils" / "dataset.py").write_text(textwrap.dedent("""\
        import os
        import numpy as np
        from utils.data_utils import (ImageResize, ImagePad,
                                      image_to_tensor)
        import lmdb


        class RecDataset:
            pass
        """))
    (root / "src" / "utils" / "configurator.py").write_text("cur = os.path.join(cur, 'configs')\n")
    (root / "src" / "models" / "Fancy.py").write_text("class Fancy:\n    pass\n")  # SAND's models/SAND.py


def test_copy_and_patch_leave_the_original_untouched(cm, tmp_path):
    orig = tmp_path / "MMRec"
    _fake_checkout(orig)
    before = {p: p.read_bytes() for p in orig.rglob("*") if p.is_file()}
    dst = cm.copy_tree(str(orig), str(tmp_path / "work" / "mmrec"))
    changes = cm.patch_tree(dst)
    assert {p: p.read_bytes() for p in orig.rglob("*") if p.is_file()} == before  # never modified
    d = Path(dst)
    assert not (d / ".git").exists() and not (d / "data").exists()  # code only, no data, no history
    gcn = (d / "src" / "models" / "gcn.py").read_text()
    assert "A._dict.update(d)" in gcn and "._update(" not in gcn
    assert "torch.load(path, weights_only=False)" in gcn
    assert gcn.count("weights_only=False") == 2  # the already-explicit call is left alone
    assert "np.random.randn(n, 2)))).to(self.device).clone()" in gcn  # CPU gets CUDA's plain tensor
    met = (d / "src" / "utils" / "metrics.py").read_text()
    assert "dtype=float)" in met and "dtype=np.float32" in met
    ds = (d / "src" / "utils" / "dataset.py").read_text()
    ns: dict = {}
    exec(compile(ds, "dataset.py", "exec"), ns)  # imports guarded: runs without data_utils and lmdb
    assert "RecDataset" in ns
    alias = d / "src" / "models" / "fancy.py"  # get_model imports models.<lower>; Linux is case-sensitive
    assert alias.exists() and not (orig / "src" / "models" / "fancy.py").exists()
    import sys
    sys.path.insert(0, str(d / "src"))
    try:
        import importlib
        assert importlib.import_module("models.fancy").Fancy is importlib.import_module("models.Fancy").Fancy
    finally:
        sys.path.remove(str(d / "src"))
        for k in [k for k in sys.modules if k == "models" or k.startswith("models.")]:
            del sys.modules[k]
    assert len(changes) == 6
    assert cm.patch_tree(dst)[:1] == [c for c in cm.patch_tree(dst)][:1]  # idempotent enough to re-run


def test_patch_is_idempotent(cm, tmp_path):
    orig = tmp_path / "MMRec"
    _fake_checkout(orig)
    dst = cm.copy_tree(str(orig), str(tmp_path / "copy"))
    cm.patch_tree(dst)
    snap = {p: p.read_bytes() for p in Path(dst).rglob("*.py")}
    second = cm.patch_tree(dst)
    # a second pass may only re-guard nothing and re-edit nothing except the already-guarded imports
    assert all("guarded" in c for c in second) or not second
    for p, b in snap.items():
        if p.name != "dataset.py":
            assert p.read_bytes() == b


def test_config_cwd_and_dataset_yaml(cm, tmp_path):
    root = tmp_path / "m"
    _fake_checkout(root)
    assert cm.config_dir_cwd(str(root)) == str(root / "src")
    y = cm.write_dataset_yaml(str(root), "synthetic_clothing", ["image", "text"])
    text = Path(y).read_text()
    assert Path(y).parent == root / "src" / "configs" / "dataset"
    assert "inter_file_name: 'synthetic_clothing.inter'" in text and "vision_feature_file" in text
    (root / "src" / "utils" / "configurator.py").write_text("cur = os.path.join(cur, 'src/configs')\n")
    assert cm.config_dir_cwd(str(root)) == str(root)


def test_parse_mmrec_log(cm):
    log = ("Thu 01 INFO epoch 0 training [time: 17.52s, train loss: 120.1]\n"
           "Thu 01 INFO epoch 0 evaluating [time: 8.31s, valid_score: 0.010000]\n"
           "Thu 01 INFO epoch 1 training [time: 16.04s, train loss: 99.0]\n"
           "Thu 01 INFO epoch 1 evaluating [time: 8.02s, valid_score: 0.020000]\n")
    assert cm.parse_mmrec_log(log) == {"train_s": [17.52, 16.04], "eval_s": [8.31, 8.02]}


def test_export_reads_back_identically(cm, tmp_path):
    d, name, mods = cm.export_dataset("synthetic", 0.1, str(tmp_path / "data"))
    assert sorted(mods) == ["image", "text"]
    inter = Path(d) / f"{name}.inter"
    header = inter.read_text().splitlines()[0].split("\t")
    assert header[:2] == ["userID", "itemID"] and header[-1] == "x_label"
    from graphrec.datasets import load
    back = load(f"mmrec:{d}")
    rows = inter.read_text().splitlines()[1:]
    labels = np.array([int(r.split("\t")[-1]) for r in rows])
    assert len(back.split.train) == int((labels == 0).sum())
    assert len(back.split.valid) == int((labels == 1).sum()) and len(back.split.test) == int((labels == 2).sum())
    assert os.path.exists(Path(d) / "image_feat.npy")


def test_run_mmrec_on_a_fake_quick_start(cm, tmp_path):
    """The runner drives `quick_start` from the right directory with one grid point and reads its log."""
    root = tmp_path / "fake"
    _fake_checkout(root)
    (root / "src" / "configs" / "model").mkdir(parents=True)
    (root / "src" / "configs" / "model" / "LightGCN.yaml").write_text(
        "n_layers: [1, 2, 3]\nreg_weight: [0.01, 0.0001]\nhyper_parameters: ['n_layers', 'reg_weight']\n")
    (root / "src" / "utils" / "quick_start.py").write_text(textwrap.dedent("""\
        import json, os
        def quick_start(model, dataset, config_dict, save_model=True):
            assert os.path.isdir(os.path.join(config_dict['data_path'], dataset))
            with open(os.path.join(config_dict['data_path'], 'seen.json'), 'w') as f:
                json.dump(config_dict, f)
            for e in range(config_dict['epochs']):
                print('epoch %d training [time: %.2fs, train loss: 1.0]' % (e, 1.5 + e))
                print('epoch %d evaluating [time: %.2fs, valid_score: 0.1]' % (e, 0.5))
        """))
    data = tmp_path / "data" / "toy"
    data.mkdir(parents=True)
    (data / "mm_adj_10.pt").write_bytes(b"stale cache")
    r = cm.run_mmrec(str(root), "LightGCN", "toy", str(tmp_path / "data"), 3, {"n_layers": 2}, threads=1)
    assert r["train_s_epochs"] == [1.5, 2.5, 3.5] and r["train_s"] == 3.0  # median after the warm-up epoch
    assert r["eval_s"] == 0.5 and r["peak_rss_gb"] > 0
    assert not (data / "mm_adj_10.pt").exists()  # a cached kNN graph is removed so its build is timed
    seen = __import__("json").loads((tmp_path / "data" / "seen.json").read_text())
    # one grid point: our value where given, else the yaml's first; only the seed is iterated
    assert seen["n_layers"] == 2 and seen["reg_weight"] == 0.01 and seen["hyper_parameters"] == ["seed"]
    assert seen["use_gpu"] is False and seen["epochs"] == 3 and seen["seed"] == [999]


def test_run_mmrec_max_steps_cuts_the_training_loader(cm, tmp_path):
    """``max_steps``: the wrapper caps the training loader's end at max_steps batches (its
    ``pr_end``), so a logged epoch time is the time of those steps; evaluation loaders are untouched."""
    root = tmp_path / "fake"
    _fake_checkout(root)
    (root / "src" / "utils" / "dataloader.py").write_text(textwrap.dedent("""\
        import math
        class AbstractDataLoader:
            def __init__(self, n, batch_size):
                self.n, self.step = n, batch_size
            def __len__(self):
                return math.ceil(self.pr_end / self.step)
        class TrainDataLoader(AbstractDataLoader):
            @property
            def pr_end(self):
                return self.n
        class EvalDataLoader(AbstractDataLoader):
            @property
            def pr_end(self):
                return self.n
        """))
    (root / "src" / "utils" / "quick_start.py").write_text(textwrap.dedent("""\
        from utils.dataloader import TrainDataLoader, EvalDataLoader
        def quick_start(model, dataset, config_dict, save_model=True):
            assert "graphrec_max_steps" not in config_dict  # consumed by the wrapper
            for e in range(config_dict['epochs']):
                n = len(TrainDataLoader(1000, 64))
                print('epoch %d training [time: %.2fs, train loss: 1.0]' % (e, 0.1 * n))
                print('epoch %d evaluating [time: %.2fs, valid_score: 0.1]' % (e, 0.1 * len(EvalDataLoader(1000, 64))))
        """))
    (tmp_path / "data" / "toy").mkdir(parents=True)
    full = cm.run_mmrec(str(root), "LightGCN", "toy", str(tmp_path / "data"), 2, {}, threads=1)
    cut = cm.run_mmrec(str(root), "LightGCN", "toy", str(tmp_path / "data"), 2, {}, threads=1, max_steps=3)
    assert full["train_s_epochs"] == [1.6, 1.6]  # 16 batches of 64 out of 1,000
    assert cut["train_s_epochs"] == [0.3, 0.3] and cut["max_steps"] == 3
    assert cut["eval_s_runs"] == full["eval_s_runs"] == [1.6, 1.6]


def test_user_graph_dict_matches_brute_force_co_counts(cm, tmp_path):
    import numpy as np
    import torch

    from graph_fixtures import random_interactions
    train = random_interactions(n_users=15, n_items=10, n_rows=60)
    cm.write_user_graph_dict(train, str(tmp_path / "ug.npy"), topk=4)
    got = np.load(tmp_path / "ug.npy", allow_pickle=True).item()
    m = torch.zeros(train.n_users, train.n_items)
    m[train.user, train.item] = 1
    co = (m @ m.T).fill_diagonal_(0)
    assert sorted(got) == list(range(train.n_users))
    for u, (ids, counts) in got.items():
        assert counts == sorted(counts, reverse=True) and len(ids) == min(4, int((co[u] > 0).sum()))
        assert [float(co[u, j]) for j in ids] == counts
        if ids:  # the top-k hold the largest co-counts
            assert min(counts) >= float(torch.topk(co[u], len(ids)).values.min())


def test_accuracy_mmrec_parses_per_seed_results():
    """MMRec's seed grid log: one record per seed with its best epoch and final valid/test lines
    (the per-epoch "test result:" lines, whose metrics follow on the next line, are not taken)."""
    spec = importlib.util.spec_from_file_location("accuracy_mmrec", ROOT / "benchmarks" / "accuracy_mmrec.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    log = textwrap.dedent("""\
        INFO =========1/2: Parameters:['seed']=(999,)=======
        INFO epoch 0 training [time: 1.20s, train loss: 0.6]
        INFO test result: 
        recall@10: 0.1000    recall@20: 0.2000    ndcg@10: 0.1100    ndcg@20: 0.1300    
        INFO +++++Finished training, best eval result in epoch 172
        INFO best valid result: recall@10: 0.2254    recall@20: 0.3483    ndcg@10: 0.2385    ndcg@20: 0.2726    
        INFO test result: recall@10: 0.2240    recall@20: 0.3436    ndcg@10: 0.2564    ndcg@20: 0.2865    
        INFO ████Current BEST████:
        Parameters: ['seed']=(999,),
        INFO =========2/2: Parameters:['seed']=(0,)=======
        INFO +++++Finished training, best eval result in epoch 150
        INFO best valid result: recall@10: 0.2200    recall@20: 0.3400    ndcg@10: 0.2300    ndcg@20: 0.2700    
        INFO test result: recall@10: 0.2100    recall@20: 0.3300    ndcg@10: 0.2500    ndcg@20: 0.2800    
        """)
    recs = mod.parse_results(log)
    assert [r["seed"] for r in recs] == [999, 0] and [r["best_epoch"] for r in recs] == [172, 150]
    assert recs[0]["valid"]["recall@20"] == 0.3483 and recs[0]["test"]["ndcg@20"] == 0.2865
    s = mod.summary(recs)
    assert s["test_recall@20"] == pytest.approx((0.3436 + 0.33) / 2)
    assert s["test_recall@20_std"] == pytest.approx(np.std([0.3436, 0.33], ddof=1))


def test_report_keeps_one_table_per_precision(tmp_path):
    """A compare_mmrec.py run with float32 and bf16 rows of one model is reported as two tables, each
    with its own speed-up against the one MMRec run (never a median across precisions)."""
    import json
    from graphrec.bench.report import _compare_section
    mm = {"train_s": [1000.0, 1000.0], "eval_s": [5.0, 5.0], "rss_gb": [8.0, 8.0]}
    rows = [{"dataset": "synthetic-clothing", "model": "sand-a", "precision": p, "mmrec": mm,
             "graphrec": {"model": "sand-a", "dataset": "synthetic-clothing", "scale": 1.0, "train_s_per_epoch": t,
                          "eval_s": 2.0, "peak_rss_mb": 2048.0, "precision": p}}
            for p, t in (("float32", 200.0), ("bf16", 100.0))]
    (tmp_path / "compare_mmrec_x.json").write_text(json.dumps({"label": "test", "rows": rows}))
    text = _compare_section(str(tmp_path), [], str(tmp_path))
    f32, bf16 = text.split("graphrec float32:")[1].split("graphrec bf16:")
    assert "| 5.0x |" in f32 and "| 10.0x |" in bf16 and "7.5x" not in text
