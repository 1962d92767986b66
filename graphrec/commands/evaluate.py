"""`graphrec evaluate RUN_DIR`: re-evaluate a run's best checkpoint on valid and test."""
from __future__ import annotations

import argparse
import json


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("evaluate", help="evaluate a finished run's best checkpoint")
    p.add_argument("run_dir")
    p.add_argument("--checkpoint", default="best.pt", help="best.pt (default) or last.pt")
    p.add_argument("--json", metavar="FILE", help="also write the metrics here")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from graphrec.experiment import evaluators, load_run

    p = load_run(args.run_dir, args.checkpoint)
    valid_eval, test_eval = evaluators(p)
    reps = p.model.propagate()  # one propagation serves both splits
    out = {"valid": valid_eval.evaluate(p.model, reps), "test": test_eval.evaluate(p.model, reps)}
    keys = list(out["test"])
    w = max(map(len, keys))
    print(f"{p.cfg['model']} on {p.cfg['dataset']} ({args.run_dir}, {args.checkpoint})")
    print(f"{'metric':<{w}}  {'valid':>7}  {'test':>7}")
    for k in keys:
        print(f"{k:<{w}}  {out['valid'][k]:>7.4f}  {out['test'][k]:>7.4f}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2)
    return 0
