"""`graphrec export RUN_DIR [--out DIR]`: write the user/item tables a trained model exports
(`Recommender.export_tables`, e.g. PAMD's disentangled item vectors, MCPT's pretrained user and
item vectors) as ``<side>_<name>.npy`` with an ``export.json`` naming the rows' original ids
(`graphrec.data.vectors`); ``data.extra_features`` reads an item table back as a modality. A
transferable model (PMMRec) also writes its components with a ``manifest.json``
(`graphrec.train.transfer`): ``train.init_from=DIR`` loads them into a model of another catalogue."""
from __future__ import annotations

import argparse
import os


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("export", help="write a trained model's exported user/item vectors (.npy + export.json)")
    p.add_argument("run_dir")
    p.add_argument("--out", help="output directory (default: RUN_DIR/export)")
    p.add_argument("--checkpoint", default="best.pt", help="checkpoint of the run to export from (default best.pt)")
    p.set_defaults(func=main)


def export(run_dir: str, out_dir: str, which: str = "best.pt", dataset=None) -> dict:
    """Export the run's tables (and a transferable model's components) into ``out_dir``; returns
    ``{key: path}``. ``dataset``: the in-memory `Dataset` the run was trained on, if any."""
    import torch

    from graphrec.data.vectors import write_export
    from graphrec.errors import ConfigError
    from graphrec.experiment import load_run

    p = load_run(run_dir, which, dataset)
    with torch.no_grad():
        tables = p.model.export_tables()
    meta = {"model": p.cfg["model"], "run": os.path.abspath(run_dir), "checkpoint": which,
            "dataset": p.cfg["dataset"]}
    out = {}
    if hasattr(p.model, "manifest"):  # a transferable model: its components, for train.init_from=DIR
        from graphrec.train.transfer import save_components
        out["components"] = os.path.join(save_components(p.model, out_dir, sources=[os.path.abspath(run_dir)],
                                                         extra={"run": meta}), "manifest.json")
    elif not tables:
        raise ConfigError(f"{run_dir}: model {p.cfg['model']!r} exports no vectors (it defines no export_tables)")
    if tables:
        out.update(write_export(out_dir, tables, p.split.user_map, p.split.item_map, meta))
    return out


def main(args: argparse.Namespace) -> int:
    out = args.out or os.path.join(args.run_dir, "export")
    for key, path in export(args.run_dir, out, args.checkpoint).items():
        print(f"{key}: {path}")
    return 0
