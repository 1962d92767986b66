"""Item-feature tables are read only for the modalities a model uses: a LightGCN run never reads the
image table of its dataset (it costs 0.38 GB at Clothing scale), a FREEDOM run reads both, and a
bad table is still named (with its file) when, and only when, a model reads it."""
import numpy as np
import pytest
import torch

from graphrec.config import load_config
from graphrec.data.features import ItemFeatures, LazyTable
from graphrec.data.interactions import IdMap
from graphrec.datasets import load
from graphrec.errors import DataError
from graphrec.experiment import prepare

TINY = {"n_users": 80, "n_items": 40, "n_interactions": 900, "seed": 2}


def _counting(ds):
    """Wrap each lazy table of ``ds`` so that reading it is counted."""
    reads = []
    for m, t in list(ds.features.features.items()):
        assert isinstance(t, LazyTable)
        ds.features.features[m] = LazyTable(t.shape, lambda t=t, m=m: (reads.append(m), t.load())[1])
    return reads


@pytest.mark.parametrize("model,want", [("lightgcn", []), ("vbpr", ["image", "text"])])
def test_only_the_modalities_a_model_uses_are_read(model, want):
    ds = load("synthetic", **TINY)
    assert ds.features.dims() == {"image": 128, "text": 64}  # known without reading
    reads = _counting(ds)
    cfg = load_config(model=model, dataset="synthetic", overrides={"data": {"dataset_args": TINY}})
    p = prepare(cfg, dataset=ds)
    assert sorted(reads) == want
    if want:  # the values the model holds are the generator's, as an eager read gives
        eager = load("synthetic", **TINY).features
        assert torch.equal(p.model.feat_image, eager["image"]) and torch.equal(p.model.feat_text, eager["text"])


def test_a_bad_lazy_table_is_named_when_it_is_read():
    imap = IdMap(["a", "b", "c"])
    bad = np.ones((3, 2), dtype=np.float32)
    bad[1, 0] = np.nan
    f = ItemFeatures({"good": torch.ones(3, 2), "bad": LazyTable((3, 2), lambda: bad)}, imap,
                     {"bad": "bad_feat.npy"})
    assert torch.equal(f.select(["good"])["good"], torch.ones(3, 2))  # unused: never read
    with pytest.raises(DataError, match=r"bad_feat.npy: modality 'bad' has NaN/inf in 1 row.*original ids \['b'\]"):
        f.select(["bad"])
    with pytest.raises(DataError, match=r"bad_feat.npy: modality 'bad' has shape \(4, 2\), expected \(3, d >= 1\)"):
        ItemFeatures({"bad": LazyTable((4, 2), lambda: bad)}, imap, {"bad": "bad_feat.npy"})


def test_an_mmrec_feature_file_is_read_when_a_model_uses_it(tmp_path):
    rows = ["userID\titemID\tx_label"] + [f"{u}\t{i}\t{0 if k < 4 else k - 3}"
                                          for u in range(6) for k, i in enumerate(range(u, u + 6))]
    (tmp_path / "d.inter").write_text("\n".join(r for r in rows) + "\n")
    n = 11
    img = np.random.default_rng(0).normal(size=(n, 4)).astype(np.float32)
    img[3] = np.inf
    np.save(tmp_path / "image_feat.npy", img)
    np.save(tmp_path / "text_feat.npy", np.ones((n, 3), dtype=np.float32))
    ds = load(f"mmrec:{tmp_path}")  # loads: the bad image rows are not read yet
    assert ds.features.dims() == {"image": 4, "text": 3}
    assert torch.equal(ds.features.select(["text"])["text"], torch.ones(n, 3))
    with pytest.raises(DataError, match=r"image_feat.npy: modality 'image' has NaN/inf in 1 row"):
        ds.features.select(["image"])
