"""The graph cache: hits reuse, stale and corrupt entries are detected and rebuilt."""
from __future__ import annotations

import logging
import os

import torch

import graphrec.graphs as G
from graph_fixtures import random_interactions


def counting_builder(train, calls):
    def build():
        calls.append(1)
        return G.bipartite_adjacency(train)
    return build


def test_hit_miss_and_key_sensitivity(tmp_path):
    cache = G.GraphCache(str(tmp_path))
    train = random_interactions()
    calls = []
    key = {"kind": "bipartite", "train": train.pairs_hash(), "norm": "sym"}
    g1 = cache.get_or_build(key, counting_builder(train, calls))
    g2 = cache.get_or_build(key, counting_builder(train, calls))
    assert len(calls) == 1 and g2.meta["cached"] and not g1.meta["cached"]
    assert torch.equal(g1.to_dense(), g2.to_dense()) and g2.meta["hash"] == g1.meta["hash"]
    other = random_interactions(seed=11)
    key2 = {"kind": "bipartite", "train": other.pairs_hash(), "norm": "sym"}
    assert cache.path(key2) != cache.path(key)
    assert cache.path({**key, "norm": "row"}) != cache.path(key)
    assert not [f for f in os.listdir(tmp_path) if ".tmp" in f]  # atomic writes leave no temp file


def _warnings(caplog):
    return [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]


def test_corrupt_entries_are_rebuilt(tmp_path, caplog):
    log = logging.getLogger("graphrec")
    log.propagate = True
    try:
        cache = G.GraphCache(str(tmp_path))
        train = random_interactions()
        key = {"kind": "bipartite", "train": train.pairs_hash()}
        calls = []
        good = cache.get_or_build(key, counting_builder(train, calls))
        path = cache.path(key)
        # 1) truncated file
        data = open(path, "rb").read()
        open(path, "wb").write(data[: len(data) // 2])
        g = cache.get_or_build(key, counting_builder(train, calls))
        assert len(calls) == 2 and torch.equal(g.to_dense(), good.to_dense())
        assert any("unreadable" in m for m in _warnings(caplog))
        # 2) readable but tampered values (checksum mismatch)
        blob = torch.load(path, weights_only=True)
        blob["val"] = blob["val"] * 2
        torch.save(blob, path)
        g = cache.get_or_build(key, counting_builder(train, calls))
        assert len(calls) == 3 and torch.equal(g.to_dense(), good.to_dense())
        assert any("checksum" in m for m in _warnings(caplog))
        # 3) stale: an entry written for another key sits under this name
        other_key = {"kind": "bipartite", "train": "something-else"}
        cache.get_or_build(other_key, counting_builder(train, calls))
        os.replace(cache.path(other_key), path)
        g = cache.get_or_build(key, counting_builder(train, calls))
        assert len(calls) == 5 and torch.equal(g.to_dense(), good.to_dense())
        assert any("stale" in m for m in _warnings(caplog))
        # the rebuilt entry is valid again
        assert cache.get_or_build(key, counting_builder(train, calls)).meta["cached"] and len(calls) == 5
    finally:
        log.propagate = False


def test_default_dir_env(monkeypatch, tmp_path):
    monkeypatch.setenv("GRAPHREC_CACHE", str(tmp_path / "c"))
    assert G.GraphCache(None).root == str(tmp_path / "c")
