"""`graphrec recommend RUN_DIR --user ID --k 10`: top-K original item ids for a user."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("recommend", help="top-K items for users of a finished run (original ids)")
    p.add_argument("run_dir")
    p.add_argument("--user", action="append", required=True, help="original user id (repeatable)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--json", action="store_true", help="print JSON instead of text")
    p.set_defaults(func=main)


def recommend(p, users_original: list, k: int) -> dict:
    """{original user id: [original item ids]} excluding each user's training items."""
    import torch

    from graphrec.eval.ranking import RankingEvaluator

    users = torch.as_tensor(p.split.user_map.to_index(users_original, source="--user"), device=p.device)
    ev = RankingEvaluator(p.split.train, [p.split.train], ks=[1], device=p.device, train=p.split.train)
    reps = p.model.propagate()
    idx, ok = ev.topk(p.model, reps, users, k)
    out = {}
    for row, u in enumerate(users_original):
        items = idx[row][ok[row]].cpu()
        out[str(u)] = [x.item() if hasattr(x, "item") else x for x in p.split.item_map.to_original(items)]
    return out


def main(args: argparse.Namespace) -> int:
    from graphrec.experiment import load_run

    p = load_run(args.run_dir)
    recs = recommend(p, args.user, args.k)
    if args.json:
        print(json.dumps(recs))
    else:
        for u, items in recs.items():
            print(f"user {u}: " + " ".join(map(str, items)))
    return 0
