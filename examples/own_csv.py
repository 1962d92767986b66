"""Your own interaction CSV -> LightGCN, through a dataset card (what `graphrec datasets init` writes).

Writes a small CSV of purchases into a temporary folder (two groups of shoppers, each buying from
its own half of the catalogue), writes the starting card for it (the same as running
`graphrec datasets init purchases.csv`), loads it, and trains LightGCN for a few epochs.

From the command line the same takes two commands:
    graphrec datasets init purchases.csv              # writes card.yaml: check the guessed columns
    graphrec train --dataset card.yaml --model lightgcn

Run: python examples/own_csv.py        (about 15 s on a laptop CPU; prints recall@20 last)
"""
import os
import tempfile

import numpy as np
import torch

import graphrec.experiment
from graphrec.data.card import load_card, write_card

torch.set_num_threads(1)
folder = tempfile.mkdtemp(prefix="graphrec-own-csv-")

# 1. a log as it comes out of a shop: string ids, a timestamp, a star rating, a repeated row
rng = np.random.default_rng(0)
lines = ["customer_id,product_id,bought_at,stars"]
for u in range(300):
    half = u % 2  # shoppers of group g buy products of group g
    for j, i in enumerate(rng.choice(np.arange(half, 200, 2), 12, replace=False)):
        lines.append(f"c{u:04d},p{i:03d},{1_700_000_000 + 3600 * (u + j)},{rng.integers(1, 6)}")
lines.append(lines[1])  # a duplicate: dedupe drops it (logged)
with open(os.path.join(folder, "purchases.csv"), "w") as f:
    f.write("\n".join(lines) + "\n")

# 2. the starting card, guessed from the header (`graphrec datasets init`), as a user would keep it
card = write_card(os.path.join(folder, "purchases.csv"))
print(open(card).read().split("# split:")[0])
dataset = load_card(card)
print(f"{dataset.name}: {dataset.n_users} users, {dataset.n_items} items, {len(dataset.interactions)} interactions")

# 3. train LightGCN on it (the card path works wherever a dataset name does)
result = graphrec.experiment.run(model="lightgcn", dataset=card, epochs=15, seed=0, quiet=True,
                                 out=os.path.join(folder, "run"),
                                 overrides={"threads": 1, "train": {"progress": False, "batch_size": 512,
                                                                    "lr": 0.01}})
print(f"test recall@20: {result['test']['recall@20']:.4f}")
