"""Sequence CSR helpers and the shifted-sequence training windows of `SequenceSampler`
(brute-force window reference, every transition once, reconstruction, negatives, padding)."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from graphrec.data.interactions import IdMap, Interactions
from graphrec.data.sequences import Sequences, segment_index
from graphrec.train.samplers import SequenceSampler


def _log(n_users=40, n_items=30, seed=0, max_deg=25, repeats=False):
    rng = np.random.default_rng(seed)
    deg = rng.integers(0, max_deg + 1, n_users)
    deg[:3] = [0, 1, 2]
    user = np.repeat(np.arange(n_users), deg)
    if repeats:  # repeat consumption: the same item twice in a sequence
        item = rng.integers(0, n_items, user.size)
    else:
        item = np.concatenate([rng.choice(n_items, d, replace=False) for d in deg])
    perm = rng.permutation(user.size)
    ts = rng.integers(0, 8, user.size)  # ties: row order decides
    return Interactions(torch.from_numpy(user[perm]), torch.from_numpy(item[perm]), IdMap(np.arange(n_users)),
                        IdMap(np.arange(n_items)), timestamp=torch.from_numpy(ts), source="train.csv")


def _chrono(inter: Interactions) -> dict[int, list[int]]:
    ts = inter.timestamp.tolist()
    out = {u: [] for u in range(inter.n_users)}
    for r in sorted(range(len(inter)), key=lambda r: (int(inter.user[r]), ts[r], r)):
        out[int(inter.user[r])].append(int(inter.item[r]))
    return out


# -- Sequences helpers -----------------------------------------------------------------------------
def test_segment_index_select_and_split_tail_match_python():
    starts, counts = torch.tensor([5, 0, 9, 3]), torch.tensor([2, 0, 3, 1])
    seg, src = segment_index(starts, counts)
    assert seg.tolist() == [0, 0, 2, 2, 2, 3] and src.tolist() == [5, 6, 9, 10, 11, 3]
    inter = _log(seed=1)
    s = Sequences.from_interactions(inter)
    ref = _chrono(inter)
    rows = torch.tensor([7, 0, 2, 7, 31])
    sub = s.select(rows)
    assert [sub[r].tolist() for r in range(len(rows))] == [ref[u] for u in rows.tolist()]
    assert sub.row_index().tolist() == [r for r in range(len(rows)) for _ in ref[int(rows[r])]]
    n_tail = torch.tensor([min(2, len(ref[u])) for u in rows.tolist()])
    head, tail = sub.split_tail(n_tail)
    for r, u in enumerate(rows.tolist()):
        k = int(n_tail[r])
        assert head[r].tolist() == ref[u][:len(ref[u]) - k] and tail[r].tolist() == ref[u][len(ref[u]) - k:]
    with pytest.raises(ValueError, match="row 1 has 0 items"):
        sub.split_tail(torch.tensor([0, 1, 0, 0, 0]))
    with pytest.raises(ValueError, match="lengths sum"):
        Sequences.from_lengths(torch.tensor([2, 2]), torch.arange(3), 5)


# -- SequenceSampler --------------------------------------------------------------------------------
def _reference_windows(seqs: dict[int, list[int]], L: int, pad: int) -> list[tuple]:
    """Cut each sequence from its end: windows [n-L-1, n), [n-2L-1, n-L), ..., clipped at 0."""
    out = []
    for u, s in seqs.items():
        end = len(s)
        while end >= 2:
            w = s[max(0, end - L - 1):end]
            inp, tgt = w[:-1], w[1:]
            out.append((u, tuple([pad] * (L - len(inp)) + inp), tuple([pad] * (L - len(tgt)) + tgt)))
            end -= L
    return out


def _all(sampler: SequenceSampler) -> list[tuple]:
    w = sampler.windows()
    return [(int(u), tuple(s), tuple(t)) for u, s, t in zip(w["user"], w["seq"].tolist(), w["target"].tolist())]


@pytest.mark.parametrize("L", [1, 3, 5, 50])
@pytest.mark.parametrize("repeats", [False, True])
def test_windows_equal_brute_force_reference(L, repeats):
    inter = _log(seed=2, repeats=repeats)
    sampler = SequenceSampler(inter, max_len=L, batch_size=16)
    ref = _reference_windows(_chrono(inter), L, pad=inter.n_items)
    assert sorted(_all(sampler)) == sorted(ref)
    assert sampler.n_windows == len(ref) and len(sampler) == (len(ref) + 15) // 16


@pytest.mark.parametrize("L", [2, 4, 7])
def test_every_transition_exactly_once_with_its_context(L):
    """Each (context ending at item_t, item_{t+1}) of every sequence is one non-PAD position of one
    window; the context is the window's items up to that column, right-aligned."""
    inter = _log(seed=3, repeats=True)
    seqs = _chrono(inter)
    sampler = SequenceSampler(inter, max_len=L, batch_size=8)
    got = Counter()
    for b in sampler.epoch(torch.Generator().manual_seed(0)):
        assert b["seq"].shape == b["target"].shape == (b["user"].numel(), L) and "neg" not in b
        for u, s, t in zip(b["user"].tolist(), b["seq"].tolist(), b["target"].tolist()):
            real = [c for c in range(L) if t[c] != inter.n_items]
            assert real == list(range(L - len(real), L))  # left-padded, latest in the last column
            assert all(s[c] == inter.n_items for c in range(L - len(real)))
            assert all(s[c + 1] == t[c] for c in real[:-1])  # shifted: target c is input c+1
            for c in real:
                got[(u, tuple(s[L - len(real):c + 1]), t[c])] += 1
    want = Counter()
    for u, s in seqs.items():
        for t in range(len(s) - 1):
            # the context a window gives transition t: from its window's start to item t
            w_end = len(s) - ((len(s) - 1 - (t + 1)) // L) * L        # the window holding target t+1
            w_start = max(0, w_end - L - 1)
            want[(u, tuple(s[w_start:t + 1]), s[t + 1])] += 1
    assert got == want
    assert sum(got.values()) == sum(max(0, len(s) - 1) for s in seqs.values())


def test_windows_reconstruct_the_sequences():
    inter = _log(seed=4, n_items=60, max_deg=40)
    seqs = _chrono(inter)
    sampler = SequenceSampler(inter, max_len=6)
    rebuilt: dict[int, list[list[int]]] = {}
    w = sampler.windows()
    for u, s, t in zip(w["user"].tolist(), w["seq"].tolist(), w["target"].tolist()):
        rebuilt.setdefault(u, []).append([x for x in s if x != inter.n_items] + [t[-1]])
    for u, s in seqs.items():
        if len(s) < 2:
            assert u not in rebuilt
            continue
        chain = list(reversed(rebuilt[u]))  # built newest first; oldest first they share one item per joint
        assert all(len(p) == 7 for p in chain[1:]) and 2 <= len(chain[0]) <= 7
        out = chain[0]
        for nxt in chain[1:]:
            assert nxt[0] == out[-1]
            out = out + nxt[1:]
        assert out == s


def test_epoch_shuffles_all_windows_deterministically():
    inter = _log(seed=5)
    sampler = SequenceSampler(inter, max_len=4, batch_size=10)
    a = list(sampler.epoch(torch.Generator().manual_seed(1)))
    b = list(sampler.epoch(torch.Generator().manual_seed(1)))
    c = list(sampler.epoch(torch.Generator().manual_seed(2)))
    assert len(a) == len(sampler)
    assert all(torch.equal(x[k], y[k]) for x, y in zip(a, b) for k in x)
    assert not all(torch.equal(x["seq"], y["seq"]) for x, y in zip(a, c))
    flat = sorted((int(u), tuple(s), tuple(t)) for x in a
                  for u, s, t in zip(x["user"], x["seq"].tolist(), x["target"].tolist()))
    assert flat == sorted(_all(sampler))


def test_negatives_never_in_the_users_sequence_and_pad_where_target_pads():
    inter = _log(seed=6, n_items=30, max_deg=20)
    seqs = _chrono(inter)
    sampler = SequenceSampler(inter, max_len=5, batch_size=16, num_neg=1)
    seen = set()
    gen = torch.Generator().manual_seed(3)
    a = list(sampler.epoch(gen))
    for b in a:
        pad = b["target"] == inter.n_items
        assert b["neg"].shape == b["target"].shape
        assert torch.equal(b["neg"] == inter.n_items, pad)
        for u, row, p in zip(b["user"].tolist(), b["neg"].tolist(), pad.tolist()):
            for x, is_pad in zip(row, p):
                if not is_pad:
                    assert x not in seqs[u]
                    seen.add(x)
    assert len(seen) > 20  # spread over the catalogue, not one fixed item
    again = list(sampler.epoch(torch.Generator().manual_seed(3)))
    assert all(torch.equal(x["neg"], y["neg"]) for x, y in zip(a, again))


def test_sampler_errors_name_the_problem():
    inter = _log(seed=7)
    with pytest.raises(ValueError, match="num_neg must be 0"):
        SequenceSampler(inter, num_neg=2)
    with pytest.raises(ValueError, match="max_len must be >= 1"):
        SequenceSampler(inter, max_len=0)
    single = Interactions(torch.arange(4), torch.arange(4), IdMap(np.arange(4)), IdMap(np.arange(5)),
                          timestamp=torch.zeros(4, dtype=torch.long), source="one_each.csv")
    with pytest.raises(ValueError, match="one_each.csv: no training sequence has 2 or more items"):
        SequenceSampler(single)
