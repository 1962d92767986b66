"""The composition root of one run: config -> dataset -> split -> graphs -> model -> task
(sampler, evaluators) -> trainer -> test once -> run record.

This is the only place where the stages meet; each stage only consumes what the previous one
produced (DESIGN.md, "The flow"). It sits above `graphrec.train`, which only trains.
"""
from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, Optional

import torch

from graphrec import config as config_mod
from graphrec import rundir
from graphrec.data.card import is_card
from graphrec.data.checks import check_trainable
from graphrec.data.dataset import Dataset
from graphrec.data.split import Split
from graphrec.environment import environment
from graphrec.models import ModelContext, Recommender, get_model
from graphrec.train import checkpoint, distributed, sharding, transfer
from graphrec.train.distributed import World
from graphrec.train.probe import PhaseProbe
from graphrec.train.tasks import Evaluator, Sampler, get_task, task_of
from graphrec.train.tensorboard import tensorboard_callback
from graphrec.train.trainer import Callback, Trainer
from graphrec.errors import MissingFileError, RunDirError
from graphrec.utils import atomic_write_json, log, resolve_device, safe_name, seed_everything, to_name


@dataclass
class Prepared:
    cfg: dict
    dataset: Dataset
    split: Split
    model: Recommender
    device: torch.device
    probe: PhaseProbe
    graph_meta: Dict[str, dict]
    feature_hashes: Dict[str, str]  # of the features the model reads; filled for runs that record them
    notes: Dict[str, Any] = field(default_factory=dict)  # recorded in result.json (e.g. what a transfer loaded)
    shards: Optional[sharding.ShardedModel] = None  # this rank's sharded tables (train.shard_tables)


def load_dataset(cfg: dict) -> Dataset:
    from graphrec.datasets import load
    dataset = load(cfg["dataset"], **(cfg["data"].get("dataset_args") or {}))
    return dataset.with_item_tables(cfg["data"].get("extra_features") or {})


def split_for(dataset: Dataset, cfg: dict) -> Split:
    """The configured split; ``auto`` is the dataset's own, else the model task's rule."""
    from graphrec.data.split import dataset_split
    d = cfg["data"]
    auto = get_task(get_model(cfg["model"]).task).default_split
    return dataset_split(dataset, method=d["split"], seed=int(d["split_seed"]), ratios=tuple(d["ratios"]),
                         holdout=float(d["holdout"]), auto=auto, folds=int(d["folds"]), fold=int(d["fold"]))


def build_graphs(model_cls, hp: dict, split: Split, dataset: Dataset, cfg: dict) -> Dict[str, Any]:
    specs = model_cls.graph_specs(hp)
    if not specs:
        return {}
    from graphrec.graphs import GraphCache, build
    cache = GraphCache(cfg["data"].get("cache_dir"))
    run = {"index": cfg["data"].get("knn_index", "auto")}
    if cfg["data"].get("knn_nprobe") is not None:
        run["nprobe"] = int(cfg["data"]["knn_nprobe"])
    # the kNN index (data.knn_index, data.knn_nprobe) is the run's choice, unless the model fixes it in its spec
    specs = {name: ({**run, **spec} if spec.get("kind") in ("knn", "knn_mix") else spec)
             for name, spec in specs.items()}
    return {name: build(spec, split.train, dataset.features, cache) for name, spec in specs.items()}


def _masks_known_items(cfg: dict, model_cls) -> bool:
    """Whether the run's evaluation excludes the items a user is known to have (the pairwise
    protocol always does; the next-item one unless eval.mask_history is off)."""
    protocol = str(cfg["eval"].get("protocol") or "task")
    task = model_cls.task if protocol == "task" else protocol
    return task != "next_item" or bool(cfg["eval"]["mask_history"])


