r"""Content-only item encoders with one interface (PMMRec, Li et al., ICDE 2024, Eq. 1-2).

Every encoder maps item indices to

.. math::

    (x^{cls}_i, x^1_i, \dots, x^n_i) = \mathrm{Enc}(\text{content}_i), \qquad x \in \mathbb{R}^d,

returned as `ItemEncoding` (``cls`` [N, d], ``tokens`` [N, n, d], ``mask`` [N, n] bool, True at
real tokens). ``cls`` is the modality's item vector (:math:`t^{cls}` / :math:`v^{cls}`: NICL's
input and the item vector of single-modality transfer); ``tokens`` feed the merge-attention fusion.
The content tables are handed in as tensors (a model never reads files) and kept as
non-persistent buffers: no saved tensor has a dimension that depends on the catalogue, so an
encoder's weights load into a model of any other catalogue (the transfer property of PMMRec).

Back-ends:

- `FrozenFeatureEncoder`: precomputed features, pooled [n_items, f] (``n = 1``) or token-level
  [n_items, n, f], through a trainable per-token adapter (two-layer MLP by default); ``cls`` is the
  masked mean of the adapted tokens. The paper fine-tunes the top blocks of its backbones; with
  frozen features the adapter is the only item-side capacity that NICL can shape.
- `CachedHiddenEncoder`: the token states that the frozen bottom ``L - k`` blocks of a real BERT-type
  backbone (all-MiniLM-L6-v2) give, computed once outside the model
  (`graphrec.data.encode.hidden`), then the trainable top ``k`` blocks and a projection. In eval mode
  this is exactly the backbone's computation (the paper trains only the top 2 blocks, so the bottom
  states never change; only dropout inside the frozen blocks is lost).
  There is no back-end that runs the whole backbone every step: with the bottom frozen it computes
  the same thing at about twice the cost per step for MiniLM (benchmarks/accuracy_pmmrec.py).
- `TinyTextEncoder` / `TinyVisionEncoder`: small random-init transformers over token ids / 32x32
  images (8x8 patches), trained end to end, for tests and the synthetic experiments.
"""
from __future__ import annotations

from typing import NamedTuple, Optional

import torch
from torch import nn

from graphrec.nn.bert_layer import BertLayer

ADAPTERS = ("mlp", "linear", "identity")


