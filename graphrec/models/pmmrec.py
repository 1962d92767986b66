r"""PMMRec (Li, Du, Ni, Zhao, Guo, Yuan, Zhou, "Multi-Modality is All You Need for Transferable
Recommender Systems", ICDE 2024): a content-only sequential recommender. No parameter depends on
the item catalogue, so every component transfers to a catalogue with no item in common.

Item side: a text encoder and a vision encoder (`graphrec.nn.item_encoders`, Eq. 1-2) give
:math:`t^{cls}, t^{1..p}` and :math:`v^{cls}, v^{1..q}`; the merge-attention fusion
(`graphrec.nn.merge_attention`, Eq. 3) reads the item vector :math:`e^{cls}` from a learnable
multimodal CLS token over the text tokens and image patches. With one modality (``modalities``
``["text"]`` or ``["image"]``: the paper's PMMRec-T / PMMRec-V) no fusion and no other encoder is
built, and :math:`t^{cls}` / :math:`v^{cls}` is the item vector. User side: a causal transformer
over item vectors plus learned positions (`graphrec.nn.user_encoder`, Eq. 4). The score of item
:math:`j` after position :math:`l` is :math:`h_l^\top x_j` (full ranking at evaluation).

Objective (Eq. 12): :math:`L = w_1 L^{DAP} + w_2 L^{NICL} + w_3 L^{NID} + w_4 L^{RCL}`
(`graphrec.nn.pmm_objectives`), all weights 1 in the paper; ``stage="finetune"`` trains DAP only,
as the paper fine-tunes on a target. A weight of 0 is the ablation "w/o" that term; the NICL
flags give VCL (``nicl_intra_neg=False, nicl_next_pos=False``) and ICL, the paper's "only NCL"
(``nicl_next_pos=False``). NICL needs both modalities: a single-modality model pre-trains
with DAP, NID and RCL. Each training step encodes the batch's unique items once; DAP, NICL,
the corruption of NID/RCL (`graphrec.nn.seq_corruption`) and the replacement items all index that
table, and padding is never encoded.

Item content comes in as item-feature modalities (the model reads no file):

- ``*_backend="features"``: precomputed features of modality ``*_feature``, pooled [n_items, f]
  (``*_tokens=1``) or token-level, flattened [n_items, T*f] with a ``<feature>_mask`` modality
  [n_items, T] (``*_tokens=T``), through a trainable adapter (``adapter``).
- ``text_backend="cached_hidden"``: the token states after the frozen bottom blocks of
  all-MiniLM-L6-v2, flattened [n_items, T*384] plus the ``<feature>_mask`` modality, written by
  `graphrec.data.encode.hidden`; the model runs the top ``top_layers`` blocks (trainable) and a
  projection. Their public weights are loaded by `graphrec.train.transfer` (never by the model).
- ``*_backend="tiny"``: token ids [n_items, p] (0 = padding) / images [n_items, 3*s*s] and a small
  random-init transformer, trained end to end (tests and synthetic experiments).

Departures from the paper and its official code (ICDE24/PMMRec, which holds the fine-tuning code
only: NICL, NID and RCL are written from the paper's equations):

- Backbones: all-MiniLM-L6-v2 (6 blocks, width 384; top 2 trainable) or precomputed features
  instead of XLM-RoBERTa-base and CLIP ViT-B/32, which do not fit a CPU toolkit; graphrec's image
  features are pooled EfficientNet-Lite0 vectors (one token per image).
- NICL's denominator holds the next-item positives too (``nicl_literal_denominator=False``): as
  printed, Eq. 8 omits them, so the ratio can exceed 1 and the loss go negative.
- NID applies softmax cross-entropy to the head's outputs (Eq. 10 takes the log of ReLU outputs,
  which are no distribution); ``nid_relu`` keeps the ReLU.
- RCL pools by the masked mean of the states (the paper does not say).
- The code subtracts the log training popularity from DAP's logits; the paper does not
  (``logq_correction``, off by default). The code counts a duplicate negative once per slot;
  graphrec once (``dedup_negatives``).
- The official fusion has no multimodal CLS token (a masked mean over all states, the modalities'
  CLS states included) and defines modality-type embeddings it never adds: ``fusion_pool="mean"``,
  ``fusion_include_modal_cls=True``, ``type_embeddings=False`` reproduce it.
- The user encoder is graphrec's SASRec transformer (GELU FFN with biases; the code uses ReLU and
  bias-free attention projections).
"""
from __future__ import annotations

import inspect
from typing import Any, Dict, Optional

import torch
from torch import nn

