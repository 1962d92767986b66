"""The `graphrec` command. Each subcommand lives in `graphrec.commands.<name>` and exposes
``register(subparsers)``; it sets ``func`` on its parser."""
from __future__ import annotations

import argparse
import importlib
import os
import sys

# Model hubs must never be contacted: graphrec only reads local files and packages.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

COMMANDS = ["datasets", "encode", "build_graphs", "train", "evaluate", "recommend", "bench"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="graphrec", description="Graph-based multimodal recommendation.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        try:
            mod = importlib.import_module(f"graphrec.commands.{name}")
        except ModuleNotFoundError as e:  # a subcommand not built in this install
            if e.name == f"graphrec.commands.{name}":
                continue
            raise
        mod.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser()
    if not argv:
        argv = ["train"]  # `graphrec` alone = the main job on the default dataset
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        rc = args.func(args)
    except (ValueError, KeyError, FileNotFoundError) as e:
        msg = e.args[0] if isinstance(e, KeyError) and e.args else e
        print(f"graphrec {args.command}: error: {msg}", file=sys.stderr)
        return 1
    return int(rc or 0)


if __name__ == "__main__":
    sys.exit(main())