class ItemEncoding(NamedTuple):
    cls: torch.Tensor     # [N, d]
    tokens: torch.Tensor  # [N, n, d]
    mask: torch.Tensor    # [N, n] bool, True at real tokens


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``x`` [N, n, d] over the positions where ``mask`` [N, n] is True (0 where none)."""
    w = mask.to(x.dtype).unsqueeze(-1)
    return (x * w).sum(1) / w.sum(1).clamp(min=1.0)


class ItemEncoder(nn.Module):
    """Base class: ``forward(items)`` -> `ItemEncoding`; ``n_items``; ``encoder_parameters()`` (the
    backbone blocks, the "encoder" optimiser group) and the rest (adapters/projections)."""

    dim: int
    kind: str = "base"

    def encoder_parameters(self) -> list[nn.Parameter]:
        return []

    def has_trainable_path(self) -> bool:
        """Whether a trainable parameter sits between the content and ``cls`` (NICL needs one)."""
        return any(p.requires_grad for p in self.parameters())

    def config(self) -> dict:
        return {"kind": self.kind, "dim": self.dim}


def _adapter(kind: str, f: int, d: int) -> nn.Module:
    if kind == "mlp":
        return nn.Sequential(nn.Linear(f, d), nn.GELU(), nn.Linear(d, d))
    if kind == "linear":
        return nn.Linear(f, d)
    if kind == "identity":
        if f != d:
            raise ValueError(f"an identity adapter needs feature width {f} == model width {d}")
        return nn.Identity()
    raise ValueError(f"unknown adapter {kind!r}; known: {', '.join(ADAPTERS)}")


class FrozenFeatureEncoder(ItemEncoder):
    r"""Frozen features + adapter: :math:`x^j_i = A(f^j_i)`, :math:`x^{cls}_i = \mathrm{mean}_{j \in
    \mathrm{real}(i)} x^j_i` (``n = 1``: :math:`x^{cls}_i = A(f_i)`)."""

    kind = "frozen_features"

    def __init__(self, features: torch.Tensor, dim: int, adapter: str = "mlp",
                 mask: Optional[torch.Tensor] = None):
        super().__init__()
        if features.dim() == 2:
            features = features.unsqueeze(1)
        if features.dim() != 3:
            raise ValueError(f"frozen features must be [n_items, f] or [n_items, n, f], got {tuple(features.shape)}")
        if mask is None:
            mask = torch.ones(features.shape[:2], dtype=torch.bool)
        if tuple(mask.shape) != tuple(features.shape[:2]):
            raise ValueError(f"feature mask {tuple(mask.shape)} does not match features {tuple(features.shape)}")
        self.dim = int(dim)
        self.feat_dim = int(features.shape[2])
        self.n_tokens = int(features.shape[1])
        self.adapter_kind = adapter
        self.register_buffer("features", features.float(), persistent=False)
        self.register_buffer("mask", mask.bool(), persistent=False)
        self.adapter = _adapter(adapter, self.feat_dim, self.dim)

    @property
    def n_items(self) -> int:
        return int(self.features.shape[0])

    def forward(self, items: torch.Tensor) -> ItemEncoding:
        tok = self.adapter(self.features.index_select(0, items))
        mask = self.mask.index_select(0, items)
        return ItemEncoding(masked_mean(tok, mask), tok, mask)

    def config(self) -> dict:
        return {**super().config(), "adapter": self.adapter_kind, "feat_dim": self.feat_dim}


class CachedHiddenEncoder(ItemEncoder):
    r"""Cached bottom + trainable top ``k`` blocks of a BERT-type backbone, then a projection:
    :math:`H = \mathrm{Block}_{L}(\cdots\mathrm{Block}_{L-k+1}(H^{(L-k)}))`, :math:`x = H W_p + b_p`.

    ``hidden`` [n_items, T, h]: the backbone's states after block ``L - k`` (position 0 is its
    [CLS] token), ``mask`` [n_items, T]: its attention mask. ``cls`` is the projected state at
    [CLS] (``pool="cls"``, the paper's :math:`t^{cls}`) or the masked mean of the projected states
    (``pool="mean"``: all-MiniLM-L6-v2's own sentence pooling, whose [CLS] state was never trained
    as a sentence vector); ``tokens`` are the projected states after [CLS].
    """

    kind = "cached_hidden"

    def __init__(self, hidden: torch.Tensor, mask: torch.Tensor, dim: int, top_layers: int = 2,
                 n_heads: int = 12, inner_dim: Optional[int] = None, dropout: float = 0.1,
                 pool: str = "mean", backbone: str = "all-MiniLM-L6-v2"):
        super().__init__()
        if hidden.dim() != 3 or tuple(mask.shape) != tuple(hidden.shape[:2]):
            raise ValueError(f"cached hidden states must be [n_items, T, h] with a [n_items, T] mask, got "
                             f"{tuple(hidden.shape)} and {tuple(mask.shape)}")
        if pool not in ("cls", "mean"):
            raise ValueError(f"pool must be 'cls' or 'mean', got {pool!r}")
        self.dim = int(dim)
        self.width = int(hidden.shape[2])
        self.top_layers = int(top_layers)
        self.n_heads = int(n_heads)
        self.inner_dim = int(inner_dim or 4 * self.width)
        self.pool = pool
        self.backbone = backbone
        self.register_buffer("hidden", hidden.float(), persistent=False)
        self.register_buffer("mask", mask.bool(), persistent=False)
        self.blocks = nn.ModuleList(BertLayer(self.width, self.n_heads, self.inner_dim, dropout, dropout)
                                    for _ in range(self.top_layers))
        self.proj = nn.Linear(self.width, self.dim)
        nn.init.xavier_normal_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    @property
    def n_items(self) -> int:
        return int(self.hidden.shape[0])

    def top(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The top blocks over bottom states ``x`` [N, T, h]: the backbone's last hidden states."""
        for block in self.blocks:
            x = block(x, mask)
        return x

    def forward(self, items: torch.Tensor) -> ItemEncoding:
        mask = self.mask.index_select(0, items)
        y = self.proj(self.top(self.hidden.index_select(0, items), mask))
        cls = y[:, 0] if self.pool == "cls" else masked_mean(y, mask)
        return ItemEncoding(cls, y[:, 1:], mask[:, 1:])

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.blocks.parameters())

    def config(self) -> dict:
        return {**super().config(), "backbone": self.backbone, "width": self.width, "top_layers": self.top_layers,
                "n_heads": self.n_heads, "inner_dim": self.inner_dim, "pool": self.pool}


