"""Published and externally measured figures that graphrec's benchmarks are shown beside.

- ``PAPER_TABLE5``: SAND (Table 5), memory in GB and training time in s/epoch on Amazon
  Baby/Sports/Clothing; copied from SAND's Table 5 (its baseline columns are FREEDOM's
  published figures). The paper does not name its hardware (its logs show ``cuda:0``).
- ``MMREC_MEASURED``: MMRec's own code (enoche/MMRec e775373) run on this project's 2-core CPU
  machine kind (torch 2.13 CPU, 2 threads) on graphrec's ``synthetic-clothing`` exported in MMRec's
  layout and on MovieLens-100K (``/work/shared/peer-mmrec.md``); ranges are over two runs.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple

PAPER_DEVICE = "GPU, model not stated in the paper (logs show cuda:0)"
PAPER_SOURCE = "SAND (Table 5); baseline columns as in FREEDOM"

# dataset -> paper column -> (memory GB, time s/epoch)
PAPER_TABLE5: Dict[str, Dict[str, Tuple[float, float]]] = {
    "Baby": {"BPR": (1.59, 0.86), "LightGCN": (1.69, 1.81), "VBPR": (1.89, 1.04), "MMGCN": (2.69, 6.35),
             "LATTICE": (4.53, 3.42), "FREEDOM": (2.13, 2.58), "SAND_d": (2.54, 4.58), "SAND_c": (3.42, 18.81),
             "SAND_b": (2.54, 3.75), "SAND_a": (3.42, 16.04)},
    "Sports": {"BPR": (2.00, 1.24), "LightGCN": (2.24, 3.74), "VBPR": (2.71, 1.67), "MMGCN": (3.91, 20.88),
               "LATTICE": (19.93, 13.59), "FREEDOM": (3.34, 4.52), "SAND_d": (3.94, 16.13),
               "SAND_c": (8.83, 60.97), "SAND_b": (3.94, 13.75), "SAND_a": (8.83, 58.81)},
    "Clothing": {"BPR": (2.16, 1.52), "LightGCN": (2.43, 4.58), "VBPR": (3.02, 2.02), "MMGCN": (4.24, 26.13),
                 "LATTICE": (28.22, 23.96), "FREEDOM": (4.15, 5.74), "SAND_d": (4.69, 23.59),
                 "SAND_c": (13.78, 59.25), "SAND_b": (4.69, 21.41), "SAND_a": (13.78, 57.35)},
}

# graphrec model name -> Table 5 column
PAPER_COLUMN = {"mf": "BPR", "lightgcn": "LightGCN", "vbpr": "VBPR", "freedom": "FREEDOM",
                "sand": "SAND_a", "sand-a": "SAND_a", "sand-b": "SAND_b", "sand-c": "SAND_c", "sand-d": "SAND_d"}

# graphrec dataset name -> Table 5 row group
PAPER_DATASET = {"synthetic-baby": "Baby", "synthetic-sports": "Sports", "synthetic-clothing": "Clothing"}

MMREC_DEVICE = "2-core CPU (AMD EPYC), 2 threads, torch 2.13.0+cpu (MMRec e775373, use_gpu: False)"
MMREC_SOURCE = "measured by a peer session, /work/shared/peer-mmrec.md (not re-run here)"

# (dataset, graphrec model) -> {train_s: (lo, hi), eval_s: (lo, hi), rss_gb: (lo, hi), graph_s?: (lo, hi)}
MMREC_MEASURED: Dict[Tuple[str, str], Dict[str, Tuple[float, float]]] = {
    ("synthetic-clothing", "lightgcn"): {"train_s": (15.7, 18.5), "eval_s": (8.0, 9.4), "rss_gb": (1.55, 1.65)},
    ("synthetic-clothing", "freedom"): {"train_s": (94.1, 94.6), "eval_s": (8.2, 8.7), "rss_gb": (3.23, 3.24),
                                        "graph_s": (38.0, 59.0)},
    ("synthetic-clothing", "bm3"): {"train_s": (91.3, 91.3), "eval_s": (8.8, 8.8), "rss_gb": (3.30, 3.30)},
    ("ml-100k", "lightgcn"): {"train_s": (1.24, 1.24), "eval_s": (0.12, 0.12), "rss_gb": (0.445, 0.445)},
    ("ml-100k", "freedom"): {"train_s": (1.53, 1.53), "eval_s": (0.12, 0.12), "rss_gb": (0.521, 0.521)},
}

# the targets against MMRec on this CPU (issue 7)
TARGET_SPEEDUP = 5.0
TARGET_MEMORY_FRACTION = 0.5
TARGET_GROWTH_4X = 4.4


def paper_figures(dataset: str, model: str) -> Optional[Tuple[float, float]]:
    """(memory GB, s/epoch) published for this graphrec model on this dataset, if any."""
    ds, col = PAPER_DATASET.get(dataset.split("@")[0]), PAPER_COLUMN.get(model)
    if ds is None or col is None:
        return None
    return PAPER_TABLE5[ds].get(col)


def mmrec_figures(dataset: str, model: str) -> Optional[Dict[str, Tuple[float, float]]]:
    return MMREC_MEASURED.get((dataset, model))
