"""Token states of the frozen bottom of a BERT-type text backbone (default all-MiniLM-L6-v2), for
PMMRec's cached-hidden item encoder (`graphrec.nn.item_encoders.CachedHiddenEncoder`).

PMMRec (Li et al., ICDE 2024) fine-tunes only the top ``k`` blocks of its text backbone, so the
states after block ``L - k`` never change during training: they are computed here once per item
(``bottom_states``) and reach the model as item features, flattened [n_items, T*h] with a
[n_items, T] attention mask (`flat_features`). The top blocks' public weights come from
`top_layer_tensors` (mapped to graphrec's layer names by `graphrec.train.transfer.backbone_top_state`). Texts are
tokenised by the backbone's own tokenizer (lower-cased for the uncased MiniLM) to exactly
``max_tokens`` positions, padded and truncated. Local files only (the packaged model by default).
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Sequence

import torch

from graphrec.data.encode.offline import require
from graphrec.data.encode.text import resolve_text_model


def _backbone_dir(backbone: str | Path | None) -> Path:
    return resolve_text_model(None if backbone in (None, "all-MiniLM-L6-v2") else backbone)


def load_backbone(backbone: str | Path | None = None):
    """(tokenizer, BertModel in eval mode) of a local backbone directory."""
    tr = require("transformers")
    path = str(_backbone_dir(backbone))
    tok = tr.AutoTokenizer.from_pretrained(path, local_files_only=True)
    model = tr.AutoModel.from_pretrained(path, local_files_only=True)
    model.eval()
    return tok, model


@torch.no_grad()
def bottom_states(texts: Sequence[str], top_layers: int = 2, max_tokens: int = 32,
                  backbone: str | Path | None = None, batch_size: int = 64,
                  device: Optional[str] = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(states [n, max_tokens, h] after block ``L - top_layers``, attention mask [n, max_tokens])."""
    tok, model = load_backbone(backbone)
    dev = torch.device(device or "cpu")
    model.to(dev)
    n_layers = int(model.config.num_hidden_layers)
    if not 0 <= int(top_layers) <= n_layers:
        raise ValueError(f"top_layers must be in [0, {n_layers}], got {top_layers}")
    hid, masks = [], []
    for s in range(0, len(texts), batch_size):
        enc = tok([str(t) for t in texts[s:s + batch_size]], padding="max_length", truncation=True,
                  max_length=int(max_tokens), return_tensors="pt").to(dev)
        out = model(**enc, output_hidden_states=True)
        hid.append(out.hidden_states[n_layers - int(top_layers)].float().cpu())
        masks.append(enc["attention_mask"].bool().cpu())
    if not hid:
        return torch.zeros(0, int(max_tokens), int(model.config.hidden_size)), torch.zeros(0, int(max_tokens), dtype=torch.bool)
    return torch.cat(hid), torch.cat(masks)


def flat_features(states: torch.Tensor, mask: torch.Tensor, name: str = "text_hidden") -> Dict[str, torch.Tensor]:
    """``{name: [n, T*h], name + "_mask": [n, T]}``: the item-feature modalities PMMRec reads
    (``text_backend="cached_hidden"``, ``text_feature=name``)."""
    return {name: states.reshape(states.shape[0], -1).contiguous(), f"{name}_mask": mask.float()}


def top_layer_tensors(backbone: str | Path | None = None, top_layers: int = 2) -> tuple[Dict[str, torch.Tensor], int]:
    """(the backbone's tensors under ``encoder.layer.<i>.`` for its top ``top_layers`` blocks, with
    Hugging Face names, ``bert.`` prefix removed; the index of the first of those blocks)."""
    st = require("safetensors.torch")
    path = _backbone_dir(backbone)
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no .safetensors weights")
    state: Dict[str, torch.Tensor] = {}
    for f in files:
        state.update(st.load_file(str(f)))
    state = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in state.items()}
    n_layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    first = n_layers - int(top_layers)
    keep = tuple(f"encoder.layer.{i}." for i in range(first, n_layers))
    return {k: v for k, v in state.items() if k.startswith(keep)}, first
