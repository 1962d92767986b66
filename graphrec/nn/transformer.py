r"""Causal (left-to-right) transformer encoder of item sequences, as in SASRec (Kang & McAuley,
ICDM 2018, Section III-B/C) in RecBole's form: BERT-style post-LayerNorm blocks with a GELU
feed-forward network.

For an input ``X`` of shape [B, L, d] (item + position embeddings) and a mask of the non-padding
positions, the encoder computes

.. math::

    H^{(0)} &= \mathrm{Dropout}(\mathrm{LN}(X)) \\
    A &= \mathrm{softmax}\!\left(\frac{(H W_Q)(H W_K)^\top}{\sqrt{d/h}} + M\right) \quad \text{(per head)} \\
    S &= \mathrm{LN}\big(H + \mathrm{Dropout}(\mathrm{Dropout}_{attn}(A)\,(H W_V)\,W_O)\big) \\
    H^{(b+1)} &= \mathrm{LN}\big(S + \mathrm{Dropout}(\mathrm{GELU}(S W_1 + b_1) W_2 + b_2)\big)

with ``M[t, j] = 0`` where position ``t`` may attend to ``j`` (``j <= t`` and ``j`` is not padding)
and ``-inf`` elsewhere: the output at ``t`` depends on the items up to ``t`` only. Every position
may attend to itself, so a padding row (whose output nobody reads) never becomes 0/0. LayerNorm
eps defaults to 1e-12 and weights are initialised N(0, 0.02) with zero biases (RecBole's SASRec).
Attention runs through ``torch.nn.functional.scaled_dot_product_attention``.

Every output row depends only on that row's own non-padding positions, so the encoder may split a
left-padded batch into groups of similar length and drop each group's leading all-padding columns
(`CausalTransformerEncoder.forward`, ``bucket=True``): next-item histories are short next to their
padded width (Amazon Scientific: 3.7 items per 34-column training window), and the padding would
otherwise be most of the work. Outputs at padding positions are unspecified (finite).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from graphrec.nn import precision


def causal_padding_mask(valid: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask [B, 1, L, L] (True: may attend) from ``valid`` [B, L] (True at
    non-padding positions): causal, padding keys excluded, the diagonal always allowed."""
    L = valid.shape[1]
    causal = torch.ones(L, L, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(L, dtype=torch.bool, device=valid.device)
    return ((causal & valid[:, None, :]) | eye).unsqueeze(1)



def bert_init(module: nn.Module, std: float = 0.02) -> None:
    """BERT's (and RecBole's SASRec) initialisation of every submodule: linear weights N(0, std),
    zero biases, LayerNorm scales 1 and shifts 0."""
    for m in module.modules():
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.LayerNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)

