"""``graphrec checkpoint convert PATH...``: rewrite checkpoints written by an older graphrec (with
numpy values in them) so they load with ``torch.load(weights_only=True)``.

graphrec refuses to unpickle anything but tensors and plain values, because unpickling other
objects can run code. Converting reads numpy scalars and arrays without running code; a file with
any other object is refused unless ``--trust`` is given, which unpickles it in full (it runs
whatever code the file holds: only for files you wrote yourself). A run directory means its
``best.pt`` and ``last.pt``; the original of a file converted in place is kept as ``<file>.orig``.
"""
from __future__ import annotations

import argparse
import os


def _targets(paths: list[str]) -> list[str]:
    from graphrec.errors import MissingFileError

    out = []
    for p in paths:
        if os.path.isdir(p):
            found = [os.path.join(p, n) for n in ("best.pt", "last.pt") if os.path.isfile(os.path.join(p, n))]
            if not found:
                raise MissingFileError(f"{p}: no best.pt or last.pt in this directory")
            out += found
        else:
            out.append(p)
    return out


def _convert(args: argparse.Namespace) -> int:
    from graphrec.errors import UnsafeFileError
    from graphrec.train.checkpoint import convert, load_file

    targets = _targets(args.paths)
    if args.out and len(targets) != 1:
        from graphrec.errors import ConfigError
        raise ConfigError(f"--out takes one checkpoint file, got {len(targets)}")
    for path in targets:
        try:
            load_file(path)
            safe = True
        except UnsafeFileError:
            safe = False
        written = convert(path, args.out, trust=args.trust)
        if safe:
            print(f"{path}: loads safely already" + (f"; copied to {written}" if written != path else ""))
        else:
            print(f"{path}: converted -> {written}" + (f" (original kept as {path}.orig)" if written == path else ""))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("checkpoint", help="convert checkpoints written by older graphrec versions",
                              description=__doc__)
    sub = p.add_subparsers(dest="checkpoint_command", metavar="ACTION")
    sub.required = True
    c = sub.add_parser("convert", help="rewrite old checkpoints so they load without unpickling code "
                                       "(the original is kept as <file>.orig)")
    c.add_argument("paths", nargs="+", metavar="FILE_OR_RUN_DIR")
    c.add_argument("--out", help="write the converted file here instead of in place (one file only)")
    c.add_argument("--trust", action="store_true",
                   help="also unpickle objects other than numpy values: RUNS ANY CODE THE FILE HOLDS; "
                        "only for files you wrote yourself")
    c.set_defaults(func=_convert)
