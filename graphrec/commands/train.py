"""`graphrec train`: train and evaluate one model, write a run directory, print a table."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train and evaluate a model (default: the default model on the "
                                     "embedded synthetic dataset)")
    p.add_argument("--model", help="model name (graphrec train --list-models)")
    p.add_argument("--dataset", help="dataset name (graphrec datasets list) or dataset card (*.yaml)")
    p.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                   help="YAML config layered over the defaults (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="override one key, e.g. --set train.lr=0.01 --set model.n_layers=3")
    p.add_argument("--epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--out", metavar="DIR", help="run directory (default runs/<model>-<dataset>-<seed>-<time>)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue an interrupted run from its last checkpoint")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default auto)")
    p.add_argument("--quiet", action="store_true", help="no progress bars or table")
    p.add_argument("--list-models", action="store_true")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from graphrec.config import parse_set
    from graphrec.models import list_models
    from graphrec.experiment import run

    if args.list_models:
        print("\n".join(list_models()))
        return 0
    overrides = parse_set(args.sets)
    if args.device:
        overrides["device"] = args.device
    run(model=args.model, dataset=args.dataset, config_files=args.config, overrides=overrides,
        seed=args.seed, epochs=args.epochs, out=args.out, resume=args.resume, quiet=args.quiet)
    return 0
