"""split=kfold (PAMD's per-user rotation): parts disjoint and complete, every row in test once and
in valid once over the folds, per-user sizes within 1 of n/k, seeded, bad settings one line."""
import numpy as np
import pytest
import torch

from graphrec.config import load_config
from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.split import kfold_labels, make_split
from graphrec.errors import ConfigError


def _log(seed=0):
    g = np.random.default_rng(seed)
    sizes = g.integers(5, 21, size=50)
    user = np.repeat(np.arange(50), sizes)
    item = np.concatenate([g.choice(200, size=n, replace=False) for n in sizes])
    return Interactions(torch.from_numpy(user), torch.from_numpy(item), IdMap(np.arange(50)),
                        IdMap(np.arange(200))), sizes


def test_each_row_is_test_once_and_valid_once_over_the_folds():
    inter, sizes = _log()
    labs = np.stack([kfold_labels(inter, 5, f, seed=3) for f in range(5)])
    assert ((labs == 2).sum(0) == 1).all() and ((labs == 1).sum(0) == 1).all()
    user = inter.user.numpy()
    for lab in labs:
        for part in (1, 2):  # every user (>= 5 rows) has a valid and a test row, within 1 of n / 5
            per_user = np.bincount(user[lab == part], minlength=50)
            assert (per_user >= 1).all() and (np.abs(per_user - sizes / 5) < 1).all()
    split = make_split(inter, "kfold", seed=3, fold=2)
    keys = lambda x: set((x.user * 200 + x.item).tolist())  # noqa: E731
    tr, va, te = keys(split.train), keys(split.valid), keys(split.test)
    assert not (tr & va or tr & te or va & te) and len(tr | va | te) == len(inter)
    assert split.params == {"folds": 5, "fold": 2}


def test_the_seed_fixes_the_folds():
    inter, _ = _log()
    assert np.array_equal(kfold_labels(inter, 5, 1, seed=7), kfold_labels(inter, 5, 1, seed=7))
    assert not np.array_equal(kfold_labels(inter, 5, 1, seed=7), kfold_labels(inter, 5, 1, seed=8))


def test_bad_fold_settings_are_one_line_errors():
    inter, _ = _log()
    with pytest.raises(ConfigError, match=r"data.fold must be in \[0, 5\)"):
        kfold_labels(inter, 5, 5)
    with pytest.raises(ConfigError, match="data.folds must be at least 3"):
        kfold_labels(inter, 2, 0)
    with pytest.raises(ConfigError, match="data.folds"):
        load_config(model="mf", dataset="synthetic", overrides={"data": {"split": "kfold", "folds": 2}})


def test_a_run_trains_on_a_fold(tmp_path):
    from graphrec.experiment import run
    r = run(model="mf", dataset="synthetic", overrides={
        "data": {"split": "kfold", "fold": 1, "dataset_args": {"n_users": 120, "n_items": 80, "n_interactions": 2400}},
        "train": {"progress": False}, "threads": 1}, epochs=1, seed=0, quiet=True, out=str(tmp_path / "r"))
    assert r["test"]["recall@20"] >= 0