def prepare(cfg: dict, split: Optional[Split] = None, dataset: Optional[Dataset] = None,
            probe: Optional[PhaseProbe] = None, hash_features: bool = False) -> Prepared:
    device = resolve_device(cfg.get("device", "auto"))
    if cfg.get("threads"):
        # several threads on a machine already busy spin in OpenMP barriers: small ops get ~100x slower
        torch.set_num_threads(int(cfg["threads"]))
    probe = probe or PhaseProbe(device)
    model_cls = get_model(cfg["model"])  # fail fast on an unknown model, before loading data
    hp = dict(cfg.get("model_params") or {})
    own_dataset = dataset is None
    with probe.phase("data"):
        # a dataset handed in (an Experiment's, reused over seeds) gains the configured tables too
        dataset = dataset.with_item_tables(cfg["data"].get("extra_features") or {}) if dataset else load_dataset(cfg)
        split = split or split_for(dataset, cfg)
    check_trainable(split, train_masked=_masks_known_items(cfg, model_cls),
                    allow_overlap=cfg["data"]["repeated_pairs"] == "warn")
    need = model_cls.required_modalities(hp)
    have = dataset.features.modalities if dataset.features is not None else []
    missing = [m for m in need if m not in have]
    if missing:
        raise ValueError(f"model '{cfg['model']}' needs item features {missing} but dataset "
                         f"'{cfg['dataset']}' has {have or 'no item features'}")
    with probe.phase("graph_build"):
        graphs = build_graphs(model_cls, hp, split, dataset, cfg)
    seed_everything(int(cfg["seed"]), bool(cfg["train"].get("deterministic")))
    features = dataset.features.select(need) if need else None
    # a run records them (run.json, for --resume); benchmarks and re-evaluations need not read
    # the tables once more (0.4 GB at Clothing scale)
    feature_hashes = {m: features.hash(m) for m in need} if hash_features and features is not None else {}
    ctx = ModelContext(n_users=split.n_users, n_items=split.n_items, train=split.train,
                       graphs={k: g.to(device) for k, g in graphs.items()}, features=features,
                       device=device, seed=int(cfg["seed"]))
    model = model_cls(ctx, **hp).to(device)
    if own_dataset:
        # the model holds what it uses; features it does not use (413 MB at Clothing scale for
        # LightGCN) must not stay alive for the whole run
        dataset.features = None
    meta = {k: dict(g.meta) for k, g in graphs.items()}
    return Prepared(cfg, dataset, split, model, device, probe, meta, feature_hashes)


def evaluators(p: Prepared, world: Optional[World] = None) -> tuple[Evaluator, Evaluator]:
    """(valid, test) evaluators of the model's task, or of the task named by ``eval.protocol``
    (e.g. a pairwise model judged by the next-item protocol, beside sequence models); in a
    data-parallel run, over this rank's users with metrics combined over ranks."""
    protocol = str(p.cfg["eval"].get("protocol") or "task")
    task = task_of(p.model) if protocol == "task" else get_task(protocol)
    if world is None:
        return task.evaluators(p.model, p.split, p.cfg, p.device)
    valid, test = task.evaluators(p.model, distributed.shard_split(p.split, world), p.cfg, p.device)
    return distributed.ShardedEvaluator(valid, world), distributed.ShardedEvaluator(test, world)


def sampler(p: Prepared) -> Optional[Sampler]:
    """Training batches of the model's task (None for a model with nothing to train)."""
    return task_of(p.model).sampler(p.model, p.split, p.cfg, p.device)


def trainer_for(p: Prepared, valid: Evaluator, run_dir: str, callbacks: Iterable[Callback] = (),
                checkpoints: bool = True, world: Optional[World] = None) -> Trainer:
    """The trainer of a prepared run, with its task's sampler (in a data-parallel run, this rank's
    share of each batch and the gradient average over ranks: `graphrec.train.distributed`)."""
    batches, callbacks = sampler(p), list(callbacks)
    if world is not None and batches is not None:
        batches = distributed.ShardedSampler(batches, world)
        callbacks.append(distributed.GradientSync(world, batches, local=sharding.local_parameters(p.shards)))
        if p.shards is not None:  # sharded tables: gathered between epochs, their optimiser state saved
            p.shards.sampler = batches
            callbacks.append(p.shards.callback(run_dir))
    return Trainer(p.model, batches, valid, p.cfg["train"], run_dir, p.device, int(p.cfg["seed"]),
                   p.probe, callbacks=callbacks, checkpoints=checkpoints)


def new_run_dir(cfg: dict, out: Optional[str]) -> str:
    """``out``, or ``<cfg.out>/<model>-<dataset>-s<seed>-<time>`` (names made path-safe)."""
    if out:
        return out
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    ds = to_name(str(cfg["dataset"]), 40)
    name = safe_name(f"{cfg['model']}-{ds}-s{cfg['seed']}-{stamp}", "run name")
    return os.path.join(cfg.get("out") or "runs", name)


