"""Experiments across models, seeds and hyper-parameter grids: every (model, grid point, seed) is one
`graphrec.experiment.run`; the results become a table of mean ± std per test metric, a paired test
of each model against the first, and a plot of the valid curves.

Selection uses valid only (DESIGN.md, "Evaluation"): each run picks its epoch by
``train.valid_metric`` on valid, and with a grid each model's point is the one with the best mean
valid metric over seeds; test is read once per run and only reported.

Significance: a paired t-test and an exact Wilcoxon signed-rank test of each model against the
first, pairing runs by seed (`graphrec.stats`).
"""
from __future__ import annotations

import copy
import csv
import io
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from graphrec import config as config_mod
from graphrec import rundir
from graphrec.errors import ConfigError, GraphrecError, RunDirError
from graphrec.stats import mean_std, paired_t, wilcoxon_exact
from graphrec.utils import atomic_write_bytes, atomic_write_json, log, safe_name, to_name

#: metrics shown in the Markdown table and tested, unless ``metrics=`` names others
SHOWN = ("recall", "ndcg", "mrr")


# -- configuration of the runs ------------------------------------------------------------------
def _flatten(d: Mapping[str, Any], prefix: str = "") -> list[tuple[str, Any]]:
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out += _flatten(v, key + ".")
        else:
            out.append((key, v))
    return out


def _set_items(overrides: Mapping[str, Any]) -> list[str]:
    """``--set`` strings that `graphrec.config.parse_set` turns back into ``overrides`` (JSON is a
    YAML 1.2 flow scalar/collection)."""
    return [f"{k}={json.dumps(v)}" for k, v in _flatten(overrides)]


def _merge(a: dict, b: Mapping[str, Any]) -> dict:
    out = copy.deepcopy(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def _grid_key(key: str) -> tuple[str, ...]:
    parts = key.split(".")
    return ("model_params", *parts[1:]) if parts[0] == "model" and len(parts) > 1 else tuple(parts)


def _strip_resumable(cfg: dict) -> dict:
    """A config without the keys a resumed run may change (threads, device, epochs, ...): what a
    finished run must share with the run this experiment would make."""
    cfg = copy.deepcopy(cfg)
    for path in rundir.RESUMABLE:
        node = cfg
        for p in path[:-1]:
            node = node.get(p) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    cfg.pop("out", None)
    return cfg


def _slug(text: str, limit: int = 60) -> str:
    return to_name(text, limit, keep="=") or "x"


@dataclass
class RunSpec:
    """One run of an experiment: a model at one grid point (``{}`` without a grid) and one seed."""
    model: str
    point: dict[str, Any]
    seed: int
    run_dir: str
    overrides: dict = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.model} {point_label(self.point)} seed {self.seed}".replace("  ", " ")