from graphrec.errors import require_one_of
from graphrec.models import register_model
from graphrec.models.base import ModelContext, Recommender, Reps
from graphrec.nn import pmm_objectives as obj
from graphrec.nn.item_encoders import (CachedHiddenEncoder, FrozenFeatureEncoder, ItemEncoder, TinyTextEncoder,
                                       TinyVisionEncoder)
from graphrec.nn.merge_attention import MergeAttentionFusion
from graphrec.nn.seq_corruption import corrupt
from graphrec.nn.user_encoder import UserEncoder

#: transfer settings (the paper's Table V) -> the modalities of the model they build
SETTING_MODALITIES = {"text": ["text"], "vision": ["image"]}
TRANSFER_SETTINGS = ("none", "full", "item", "user", "text", "vision")
BACKENDS = {"text": ("features", "cached_hidden", "tiny"), "image": ("features", "tiny")}
STAGES = ("pretrain", "finetune")


def _hp_with_defaults(hp: Dict[str, Any]) -> Dict[str, Any]:
    out = {p.name: p.default for p in inspect.signature(PMMRec.__init__).parameters.values()
           if p.default is not inspect.Parameter.empty}
    out.update(hp)
    return out


def modalities_of(hp: Dict[str, Any]) -> list[str]:
    """The modalities a PMMRec with hyper-parameters ``hp`` builds (a single-modality transfer
    setting fixes them)."""
    hp = _hp_with_defaults(hp)
    mods = SETTING_MODALITIES.get(str(hp["transfer"]), list(hp["modalities"]))
    bad = [m for m in mods if m not in BACKENDS]
    if bad or not mods or len(set(mods)) != len(mods):
        raise ValueError(f"pmmrec: model.modalities must be distinct names among {list(BACKENDS)}, got {mods}")
    return list(mods)


def content_modalities(hp: Dict[str, Any]) -> list[str]:
    """Item-feature modalities (dataset names) the model reads."""
    hp = _hp_with_defaults(hp)
    need = []
    for m in modalities_of(hp):
        feat, backend, tokens = hp[f"{m}_feature"], hp[f"{m}_backend"], int(hp[f"{m}_tokens"])
        need.append(feat)
        if backend == "cached_hidden" or (backend == "features" and tokens > 1):
            need.append(f"{feat}_mask")
    return need