def fingerprint(p: Prepared) -> dict:
    """What a run is made from (`graphrec.rundir`): config, interactions, split, item features."""
    return {"config_hash": config_mod.config_hash(p.cfg), "dataset_hash": p.dataset.interactions.content_hash(),
            "split_hash": p.split.hash(), "feature_hashes": p.feature_hashes}


def _resume_config(run_dir: str, overrides: dict, model, dataset, config_files, seed, epochs, out,
                   quiet: bool) -> tuple[dict, dict]:
    """(the saved config of ``run_dir`` as written, it completed and with the changes a resumed run
    may take: more epochs, another device, ...); anything else given with --resume is refused,
    never silently ignored."""
    import yaml
    given = [name for name, v in (("--model", model), ("--dataset", dataset), ("--config", list(config_files)),
                                  ("--seed", seed), ("--out", out)) if v]
    if given:
        raise RunDirError(f"--resume {run_dir}: {', '.join(given)} cannot change in a resumed run; it continues "
                          f"with its saved config.yaml")
    if not rundir.is_run(run_dir):
        raise RunDirError(f"{run_dir}: not a graphrec run directory (no run.json, or config.yaml and split.json)")
    path = os.path.join(run_dir, "config.yaml")
    with open(path) as f:
        raw = yaml.safe_load(f)
    # checked against today's defaults (keys added since the run began are filled in), but its hash
    # is taken as written: an upgrade that adds a key must not make every older run unresumable
    saved = config_mod.check_config(raw, path)
    ov = dict(overrides or {})
    if epochs is not None:
        ov.setdefault("train", {})["epochs"] = int(epochs)
    if quiet:
        ov.setdefault("train", {})["progress"] = False
    rundir.check_resumable(ov)
    return raw, config_mod.merge(saved, ov, "--resume")


def run(model: Optional[str] = None, dataset: Optional[str | Dataset] = None, config_files: Iterable[str] = (),
        overrides: Optional[dict] = None, seed: Optional[int] = None, epochs: Optional[int] = None,
        out: Optional[str] = None, resume: Optional[str] = None, quiet: bool = False,
        _world: Optional[tuple] = None) -> dict:
    """Train and evaluate one model; returns (and writes) the result record.

    ``dataset`` is a registered name or an already loaded `Dataset` (its ``name`` is recorded).
    ``resume=RUN_DIR`` continues an interrupted run from its ``last.pt`` with its saved config; only
    ``epochs``, ``quiet`` and the overrides of `graphrec.rundir.RESUMABLE` may come with it, and it
    is refused when the config, dataset, split or item features differ from the run's start.
    Under ``torchrun`` (``WORLD_SIZE`` > 1) each process is one rank of a data-parallel run
    (`graphrec.train.distributed`); rank 0 writes the run directory.
    """
    data_obj = dataset if isinstance(dataset, Dataset) else None
    if data_obj is not None:
        dataset = data_obj.name
    elif isinstance(dataset, str) and is_card(dataset):
        dataset = os.path.abspath(dataset)  # the run's config must find the card from anywhere
    if _world is None:
        world = distributed.from_env((overrides or {}).get("device", "auto"))
        if world is not None:
            return _run_ranked(world, model, dataset, data_obj, config_files, overrides, seed, epochs, out, resume,
                               quiet)
    world, told = _world if _world is not None else (None, {})

    def tell_peers(run_dir: str, cfg: dict) -> None:  # rank 0 of a data-parallel run: the run has started
        if world is not None:
            told["run_dir"] = run_dir
            world.broadcast_object({"run_dir": run_dir, "cfg": cfg})
    if resume:
        run_dir = resume
        # an in-memory dataset must be handed again (nothing names it); a dataset name may not change
        saved, cfg = _resume_config(run_dir, overrides or {}, model, None if data_obj is not None else dataset,
                                    config_files, seed, epochs, out, quiet)
        sharding.check(cfg, world.size if world is not None else 1)
        recorded = rundir.read_fingerprint(run_dir)
        lock = rundir.RunLock(run_dir)
        try:
            # the saved config first (before any data loads), then what the data gives
            rundir.check_unchanged(run_dir, recorded, {"config_hash": config_mod.config_hash(saved)})
            p = prepare(cfg, split=Split.load(run_dir), dataset=data_obj, hash_features=True)
            now = fingerprint(p)
            rundir.check_unchanged(run_dir, recorded, {k: v for k, v in now.items() if k != "config_hash"})
            config_mod.dump(cfg, os.path.join(run_dir, "config.yaml"))
            if recorded is not None:
                rundir.write_fingerprint(run_dir, now)
            tell_peers(run_dir, cfg)
            return _finish(p, run_dir, *_start(p, run_dir, resume=True, world=world), quiet=quiet, world=world)
        finally:
            lock.release()
    ov = dict(overrides or {})
    if seed is not None:
        ov["seed"] = int(seed)
    if epochs is not None:
        ov.setdefault("train", {})["epochs"] = int(epochs)
    if quiet:
        ov.setdefault("train", {})["progress"] = False
    cfg = config_mod.load_config(model, dataset, config_files, ov)
    get_model(cfg["model"])  # an unknown model fails before anything is written
    sharding.check(cfg, world.size if world is not None else 1)
    run_dir = new_run_dir(cfg, out)
    with rundir.new_run(run_dir) as lock:  # removed again if the start fails
        config_mod.dump(cfg, os.path.join(run_dir, "config.yaml"))
        p = prepare(cfg, dataset=data_obj, hash_features=True)
        p.split.save(run_dir)
        rundir.write_fingerprint(run_dir, fingerprint(p))
        tell_peers(run_dir, cfg)
        started = _start(p, run_dir, resume=False, world=world)
    try:  # from here on the run directory holds results: it stays, whatever happens
        return _finish(p, run_dir, *started, quiet=quiet, world=world)
    finally:
        lock.release()


