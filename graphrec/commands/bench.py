"""`graphrec bench`: parameters, graph-build time, epoch time, evaluation time and peak memory per
model, each (model, scale, repeat) measured in its own process; tables, JSON/CSV and a scaling plot.

Scaling: ``--scale 0.25,0.5,1,2,4`` passes ``scale=`` to the synthetic generator (the config key
``data.dataset_args.scale``), multiplying users, items and interactions of a synthetic preset.
``--report DIR`` instead assembles ``benchmarks/BENCHMARKS.md`` from the result files in DIR.
"""
from __future__ import annotations

import argparse
import os
import sys


def _floats(text: str) -> list[float]:
    try:
        vals = [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"--scale expects comma-separated numbers, got {text!r}") from None
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"--scale values must be positive, got {text!r}")
    return vals


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("bench", help="time and memory per model (one process per model), tables and plots")
    p.add_argument("--models", default="lightgcn,freedom", help="comma-separated model names (default %(default)s)")
    p.add_argument("--dataset", default="synthetic", help="dataset name (default %(default)s)")
    p.add_argument("--epochs", type=int, default=3, help="epochs per measurement, the first a warm-up (default 3)")
    p.add_argument("--warmup", type=int, default=1, help="warm-up epochs excluded from the median (default 1)")
    p.add_argument("--repeat", type=int, default=1, help="processes per (model, scale); medians reported")
    p.add_argument("--scale", type=_floats, metavar="S1,S2,...",
                   help="synthetic datasets only: multiply users/items/interactions, e.g. 0.25,0.5,1,2,4")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", dest="sets",
                   help="config override for every model, e.g. --set train.batch_size=4096")
    p.add_argument("--device", help="cpu, cuda, cuda:1 (default auto)")
    p.add_argument("--threads", type=int, help="torch threads in each worker (default torch's choice)")
    p.add_argument("--timeout", type=float, help="seconds before a worker is stopped")
    p.add_argument("--label", default="", help="a note stored with every record, e.g. 'shared machine'")
    p.add_argument("--json", metavar="FILE", help="write the records as JSON")
    p.add_argument("--csv", metavar="FILE", help="write the records as CSV")
    p.add_argument("--md", metavar="FILE", help="write the markdown tables (with --report: BENCHMARKS.md)")
    p.add_argument("--plot", metavar="FILE.png", help="scaling plot (needs matplotlib, the 'plot' extra)")
    p.add_argument("--profile", metavar="FILE.md",
                   help="instead of timing: profile one epoch and one evaluation of each model "
                        "(torch.profiler) and write where the time goes")
    p.add_argument("--report", metavar="RESULTS_DIR",
                   help="do not run anything: build BENCHMARKS.md (--md) from the result files in RESULTS_DIR")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    from graphrec.bench import runner, tables

    if args.report:
        from graphrec.bench.report import build_report
        out = args.md or os.path.join(os.path.dirname(os.path.abspath(args.report)), "BENCHMARKS.md")
        build_report(args.report, out)
        print(f"wrote {out}")
        return 0
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    if not models:
        raise ValueError("--models is empty")
    if args.profile:
        from graphrec.bench.profile import profile_models
        profile_models(models, args.dataset, args.profile, scale=(args.scale or [None])[0], sets=args.sets,
                       device=args.device, threads=args.threads, echo=print)
        print(f"wrote {args.profile}")
        return 0
    if args.epochs < 1:
        raise ValueError(f"--epochs must be >= 1, got {args.epochs}")
    records = runner.run_bench(models, args.dataset, epochs=args.epochs, repeat=args.repeat, scales=args.scale,
                               sets=args.sets, device=args.device, threads=args.threads, warmup=args.warmup,
                               timeout=args.timeout, label=args.label)
    meta = {"models": models, "dataset": args.dataset, "epochs": args.epochs, "repeat": args.repeat,
            "scales": args.scale, "sets": args.sets, "label": args.label}
    if args.json:
        runner.write_json(args.json, records, meta)
    if args.csv:
        runner.write_csv(args.csv, records)
    ok = [r for r in records if not r.get("error")]
    if args.md:
        from graphrec.utils import atomic_write_bytes
        note = f"Label: {args.label}" if args.label else ""
        atomic_write_bytes(args.md, tables.render_run(records, note=note).encode())
    if args.plot and ok:
        from graphrec.bench.plot import plot_scaling
        plot_scaling(ok, args.plot)
    if ok:
        print()
        print(tables.table5(ok))
        print(tables.details_table(records))
        if args.scale and len(args.scale) > 1:
            print(tables.scaling_table(ok))
    for path in (args.json, args.csv, args.md, args.plot if ok else None):
        if path:
            print(f"wrote {path}")
    failed = len(records) - len(ok)
    if failed:
        print(f"{failed} measurement(s) failed (see above)", file=sys.stderr)
    return 1 if failed or not records else 0
