"""``graphrec datasets list | info NAME [--json FILE] | export NAME --format mmrec --out DIR |
init LOG [--out card.yaml]``. NAME is a registered name or a dataset card (``*.yaml``)."""
from __future__ import annotations

import argparse
from typing import Any

from graphrec.utils import atomic_write_json


def dataset_info(name: str, seed: int = 999) -> dict[str, Any]:
    """Statistics of a dataset and of the split a run would use (``dataset_split``, method auto)."""
    from graphrec.data.split import dataset_split
    from graphrec.datasets import load

    ds = load(name)
    if ds.features is not None:  # info vets every table (a run reads only the modalities its model uses)
        ds.features.select(ds.features.modalities)
    inter = ds.interactions
    split = dataset_split(ds, seed=seed)
    return {"name": ds.name, "users": inter.n_users, "items": inter.n_items, "interactions": len(inter),
            "density": inter.density,
            "modalities": ds.features.dims() if ds.features is not None else {},
            "item_text": ds.item_text is not None, "item_images": ds.item_images is not None,
            "split": {"method": split.method, "seed": split.seed, **split.sizes(), "hash": split.hash()}}


def _list(args: argparse.Namespace) -> int:
    from graphrec.datasets import describe, list_datasets

    for n in list_datasets():
        print(f"{n:20s} {describe(n)}")
    return 0


def _info(args: argparse.Namespace) -> int:
    info = dataset_info(args.name, seed=args.seed)
    s = info["split"]
    mods = ", ".join(f"{m} ({d}-d)" for m, d in info["modalities"].items()) or "none"
    print(f"dataset       {info['name']}\nusers         {info['users']:,}\nitems         {info['items']:,}\n"
          f"interactions  {info['interactions']:,}\ndensity       {info['density']:.4%}\n"
          f"modalities    {mods}\nitem text     {'yes' if info['item_text'] else 'no'}\n"
          f"split         {s['method']}: train {s['train']:,} / valid {s['valid']:,} / test {s['test']:,}")
    if args.json:
        atomic_write_json(args.json, info)
    return 0


def _export(args: argparse.Namespace) -> int:
    from graphrec.utils import safe_name, to_name
    if args.export_name is not None:  # refused before the dataset is loaded
        safe_name(args.export_name, "datasets export --name")

    from graphrec.data.export import export_mmrec
    from graphrec.data.split import dataset_split
    from graphrec.datasets import load

    ds = load(args.name)
    split = dataset_split(ds, seed=args.seed)
    default = to_name(ds.name.split(":")[-1])
    name = args.export_name or default or "dataset"
    for kind, path in export_mmrec(ds, split, args.out, name).items():
        print(f"{kind:14s} {path}")
    return 0


def _init(args: argparse.Namespace) -> int:
    from graphrec.data.card import write_card

    out = write_card(args.log, args.out, encoding=args.encoding)
    print(f"wrote {out}: check the guessed columns, then\n  graphrec datasets info {out}\n"
          f"  graphrec train --dataset {out} --model lightgcn")
    return 0


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("datasets", help="list, describe and export datasets")
    sub = p.add_subparsers(dest="datasets_command", metavar="ACTION")
    sub.required = True
    sub.add_parser("list", help="known dataset names").set_defaults(func=_list)
    info = sub.add_parser("info", help="users, items, interactions, density, modalities, split sizes")
    info.add_argument("name", help="dataset name or dataset card (*.yaml)")
    info.add_argument("--json", metavar="FILE", help="also write the statistics as JSON")
    info.add_argument("--seed", type=int, default=999, help="split seed (when the dataset has no fixed split)")
    info.set_defaults(func=_info)
    ex = sub.add_parser("export", help="write a dataset with its split in another layout")
    ex.add_argument("name", help="dataset name or dataset card (*.yaml)")
    ex.add_argument("--format", choices=["mmrec"], default="mmrec")
    ex.add_argument("--out", required=True, metavar="DIR")
    ex.add_argument("--name", dest="export_name", default=None, help="file stem (default: dataset name)")
    ex.add_argument("--seed", type=int, default=999)
    ex.set_defaults(func=_export)
    ini = sub.add_parser("init", help="write a starting dataset card (YAML) for an interaction log, guessed "
                                      "from its header")
    ini.add_argument("log", metavar="LOG", help="interaction file (.csv, .tsv, .parquet; gzip accepted)")
    ini.add_argument("--out", metavar="CARD.yaml", help="where to write the card (default: card.yaml beside LOG); "
                                                        "an existing file is never overwritten")
    ini.add_argument("--encoding", default="utf-8", help="the log's text encoding (default utf-8)")
    ini.set_defaults(func=_init)


__all__ = ["dataset_info", "register"]