def _run_ranked(world: World, model, dataset, data_obj, config_files, overrides, seed, epochs, out, resume,
                quiet: bool) -> dict:
    """One rank of a data-parallel run: rank 0 makes (or checks and reopens) the run directory as a
    single process would and tells the others where it is, or why it failed."""
    if world.is_main:
        told: dict = {}
        try:
            return run(model, data_obj or dataset, config_files, overrides, seed, epochs, out, resume, quiet,
                       _world=(world, told))
        except BaseException as e:
            if "run_dir" not in told:  # failed before the start: the peers must not wait for it
                world.broadcast_object({"error": f"{type(e).__name__}: {e}"})
            raise
    told = world.broadcast_object(None)
    if "error" in told:
        raise distributed.DistributedError(f"rank {world.rank}: rank 0 could not start the run: {told['error']}")
    run_dir, cfg = told["run_dir"], told["cfg"]
    cfg["train"]["progress"] = False
    split = Split.load(run_dir)  # the split rank 0 made and saved
    p = prepare(cfg, split=split, dataset=data_obj)
    return _finish(p, run_dir, *_start(p, run_dir, resume=bool(resume), world=world), quiet=True, world=world)


def _start(p: Prepared, run_dir: str, resume: bool, world: Optional[World] = None
           ) -> tuple[Trainer, Evaluator, Evaluator]:
    """Evaluators and trainer of a prepared run, its state restored or initialised."""
    cfg = p.cfg
    if world is not None and sharding.mode_of(cfg) != "none":  # this rank's rows of the model's tables
        p.shards = sharding.shard(p.model, sharding.mode_of(cfg), world.size, world.rank,
                                  sparse=cfg["train"].get("sampler") == "neighbor")
        p.notes["shard_tables"] = p.shards.describe()
    valid_eval, test_eval = evaluators(p, world)
    main = world is None or world.is_main
    tb = tensorboard_callback(run_dir) if main else None  # None without the optional tensorboard package
    trainer = trainer_for(p, valid_eval, run_dir, callbacks=[tb] if tb else [], checkpoints=main, world=world)
    init = cfg["train"].get("init_from")
    if resume:
        trainer.resume()
        if p.shards is not None:
            p.shards.restore_optimizer(trainer.opt, run_dir, trainer.epoch)
    elif hasattr(p.model, "manifest") and (init is None or transfer.is_components_dir(init)):
        # a transferable model (PMMRec): the components its transfer setting names, strictly, from
        # a `graphrec export` components directory (none for setting "none"); what was loaded,
        # given public backbone weights or left fresh goes to result.json
        report = transfer.load_components(p.model, init)
        log.info("%s", report.summary())
        p.notes["transfer"] = report.as_dict()
    elif init:
        path = checkpoint.resolve_init(init)
        # an export directory's tables are placed by the original ids of their rows
        checkpoint.load_into(p.model, checkpoint.load_file(path), only=cfg["train"].get("init_components"),
                             strict=False, where=path, user_map=p.split.user_map, item_map=p.split.item_map)
    if world is not None:
        # identical replicas, whatever each rank read; sharded tables: each rank read its own rows
        world.broadcast_module(p.model, skip=sharding.local_parameters(p.shards))
    if p.shards is not None:
        p.shards.gather()
    return trainer, valid_eval, test_eval


