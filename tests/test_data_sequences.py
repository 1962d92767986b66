"""Sequences: time order, truncation to the latest items, padding."""
from __future__ import annotations

import numpy as np
import torch

from graphrec.data import IdMap, Interactions, Sequences


def test_order_truncation_padding():
    u = torch.tensor([1, 0, 1, 1, 0, 2])
    i = torch.tensor([5, 3, 6, 7, 4, 1])
    ts = torch.tensor([30, 9, 10, 20, 1, 5])
    it = Interactions(u, i, IdMap(np.arange(4)), IdMap(np.arange(8)), timestamp=ts)
    s = Sequences.from_interactions(it)
    assert s[0].tolist() == [4, 3] and s[1].tolist() == [6, 7, 5] and s[2].tolist() == [1] and s[3].tolist() == []
    x, n = s.padded(max_len=2)
    assert x.tolist() == [[4, 3], [7, 5], [8, 1], [8, 8]] and n.tolist() == [2, 2, 1, 0]
    y, _ = s.padded(left=False, pad_value=-1, users=torch.tensor([2, 1]))
    assert y.tolist() == [[1, -1, -1], [6, 7, 5]]