def point_label(point: Mapping[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in point.items())


# -- the experiment -----------------------------------------------------------------------------
class Experiment:
    """Models x seeds (x grid points) on one dataset, run resumably, summarised with significance.

    >>> exp = Experiment(["lightgcn", "freedom"], "synthetic", seeds=[0, 1], sets=["train.epochs=3"])
    >>> print(exp.run().markdown())

    ``sets``: ``--set`` strings (``"train.lr=0.01"``) or an overrides mapping, applied to every run.
    ``grid``: ``{"model.n_layers": [1, 2], "train.lr": [1e-3, 1e-4]}``; every point x seed runs and
    each model keeps the point with the best mean valid ``train.valid_metric`` (a ``model.`` key a
    model does not have is not varied for that model). ``runs_dir``: one directory per run,
    ``<runs_dir>/<model>[/<point>]/seed<seed>``; a finished run there is re-read, an interrupted one
    resumed, a run made with another config refused. ``jobs`` > 1 trains that many runs at once,
    each a ``python -m graphrec train`` subprocess with one torch thread.
    """

    def __init__(self, models: Sequence[str], dataset: str, seeds: Sequence[int] = (0, 1, 2),
                 sets: Iterable[str] | Mapping[str, Any] | None = None,
                 grid: Mapping[str, Sequence[Any]] | None = None, runs_dir: str | None = None,
                 jobs: int = 1, config_files: Iterable[str] = (), metrics: Sequence[str] | None = None,
                 quiet: bool = True):
        if isinstance(models, str):
            models = [m.strip() for m in models.split(",") if m.strip()]
        if not models:
            raise ConfigError("compare: no models given")
        if len(set(models)) != len(models):
            raise ConfigError(f"compare: a model is named twice in {list(models)}")
        if not isinstance(dataset, str):
            raise ConfigError("compare: dataset must be a name (registered, or a dataset directory form such as "
                              "mmrec:DIR), so that every run, in any process, loads the same data")
        seeds = [int(s) for s in seeds]
        if not seeds or len(set(seeds)) != len(seeds):
            raise ConfigError(f"compare: seeds must be distinct and at least one, got {seeds}")
        self.models, self.dataset, self.seeds = list(models), dataset, seeds
        self.overrides = config_mod.parse_set(list(sets)) if sets is not None and not isinstance(sets, Mapping) \
            else copy.deepcopy(dict(sets or {}))
        if "seed" in self.overrides:
            raise ConfigError("compare: give the seeds as seeds=[...] (--seeds), not as a seed override")
        self.grid = {str(k): list(v) for k, v in (grid or {}).items()}
        for k, v in self.grid.items():
            if not v:
                raise ConfigError(f"compare: grid key {k!r} has no values")
        self.config_files = list(config_files)
        self.jobs = max(1, int(jobs))
        self.metrics = list(metrics) if metrics else None
        self.quiet = quiet
        name = _slug(f"{os.path.basename(dataset.rstrip('/').split(':', 1)[-1]) or dataset}-{'-'.join(self.models)}")
        self.runs_dir = runs_dir or os.path.join("runs", "compare", name)
        self.counts = {"reused": 0, "resumed": 0, "trained": 0}
        self.results: dict[str, dict[str, list[dict]]] = {}  # model -> point label -> results by seed
        self.selected: dict[str, str] = {}
        self._specs: list[RunSpec] = []
        self._configs: dict[str, dict] = {}

    # -- planning ---------------------------------------------------------------------------------
    def _points(self, model: str) -> list[dict[str, Any]]:
        if not self.grid:
            return [{}]
        known = config_mod.load_config(model, self.dataset, self.config_files)
        axes = []
        for key, values in self.grid.items():
            node: Any = known
            for p in _grid_key(key)[:-1]:
                node = node.get(p) if isinstance(node, dict) else None
            if not isinstance(node, dict) or _grid_key(key)[-1] not in node:
                if key.startswith("model."):
                    log.info("compare: %s has no hyper-parameter %s; not varied for it", model, key[6:])
                    continue
                raise ConfigError(f"compare: grid key {key!r} is not a config key (e.g. model.n_layers, train.lr)")
            axes.append([(key, v) for v in values])
        return [dict(combo) for combo in itertools.product(*axes)]

    def plan(self) -> list[RunSpec]:
        """Every run of the experiment, with its directory and overrides (nothing is trained)."""
        specs = []
        for model in self.models:
            for point in self._points(model):
                sub = os.path.join(self.runs_dir, safe_name(model, "model name"))
                if self.grid:
                    sub = os.path.join(sub, _slug("+".join(f"{k.split('.')[-1]}={v}" for k, v in point.items())
                                                  or "default", 120))
                for seed in self.seeds:
                    ov = _merge(self.overrides, config_mod.parse_set([f"{k}={json.dumps(v)}" for k, v in point.items()]))
                    ov["seed"] = seed
                    ov.setdefault("train", {})["progress"] = False
                    specs.append(RunSpec(model, point, seed, os.path.join(sub, f"seed{seed}"), ov))
        unused = set(self.grid) - {k for spec in specs for k in spec.point}
        if unused:
            raise ConfigError(f"compare: grid keys {sorted(unused)} are hyper-parameters of none of {self.models}")
        for spec in specs:  # an unknown model or key, a bad value: refused before anything trains
            self._config(spec)
        self._specs = specs
        return specs

    def _config(self, spec: RunSpec) -> dict:
        return config_mod.load_config(spec.model, self.dataset, self.config_files, spec.overrides)

    def _state(self, spec: RunSpec) -> str:
        """``done`` (result.json), ``resume`` (a checkpoint), ``fresh`` (nothing, or a run that died
        before its first checkpoint: removed)."""
        d = spec.run_dir
        if not os.path.isdir(d) or not os.listdir(d):
            return "fresh"
        if not rundir.is_run(d):
            raise RunDirError(f"{d}: exists and is not a graphrec run; give the experiment another runs_dir")
        import yaml

        with open(os.path.join(d, "config.yaml")) as f:
            saved = yaml.safe_load(f)
        want = self._config(spec)
        if config_mod.config_hash(_strip_resumable(saved)) != config_mod.config_hash(_strip_resumable(want)):
            changed = _differences(_strip_resumable(saved), _strip_resumable(want))
            raise RunDirError(f"{d}: holds a run made with another config ({', '.join(changed[:4])}); use the same "
                              f"settings to resume it, or another runs_dir (--out)")
        if os.path.isfile(os.path.join(d, "result.json")):
            return "done"
        if os.path.isfile(os.path.join(d, "last.pt")):
            return "resume"
        lock = rundir.RunLock(d)  # refuses while another process writes it
        lock.release()
        shutil.rmtree(d)  # died before its first epoch ended: nothing to keep
        return "fresh"

    # -- running ----------------------------------------------------------------------------------
    def run(self) -> Experiment:
        """Train what is missing, then read every run's result; returns self."""
        self.counts = {"reused": 0, "resumed": 0, "trained": 0}
        specs = self.plan()
        todo = []
        for spec in specs:
            state = self._state(spec)
            if state == "done":
                self.counts["reused"] += 1
            else:
                todo.append((spec, state))
        if todo:
            log.info("compare: %d of %d runs to train in %s", len(todo), len(specs), self.runs_dir)
        jobs = min(self.jobs, len(todo), os.cpu_count() or 1) if todo else 1
        if jobs < self.jobs and len(todo) >= self.jobs:
            log.info("compare: %d parallel jobs requested, %d cores: running %d", self.jobs, os.cpu_count(), jobs)
        if jobs <= 1:
            for spec, state in todo:
                self._run_here(spec, state)
        else:
            self._run_parallel(todo, jobs)
        self._collect(specs)
        return self

    def _announce(self, spec: RunSpec, how: str) -> None:
        if not self.quiet:
            print(f"[{time.strftime('%H:%M:%S')}] {how} {spec.label} -> {spec.run_dir}", flush=True)

    def _run_here(self, spec: RunSpec, state: str) -> None:
        from graphrec.experiment import run

        os.makedirs(os.path.dirname(spec.run_dir), exist_ok=True)
        self._announce(spec, "resuming" if state == "resume" else "training")
        if state == "resume":
            run(resume=spec.run_dir, overrides=_resumable_part(spec.overrides), quiet=True)
            self.counts["resumed"] += 1
        else:
            run(model=spec.model, dataset=self.dataset, config_files=self.config_files, overrides=spec.overrides,
                out=spec.run_dir, quiet=True)
            self.counts["trained"] += 1

    def _command(self, spec: RunSpec, state: str) -> list[str]:
        cmd = [sys.executable, "-m", "graphrec", "train", "--quiet"]
        if state == "resume":
            ov = _resumable_part(spec.overrides)
            ov.setdefault("threads", 1)
            cmd += ["--resume", spec.run_dir]
        else:
            ov = copy.deepcopy(spec.overrides)
            if not ov.get("threads"):
                ov["threads"] = 1  # several processes on the cores: one intra-op thread each
            cmd += ["--model", spec.model, "--dataset", self.dataset, "--out", spec.run_dir]
            for f in self.config_files:
                cmd += ["--config", f]
        for item in _set_items(ov):
            cmd += ["--set", item]
        return cmd

    def _run_parallel(self, todo: list[tuple[RunSpec, str]], jobs: int) -> None:
        logs = os.path.join(self.runs_dir, "logs")
        os.makedirs(logs, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS="1", MKL_NUM_THREADS="1")
        env.setdefault("GRAPHREC_LOG", "WARNING")
        pending = list(todo)
        running: list[tuple[subprocess.Popen, RunSpec, str, Any]] = []
        failed: list[str] = []
        try:
            while pending or running:
                while pending and len(running) < jobs:
                    spec, state = pending.pop(0)
                    os.makedirs(os.path.dirname(spec.run_dir), exist_ok=True)
                    path = os.path.join(logs, _slug(os.path.relpath(spec.run_dir, self.runs_dir).replace(os.sep, "_"),
                                                    150) + ".log")
                    fh = open(path, "w")
                    self._announce(spec, "resuming" if state == "resume" else "training")
                    running.append((subprocess.Popen(self._command(spec, state), stdout=fh, stderr=subprocess.STDOUT,
                                                     env=env), spec, state, fh))
                time.sleep(0.2)
                for item in list(running):
                    proc, spec, state, fh = item
                    if proc.poll() is None:
                        continue
                    running.remove(item)
                    fh.close()
                    if proc.returncode != 0:
                        with open(fh.name) as f:
                            tail = " | ".join(line.strip() for line in f.read().strip().splitlines()[-3:])
                        failed.append(f"{spec.label}: exit {proc.returncode}: {tail} (log {fh.name})")
                    else:
                        self.counts["resumed" if state == "resume" else "trained"] += 1
        finally:
            for proc, _, _, fh in running:  # interrupted: stop our own workers (they resume next time)
                proc.terminate()
                proc.wait()
                fh.close()
        if failed:
            raise GraphrecError(f"compare: {len(failed)} run(s) failed: " + "; ".join(failed))

    # -- results ----------------------------------------------------------------------------------
    def _collect(self, specs: list[RunSpec]) -> None:
        import yaml

        self.results = {}
        for spec in specs:
            with open(os.path.join(spec.run_dir, "result.json")) as f:
                r = json.load(f)
            r["point"] = dict(spec.point)
            r["epochs_log"] = os.path.join(spec.run_dir, "epochs.jsonl")
            self.results.setdefault(spec.model, {}).setdefault(point_label(spec.point), []).append(r)
            if spec.model not in self._configs:
                with open(os.path.join(spec.run_dir, "config.yaml")) as f:
                    cfg = yaml.safe_load(f)
                self._configs[spec.model] = {k: cfg.get(k) for k in ("model_params", "train", "data", "eval")}
        self.valid_metric = str(self._configs[self.models[0]]["train"]["valid_metric"])
        self.selected = {}
        for model, points in self.results.items():
            # the selection reads valid only: mean over seeds of each run's best valid metric
            best = max(points, key=lambda p: mean_std([r["valid"][self.valid_metric] for r in points[p]])[0])
            self.selected[model] = best

    def _runs(self, model: str) -> list[dict]:
        return self.results[model][self.selected[model]]

    def shown_metrics(self) -> list[str]:
        first = self._runs(self.models[0])[0]["test"]
        if self.metrics:
            missing = [m for m in self.metrics if m not in first]
            if missing:
                raise ConfigError(f"compare: metrics {missing} are not computed (have {sorted(first)})")
            return list(self.metrics)
        shown = [m for m in first if m.split("@")[0] in SHOWN]
        return sorted(shown, key=lambda m: (SHOWN.index(m.split("@")[0]), int(m.split("@")[1]) if "@" in m else 0))

    def summary(self) -> list[dict]:
        """One row per model (its selected grid point): seeds, mean and std of every test and valid
        metric, best epoch, seconds per epoch, and the paired tests against the first model."""
        base = {r["seed"]: r for r in self._runs(self.models[0])}
        rows = []
        tested = self.shown_metrics()
        for model in self.models:
            rs = self._runs(model)
            row: dict[str, Any] = {"model": model, "point": self.selected[model], "seeds": len(rs)}
            for split in ("test", "valid"):
                for m in rs[0][split]:
                    row[f"{split}_{m}"], row[f"{split}_{m}_std"] = mean_std([r[split][m] for r in rs])
            row["best_epoch"] = mean_std([r["best_epoch"] for r in rs])[0]
            row["s_per_epoch"] = mean_std([r["train_s_per_epoch"] for r in rs])[0]
            if model != self.models[0]:
                pairs = [(base[r["seed"]], r) for r in rs if r["seed"] in base]
                for m in tested:
                    a = [x["test"][m] for x, _ in pairs]
                    b = [y["test"][m] for _, y in pairs]
                    row[f"diff_{m}"] = mean_std([y - x for x, y in zip(a, b)])[0] if pairs else math.nan
                    row[f"t_{m}"], row[f"p_t_{m}"] = paired_t(a, b)
                    row[f"w_{m}"], row[f"p_wilcoxon_{m}"] = wilcoxon_exact(a, b)
            rows.append(row)
        return rows

    def grid_table(self) -> list[dict]:
        """Every (model, grid point): seeds and mean ± std of the valid metric; the selected one marked."""
        out = []
        for model in self.models:
            for label, rs in self.results[model].items():
                m, s = mean_std([r["valid"][self.valid_metric] for r in rs])
                out.append({"model": model, "point": label, "seeds": len(rs), f"valid_{self.valid_metric}": m,
                            f"valid_{self.valid_metric}_std": s, "selected": label == self.selected[model]})
        return out

    def markdown(self, note: str = "") -> str:
        """The table (and paired tests, grid table) as Markdown; ``note`` is appended as a paragraph."""
        rows, shown = self.summary(), self.shown_metrics()
        vm = self.valid_metric
        multi = any(r["seeds"] > 1 for r in rows)
        cell = (lambda r, k: f"{r[k]:.4f}" + (f" ± {r[k + '_std']:.4f}" if multi else ""))
        lines = [f"# compare: {self.dataset}, seeds {self.seeds}; each run's epoch selected by valid {vm}"
                 + ("; each model's grid point selected by mean valid " + vm if self.grid else "")
                 + "; test read once per run", "",
                 "| model | " + ("point | " if self.grid else "") + "seeds | " + " | ".join(f"test {m}" for m in shown)
                 + f" | valid {vm} | best epoch | s/epoch |",
                 "|---" * (4 + len(shown) + (2 if self.grid else 1)) + "|"]
        for r in rows:
            lines.append(f"| {r['model']} | " + (f"{r['point']} | " if self.grid else "") + f"{r['seeds']} | "
                         + " | ".join(cell(r, f"test_{m}") for m in shown)
                         + f" | {cell(r, f'valid_{vm}')} | {r['best_epoch']:.0f} | {r['s_per_epoch']:.2f} |")
        if len(rows) > 1:
            lines += ["", (f"Paired tests against {self.models[0]} over seeds (difference = model - "
                           f"{self.models[0]}; p: two-sided paired t-test / exact Wilcoxon signed-rank):"), "",
                      "| model | " + " | ".join(f"{m}: diff, p(t), p(W)" for m in shown) + " |",
                      "|---" * (1 + len(shown)) + "|"]
            for r in rows[1:]:
                lines.append(f"| {r['model']} | " + " | ".join(
                    f"{r[f'diff_{m}']:+.4f}, {_p(r[f'p_t_{m}'])}, {_p(r[f'p_wilcoxon_{m}'])}" for m in shown) + " |")
        if self.grid:
            lines += ["", f"Grid (mean ± std of valid {vm} over seeds; * = selected):", "",
                      f"| model | point | seeds | valid {vm} |", "|---|---|---|---|"]
            for g in self.grid_table():
                lines.append(f"| {g['model']} | {g['point']}{' *' if g['selected'] else ''} | {g['seeds']} | "
                             f"{g[f'valid_{vm}']:.4f} ± {g[f'valid_{vm}_std']:.4f} |")
        if note:
            lines += ["", note.strip()]
        return "\n".join(lines) + "\n"

    def csv(self) -> str:
        rows = self.summary()
        keys = list(dict.fromkeys(k for r in rows for k in r))
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=keys, lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()

    def record(self) -> dict:
        keep = ("seed", "valid", "test", "best_epoch", "epochs_run", "train_s_per_epoch", "params", "config_hash",
                "run_dir", "point")
        return {"dataset": self.dataset, "seeds": self.seeds, "models": self.models, "grid": self.grid,
                "valid_metric": self.valid_metric, "summary": self.summary(),
                "grid_table": self.grid_table() if self.grid else [],
                "runs": {m: {p: [{k: r[k] for k in keep if k in r} for r in rs] for p, rs in pts.items()}
                         for m, pts in self.results.items()},
                "configs": self._configs,
                "tests": "paired t-test (two-sided, df = n - 1) and exact Wilcoxon signed-rank (two-sided, "
                         "zeros dropped) on per-seed test metrics against the first model"}

    def curves(self) -> dict[str, list[tuple[int, float]]]:
        """Per model (selected point): (epoch, mean over seeds of the valid metric) for every epoch
        that some seed evaluated (later epochs average the seeds still training)."""
        out = {}
        for model in self.models:
            per_epoch: dict[int, list[float]] = {}
            for r in self._runs(model):
                with open(r["epochs_log"]) as f:
                    for line in f:
                        rec = json.loads(line)
                        if self.valid_metric in (rec.get("valid") or {}):
                            per_epoch.setdefault(int(rec["epoch"]), []).append(float(rec["valid"][self.valid_metric]))
            out[model] = [(e, sum(v) / len(v)) for e, v in sorted(per_epoch.items())]
        return out

    def plot(self, path: str) -> str | None:
        """Valid curves as a PNG; None (with a logged note) without matplotlib (``pip install graphrec[plot]``)."""
        try:
            import matplotlib
            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            log.warning("compare: matplotlib is not installed (pip install 'graphrec[plot]'): no valid-curve plot")
            return None
        fig, ax = plt.subplots(figsize=(6.4, 4.0))
        for model, pts in self.curves().items():
            if pts:
                ax.plot([e for e, _ in pts], [v for _, v in pts], label=f"{model} ({self.selected[model] or 'default'})"
                        if self.grid else model)
        from matplotlib.ticker import MaxNLocator
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_xlabel("epoch")
        ax.set_ylabel(f"valid {self.valid_metric} (mean over seeds)")
        ax.set_title(f"{os.path.basename(self.dataset.split(':', 1)[-1].rstrip('/'))}, seeds {self.seeds}")
        ax.legend()
        ax.grid(alpha=0.3)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        atomic_write_bytes(path, buf.getvalue())
        return path

    def write(self, out: str | None = None, stem: str = "compare", note: str = "") -> dict[str, str]:
        """``<out>/<stem>.md`` (with ``note``), ``.csv``, ``.json`` and ``<stem>_valid_curves.png``
        (out = runs_dir)."""
        out = out or self.runs_dir
        os.makedirs(out, exist_ok=True)
        paths = {"md": os.path.join(out, f"{stem}.md"), "csv": os.path.join(out, f"{stem}.csv"),
                 "json": os.path.join(out, f"{stem}.json")}
        atomic_write_bytes(paths["md"], self.markdown(note).encode())
        atomic_write_bytes(paths["csv"], self.csv().encode())
        atomic_write_json(paths["json"], self.record())
        png = self.plot(os.path.join(out, f"{stem}_valid_curves.png"))
        if png:
            paths["png"] = png
        return paths


def _p(p: float) -> str:
    return "n/a" if p is None or math.isnan(p) else (f"{p:.3f}" if p >= 0.001 else f"{p:.1e}")


def _resumable_part(overrides: Mapping[str, Any]) -> dict:
    """The overrides a resumed run may take (`graphrec.rundir.RESUMABLE`)."""
    out: dict = {}
    for path in rundir.RESUMABLE:
        node: Any = overrides
        for p in path:
            node = node.get(p) if isinstance(node, dict) else None
        if node is not None:
            tgt = out
            for p in path[:-1]:
                tgt = tgt.setdefault(p, {})
            tgt[path[-1]] = node
    return out


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in _differences(a.get(k), b.get(k), f"{path}{k}.")]
    return [] if a == b else [f"{path.rstrip('.')}: {a!r} -> {b!r}"]