def _finish(p: Prepared, run_dir: str, trainer: Trainer, valid_eval: Evaluator, test_eval: Evaluator,
            quiet: bool, world: Optional[World] = None) -> dict:
    """Train, test the selected checkpoint once, write and return the result record."""
    cfg = p.cfg
    summary = trainer.fit()
    # test: once, for the selected (best-valid) checkpoint
    if p.shards is not None:  # sharded tables: each rank reads its rows, once rank 0 has written them
        world.barrier()
    if world is None or world.is_main or p.shards is not None:
        best = os.path.join(run_dir, "best.pt")
        checkpoint.load_into(p.model, checkpoint.load_file(best), where=best)
    if world is not None:
        world.broadcast_module(p.model, skip=sharding.local_parameters(p.shards))
    with p.probe.phase("test"):
        test = test_eval.evaluate(p.model)
    result = {
        "model": cfg["model"], "task": p.model.task, "dataset": cfg["dataset"], "seed": cfg["seed"],
        "run_dir": run_dir,
        **summary, "test": test,
        "n_users": p.split.n_users, "n_items": p.split.n_items, "split": p.split.sizes(),
        "split_hash": p.split.hash(), "split_method": p.split.method,
        "cold_users_skipped": {"valid": valid_eval.n_cold_users, "test": test_eval.n_cold_users},
        "params": sum(x.numel() for x in p.model.parameters()),
        "config_hash": config_mod.config_hash(cfg),
        "graph_build_s": round(p.probe.phases.get("graph_build", {}).get("seconds", 0.0), 4),
        "graphs": p.graph_meta, "phases": p.probe.phases, "peak_mem_mb": round(p.probe.peak_mb(), 1),
        "world_size": world.size if world is not None else 1, **p.notes,
        **environment(p.device),
    }
    if world is not None and not world.is_main:
        return result  # rank 0 writes and prints
    atomic_write_json(os.path.join(run_dir, "result.json"), result)
    if not quiet:
        print(format_result(result))
    return result


def format_result(r: dict) -> str:
    keys = [k for k in r["test"] if k.split("@")[0] in ("recall", "ndcg", "precision", "hit", "map", "mrr")]
    w = max(len(k) for k in keys) if keys else 10
    lines = [f"{r['model']} on {r['dataset']}  (seed {r['seed']}, device {r['device']}, best epoch "
             f"{r['best_epoch']}/{r['epochs_run']})",
             f"{'metric':<{w}}  {'valid':>7}  {'test':>7}"]
    for k in keys:
        lines.append(f"{k:<{w}}  {r['valid'].get(k, float('nan')):>7.4f}  {r['test'][k]:>7.4f}")
    lines.append(f"train {r['train_s_per_epoch']:.3f} s/epoch (median) | eval {r['eval_s']:.3f} s | "
                 f"graphs {r['graph_build_s']:.2f} s | peak memory {r['peak_mem_mb']:.0f} MB | {r['params']:,} params")
    lines.append(f"run directory: {r['run_dir']}")
    return "\n".join(lines)


def load_run(run_dir: str, which: str = "best.pt", dataset: Optional[Dataset] = None) -> Prepared:
    """Rebuild a finished run's model (same config, same saved split) with its checkpoint loaded;
    ``dataset``: the in-memory dataset the run was given (nothing names it in its config)."""
    import yaml
    cfg_path = os.path.join(run_dir, "config.yaml")
    if not os.path.exists(cfg_path):
        raise MissingFileError(f"{run_dir}: not a run directory (no config.yaml)")
    with open(cfg_path) as f:
        cfg = yaml.safe_load(f)
    path = checkpoint.resolve_in_run(run_dir, which)  # a bad --checkpoint fails before the data loads
    p = prepare(cfg, split=Split.load(run_dir), dataset=dataset)
    checkpoint.load_into(p.model, checkpoint.load_file(path), where=path)
    p.model.eval()
    return p


def read_result(run_dir: str) -> dict:
    with open(os.path.join(run_dir, "result.json")) as f:
        return json.load(f)