@register_model("pmmrec")
class PMMRec(Recommender):
    """PMMRec (module docstring). Components (each a top-level submodule, saved and loaded on its
    own by `graphrec.train.transfer`): ``text_encoder``, ``vision_encoder``, ``fusion``,
    ``user_encoder``, ``nid_head`` (pre-training only); absent ones are None."""

    name = "pmmrec"
    task = "next_item"

    def __init__(self, ctx: ModelContext, embedding_dim: int = 64, modalities: tuple = ("text", "image"),
                 transfer: str = "none", stage: str = "pretrain",
                 text_backend: str = "features", image_backend: str = "features",
                 text_feature: str = "text", image_feature: str = "image",
                 text_tokens: int = 1, image_tokens: int = 1, adapter: str = "mlp",
                 top_layers: int = 2, backbone_heads: int = 12, backbone_inner_dim: int = 0, text_pool: str = "mean",
                 backbone: str = "all-MiniLM-L6-v2",
                 vocab_size: int = 1000, image_size: int = 32, patch_size: int = 8, tiny_layers: int = 2,
                 tiny_heads: int = 2,
                 fusion_layers: int = 1, fusion_heads: int = 4, fusion_pool: str = "cls", type_embeddings: bool = True,
                 fusion_include_modal_cls: bool = False,
                 n_layers: int = 2, n_heads: int = 2, inner_dim: int = 0, dropout: float = 0.1, max_len: int = 20,
                 w_dap: float = 1.0, w_nicl: float = 1.0, w_nid: float = 1.0, w_rcl: float = 1.0,
                 nicl_tau: float = 1.0, nicl_intra_neg: bool = True, nicl_next_pos: bool = True,
                 nicl_literal_denominator: bool = False, p_shuffle: float = 0.15, p_replace: float = 0.05,
                 nid_relu: bool = True, rcl_pool: str = "mean", rcl_normalize: bool = False, rcl_tau: float = 1.0,
                 logq_correction: bool = False, dedup_negatives: bool = True,
                 encoder_lr_scale: float = 1.0, encoder_weight_decay: float = 0.0, eval_chunk: int = 1024, **hp: Any):
        super().__init__(ctx)
        require_one_of("pmmrec: model.transfer", transfer, TRANSFER_SETTINGS)
        require_one_of("pmmrec: model.stage", stage, STAGES)
        args = {k: v for k, v in locals().items() if k not in ("self", "ctx", "hp", "__class__")}
        self.modalities = modalities_of(args)
        self.transfer, self.stage = transfer, stage
        self.dim = d = int(embedding_dim)
        self.pad = self.n_items
        self.max_len = int(max_len)
        self.weights = {"dap": float(w_dap), "nicl": float(w_nicl), "nid": float(w_nid), "rcl": float(w_rcl)}
        self.nicl_kw = dict(tau=float(nicl_tau), intra_neg=bool(nicl_intra_neg), next_pos=bool(nicl_next_pos),
                            literal_denominator=bool(nicl_literal_denominator))
        self.p_shuffle, self.p_replace = float(p_shuffle), float(p_replace)
        self.nid_relu = bool(nid_relu)
        self.rcl_kw = dict(pool=rcl_pool, normalize=bool(rcl_normalize), tau=float(rcl_tau))
        self.dedup = bool(dedup_negatives)
        self.encoder_lr_scale, self.encoder_weight_decay = float(encoder_lr_scale), float(encoder_weight_decay)
        self.eval_chunk = int(eval_chunk)
        self.include_modal_cls = bool(fusion_include_modal_cls)
        feats = ctx.features
        enc: Dict[str, Optional[ItemEncoder]] = {"text": None, "image": None}
        for m in self.modalities:
            backend = args[f"{m}_backend"]
            require_one_of(f"pmmrec: model.{m}_backend", backend, BACKENDS[m])
            name = args[f"{m}_feature"]
            if feats is None or name not in feats:
                have = feats.modalities if feats is not None else []
                raise ValueError(f"pmmrec: the {m} encoder needs item-feature modality {name!r}; the dataset has {have}")
            x = feats[name]
            tokens = int(args[f"{m}_tokens"])
            mask = feats[f"{name}_mask"].bool() if f"{name}_mask" in feats else None
            if backend == "tiny":
                enc[m] = (TinyTextEncoder(x, d, int(vocab_size), int(tiny_layers), int(tiny_heads), float(dropout))
                          if m == "text" else
                          TinyVisionEncoder(x, d, int(image_size), int(patch_size), int(tiny_layers), int(tiny_heads),
                                            float(dropout)))
                continue
            if tokens > 1 or backend == "cached_hidden":
                if mask is None or x.shape[1] % mask.shape[1]:
                    raise ValueError(f"pmmrec: modality {name!r} needs a {name + '_mask'!r} modality whose width T "
                                     f"divides its width {x.shape[1]} (flattened [n_items, T*f] token states)")
                x = x.view(x.shape[0], mask.shape[1], -1)
            if backend == "cached_hidden":
                enc[m] = CachedHiddenEncoder(x, mask, d, int(top_layers), int(backbone_heads),
                                             int(backbone_inner_dim) or None, float(dropout), text_pool, backbone)
            else:
                enc[m] = FrozenFeatureEncoder(x, d, adapter, mask)
        self.text_encoder = enc["text"]
        self.vision_encoder = enc["image"]
        multimodal = len(self.modalities) == 2
        self.fusion = (MergeAttentionFusion(d, int(fusion_heads), int(fusion_layers), None, float(dropout),
                                            fusion_pool, bool(type_embeddings)) if multimodal else None)
        self.user_encoder = UserEncoder(d, self.max_len, int(n_layers), int(n_heads), int(inner_dim) or None,
                                        float(dropout))
        self.nid_head = nn.Linear(d, 3)
        if nid_relu:  # ReLU outputs (Eq. 10): start every unit alive, or a class can stay at 0 for good
            nn.init.constant_(self.nid_head.bias, 1.0)
        if multimodal and stage == "pretrain" and self.weights["nicl"] > 0:
            for m, e in (("text", self.text_encoder), ("image", self.vision_encoder)):
                if not e.has_trainable_path():
                    raise ValueError(f"pmmrec: NICL (model.w_nicl > 0) needs a trainable parameter between the {m} "
                                     f"content and its CLS vector; the {m} encoder has none (identity-adapted "
                                     f"frozen features): choose another adapter or set model.w_nicl=0")
        # training popularity (logQ correction): never saved, it belongs to the catalogue
        pop = torch.bincount(ctx.train.item, minlength=self.n_items).float() + 1.0
        self.register_buffer("log_pop", (pop / pop.sum()).log(), persistent=False)
        self.logq = bool(logq_correction)
        self._gen = torch.Generator(device=ctx.device).manual_seed(int(ctx.seed))

    # -- hooks -----------------------------------------------------------------------------------
    @classmethod
    def required_modalities(cls, hp: Dict[str, Any]) -> list[str]:
        return content_modalities(hp)

    def pre_epoch(self, epoch: int, generator: torch.Generator) -> None:
        # the corruption draws from the model's own generator, re-seeded per epoch (resumable)
        self._gen.manual_seed(int(torch.randint(0, 2 ** 62, (1,), generator=generator, device=generator.device)))

    def param_groups(self, lr: float, weight_decay: float) -> list[dict]:
        """Optimiser groups (the official code's): backbone blocks at ``lr * encoder_lr_scale`` with
        ``encoder_weight_decay``; adapters/projections, fusion, user encoder and head at ``lr`` with
        ``weight_decay``."""
        enc = [p for e in (self.text_encoder, self.vision_encoder) if e is not None
               for p in e.encoder_parameters() if p.requires_grad]
        ids = {id(p) for p in enc}
        rest = [p for p in self.parameters() if p.requires_grad and id(p) not in ids]
        return [{"params": enc, "lr": lr * self.encoder_lr_scale, "weight_decay": self.encoder_weight_decay,
                 "name": "encoder"},
                {"params": rest, "lr": lr, "weight_decay": weight_decay, "name": "recommender"}]

    def manifest(self) -> dict:
        """What `graphrec.train.transfer` records beside the components (no catalogue sizes)."""
        comps = {}
        for name in ("text_encoder", "vision_encoder", "fusion", "user_encoder"):
            m = getattr(self, name)
            if m is not None:
                comps[name] = m.config()
        comps["nid_head"] = {"dim": self.dim}
        return {"model": self.name, "dim": self.dim, "max_len": self.max_len, "modalities": self.modalities,
                "components": comps,
                "objective": {"stage": self.stage, "weights": self.weights, "nicl": self.nicl_kw,
                              "p_shuffle": self.p_shuffle, "p_replace": self.p_replace, "nid_relu": self.nid_relu,
                              "rcl": self.rcl_kw, "logq_correction": self.logq, "dedup_negatives": self.dedup}}

    # -- item side -------------------------------------------------------------------------------
    def encode_items(self, items: torch.Tensor) -> Dict[str, torch.Tensor]:
        """``{"item": x [N, d], "text": t^cls, "image": v^cls}`` (present modalities) of ``items``."""
        out: Dict[str, torch.Tensor] = {}
        enc = {}
        if self.text_encoder is not None:
            enc["text"] = self.text_encoder(items)
            out["text"] = enc["text"].cls
        if self.vision_encoder is not None:
            enc["image"] = self.vision_encoder(items)
            out["image"] = enc["image"].cls
        if self.fusion is None:
            out["item"] = out[self.modalities[0]]
            return out
        t, v = enc["text"], enc["image"]
        tt, tm, vt, vm = t.tokens, t.mask, v.tokens, v.mask
        if self.include_modal_cls:
            tt, vt = torch.cat([t.cls.unsqueeze(1), tt], 1), torch.cat([v.cls.unsqueeze(1), vt], 1)
            tm, vm = torch.cat([tm.new_ones(tm.shape[0], 1), tm], 1), torch.cat([vm.new_ones(vm.shape[0], 1), vm], 1)
        out["item"] = self.fusion(tt, tm, vt, vm)
        return out

    def item_vectors(self) -> torch.Tensor:
        """Item vectors [n_items, d] of the whole catalogue, from content only (chunked)."""
        dev = self.user_encoder.pos.weight.device
        rows = [self.encode_items(torch.arange(s, min(self.n_items, s + self.eval_chunk), device=dev))["item"]
                for s in range(0, self.n_items, self.eval_chunk)]
        return torch.cat(rows)

    # -- user side -------------------------------------------------------------------------------
    def _latest(self, t: torch.Tensor) -> torch.Tensor:
        return t[:, -self.max_len:] if t.shape[1] > self.max_len else t

    def encode_sequences(self, seq: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """User states [B, L, d] of ``seq`` (global ids, PAD = n_items) over item rows ``table``."""
        valid = seq != self.pad
        x = table.index_select(0, seq.clamp(max=self.n_items - 1).flatten()).view(*seq.shape, -1)
        x = x * valid.unsqueeze(-1)
        return self.user_encoder(x, valid)

    # -- the contract ----------------------------------------------------------------------------
    def propagate(self) -> Reps:
        return Reps(item=self.item_vectors())

    def export_tables(self) -> Dict[str, torch.Tensor]:
        with torch.no_grad():
            return {"item/pmmrec": self.item_vectors()}

    def train_forward(self, batch: Dict[str, torch.Tensor]) -> Reps:
        """The batch's unique items encoded once (``item``, sorted global ids ``item_ids``), its
        windows as rows of that table, user states, and (pre-training) the corrupted sequences."""
        seq, target = self._latest(batch["seq"]).contiguous(), self._latest(batch["target"]).contiguous()
        valid, tvalid = seq != self.pad, target != self.pad
        both = torch.cat([seq, target], 1)
        uniq = torch.unique(both[both != self.pad])
        enc = self.encode_items(uniq)
        table = enc["item"]
        n_u = uniq.numel()
        idx = torch.searchsorted(uniq, seq).clamp(max=n_u - 1)
        tidx = torch.searchsorted(uniq, target).clamp(max=n_u - 1)
        # member[b, j]: item j fills a slot of row b's window (its inputs and targets)
        member = torch.zeros(seq.shape[0], n_u, dtype=torch.long, device=seq.device)
        member = (member.scatter_add_(1, idx, valid.long()).scatter_add_(1, tidx, tvalid.long()) > 0)
        x = table.index_select(0, idx.flatten()).view(*idx.shape, -1) * valid.unsqueeze(-1)
        h = self.user_encoder(x, valid)
        ex = {"hidden": h, "idx": idx, "tidx": tidx, "valid": valid, "tvalid": tvalid, "member": member}
        for m in ("text", "image"):
            if m in enc and m != "item":
                ex[f"cls_{m}"] = enc[m]
        if self.stage == "pretrain" and (self.weights["nid"] > 0 or self.weights["rcl"] > 0):
            cidx, labels = corrupt(idx, valid, member, self.p_shuffle, self.p_replace, self._gen)
            xc = table.index_select(0, cidx.flatten()).view(*cidx.shape, -1) * valid.unsqueeze(-1)
            ex["hidden_corrupt"] = self.user_encoder(xc, valid)
            ex["nid_labels"] = labels
        return Reps(item=table, item_ids=uniq, extras=ex)

    def loss(self, batch: Dict[str, torch.Tensor], reps: Reps) -> Dict[str, torch.Tensor]:
        ex = reps.extras
        tvalid = ex["tvalid"]
        if not bool(tvalid.any()):
            raise ValueError("pmmrec: a training batch has no target position (every target is padding)")
        rows = torch.nonzero(tvalid, as_tuple=True)[0]
        member = ex["member"].index_select(0, rows)
        slot_counts = None
        if not self.dedup:
            n_u = reps.item.shape[0]
            slot_counts = torch.bincount(torch.cat([ex["idx"][ex["valid"]], ex["tidx"][tvalid]]), minlength=n_u).float()
        log_pop = self.log_pop.index_select(0, reps.item_ids) if self.logq else None
        terms = {"dap": self.weights["dap"] * obj.dap_loss(ex["hidden"][tvalid], ex["tidx"][tvalid], reps.item,
                                                           member, log_pop, slot_counts)}
        if self.stage == "finetune":
            return terms
        if self.weights["nicl"] > 0 and "cls_text" in ex and "cls_image" in ex:
            valid = ex["valid"]
            arow = torch.nonzero(valid, as_tuple=True)[0]
            nxt = torch.where(tvalid, ex["tidx"], torch.full_like(ex["tidx"], -1))[valid]
            terms["nicl"] = self.weights["nicl"] * obj.nicl_loss(
                ex["cls_text"], ex["cls_image"], ex["idx"][valid], nxt, ex["member"].index_select(0, arow),
                **self.nicl_kw)
        if "hidden_corrupt" in ex:
            if self.weights["nid"] > 0:
                terms["nid"] = self.weights["nid"] * obj.nid_loss(self.nid_head(ex["hidden_corrupt"]),
                                                                  ex["nid_labels"], self.nid_relu)
            if self.weights["rcl"] > 0:
                terms["rcl"] = self.weights["rcl"] * obj.rcl_loss(ex["hidden"], ex["hidden_corrupt"], ex["valid"],
                                                                  **self.rcl_kw)
        return terms

    def score_sequences(self, batch: Dict[str, torch.Tensor], reps: Reps) -> torch.Tensor:
        return self.encode_sequences(self._latest(batch["seq"]), reps.item)[:, -1] @ reps.item.T

    def score(self, users: torch.Tensor, reps: Reps) -> torch.Tensor:
        raise TypeError("pmmrec scores sequences (score_sequences), not user ids: use the next_item task")

    def score_factors(self, reps: Reps) -> None:
        return None
