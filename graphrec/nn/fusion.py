"""SAND's split / alignment / distancing modules and modality fusion (He et al. 2024, §3.2-3.3).

`SANDHeads` is the one reusable piece: given per-modality item representations
:math:`Z_m = [E^m_g \,\|\, E^m_q]`, it returns the alignment and distancing loss terms and the
CLUB estimator's own learning loss. SAND itself, VBPR+SAND and FREEDOM+SAND all compose it.
"""
from __future__ import annotations

from itertools import combinations
from typing import Dict, Iterable, Optional, Sequence, Tuple, Union

import torch
from torch import nn
from torch.nn import functional as F

from graphrec import losses
from graphrec.errors import require_one_of
from graphrec.nn.linear_chain import Consumer
from graphrec.nn.mi import CLUB

#: per modality: Z_m itself, or the outputs of the heads' first linear layers on it
#: (:meth:`SANDHeads.first_layers`), e.g. computed without materialising Z_m
SANDInput = Union[torch.Tensor, Dict[str, torch.Tensor]]

ALIGN_KINDS = ("solosim", "infonce", "none")
DISTANCE_KINDS = ("club", "l2", "none")


def split_generic_unique(z: torch.Tensor, n_generic: int) -> Tuple[torch.Tensor, torch.Tensor]:
    r"""SAND §3.2.1: :math:`E_g = Z[:, :g]`, :math:`E_q = Z[:, g:]` (column halves in the code), so
    :math:`[E_g \| E_q] = Z` exactly and the whole Z keeps feeding the recommender (Eq. 15)."""
    return z[:, :n_generic], z[:, n_generic:]


class ProjectHead(nn.Module):
    r"""SAND's alignment head: :math:`\hat a = \mathrm{norm}(W_3\,\mathrm{ReLU}(\mathrm{BN}(W_2\,
    \mathrm{ReLU}(\mathrm{BN}(W_1 x)))))` (official code; the paper aligns E_g directly)."""

    def __init__(self, in_dim: int, hidden: int = 64, out: int = 32):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, hidden), nn.BatchNorm1d(hidden), nn.ReLU(),
                                 nn.Linear(hidden, out))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.net(x), dim=-1)

    def from_first(self, h: torch.Tensor) -> torch.Tensor:
        """The head given its first linear layer's output :math:`W_1 x` (see `linear_chain`)."""
        return F.normalize(self.net[1:](h), dim=-1)


