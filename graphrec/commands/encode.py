"""`graphrec encode text|image`: raw item content -> FILE.npy (+ FILE.ids.txt, one id per row)."""
from __future__ import annotations

import argparse
import io
import os
import re
from collections import Counter
from pathlib import Path

import numpy as np

from graphrec.data.encode.offline import EncodeExtraMissing
from graphrec.errors import MissingExtraError, UnsafeFileError
from graphrec.utils import atomic_write_bytes, log


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("encode", help="encode item text / images into feature matrices (offline)",
                              description="Encode raw item content with offline encoders. Writes "
                                          "OUT.npy (float32, one row per item) and OUT.ids.txt "
                                          "(the item id of each row, in order).")
    sub = p.add_subparsers(dest="modality", metavar="MODALITY")
    sub.required = True

    t = sub.add_parser("text", help="sentence embeddings of item text columns (all-MiniLM-L6-v2)")
    t.add_argument("--items", required=True, help="items table (.csv, .tsv, .parquet) with a header")
    t.add_argument("--id-col", required=True, help="column holding the item id")
    t.add_argument("--text-cols", required=True, help="comma-separated columns joined into one text")
    t.add_argument("--sep", default=". ", help="separator between the joined columns (default '. ')")
    t.add_argument("--model", default=None, help="local sentence-transformers model directory "
                                                 "(default: the packaged all-MiniLM-L6-v2)")
    t.add_argument("--allow-empty", action="store_true",
                   help="embed items with empty text as the empty string (logged) instead of failing")
    t.add_argument("--batch-size", type=int, default=32)
    _common(t)
    t.set_defaults(func=run_text)

    h = sub.add_parser("text-hidden", help="token states of the frozen bottom of MiniLM, for PMMRec's cached "
                                            "top blocks (OUT.npy [n, T*384] and OUT_mask.npy [n, T])")
    h.add_argument("--items", required=True, help="items table (.csv, .tsv, .parquet) with a header")
    h.add_argument("--id-col", required=True, help="column holding the item id")
    h.add_argument("--text-cols", required=True, help="comma-separated columns joined into one text")
    h.add_argument("--sep", default=". ", help="separator between the joined columns (default '. ')")
    h.add_argument("--top-layers", type=int, default=2,
                   help="blocks left to train in the model; the states after the others are written (default 2)")
    h.add_argument("--max-tokens", type=int, default=32, help="tokens per item, padded and truncated (default 32)")
    h.add_argument("--model", default=None, help="local BERT-type backbone directory (default: the packaged MiniLM)")
    h.add_argument("--batch-size", type=int, default=64)
    _common(h)
    h.set_defaults(func=run_text_hidden)

    i = sub.add_parser("image", help="EfficientNet-Lite0 features of item images")
    i.add_argument("--images", required=True, help="directory of image files")
    i.add_argument("--id-pattern", default="{id}.jpg",
                   help="file name of an item's image relative to --images (default '{id}.jpg')")
    src = i.add_mutually_exclusive_group()
    src.add_argument("--ids", help="file with one item id per line (e.g. the .ids.txt of a text run); "
                                   "default: every file in --images matching --id-pattern")
    src.add_argument("--items", help="items table (.csv, .tsv, .parquet); ids from --id-col")
    i.add_argument("--id-col", help="id column of --items")
    i.add_argument("--missing", choices=("error", "mean", "zeros"), default="error",
                   help="items whose image is missing or unreadable: fail (default), or fill with "
                        "the mean of the others / zeros (logged with the count)")
    i.add_argument("--batch-size", type=int, default=64)
    _common(i)
    i.set_defaults(func=run_image)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", required=True, help="output .npy file; ids go to <out>.ids.txt")
    p.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: GPU when present)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def ids_path(out: str | Path) -> Path:
    from graphrec.data.vectors import ids_file
    return Path(ids_file(str(out)))


