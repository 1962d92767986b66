"""`graphrec explain RUN_DIR --user ID [--target ITEM]`: which history items, and which modality of
each, drove a recommendation (Demure's interest scores, Yao et al., arXiv 2305.01915, Eqs. 7-8), and
which the model flags as noise: a table on stdout (``--json`` for the raw record) and a heat map of
history items x modalities written to a PNG (``--png``, default ``explain-<user>.png``).

The history is everything the run's split knows of the user, oldest first (its latest ``max_len``
items are read); the explained item is ``--target`` (an original item id) or, without it, the
model's top-1 next item with the history excluded. The model computes the explanation
(``model.explain``); this command only formats it. ``--score-mode`` picks the attribution:
``grad_x_input`` (default here: gradient x activation, the one that recovers planted drivers in
graphrec's tests) or the paper's ``grad_mean`` (the feature mean of the gradient, Eqs. 7-8 as
written), or ``abs_grad_mean``.
"""
from __future__ import annotations

import argparse
import json
import os
from typing import Optional

SCORE_MODES = ("grad_x_input", "grad_mean", "abs_grad_mean")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("explain", help="which history items and modalities drove a recommendation (Demure)")
    p.add_argument("run_dir")
    p.add_argument("--user", required=True, help="original user id")
    p.add_argument("--target", default=None, help="original item id to explain (default: the top-1 recommendation)")
    p.add_argument("--score-mode", choices=SCORE_MODES, default="grad_x_input",
                   help="attribution: grad_x_input (default), grad_mean (the paper's Eqs. 7-8), abs_grad_mean")
    p.add_argument("--png", default=None, help="heat map file (default explain-<user>.png; 'none' to skip)")
    p.add_argument("--json", action="store_true", help="print the explanation as JSON instead of a table")
    p.set_defaults(func=main)


def explain_user(p, user: str, target: Optional[str] = None, score_mode: str = "grad_x_input") -> dict:
    """The model's explanation (`Demure.explain`) for original user id ``user`` with original item ids
    in place of indices (``item``, ``target``)."""
    from graphrec.data.sequences import Sequences
    from graphrec.errors import ConfigError

    model = p.model
    if not hasattr(model, "explain"):
        raise ConfigError(f"explain: model {model.name!r} of {p.cfg.get('model')!r} runs gives no explanations "
                          f"(a Demure model does: demure, demure-base)")
    u = int(p.split.user_map.to_index([user], source="--user")[0])
    t = None if target is None else int(p.split.item_map.to_index([target], source="--target")[0])
    known = Sequences.from_interactions(p.split.train.concat(p.split.valid).concat(p.split.test))
    hist = known[u]
    if hist.numel() == 0:
        raise ConfigError(f"explain: user {user!r} has no history in the run's split")
    old = model.score_mode
    model.score_mode = score_mode
    try:
        out = model.explain(hist.to(p.device), t)
    finally:
        model.score_mode = old
    orig = p.split.item_map.to_original
    for it in out["items"]:
        it["item"] = _plain(orig([it["item"]])[0])
    out["target"] = _plain(orig([out["target"]])[0])
    out["user"] = user
    out["history_length"] = int(hist.numel())
    return out


def _plain(x):
    return x.item() if hasattr(x, "item") else x


def table(ex: dict) -> str:
    mods = ex["modalities"]
    w = max(6, max(len(str(it["item"])) for it in ex["items"]))
    head = (f"user {ex['user']}: why item {ex['target']} "
            f"({'given' if ex['target_given'] else 'top-1 recommendation'}); score {ex['score_mode']}, "
            f"{len(ex['items'])} of {ex['history_length']} history items read")
    cols = "  ".join(f"{m[:9]:>9}" for m in mods)
    lines = [head, f"{'pos':>3}  {'item':<{w}}  {'item score':>10}  flag   {cols}  driver     noisy modalities",
             "-" * (40 + w + 11 * len(mods))]
    for it in ex["items"]:
        flag = "PoI  " if it["poi"] else ("noise" if it["noise"] else "     ")
        cells = "  ".join(f"{it['alpha_mod_norm'][m]:>9.3f}" for m in mods)
        lines.append(f"{it['position']:>3}  {str(it['item']):<{w}}  {it['alpha_item']:>10.3g}  {flag}  {cells}  "
                     f"{it['dominant_modality'][:9]:<9}  {','.join(it['noise_modalities']) or '-'}")
    prof = ", ".join(f"{m} {v:.3f}" for m, v in ex["modality_profile"].items())
    lines += ["", f"modality profile (mean normalised modality score): {prof}",
              "PoI: replaced by the negative view (point-of-interest); noise: replaced by the positive view; "
              "modality columns: min-max normalised over the user's (item, modality) scores"]
    return "\n".join(lines)


def heatmap(ex: dict, path: str) -> None:
    """Items x modalities heat map of the normalised modality scores, rows labelled with the item
    id, its item score and its PoI/noise flag; the dominant modality of each item outlined."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    mods = ex["modalities"]
    items = ex["items"]
    grid = np.array([[it["alpha_mod_norm"][m] for m in mods] for it in items]).reshape(len(items), len(mods))
    fig, ax = plt.subplots(figsize=(2.2 + 1.2 * len(mods), 1.2 + 0.32 * len(items)))
    im = ax.imshow(grid, aspect="auto", cmap="viridis", vmin=0.0, vmax=1.0)
    ax.set_xticks(range(len(mods)), mods)
    labels = [f"{it['item']} ({it['alpha_item']:.2g}){' PoI' if it['poi'] else ''}{' noise' if it['noise'] else ''}"
              for it in items]
    ax.set_yticks(range(len(items)), labels, fontsize=7)
    for r, it in enumerate(items):
        c = mods.index(it["dominant_modality"])
        ax.add_patch(plt.Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor="red", linewidth=1.5))
        for m in it["noise_modalities"]:
            ax.text(mods.index(m), r, "x", ha="center", va="center", color="white", fontsize=8)
    ax.set_title(f"user {ex['user']} -> item {ex['target']} ({ex['score_mode']})", fontsize=9)
    ax.set_xlabel("modality (red: dominant; x: noisy slot)")
    fig.colorbar(im, ax=ax, fraction=0.05, label="normalised interest")
    fig.tight_layout()
    tmp = f"{path}.tmp{os.getpid()}.png"
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    os.replace(tmp, path)


def main(args: argparse.Namespace) -> int:
    from graphrec.experiment import load_run
    from graphrec.utils import to_name

    p = load_run(args.run_dir)
    ex = explain_user(p, args.user, args.target, args.score_mode)
    png = args.png if args.png is not None else f"explain-{to_name(str(args.user), 60) or 'user'}.png"
    if png.lower() != "none":
        heatmap(ex, png)
        ex["png"] = png
    if args.json:
        print(json.dumps(ex))
    else:
        print(table(ex))
        if png.lower() != "none":
            print(f"heat map: {png}")
    return 0
