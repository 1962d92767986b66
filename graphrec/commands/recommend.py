"""`graphrec recommend RUN_DIR --user ID --k 10`: top-K original item ids for a user (a sequence
model ranks the items that follow the user's whole known history; ``--history`` ranks after a
history of original item ids given on the command line)."""
from __future__ import annotations

import argparse
import json
from typing import Optional


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="top-K items for users of a finished run (original ids)")
    p.add_argument("run_dir")
    p.add_argument("--user", action="append", default=[], help="original user id (repeatable)")
    p.add_argument("--history", metavar="ITEM,ITEM,...",
                   help="sequence models: rank what follows these original item ids (oldest first)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=main)


def recommend(p, users_original: list, k: int, history: Optional[list] = None) -> dict:
    """{original user id: [original item ids]}: the model task's top-K, each user's known items
    excluded; ``history`` (original item ids, oldest first) is ranked from as a user of its own
    (key ``"history"``)."""
    import torch

    from graphrec.data.sequences import Sequences
    from graphrec.train.tasks import task_of

    task = task_of(p.model)
    if history is not None:
        items = torch.as_tensor(p.split.item_map.to_index(history, source="--history"), dtype=torch.long)
        seqs = Sequences.from_lengths(torch.tensor([items.numel()]), items, p.split.n_items)
        # no user of the run: any index serves, a sequence model reads the history only
        idx, ok = task.recommend(p.model, p.split, torch.zeros(1, dtype=torch.long, device=p.device), k, seqs)
        keys = ["history"]
    else:
        users = torch.as_tensor(p.split.user_map.to_index(users_original, source="--user"), device=p.device)
        idx, ok = task.recommend(p.model, p.split, users, k)
        keys = [str(u) for u in users_original]
    out = {}
    for row, key in enumerate(keys):
        items = idx[row][ok[row]].cpu()
        out[key] = [x.item() if hasattr(x, "item") else x for x in p.split.item_map.to_original(items)]
    return out


def main(args: argparse.Namespace) -> int:
    from graphrec.errors import ConfigError
    from graphrec.experiment import load_run

    if bool(args.user) == bool(args.history):
        raise ConfigError("recommend: give --user ID (repeatable) or --history ITEM,ITEM,..., not both")
    p = load_run(args.run_dir)
    history = [h.strip() for h in args.history.split(",")] if args.history else None
    recs = recommend(p, args.user, args.k, history)
    if args.json:
        print(json.dumps(recs))
    else:
        for u, items in recs.items():
            print(f"user {u}: " + " ".join(map(str, items)))
    return 0
