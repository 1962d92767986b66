"""`graphrec train`: train and evaluate one model, write a run directory, print a table."""
from __future__ import annotations

import argparse
import os


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
    p.add_argument("--nproc", type=int, default=1, metavar="N",
                   help="data-parallel training over N processes on this machine (gloo on CPU, NCCL with one GPU "
                        "each); across machines run `torchrun ... -m graphrec train ...` instead")
    p.add_argument("--list-models", action="store_true")
    p.set_defaults(func=main)


def _argv(args: argparse.Namespace) -> list[str]:
    """The ``graphrec train`` arguments of ``args`` without ``--nproc`` (what every rank runs)."""
    out = ["train"]
    for flag in ("model", "dataset", "epochs", "seed", "out", "resume", "device"):
        if getattr(args, flag) is not None:
            out += [f"--{flag}", str(getattr(args, flag))]
    for f in args.config:
        out += ["--config", f]
    for kv in args.sets:
        out += ["--set", kv]
    return out + (["--quiet"] if args.quiet else [])


def launch(nproc: int, argv: list[str], grace_s: float = 30.0) -> int:
    """Run ``graphrec <argv>`` as ``nproc`` ranks of one data-parallel run on this machine (the
    environment ``torchrun --standalone`` gives: RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR/PORT).
    When a rank fails, the others are stopped after ``grace_s`` seconds (they normally fail at once,
    in their next collective) and the first failure is reported in one line."""
    import socket
    import subprocess
    import sys
    import time

    from graphrec.train.distributed import DistributedError

    with socket.socket() as s:  # a free port for the rendezvous
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": str(nproc),
           "LOCAL_WORLD_SIZE": str(nproc)}
    procs = [subprocess.Popen([sys.executable, "-m", "graphrec", *argv],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)}) for r in range(nproc)]
    failed, deadline = None, None
    while any(p.poll() is None for p in procs):
        for r, p in enumerate(procs):
            if failed is None and p.poll() not in (None, 0):
                failed, deadline = (r, p.returncode), time.monotonic() + grace_s
        if deadline is not None and time.monotonic() > deadline:
            for p in procs:
                if p.poll() is None:
                    p.kill()
        time.sleep(0.2)
    if failed is None:
        failed = next(((r, p.returncode) for r, p in enumerate(procs) if p.returncode != 0), None)
    if failed is not None:
        raise DistributedError(f"{nproc}-process training failed: rank {failed[0]} exited with code {failed[1]} "
                               f"(its error is above)")
    return 0


def main(args: argparse.Namespace) -> int:
    from graphrec.config import parse_set
    from graphrec.errors import ConfigError
    from graphrec.models import list_models
    from graphrec.experiment import run

    if args.list_models:
        print("\n".join(list_models()))
        return 0
    if args.nproc > 1 and not os.environ.get("WORLD_SIZE"):
        return launch(args.nproc, _argv(args))
    if args.nproc < 1:
        raise ConfigError(f"--nproc must be >= 1, got {args.nproc}")
    overrides = parse_set(args.sets)
    if args.device:
        overrides["device"] = args.device
    run(model=args.model, dataset=args.dataset, config_files=args.config, overrides=overrides,
        seed=args.seed, epochs=args.epochs, out=args.out, resume=args.resume, quiet=args.quiet)
    return 0
