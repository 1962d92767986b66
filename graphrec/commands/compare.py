"""`graphrec compare`: several models over seeds (and a hyper-parameter grid) on one dataset; prints
the table of mean ± std with paired tests against the first model and writes it as Markdown, CSV,
JSON and a valid-curve plot (`graphrec.compare.Experiment`)."""
from __future__ import annotations

import argparse
from typing import Any


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("compare", help="compare models over seeds (and a grid): mean ± std, paired tests, "
                                       "valid curves")
    p.add_argument("--models", required=True, help="comma list; the first is the baseline of the paired tests")
    p.add_argument("--dataset", help="dataset name (graphrec datasets list), e.g. mmrec:DIR")
    p.add_argument("--seeds", default="0,1,2", help="comma list of seeds (default 0,1,2)")
    p.add_argument("--config", action="append", default=[], metavar="FILE.yaml",
                   help="YAML config layered over the defaults of every run (repeatable)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="override one key in every run, e.g. --set train.epochs=50 --set threads=1")
    p.add_argument("--grid", action="extend", nargs="+", default=[], metavar="KEY=V1,V2",
                   help="hyper-parameter grid, e.g. --grid model.n_layers=1,2,3 train.lr=1e-3,1e-4: every point "
                        "runs, each model keeps the point with the best mean valid metric")
    p.add_argument("--jobs", type=int, default=1, help="runs trained at once, one torch thread each (default 1)")
    p.add_argument("--out", metavar="DIR", help="runs and tables go here (default runs/compare/<dataset>-<models>)")
    p.add_argument("--metrics", help="comma list of test metrics shown and tested (default recall/ndcg/mrr at each k)")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default auto)")
    p.add_argument("--quiet", action="store_true", help="print only the table")
    p.set_defaults(func=main)


def split_values(text: str) -> list[str]:
    """``"1,2,[3,4]"`` -> ``["1", "2", "[3,4]"]``: commas inside brackets or quotes do not split."""
    out, depth, cur, quote = [], 0, "", ""
    for ch in text:
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "'\"":
            quote = ch
        elif ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        elif ch == "," and depth == 0:
            out.append(cur)
            cur = ""
            continue
        cur += ch
    out.append(cur)
    return [v.strip() for v in out]


def parse_grid(items: list[str]) -> dict[str, list[Any]]:
    from graphrec.config import parse_yaml
    from graphrec.errors import ConfigError

    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or not raw.strip():
            raise ConfigError(f"--grid expects key=v1,v2,..., got {item!r}")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice")
        grid[key] = [parse_yaml(v, f"--grid {key}") for v in split_values(raw) if v]
    return grid


def main(args: argparse.Namespace) -> int:
    from graphrec.compare import Experiment
    from graphrec.errors import ConfigError

    try:
        seeds = [int(s) for s in args.seeds.split(",") if s.strip()]
    except ValueError:
        raise ConfigError(f"--seeds expects a comma list of integers, got {args.seeds!r}") from None
    sets = list(args.sets)
    if args.device:
        sets.append(f"device={args.device}")
    dataset = args.dataset
    if dataset is None:
        from graphrec.config import load_config
        dataset = load_config()["dataset"]
    exp = Experiment([m.strip() for m in args.models.split(",") if m.strip()], dataset, seeds, sets=sets,
                     grid=parse_grid(args.grid), runs_dir=args.out, jobs=args.jobs, config_files=args.config,
                     metrics=[m.strip() for m in args.metrics.split(",")] if args.metrics else None,
                     quiet=args.quiet)
    exp.run()
    paths = exp.write()
    print(exp.markdown(), end="")
    if not args.quiet:
        c = exp.counts
        print(f"\n{c['trained']} trained, {c['resumed']} resumed, {c['reused']} re-read; written: "
              + ", ".join(paths.values()))
    return 0