class _TinyBackbone(nn.Module):
    """[CLS] + inputs + learned positions, then ``n_layers`` `BertLayer` s."""

    def __init__(self, dim: int, n_pos: int, n_layers: int, n_heads: int, dropout: float):
        super().__init__()
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, n_pos + 1, dim) * 0.02)
        self.norm = nn.LayerNorm(dim, eps=1e-12)
        self.layers = nn.ModuleList(BertLayer(dim, n_heads, 4 * dim, dropout, dropout) for _ in range(n_layers))
        for layer in self.layers:
            layer.reset_parameters()

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        N = x.shape[0]
        x = torch.cat([self.cls.expand(N, -1, -1), x], 1) + self.pos[:, : x.shape[1] + 1]
        m = torch.cat([mask.new_ones(N, 1), mask], 1)
        x = self.norm(x)
        for layer in self.layers:
            x = layer(x, m)
        return x, m


class TinyTextEncoder(ItemEncoder):
    r"""A small random-init text transformer over token ids (0 = padding):
    :math:`(t^{cls}, t^1..t^p) = \mathrm{Trm}([\mathrm{CLS}; E_{tok}]) W_p`."""

    kind = "tiny_text"

    def __init__(self, token_ids: torch.Tensor, dim: int, vocab_size: int, n_layers: int = 2, n_heads: int = 2,
                 dropout: float = 0.1):
        super().__init__()
        ids = token_ids.round().long()
        if ids.dim() != 2 or int(ids.min()) < 0 or int(ids.max()) >= vocab_size:
            raise ValueError(f"token ids must be [n_items, p] in [0, {vocab_size}), got shape {tuple(ids.shape)}, "
                             f"range [{int(ids.min())}, {int(ids.max())}]")
        self.dim, self.vocab_size = int(dim), int(vocab_size)
        self.register_buffer("token_ids", ids, persistent=False)
        self.embed = nn.Embedding(vocab_size, dim, padding_idx=0)
        nn.init.normal_(self.embed.weight, 0.0, 0.02)
        self.backbone = _TinyBackbone(dim, ids.shape[1], n_layers, n_heads, dropout)
        self.proj = nn.Linear(dim, dim)

    @property
    def n_items(self) -> int:
        return int(self.token_ids.shape[0])

    def forward(self, items: torch.Tensor) -> ItemEncoding:
        ids = self.token_ids.index_select(0, items)
        y, m = self.backbone(self.embed(ids), ids != 0)
        y = self.proj(y)
        return ItemEncoding(y[:, 0], y[:, 1:], m[:, 1:])

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.embed.parameters()) + list(self.backbone.parameters())


class TinyVisionEncoder(ItemEncoder):
    r"""A small random-init ViT over [n_items, 3 * s * s] images cut into ``patch`` x ``patch``
    patches: :math:`(v^{cls}, v^1..v^q) = \mathrm{Trm}([\mathrm{CLS}; P W_e]) W_p`."""

    kind = "tiny_vision"

    def __init__(self, images: torch.Tensor, dim: int, size: int = 32, patch: int = 8, n_layers: int = 2,
                 n_heads: int = 2, dropout: float = 0.1):
        super().__init__()
        if images.dim() == 2:
            images = images.view(images.shape[0], 3, size, size)
        if tuple(images.shape[1:]) != (3, size, size) or size % patch:
            raise ValueError(f"images must be [n_items, 3, {size}, {size}] with {size} divisible by {patch}, "
                             f"got {tuple(images.shape)}")
        self.dim, self.size, self.patch = int(dim), int(size), int(patch)
        q = (size // patch) ** 2
        # [n_items, q, 3 * patch * patch]: patches in raster order
        p = images.float().unfold(2, patch, patch).unfold(3, patch, patch)  # [n, 3, s/p, s/p, p, p]
        p = p.permute(0, 2, 3, 1, 4, 5).reshape(images.shape[0], q, 3 * patch * patch)
        self.register_buffer("patches", p.contiguous(), persistent=False)
        self.patch_embed = nn.Linear(3 * patch * patch, dim)
        self.backbone = _TinyBackbone(dim, q, n_layers, n_heads, dropout)
        self.proj = nn.Linear(dim, dim)

    @property
    def n_items(self) -> int:
        return int(self.patches.shape[0])

    def forward(self, items: torch.Tensor) -> ItemEncoding:
        p = self.patches.index_select(0, items)
        m = torch.ones(p.shape[:2], dtype=torch.bool, device=p.device)
        y, m = self.backbone(self.patch_embed(p), m)
        y = self.proj(y)
        return ItemEncoding(y[:, 0], y[:, 1:], m[:, 1:])

    def encoder_parameters(self) -> list[nn.Parameter]:
        return list(self.patch_embed.parameters()) + list(self.backbone.parameters())
