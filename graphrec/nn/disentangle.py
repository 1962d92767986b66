r"""PAMD's layers and pretraining losses (Han et al., "Modality Matches Modality: Pretraining
Modality-Disentangled Item Representations for Recommendation", WWW 2022, Sec. 4).

Two modalities, written t (textual) and v (visual) as in the paper; any two fixed-size item feature
tables fit. Per item:

- primitive projection (unnumbered in the paper): :math:`e_t = \mathrm{MLP}(x_t)`, :math:`e_v = \mathrm{MLP}(x_v)`;
- disentangled encoder, Eq. (1)-(2): :math:`e^c_m = \mathrm{MLP}(e_m; \Theta_m)`, :math:`e^s_m = e_m - e^c_m`;
- encoder loss, Eq. (3): :math:`L_{en} = \|e^c_t - e^c_v\|^2 + (e^s_t \cdot e^s_v)^2`;
- cross-modal mappers, Eq. (4), (6), (7): one network :math:`\Phi_v` (v -> t) and one :math:`\Phi_t`
  (t -> v), each applied to the common part, the primitive and the specific part of its source;
- reconstruction gaps, Eq. (5), (8), (9): :math:`L^c, L^p, L^s`;
- the contrastive ranking of the gaps, Eq. (10), in its bounded form (see :func:`ranking_loss`).

Shapes: features [B, D_m], representations [B, d], per-item losses [B].
"""
from __future__ import annotations

import math
from typing import Dict, Optional

import torch
from torch import nn
from torch.nn import functional as F

ACTIVATIONS = {"none": nn.Identity, "relu": nn.ReLU, "tanh": nn.Tanh, "leaky_relu": nn.LeakyReLU}


