"""How often MixGCF's hardest candidates are the user's held-out positives (false negatives).

    python benchmarks/mixgcf_false_negatives.py RUN_DIR [--candidates 64,4] [--batches 10]

RUN_DIR is a finished `mixgcf` run (its best checkpoint is loaded). For each candidate-pool size
M, ten training batches are drawn as in training; per pair and layer, the candidate that hop
mixing would choose is compared with the run's valid and test pairs, and so are the M uniform
candidates themselves. Prints both fractions: their ratio is how much the choice enriches the
negatives in held-out positives.
"""
from __future__ import annotations

import argparse

import torch
import yaml

from graphrec.experiment import load_run
from graphrec.train.samplers import sampler_for


def held_out_fractions(run_dir: str, n_candidates: int, batches: int = 10, seed: int = 0) -> tuple[float, float]:
    """(fraction of chosen candidates that are held-out positives, the same for uniform candidates)."""
    p = load_run(run_dir, "best.pt")
    m = p.model
    m.n_candidates = int(n_candidates)
    with open(f"{run_dir}/config.yaml") as f:
        train_cfg = yaml.safe_load(f)["train"]
    sampler = sampler_for(m, p.split.train, train_cfg, "cpu")
    n_items = p.split.n_items
    held = torch.unique(torch.cat([s.user * n_items + s.item for s in (p.split.valid, p.split.test)]))
    chosen_hits = uniform_hits = chosen_n = uniform_n = 0
    with torch.no_grad():
        for i, b in enumerate(sampler.epoch(torch.Generator().manual_seed(seed))):
            if i == batches:
                break
            chosen = m.train_forward(b)["chosen"]  # [B, K, L+1] item ids
            u = b["user"][:, None, None]
            chosen_hits += int(torch.isin(u * n_items + chosen, held).sum())
            chosen_n += chosen.numel()
            uniform_hits += int(torch.isin(b["user"][:, None] * n_items + b["neg"], held).sum())
            uniform_n += b["neg"].numel()
    return chosen_hits / chosen_n, uniform_hits / uniform_n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run_dir")
    ap.add_argument("--candidates", default="64,4", help="candidate-pool sizes M to try")
    ap.add_argument("--batches", type=int, default=10)
    a = ap.parse_args()
    for m in (int(x) for x in a.candidates.split(",")):
        hard, uni = held_out_fractions(a.run_dir, m, a.batches)
        print(f"M={m}: held-out positives among the chosen candidates {hard:.4f}, among uniform candidates "
              f"{uni:.4f} ({hard / uni:.1f}x)" if uni else f"M={m}: {hard:.4f} / no uniform hits")


if __name__ == "__main__":
    main()