class CausalSelfAttention(nn.Module):
    r"""One attention sub-layer: :math:`\mathrm{LN}(H + \mathrm{Dropout}(\mathrm{MHA}(H) W_O))`."""

    def __init__(self, dim: int, n_heads: int, dropout: float, attn_dropout: float, eps: float = 1e-12):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"hidden size {dim} is not a multiple of the number of heads {n_heads}")
        self.n_heads = int(n_heads)
        self.qkv = nn.Linear(dim, 3 * dim)  # W_Q, W_K, W_V in one product
        self.out = nn.Linear(dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = float(attn_dropout)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        B, L, d = h.shape
        with precision.region():  # train.amp: projections and attention in bf16; residual and LN in float32
            q, k, v = self.qkv(h).view(B, L, 3, self.n_heads, d // self.n_heads).permute(2, 0, 3, 1, 4)
            ctx = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                                 dropout_p=self.attn_dropout if self.training else 0.0)
            ctx = self.out(ctx.transpose(1, 2).reshape(B, L, d)).float()
        return self.norm(h + self.dropout(ctx))


class FeedForward(nn.Module):
    r"""Point-wise feed-forward sub-layer: :math:`\mathrm{LN}(S + \mathrm{Dropout}(\mathrm{GELU}(S W_1 + b_1) W_2 + b_2))`
    (exact, erf-based GELU)."""

    def __init__(self, dim: int, inner_dim: int, dropout: float, eps: float = 1e-12):
        super().__init__()
        self.fc1 = nn.Linear(dim, inner_dim)
        self.fc2 = nn.Linear(inner_dim, dim)
        self.dropout = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(dim, eps=eps)

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        with precision.region():  # train.amp: the two products (and GELU between them) in bf16
            y = self.fc2(F.gelu(self.fc1(s))).float()
        return self.norm(s + self.dropout(y))


class TransformerBlock(nn.Module):
    """Attention sub-layer, then feed-forward sub-layer (each with its residual and LayerNorm)."""

    def __init__(self, dim: int, n_heads: int, inner_dim: int, dropout: float, attn_dropout: float,
                 eps: float = 1e-12):
        super().__init__()
        self.attention = CausalSelfAttention(dim, n_heads, dropout, attn_dropout, eps)
        self.ffn = FeedForward(dim, inner_dim, dropout, eps)

    def forward(self, h: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        return self.ffn(self.attention(h, mask))


#: length groups of `CausalTransformerEncoder.forward`: (0, 1], (1, 2], (2, 4], ..., (256, 512], longer
_BUCKET_BOUNDS = tuple(2 ** k for k in range(10))


class CausalTransformerEncoder(nn.Module):
    """``LN`` + dropout of the input embeddings, then ``n_layers`` causal blocks (module docstring).

    ``forward(x, valid, bucket=True)``: ``x`` [B, L, d] input embeddings, ``valid`` [B, L] bool
    (non-padding); returns [B, L, d], the last block's output at every non-padding position (finite,
    unspecified values at padding positions). With ``bucket`` and left-padded rows (each row's valid
    positions are a suffix), rows are grouped by length into powers of two and each group is
    encoded over its own longest row's columns only: the same outputs, from a fraction of the
    work. Otherwise the whole [B, L] batch is encoded at once.
    """

    def __init__(self, dim: int, n_layers: int = 2, n_heads: int = 2, inner_dim: int = 256,
                 dropout: float = 0.5, attn_dropout: float = 0.5, eps: float = 1e-12):
        super().__init__()
        self.input_norm = nn.LayerNorm(dim, eps=eps)
        self.input_dropout = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(TransformerBlock(dim, n_heads, inner_dim, dropout, attn_dropout, eps)
                                    for _ in range(int(n_layers)))
        self.reset_parameters()

    def reset_parameters(self, std: float = 0.02) -> None:
        """N(0, std) weights, zero biases, unit LayerNorm scales (RecBole's SASRec init)."""
        bert_init(self, std)

    def encode_dense(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """The encoder over the full [B, L] layout (no grouping)."""
        mask = causal_padding_mask(valid)
        h = self.input_dropout(self.input_norm(x))
        for block in self.blocks:
            h = block(h, mask)
        return h

    def forward(self, x: torch.Tensor, valid: torch.Tensor, bucket: bool = True) -> torch.Tensor:
        B, L, _ = x.shape
        if not bucket or B < 2 or L < 2 or not bool((valid[:, 1:] >= valid[:, :-1]).all()):
            return self.encode_dense(x, valid)
        lengths = valid.sum(1)
        key = torch.bucketize(lengths, torch.tensor(_BUCKET_BOUNDS, device=x.device))
        order = torch.argsort(key, stable=True)
        n_keys = len(_BUCKET_BOUNDS) + 1
        counts = torch.bincount(key, minlength=n_keys).tolist()
        longest = torch.zeros(n_keys, dtype=lengths.dtype, device=x.device).scatter_reduce(
            0, key, lengths, "amax").tolist()
        outs, start = [], 0
        for count, width in zip(counts, longest):  # at most 11 groups, not a loop over rows
            if count == 0:
                continue
            rows = order[start:start + count]
            start += count
            w = max(int(width), 1)
            h = self.encode_dense(x.index_select(0, rows)[:, L - w:], valid.index_select(0, rows)[:, L - w:])
            outs.append(F.pad(h, (0, 0, L - w, 0)))
        grouped = torch.cat(outs) if len(outs) > 1 else outs[0]
        return grouped.index_select(0, torch.argsort(order))
