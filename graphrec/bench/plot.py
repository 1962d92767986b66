"""Scaling plot: epoch time, evaluation time and peak memory against training interactions.

Needs matplotlib (the ``plot`` extra: ``pip install graphrec[plot]``)."""
from __future__ import annotations

from typing import Sequence

from graphrec.bench.tables import aggregate


def plot_scaling(records: Sequence[dict], path: str) -> str:
    """Write a log-log figure with one line per (model, dataset); dashed (slope 1) and dotted
    (slope 2) lines through each model's smallest point show linear and quadratic growth.
    Returns ``path``."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError as e:
        raise ImportError("--plot needs matplotlib: pip install 'graphrec[plot]'") from e
    agg = aggregate(records)
    series: dict = {}
    for (m, d, s), a in agg.items():
        series.setdefault((m, d), []).append(a)
    panels = (("train_s_per_epoch", "training s/epoch"), ("eval_s", "evaluation s"), ("peak_mem_mb", "peak memory MB"))
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.2))
    for ax, (key, label) in zip(axes, panels):
        for (m, d), rows in series.items():
            rows = sorted((r for r in rows if r.get(key)), key=lambda r: r["n_train"])
            if not rows:
                continue
            x = [r["n_train"] for r in rows]
            y = [r[key] for r in rows]
            line, = ax.plot(x, y, marker="o", label=f"{m} ({d})")
            if len(rows) > 1:
                r = x[-1] / x[0]
                ax.plot([x[0], x[-1]], [y[0], y[0] * r], ls="--", lw=0.8, color=line.get_color(), alpha=0.6)
                ax.plot([x[0], x[-1]], [y[0], y[0] * r * r], ls=":", lw=0.8, color=line.get_color(), alpha=0.6)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("training interactions")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=8)
    dev = next((a.get("device_name") for a in agg.values()), "")
    fig.suptitle(f"graphrec: cost against interactions (dashed: linear, dotted: quadratic) - {dev}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
