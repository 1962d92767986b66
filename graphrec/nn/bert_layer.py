r"""A bidirectional BERT encoder layer (Devlin et al., NAACL 2019; Vaswani et al., NeurIPS 2017),
laid out so that a Hugging Face ``BertLayer``'s weights load into it one to one
(`hf_bert_layer_state`).

For token states ``X`` [N, n, d] and a key mask (True: a real token), per head

.. math::

    A &= \mathrm{softmax}\!\left(\frac{(X W_Q + b_Q)(X W_K + b_K)^\top}{\sqrt{d/h}} + M\right) \\
    S &= \mathrm{LN}\big(X + \mathrm{Dropout}(A (X W_V + b_V) W_O + b_O)\big) \\
    Y &= \mathrm{LN}\big(S + \mathrm{Dropout}(\mathrm{GELU}(S W_1 + b_1) W_2 + b_2)\big)

with ``M[j] = 0`` for real keys and ``-inf`` for padding keys (post-LayerNorm, exact GELU, LayerNorm
eps 1e-12 as BERT). Every query attends to every real key: no causal mask. A row without any real
key attends to all keys (its output is unspecified but finite).
"""
from __future__ import annotations

from typing import Dict, Optional

import torch
import torch.nn.functional as F
from torch import nn

from graphrec.nn.transformer import bert_init


class BertLayer(nn.Module):
    """One post-LN encoder layer (module docstring); ``forward(x, mask)`` -> [N, n, d]."""

    def __init__(self, dim: int, n_heads: int, inner_dim: int, dropout: float = 0.1,
                 attn_dropout: float = 0.1, eps: float = 1e-12):
        super().__init__()
        if dim % n_heads:
            raise ValueError(f"hidden size {dim} is not a multiple of the number of heads {n_heads}")
        self.n_heads = int(n_heads)
        self.query = nn.Linear(dim, dim)
        self.key = nn.Linear(dim, dim)
        self.value = nn.Linear(dim, dim)
        self.attn_out = nn.Linear(dim, dim)
        self.attn_norm = nn.LayerNorm(dim, eps=eps)
        self.fc1 = nn.Linear(dim, inner_dim)
        self.fc2 = nn.Linear(inner_dim, dim)
        self.ffn_norm = nn.LayerNorm(dim, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.attn_dropout = float(attn_dropout)

    def reset_parameters(self, std: float = 0.02) -> None:
        """N(0, std) weights, zero biases, unit LayerNorms (BERT's init)."""
        bert_init(self, std)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        N, n, d = x.shape
        h = self.n_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(N, n, h, d // h).transpose(1, 2)

        attn_mask = None
        if mask is not None:
            keep = mask.bool()
            keep = keep | ~keep.any(1, keepdim=True)  # a row of padding only: attend to all (finite)
            attn_mask = keep[:, None, None, :]
        ctx = F.scaled_dot_product_attention(heads(self.query(x)), heads(self.key(x)), heads(self.value(x)),
                                             attn_mask=attn_mask,
                                             dropout_p=self.attn_dropout if self.training else 0.0)
        s = self.attn_norm(x + self.dropout(self.attn_out(ctx.transpose(1, 2).reshape(N, n, d))))
        return self.ffn_norm(s + self.dropout(self.fc2(F.gelu(self.fc1(s)))))


#: our parameter name <- the Hugging Face BertLayer name
_HF_NAMES = {
    "query": "attention.self.query", "key": "attention.self.key", "value": "attention.self.value",
    "attn_out": "attention.output.dense", "attn_norm": "attention.output.LayerNorm",
    "fc1": "intermediate.dense", "fc2": "output.dense", "ffn_norm": "output.LayerNorm",
}


def hf_bert_layer_state(hf_state: Dict[str, torch.Tensor], prefix: str) -> Dict[str, torch.Tensor]:
    """The state dict of a `BertLayer` from a Hugging Face BERT state dict's layer ``prefix``
    (e.g. ``"encoder.layer.5."``); a missing tensor is a `KeyError` naming it."""
    out = {}
    for ours, theirs in _HF_NAMES.items():
        for p in ("weight", "bias"):
            key = f"{prefix}{theirs}.{p}"
            if key not in hf_state:
                raise KeyError(f"BERT state has no tensor {key!r} (layer prefix {prefix!r})")
            out[f"{ours}.{p}"] = hf_state[key].detach().clone().float()
    return out
