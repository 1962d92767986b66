"""The model benchmark suite behind benchmarks/BENCHMARKS.md.

    python benchmarks/bench_models.py [--models lightgcn,freedom,...] [--datasets baby,sports,clothing]
        [--scales 0.25,0.5,1,2,4] [--scale-dataset synthetic-clothing] [--epochs 3] [--repeat 1]
        [--profile] [--label TEXT] [--results benchmarks/results] [--skip-table] [--skip-scaling]

Runs `graphrec bench` for every model buildable here (`graphrec.models.list_models()` unless
--models is given) on the MMRec-sized synthetic presets, writing
``results/bench_<dataset>.{json,csv,md}``; the scaling series on one preset
(``results/bench_scaling.{json,csv,md,png}``); optionally a profile of one epoch
(``results/bench_profile.md``); and finally regenerates ``BENCHMARKS.md`` from every result file.
Each measurement runs in its own process; on a shared machine pass a --label saying so.
"""
from __future__ import annotations

import argparse
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DEFAULT_MODELS = "mf,lightgcn,vbpr,freedom,sand-a,sand-b,sand-c,sand-d"


def _graphrec(*args: str) -> int:
    from graphrec.cli import main
    print("graphrec " + " ".join(args), flush=True)
    return main(list(args))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=DEFAULT_MODELS)
    ap.add_argument("--datasets", default="baby,sports,clothing")
    ap.add_argument("--scales", default="0.25,0.5,1,2,4")
    ap.add_argument("--scale-dataset", default="synthetic-clothing")
    ap.add_argument("--scale-models", default="lightgcn,freedom")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--threads", type=int)
    ap.add_argument("--device")
    ap.add_argument("--label", default="")
    ap.add_argument("--results", default=os.path.join(HERE, "results"))
    ap.add_argument("--profile", action="store_true", help="also profile one epoch of --profile-models")
    ap.add_argument("--profile-models", default="lightgcn,freedom")
    ap.add_argument("--skip-table", action="store_true")
    ap.add_argument("--skip-scaling", action="store_true")
    a = ap.parse_args(argv)
    from graphrec.bench.runner import available_models

    ok, skipped = available_models([m.strip() for m in a.models.split(",") if m.strip()])
    for m, why in skipped.items():
        print(f"skipping {m}: {why}")
    common = ["--epochs", str(a.epochs), "--repeat", str(a.repeat)]
    if a.threads:
        common += ["--threads", str(a.threads)]
    if a.device:
        common += ["--device", a.device]
    if a.label:
        common += ["--label", a.label]
    rc = 0
    os.makedirs(a.results, exist_ok=True)
    if not a.skip_table and ok:
        for d in (x.strip() for x in a.datasets.split(",") if x.strip()):
            ds = d if d.startswith("synthetic") or ":" in d else f"synthetic-{d}"
            base = os.path.join(a.results, f"bench_{ds}")
            rc |= _graphrec("bench", "--models", ",".join(ok), "--dataset", ds, *common, "--json", base + ".json",
                            "--csv", base + ".csv", "--md", base + ".md")
    if not a.skip_scaling:
        base = os.path.join(a.results, "bench_scaling")
        rc |= _graphrec("bench", "--models", a.scale_models, "--dataset", a.scale_dataset, "--scale", a.scales,
                        *common, "--json", base + ".json", "--csv", base + ".csv", "--md", base + ".md",
                        "--plot", base + ".png")
    if a.profile:
        extra = ["--threads", str(a.threads)] if a.threads else []
        rc |= _graphrec("bench", "--models", a.profile_models, "--dataset", a.scale_dataset, *extra,
                        "--profile", os.path.join(a.results, "bench_profile.md"))
    rc |= _graphrec("bench", "--report", a.results, "--md", os.path.join(HERE, "BENCHMARKS.md"))
    return rc


if __name__ == "__main__":
    sys.exit(main())