class ModalityWeights(nn.Module):
    r"""User-side fusion of SAND Eq. 15: :math:`e_u = [w_{u,1} U_1 \,\|\, \dots \,\|\, w_{u,M} U_M]`.

    :math:`w_u` is a free per-user parameter initialised as softmax(Xavier-normal) over the M
    modalities (the softmax is applied once at init and never again, as in the code).
    """

    def __init__(self, n_users: int, n_modalities: int):
        super().__init__()
        w = torch.empty(n_users, n_modalities, 1)
        nn.init.xavier_normal_(w)
        self.weight = nn.Parameter(torch.softmax(w, dim=1))

    def forward(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        return torch.cat([self.weight[:, m] * p for m, p in enumerate(parts)], dim=-1)


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Linear CKA (Kornblith et al. 2019) between two row-aligned representations of any widths:
    :math:`\|Y_c^\top X_c\|_F^2 / (\|X_c^\top X_c\|_F \|Y_c^\top Y_c\|_F)` in [0, 1]; a diagnostic
    of how aligned two modalities' parts are."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    num = (yc.T @ xc).pow(2).sum()
    return num / ((xc.T @ xc).norm() * (yc.T @ yc).norm()).clamp_min(1e-12)


class SANDHeads(nn.Module):
    r"""Split + alignment + distancing over M >= 2 modalities (SAND Eq. 10-14, weights of Eq. 17).

    Terms returned by :meth:`forward` (already weighted):

    - ``align`` = α · mean over modality pairs (a, b) of the alignment loss on the projected
      generic parts: ``solosim`` (Eq. 10, code form: CE of b's heads -> a's heads, so with
      modalities [image, text] text is the anchor as in the code) or ``infonce`` (symmetric,
      our interpretation for SAND_c/d).
    - ``distance`` = β · reduce_m L_dis^m with ``club`` (Eq. 13, code's sampled bound, ½, clamp,
      one estimator shared by all modalities, on 32-d codes of the generic/unique halves) or ``l2``
      (Eq. 14 on the same codes, `graphrec.losses.negative_l2`). ``distance_reduce="mean"`` is the
      code's (L_t + L_v)/2; ``"sum"`` is the paper's Eq. 17.

    With ``code_dim=None`` the distancing acts on the raw halves (requires equal halves; the
    plug-in form inferred from the VBPR+SAND / FREEDOM+SAND parameter counts of SAND's Table 3).
    ``align_items`` picks the rows compared: all items (code) or only the batch's items.
    """

    def __init__(self, dims: Dict[str, int], align: str = "solosim", distance: str = "club",
                 alpha: float = 0.012, beta: float = 0.006, tau: float = 0.2,
                 generic_fraction: float = 0.5, head_hidden: int = 64, head_out: int = 32,
                 code_dim: Optional[int] = 32, club_hidden: int = 16, club_estimator: str = "sample",
                 negl2_mode: str = "normalized", distance_reduce: str = "mean",
                 intra_negatives: bool = False):
        super().__init__()
        if len(dims) < 2 and align != "none":
            raise ValueError(f"SAND alignment needs >= 2 modalities, got {list(dims)}; add the 'id' "
                             "modality or set align=none")
        require_one_of("align", align, ALIGN_KINDS)
        require_one_of("distance", distance, DISTANCE_KINDS)
        if distance_reduce not in ("mean", "sum"):
            raise ValueError(f"distance_reduce must be 'mean' or 'sum', got {distance_reduce!r}")
        self.modalities = list(dims)
        self.align, self.distance = align, distance
        self.alpha, self.beta, self.tau = float(alpha), float(beta), float(tau)
        self.negl2_mode, self.distance_reduce, self.intra_negatives = negl2_mode, distance_reduce, intra_negatives
        self.n_generic = {m: max(1, min(d - 1, int(round(d * generic_fraction)))) for m, d in dims.items()}
        self.heads = nn.ModuleDict()
        if self.align != "none" and self.alpha > 0:
            self.heads = nn.ModuleDict({m: ProjectHead(self.n_generic[m], head_hidden, head_out) for m in dims})
        self.codes_g, self.codes_q = nn.ModuleDict(), nn.ModuleDict()
        self.club: Optional[CLUB] = None
        if self.distance != "none" and self.beta > 0:
            if code_dim is not None:
                self.codes_g = nn.ModuleDict({m: nn.Linear(self.n_generic[m], code_dim) for m in dims})
                self.codes_q = nn.ModuleDict({m: nn.Linear(d - self.n_generic[m], code_dim) for m, d in dims.items()})
                xd = yd = code_dim
            else:
                widths = {(self.n_generic[m], d - self.n_generic[m]) for m, d in dims.items()}
                if len(widths) != 1 or (distance == "l2" and len(set(next(iter(widths)))) != 1):
                    raise ValueError(f"code_dim=None needs the same generic/unique widths in every modality, got {widths}")
                xd, yd = next(iter(widths))
            if self.distance == "club":
                self.club = CLUB(xd, yd, club_hidden, estimator=club_estimator)

    # -- pieces ----------------------------------------------------------------------------------
    def split(self, m: str, z: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        return split_generic_unique(z, self.n_generic[m])

    def first_layers(self, m: str, names: Optional[Iterable[str]] = None) -> Dict[str, Consumer]:
        """The linear maps through which the enabled terms read Z_m, each on its column slice:
        ``head`` (alignment head's first layer, generic half), ``code_g`` / ``code_q`` (distancing
        codes; None = the raw half when ``code_dim`` is None)."""
        g, q = slice(0, self.n_generic[m]), slice(self.n_generic[m], None)
        out: Dict[str, Consumer] = {}
        if len(self.heads):
            out["head"] = (self.heads[m].net[0], g)
        if self.distance != "none" and self.beta > 0:
            out["code_g"] = (self.codes_g[m] if len(self.codes_g) else None, g)
            out["code_q"] = (self.codes_q[m] if len(self.codes_q) else None, q)
        return out if names is None else {k: out[k] for k in names}

    def first_outputs(self, m: str, z: SANDInput, names: Optional[Iterable[str]] = None) -> Dict[str, torch.Tensor]:
        if not isinstance(z, torch.Tensor):
            return dict(z) if names is None else {k: z[k] for k in names}
        return {k: z[:, c] if layer is None else layer(z[:, c]) for k, (layer, c) in self.first_layers(m, names).items()}

    def codes(self, m: str, z: SANDInput) -> Tuple[torch.Tensor, torch.Tensor]:
        """Low-dimensional (generic, unique) codes of modality m used by the distancing module."""
        f = self.first_outputs(m, z, ("code_g", "code_q"))
        return f["code_g"], f["code_q"]

    @property
    def active(self) -> bool:
        return bool(len(self.heads)) or (self.distance != "none" and self.beta > 0)

    def align_loss(self, z: Dict[str, SANDInput]) -> torch.Tensor:
        proj = {m: self.heads[m].from_first(self.first_outputs(m, z[m], ("head",))["head"]) for m in self.modalities}
        terms = []
        for a, b in combinations(self.modalities, 2):
            if self.align == "solosim":
                terms.append(losses.solosim(proj[b], proj[a], self.tau))
            else:
                terms.append(losses.infonce(proj[a], proj[b], self.tau, symmetric=True,
                                            intra_negatives=self.intra_negatives))
        return torch.stack(terms).mean()

    def distance_loss(self, z: Dict[str, SANDInput], generator: Optional[torch.Generator] = None) -> torch.Tensor:
        terms = []
        for m in self.modalities:
            g, q = self.codes(m, z[m])
            if self.distance == "club":
                terms.append(self.club.bound(g, q, generator))
            else:
                terms.append(losses.negative_l2(g, q, self.negl2_mode))
        t = torch.stack(terms)
        return t.mean() if self.distance_reduce == "mean" else t.sum()

    # -- the contract used by models -------------------------------------------------------------
    def forward(self, z: Dict[str, SANDInput], generator: Optional[torch.Generator] = None) -> Dict[str, torch.Tensor]:
        """Weighted loss terms ``{'align': α L_align, 'distance': β L_dis}`` (only enabled ones).
        ``z[m]`` is Z_m or the dict of :meth:`first_layers` outputs on it."""
        out: Dict[str, torch.Tensor] = {}
        if len(self.heads):
            out["align"] = self.alpha * self.align_loss(z)
        if self.distance != "none" and self.beta > 0:
            out["distance"] = self.beta * self.distance_loss(z, generator)
        return out

    def estimator_parameters(self) -> list[nn.Parameter]:
        return list(self.club.parameters()) if self.club is not None else []

    @torch.no_grad()
    def estimator_codes(self, z: Dict[str, SANDInput]) -> Tuple[torch.Tensor, torch.Tensor]:
        """Detached (generic, unique) codes of all modalities stacked by rows: CLUB's training data.
        They stay fixed while φ takes its steps on one batch, so callers compute them once."""
        codes = [self.codes(m, z[m]) for m in self.modalities]
        return torch.cat([c[0] for c in codes]), torch.cat([c[1] for c in codes])

    def estimator_loss(self, codes: Tuple[torch.Tensor, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """CLUB's max-likelihood loss (SAND Eq. 12) summed over modalities, on the detached codes
        of :meth:`estimator_codes`."""
        if self.club is None:
            return {}
        g, q = codes
        # one forward over all modalities' rows (the estimator is shared): sum_m mean_i over equal
        # row counts = M * mean over the stacked rows
        return {"club_nll": len(self.modalities) * self.club.learning_loss(g, q)}

    @torch.no_grad()
    def alignment_report(self, z: Dict[str, torch.Tensor]) -> Dict[str, float]:
        """Linear CKA between modalities' generic parts and between their unique parts."""
        a, b = self.modalities[0], self.modalities[1]
        ga, qa = self.split(a, z[a])
        gb, qb = self.split(b, z[b])
        return {"generic": float(linear_cka(ga, gb)), "unique": float(linear_cka(qa, qb))}