def mlp(in_dim: int, out_dim: int, layers: int = 1, bias: bool = True, activation: str = "none",
        hidden: Optional[int] = None) -> nn.Module:
    r""":math:`f(x) = W_L \,\sigma(\dots \sigma(W_1 x + b_1) \dots) + b_L`: ``layers`` linear maps with
    ``activation`` between them (none after the last); one layer is a plain linear map (the
    authors' code). ``hidden`` defaults to the mean of the input and output widths."""
    if layers < 1:
        raise ValueError(f"an MLP needs at least one layer, got {layers}")
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; known: {', '.join(ACTIVATIONS)}")
    if layers == 1:
        return nn.Linear(in_dim, out_dim, bias=bias)
    h = int(hidden or max(out_dim, (in_dim + out_dim) // 2))
    mods: list[nn.Module] = []
    widths = [in_dim] + [h] * (layers - 1) + [out_dim]
    for j in range(layers):
        mods.append(nn.Linear(widths[j], widths[j + 1], bias=bias))
        if j < layers - 1:
            mods.append(ACTIVATIONS[activation]())
    return nn.Sequential(*mods)


class PrimitiveProjection(nn.Module):
    r"""Primitive representation of one modality (PAMD Sec. 4.2, "a MLP layer"):
    :math:`e_m = \mathrm{LN}(\mathrm{MLP}(x_m)) \in R^d` (LayerNorm only when ``layer_norm``)."""

    def __init__(self, in_dim: int, d: int, layers: int = 1, activation: str = "none", layer_norm: bool = False):
        super().__init__()
        self.net = mlp(in_dim, d, layers, True, activation)
        self.norm = nn.LayerNorm(d) if layer_norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.net(x))


class DisentangledEncoder(nn.Module):
    r"""PAMD Eq. (1)-(2): :math:`e^c_t = \mathrm{MLP}(e_t;\Theta_t)`, :math:`e^c_v = \mathrm{MLP}(e_v;\Theta_v)`,
    :math:`e^s_m = e_m - e^c_m`. :math:`\Theta_t` and :math:`\Theta_v` are separate networks with
    output width d (Eq. 2 subtracts); bias-free by default (the authors' ``e^c = e W``), so that
    :math:`e^c + e^s = e` holds exactly and a zero primitive has zero parts."""

    def __init__(self, d: int, layers: int = 1, bias: bool = False, activation: str = "none"):
        super().__init__()
        self.theta_t = mlp(d, d, layers, bias, activation)
        self.theta_v = mlp(d, d, layers, bias, activation)

    def forward(self, e_t: torch.Tensor, e_v: torch.Tensor) -> Dict[str, torch.Tensor]:
        c_t, c_v = self.theta_t(e_t), self.theta_v(e_v)
        return {"c_t": c_t, "c_v": c_v, "s_t": e_t - c_t, "s_v": e_v - c_v}


class PAMDItemEncoder(nn.Module):
    r"""Features -> the six PAMD vectors of an item: primitives :math:`e_t, e_v` (projection P),
    common parts :math:`e^c_t, e^c_v` and specific parts :math:`e^s_t, e^s_v` (Eq. 1-2).

    The component both PAMD stages share (pretraining trains it on :math:`L_{pre}`, the
    recommender fine-tunes it), so its parameter names are the same in both."""

    def __init__(self, dim_t: int, dim_v: int, d: int, primitive_layers: int = 1, theta_layers: int = 1,
                 activation: str = "none", layer_norm: bool = False, theta_bias: bool = False):
        super().__init__()
        self.d = int(d)
        self.proj_t = PrimitiveProjection(dim_t, d, primitive_layers, activation, layer_norm)
        self.proj_v = PrimitiveProjection(dim_v, d, primitive_layers, activation, layer_norm)
        self.disentangle = DisentangledEncoder(d, theta_layers, theta_bias, activation)

    def forward(self, x_t: torch.Tensor, x_v: torch.Tensor) -> Dict[str, torch.Tensor]:
        e_t, e_v = self.proj_t(x_t), self.proj_v(x_v)
        return {"e_t": e_t, "e_v": e_v, **self.disentangle(e_t, e_v)}


class CrossModalMappers(nn.Module):
    r"""PAMD Eq. (4), (6), (7): exactly two networks, :math:`\Phi_v` (visual side -> textual anchor)
    and :math:`\Phi_t` (textual side -> visual anchor). Each is shared by its three inputs (common
    part, primitive, specific part): only one network per direction makes the three gaps
    comparable, so that ranking them says which input translates best."""

    def __init__(self, d: int, out_t: int, out_v: int, layers: int = 1, activation: str = "none"):
        super().__init__()
        self.phi_v = mlp(d, out_t, layers, True, activation)  # v -> t
        self.phi_t = mlp(d, out_v, layers, True, activation)  # t -> v

    def forward(self, z: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """Predictions ``hat_t_{c,p,s}`` (of the textual anchor, from the visual side) and
        ``hat_v_{c,p,s}`` (of the visual anchor, from the textual side). The three inputs of one
        network go through it as one stacked batch."""
        b = z["e_v"].shape[0]
        hat_t = self.phi_v(torch.cat([z["c_v"], z["e_v"], z["s_v"]]))
        hat_v = self.phi_t(torch.cat([z["c_t"], z["e_t"], z["s_t"]]))
        out = {}
        for j, part in enumerate(("c", "p", "s")):
            out[f"hat_t_{part}"] = hat_t[j * b:(j + 1) * b]
            out[f"hat_v_{part}"] = hat_v[j * b:(j + 1) * b]
        return out


# -- losses ---------------------------------------------------------------------------------------
def encoder_loss(c_t: torch.Tensor, c_v: torch.Tensor, s_t: torch.Tensor, s_v: torch.Tensor,
                 ortho: str = "per_item", align: str = "sum") -> Dict[str, torch.Tensor]:
    r"""PAMD Eq. (3), per item: alignment :math:`\|e^c_t - e^c_v\|^2` (``align="sum"``: the squared
    norm as printed; ``"mean"``: averaged over the d dimensions, the authors' MSE, d times weaker)
    and orthogonality :math:`(e^s_t \cdot e^s_v)^2`.

    ``ortho="frobenius"``: the batch form :math:`\|E^{s\top}_t E^s_v\|_F^2 / B^2` instead (one value
    repeated per item), an option for the ambiguity of the paper's :math:`\|e^s_t \cdot e^s_v\|^2`.
    Returns ``{"align": [B], "orth": [B]}``."""
    if align not in ("sum", "mean"):
        raise ValueError(f"unknown alignment reduction {align!r}; known: sum, mean")
    diff = (c_t - c_v).pow(2)
    align_ = diff.sum(-1) if align == "sum" else diff.mean(-1)
    if ortho == "per_item":
        orth = (s_t * s_v).sum(-1).pow(2)
    elif ortho == "frobenius":
        b = s_t.shape[0]
        orth = (s_t.T @ s_v).pow(2).sum().div(b * b).expand(b)
    else:
        raise ValueError(f"unknown orthogonality form {ortho!r}; known: per_item, frobenius")
    return {"align": align_, "orth": orth}


def reconstruction_gap(anchor: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    r"""One term of PAMD Eq. (5), (8), (9): :math:`\|a - \hat a\|^2` per item, as the mean over the
    anchor's dimensions (a sum over 4096 image dimensions would saturate the sigmoids of Eq. 10)."""
    return (anchor - pred).pow(2).mean(-1)


def gaps(anchor_t: torch.Tensor, anchor_v: torch.Tensor, hat: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
    r"""PAMD Eq. (5), (8), (9): :math:`L^x = \|e_t - \hat e^x_t\|^2 + \|e_v - \hat e^x_v\|^2` for
    x in {c (common), p (primitive), s (specific)}, per item [B]. ``anchor_*`` are the targets of
    the cross-modal maps (the primitives in the paper, the raw features in the authors' code)."""
    return {x: reconstruction_gap(anchor_t, hat[f"hat_t_{x}"]) + reconstruction_gap(anchor_v, hat[f"hat_v_{x}"])
            for x in ("c", "p", "s")}


def ranking_loss(l_c: torch.Tensor, l_p: torch.Tensor, l_s: torch.Tensor, form: str = "softplus") -> torch.Tensor:
    r"""The contrastive ranking of the gaps, PAMD Eq. (10), per item [B].

    ``"softplus"`` (default), the bounded form with the intended order :math:`L^c < L^p < L^s`:
    :math:`-\log\sigma(L^p - L^c) - \log\sigma(L^s - L^p) = \mathrm{softplus}(L^c - L^p) + \mathrm{softplus}(L^p - L^s)`.
    It is >= 0, equals :math:`2\ln 2` when the three gaps are equal, and tends to 0 once the order
    holds by a margin. Deviation: the paper prints
    :math:`\log\sigma(L^c - L^p) + \log\sigma(L^p - L^s)` to be minimised, which has no lower bound
    (:math:`\log\sigma(x) \to -\infty`) and whose gradient never vanishes; ``"literal"`` keeps that
    printed form as a diagnostic only (it diverges: ``tests/test_pamd.py``)."""
    if form == "softplus":
        return F.softplus(l_c - l_p) + F.softplus(l_p - l_s)
    if form == "literal":
        return F.logsigmoid(l_c - l_p) + F.logsigmoid(l_p - l_s)
    raise ValueError(f"unknown ranking form {form!r}; known: softplus, literal")


def infonce_ordering(anchor: torch.Tensor, pred_c: torch.Tensor, pred_p: torch.Tensor, pred_s: torch.Tensor,
                     tau: float = 0.5) -> torch.Tensor:
    r"""The authors' code's replacement for Eq. (10) in one direction, per item [B]: with cosine
    similarities :math:`c, p, s` of the anchor to the three predictions,
    :math:`-\log\frac{e^{c/\tau}}{e^{c/\tau}+e^{p/\tau}+e^{s/\tau}} - \log\frac{e^{p/\tau}}{e^{p/\tau}+e^{s/\tau}}`.
    Deviation from that code: :math:`s` is per item (the code sums it over the batch). Equal
    similarities give :math:`\ln 3 + \ln 2`."""
    sims = torch.stack([F.cosine_similarity(anchor, x, dim=-1) for x in (pred_c, pred_p, pred_s)], -1) / tau
    first = torch.logsumexp(sims, -1) - sims[:, 0]
    second = torch.logsumexp(sims[:, 1:], -1) - sims[:, 1]
    return first + second


# -- downstream fusion ----------------------------------------------------------------------------
class ComponentAttention(nn.Module):
    r"""PAMD Eq. (12)-(13): attention of a query over an item's K content vectors and a residual add,

    .. math:: a = \mathrm{softmax}(q \cdot [v_1; \dots; v_K]^\top / \sqrt d), \qquad
              \tilde e_i = e_i + \textstyle\sum_k a_k v_k .

    The paper's query is the item-ID embedding :math:`q = e_i` (so :math:`\tilde e_i` depends on the
    item only); ``scaled=False`` drops the :math:`1/\sqrt d` (the authors' user-query variant).
    Inputs: ``query`` [..., d], ``values`` [..., K, d]; outputs (:math:`\sum_k a_k v_k` [..., d],
    weights [..., K])."""

    def __init__(self, d: int, scaled: bool = True):
        super().__init__()
        self.d = int(d)
        self.scale = 1.0 / math.sqrt(d) if scaled else 1.0

    def forward(self, query: torch.Tensor, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if query.shape[-1] != self.d or values.shape[-1] != self.d:
            raise ValueError(f"attention over d={self.d} vectors got a query of width {query.shape[-1]} and "
                             f"values of width {values.shape[-1]}: the ID embedding and the PAMD vectors must "
                             f"share one size (Eq. 13 adds them)")
        logits = (values @ query.unsqueeze(-1)).squeeze(-1) * self.scale
        w = torch.softmax(logits, -1)
        return (w.unsqueeze(-1) * values).sum(-2), w


def common_specific_shares(weights: torch.Tensor, common: torch.Tensor) -> tuple[float, float]:
    r"""PAMD Table 6: over the rows of ``weights`` [N, K] (attention of correctly recommended
    (user, item) pairs, one row per pair, indexed by the recommended item), the fraction whose
    highest weight falls on a common vector (``common`` [K] bool) and on a specific one. The
    two shares sum to 1 (N > 0)."""
    if weights.shape[0] == 0:
        return math.nan, math.nan
    top = weights.argmax(-1)
    c = float(common.to(weights.device)[top].float().mean())
    return c, 1.0 - c