def write_features(out: str | Path, feats: np.ndarray, ids: list[str]) -> None:
    """OUT.npy (float32) and OUT.ids.txt, both written atomically."""
    out = Path(out)
    if out.suffix != ".npy":
        raise ValueError(f"--out {out}: expected a .npy file name")
    bad = [x for x in ids if "\n" in x or "\r" in x]
    if bad:
        raise ValueError(f"item id {bad[0]!r} contains a line break; cannot write {ids_path(out)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.save(buf, np.ascontiguousarray(feats, dtype=np.float32))
    atomic_write_bytes(str(out), buf.getvalue())
    atomic_write_bytes(str(ids_path(out)), ("".join(f"{x}\n" for x in ids)).encode())
    log.info("encode: wrote %s %s and %s", out, tuple(feats.shape), ids_path(out))


def read_ids(path: str | Path) -> list[str]:
    """One id per line (`graphrec.data.vectors.read_ids_file`: a blank or repeated id is an error)."""
    from graphrec.data.vectors import read_ids_file
    return read_ids_file(str(path))


def ids_from_dir(images: Path, pattern: str) -> list[str]:
    """Ids of the files in ``images`` whose names match ``pattern`` (numeric sort when all ints)."""
    if pattern.count("{id}") != 1:
        raise ValueError(f"--id-pattern {pattern!r} must contain '{{id}}' exactly once")
    head, tail = pattern.split("{id}")
    rx = re.compile(re.escape(head) + r"(.+?)" + re.escape(tail) + r"\Z")
    found = []
    for root, _, files in os.walk(images):
        for f in files:
            rel = os.path.relpath(os.path.join(root, f), images).replace(os.sep, "/")
            m = rx.match(rel)
            if m:
                found.append(m.group(1))
    if not found:
        raise ValueError(f"{images}: no file matches --id-pattern {pattern!r}")
    numeric = all(re.fullmatch(r"-?\d+", x) for x in found)
    return sorted(found, key=int) if numeric else sorted(found)


def _extra_missing(e: EncodeExtraMissing) -> int:
    raise MissingExtraError(str(e)) from None


def run_text(args: argparse.Namespace) -> int:
    try:
        return _run_text(args)
    except EncodeExtraMissing as e:  # the encode extra is not installed: say how to install it
        return _extra_missing(e)


def run_text_hidden(args: argparse.Namespace) -> int:
    """OUT.npy + OUT.ids.txt (states) and OUT_mask.npy + OUT_mask.ids.txt (attention mask): read
    them as ``data.extra_features={text_hidden: OUT.npy, text_hidden_mask: OUT_mask.npy}``."""
    try:
        from graphrec.data.encode import item_texts
        from graphrec.data.encode.hidden import bottom_states, flat_features

        cols = [c.strip() for c in args.text_cols.split(",") if c.strip()]
        ids, texts = item_texts(args.items, args.id_col, cols, sep=args.sep)
        states, mask = bottom_states(texts, top_layers=args.top_layers, max_tokens=args.max_tokens,
                                     backbone=args.model, batch_size=args.batch_size, device=args.device)
    except EncodeExtraMissing as e:
        return _extra_missing(e)
    flat = flat_features(states, mask)
    out = Path(args.out)
    write_features(out, flat["text_hidden"].numpy(), ids)
    write_features(out.with_name(out.stem + "_mask.npy"), flat["text_hidden_mask"].numpy(), ids)
    return 0


def run_image(args: argparse.Namespace) -> int:
    try:
        return _run_image(args)
    except EncodeExtraMissing as e:
        return _extra_missing(e)


def _run_text(args: argparse.Namespace) -> int:
    from graphrec.data.encode import encode_text, item_texts

    cols = [c.strip() for c in args.text_cols.split(",") if c.strip()]
    ids, texts = item_texts(args.items, args.id_col, cols, sep=args.sep)
    feats = encode_text(texts, model=args.model, batch_size=args.batch_size, device=args.device,
                        progress=not args.no_progress, cache=not args.no_cache,
                        empty="encode" if args.allow_empty else "error", ids=ids)
    write_features(args.out, feats.numpy(), ids)
    return 0


def _run_image(args: argparse.Namespace) -> int:
    from graphrec.data.encode import encode_images, read_columns

    images = Path(args.images)
    if not images.is_dir():
        raise FileNotFoundError(f"--images {images}: not a directory")
    if args.items:
        if not args.id_col:
            raise ValueError("--items needs --id-col")
        ids = [x if x is not None else "" for x in read_columns(args.items, [args.id_col])[args.id_col]]
        blank = [i for i, x in enumerate(ids) if not x]
        if blank:
            raise ValueError(f"{args.items}: empty id in column {args.id_col!r} at data row(s) {blank[:10]}")
        dup = {x for x, c in Counter(ids).items() if c > 1}
        if dup:
            raise ValueError(f"{args.items}: id(s) {sorted(dup)[:10]} appear more than once in {args.id_col!r}")
    elif args.ids:
        ids = read_ids(args.ids)
    else:
        ids = ids_from_dir(images, args.id_pattern)
    if args.id_pattern.count("{id}") != 1:
        raise ValueError(f"--id-pattern {args.id_pattern!r} must contain '{{id}}' exactly once")
    paths = [str(images / args.id_pattern.replace("{id}", x)) for x in ids]
    root = os.path.realpath(images)
    for x, p in zip(ids, paths):  # ids name files under --images (subfolders allowed), never outside it
        if os.path.commonpath([root, os.path.realpath(p)]) != root:
            raise UnsafeFileError(f"item id {x!r}: its image path {p} leaves --images {images}")
    feats = encode_images(paths, batch_size=args.batch_size, device=args.device, missing=args.missing,
                          progress=not args.no_progress, cache=not args.no_cache, ids=ids)
    write_features(args.out, feats.numpy(), ids)
    return 0
