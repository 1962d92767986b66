"""One training loop for every model and task: sampling, optimisation, early stopping,
checkpoints, per-term loss logging, determinism, device, resume.

The loop is public: :meth:`Trainer.step` takes one batch (auxiliary estimator steps, forward,
loss, NaN check, backward, gradient clipping, optimiser step; ``train.amp`` runs the model's
marked regions in bfloat16, `graphrec.nn.precision`),
:meth:`Trainer.train_epoch` runs one epoch of the sampler's batches, :meth:`Trainer.fit` the
epochs with selection on valid. Callers observe it through :class:`Callback` hooks (the bench
worker times epochs with them, the profiler times each region of a step) instead of copying it.
"""
from __future__ import annotations

import json
import math
import os
import time
from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any, Dict, Iterator, Optional, Sequence

import torch
from tqdm.auto import tqdm

from graphrec.errors import ConfigError
from graphrec.models.base import Recommender
from graphrec.nn import precision
from graphrec.train import checkpoint
from graphrec.train.probe import PhaseProbe
from graphrec.train.row_sparse import RowSparseAdam
from graphrec.train.tasks import Evaluator, Sampler
from graphrec.utils import log

_TEST_EPOCH_SLEEP = float(os.environ.get("GRAPHREC_TEST_EPOCH_SLEEP", "0") or 0)

_OPTIMISERS = {
    "adam": torch.optim.Adam,
    "adamw": torch.optim.AdamW,
    "sgd": torch.optim.SGD,
    "adagrad": torch.optim.Adagrad,
    "rmsprop": torch.optim.RMSprop,
}


def make_optimizer(name: str, params, lr: float, weight_decay: float, row_sparse: bool = False,
                   betas: Optional[Sequence[float]] = None) -> torch.optim.Optimizer:
    """``betas``: Adam's and AdamW's moment decay rates (``train.betas``). ``row_sparse``: the model
    reads tables with sparse gradients (sampled-subgraph steps), which `RowSparseAdam` updates on
    the rows read only; Adam and AdamW only."""
    if name not in _OPTIMISERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {', '.join(_OPTIMISERS)}")
    params = list(params)
    kw = {"betas": tuple(float(b) for b in betas)} if betas else {}  # None: the optimiser's own
    if row_sparse:
        if name not in ("adam", "adamw"):
            raise ConfigError(f"train.sampler=neighbor updates the rows a step reads with Adam or AdamW; "
                              f"train.optimizer={name!r} is not supported there")
        return RowSparseAdam(params, lr=lr, weight_decay=weight_decay, decoupled=name == "adamw", **kw)
    if name in ("adam", "adamw"):
        # the fused kernel (CPU and CUDA, torch >= 2.4) updates the embedding tables in one pass
        # instead of one pass per Adam sub-step: the same update, several times less memory traffic
        try:
            return _OPTIMISERS[name](params, lr=lr, weight_decay=weight_decay, fused=True, **kw)
        except (RuntimeError, TypeError, ValueError):
            return _OPTIMISERS[name](params, lr=lr, weight_decay=weight_decay, **kw)
    return _OPTIMISERS[name](params, lr=lr, weight_decay=weight_decay)


def param_groups(model: Recommender, main: list, lr: float, weight_decay: float) -> Optional[list[dict]]:
    """The model's own optimiser groups (`Recommender.param_groups`), checked to hold each trainable
    main parameter exactly once (a parameter left out would silently never learn)."""
    groups = model.param_groups(lr, weight_decay)
    if groups is None:
        return None
    groups = [dict(g, params=[q for q in g["params"] if q.requires_grad]) for g in groups]
    seen = [id(q) for g in groups for q in g["params"]]
    want = {id(q) for q in main}
    if len(seen) != len(set(seen)) or set(seen) != want:
        raise ValueError(f"model {model.name!r}: param_groups must hold each trainable parameter once "
                         f"({len(set(seen) & want)} of {len(want)} held, {len(seen) - len(set(seen))} repeated, "
                         f"{len(set(seen) - want)} not trainable main parameters)")
    return [g for g in groups if g["params"]]


class Callback:
    """Hooks into :class:`Trainer`; override the ones you need (all default to doing nothing).

    ``phase`` is ``"train"`` (one epoch) or ``"eval"`` (one valid evaluation). :meth:`region`
    may return a context manager entered around each region of a step (``sample``, ``aux_steps``,
    ``zero_grad``, ``forward``, ``loss``, ``backward``, ``optimizer_step``)."""

    def on_phase_start(self, trainer: "Trainer", phase: str) -> None: ...

    def on_phase_end(self, trainer: "Trainer", phase: str) -> None: ...

    def on_step(self, trainer: "Trainer", terms: Dict[str, torch.Tensor]) -> None: ...

    def on_gradients(self, trainer: "Trainer", params: list) -> None:
        """After a backward pass, before clipping and the optimiser step (data-parallel training
        averages the gradients of ``params`` over ranks here)."""

    def on_evaluation(self, trainer: "Trainer", metrics: Dict[str, float]) -> None: ...

    def on_epoch_end(self, trainer: "Trainer", record: Dict[str, Any]) -> None: ...

    def region(self, name: str):
        return None


class Trainer:
    """Trains ``model`` on ``sampler`` batches and selects the epoch by ``valid`` only.

    Per batch (:meth:`step`): the auxiliary estimator steps (if the model has an estimator), then
    one ``train_forward(batch)`` (the whole-graph ``propagate()`` unless the model computes only
    the batch's rows), ``loss()`` -> named terms, their sum backpropagated. Per epoch:
    ``model.pre_epoch``, valid evaluation every ``eval_every`` epochs, the best state saved
    atomically on strict improvement of ``valid_metric`` (larger is better unless the evaluator
    lists the metric in ``lower_is_better``), and a full resumable checkpoint (``last.pt``:
    model, optimisers, scheduler, sampler generator and global RNG states, early-stopping state,
    history). ``checkpoints=False`` writes none (benchmarks). Test is never looked at here.
    """

    def __init__(self, model: Recommender, sampler: Optional[Sampler], valid: Evaluator,
                 cfg: Dict[str, Any], run_dir: str, device: torch.device, seed: int,
                 probe: Optional[PhaseProbe] = None, callbacks: Sequence[Callback] = (),
                 checkpoints: bool = True):
        self.model = model
        self.sampler = sampler
        self.valid = valid
        self.cfg = cfg
        self.run_dir = run_dir
        self.device = device
        self.probe = probe or PhaseProbe(device)
        self.callbacks = list(callbacks)
        self.checkpoints = bool(checkpoints)
        self.metric = cfg["valid_metric"]
        self.minimise = self.metric in valid.lower_is_better
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(seed)
        main = [q for q in model.main_parameters() if q.requires_grad]
        groups = param_groups(model, main, float(cfg["lr"]), float(cfg["weight_decay"]))
        # a model with nothing to learn (pop) still gets a valid, empty optimiser state
        self.opt = make_optimizer(cfg["optimizer"], groups or main or [torch.nn.Parameter(torch.zeros(0))],
                                  cfg["lr"], cfg["weight_decay"], row_sparse=getattr(sampler, "row_sparse", False),
                                  betas=cfg.get("betas"))
        aux = model.auxiliary_parameters()
        self.aux_opt = (make_optimizer(cfg["optimizer"], aux, cfg.get("aux_lr") or cfg["lr"], 0.0,
                                       betas=cfg.get("betas"))
                        if aux else None)
        gamma, step = float(cfg.get("lr_decay", 1.0)), int(cfg.get("lr_decay_step", 50))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.opt, lambda e: gamma ** (e / step))
        # train.amp: the dtype of the model's reduced-precision regions (None = float32 throughout);
        # parameters, gradients and optimiser state stay float32 either way
        self.amp_dtype = precision.resolve(cfg.get("amp", False), device)
        self.precision = precision.precision_name(self.amp_dtype)
        self.epoch = 0
        self.best_score = math.inf if self.minimise else -math.inf
        self.best_epoch = 0
        self.best_valid: Dict[str, float] = {}
        self.bad_epochs = 0
        self.history: list[dict] = []
        self.train_seconds: list[float] = []
        self.eval_seconds: list[float] = []
        self.stop_reason = ""
        self.last_steps = 0  # batches run by the latest epoch (fewer than the sampler's with max_steps_per_epoch)
        self._regioned = [cb for cb in self.callbacks if type(cb).region is not Callback.region]
        self._gradient_hooks = [cb for cb in self.callbacks if type(cb).on_gradients is not Callback.on_gradients]
        self._main_params = main

    # -- persistence ---------------------------------------------------------------------------
    def _path(self, name: str) -> str:
        return os.path.join(self.run_dir, name)

    def _state(self) -> dict:
        return {
            "epoch": self.epoch, "best_score": self.best_score, "best_epoch": self.best_epoch,
            "best_valid": self.best_valid, "bad_epochs": self.bad_epochs, "history": self.history,
            "train_seconds": self.train_seconds, "eval_seconds": self.eval_seconds,
            "optimizer": self.opt.state_dict(), "scheduler": self.scheduler.state_dict(),
            "aux_optimizer": self.aux_opt.state_dict() if self.aux_opt else None,
            "generator": self.generator.get_state(), "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
        }

    def resume(self) -> None:
        path = self._path("last.pt")
        if not os.path.exists(path):
            raise FileNotFoundError(f"{self.run_dir}: nothing to resume (no last.pt)")
        ck = checkpoint.load_file(path)
        checkpoint.load_into(self.model, ck, where=path)
        st = ck["trainer"]
        self.opt.load_state_dict(st["optimizer"])
        self.scheduler.load_state_dict(st["scheduler"])
        if self.aux_opt and st["aux_optimizer"]:
            self.aux_opt.load_state_dict(st["aux_optimizer"])
        self.generator.set_state(st["generator"])
        torch.set_rng_state(st["torch_rng"])
        if st["cuda_rng"] is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(st["cuda_rng"])
        for k in ("epoch", "best_score", "best_epoch", "best_valid", "bad_epochs", "history",
                  "train_seconds", "eval_seconds"):
            setattr(self, k, st[k])
        # the epoch log may hold lines written after the last checkpoint: rewrite it from history
        if self.checkpoints:  # (a data-parallel rank other than 0 writes nothing)
            with open(self._path("epochs.jsonl"), "w") as f:
                for rec in self.history:
                    f.write(json.dumps(rec) + "\n")
        log.info("resumed %s at epoch %d (best %s=%.4f at epoch %d)", self.run_dir, self.epoch,
                 self.metric, self.best_score, self.best_epoch)

    # -- the loop ------------------------------------------------------------------------------
    def _region(self, name: str):
        if not self._regioned:
            return nullcontext()
        stack = ExitStack()
        for cb in self._regioned:
            cm = cb.region(name)
            if cm is not None:
                stack.enter_context(cm)
        return stack

    def _gradients(self, params: list) -> None:
        for cb in self._gradient_hooks:
            cb.on_gradients(self, params)

    def _amp(self):
        """The step's precision policy: the model's marked regions run in ``amp_dtype``."""
        return precision.policy(self.amp_dtype, self.device.type)

    @contextmanager
    def _phase(self, name: str) -> Iterator[None]:
        with self.probe.phase(name):  # the probe's own bookkeeping stays outside the callbacks' clocks
            for cb in self.callbacks:
                cb.on_phase_start(self, name)
            yield
            for cb in self.callbacks:
                cb.on_phase_end(self, name)

    def step(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        """One optimisation step on ``batch``; returns the detached loss terms (auxiliary ones
        prefixed ``aux_``). Raises FloatingPointError on a non-finite loss."""
        model = self.model
        aux_terms: Dict[str, torch.Tensor] = {}
        if self.aux_opt is not None:
            with self._region("aux_steps"):
                # the model's own estimator takes `auxiliary_steps` steps per batch (SAND's CLUB: 50)
                for _ in range(max(1, int(model.auxiliary_steps))):
                    self.aux_opt.zero_grad(set_to_none=True)
                    with self._amp():
                        aux_terms = model.auxiliary_loss(batch)
                    if not aux_terms:
                        break
                    sum(aux_terms.values()).backward()
                    self._gradients(model.auxiliary_parameters())
                    self.aux_opt.step()
        with self._region("zero_grad"):
            self.opt.zero_grad(set_to_none=True)
        with self._region("forward"), self._amp():
            reps = model.train_forward(batch)
        with self._region("loss"), self._amp():
            terms = model.loss(batch, reps)
            loss = sum(terms.values())
        if not torch.isfinite(loss):
            raise FloatingPointError(
                f"epoch {self.epoch + 1}: loss is {float(loss)} "
                f"(terms: { {k: float(v) for k, v in terms.items()} }); lower train.lr or check inputs")
        with self._region("backward"):
            loss.backward()
        self._gradients(self._main_params)
        if self.cfg.get("grad_clip"):
            torch.nn.utils.clip_grad_norm_(model.main_parameters(), float(self.cfg["grad_clip"]))
        with self._region("optimizer_step"):
            self.opt.step()
        out = {k: v.detach() for k, v in terms.items()}
        out.update({f"aux_{k}": v.detach() for k, v in aux_terms.items()})
        for cb in self.callbacks:
            cb.on_step(self, out)
        return out

    def train_epoch(self, bar_desc: Optional[str] = None) -> Dict[str, float]:
        """One epoch of the sampler's batches (at most ``max_steps_per_epoch``); mean loss terms.
        Does not advance :attr:`epoch` (:meth:`fit` does)."""
        model, cfg = self.model, self.cfg
        if self.sampler is None:
            raise ValueError(f"model {model.name!r} has no training batches (nothing to train)")
        model.train()
        model.pre_epoch(self.epoch, self.generator)
        sums: Dict[str, torch.Tensor] = {}
        n_batches = 0
        max_steps = int(cfg.get("max_steps_per_epoch") or 0)
        show = bool(cfg.get("progress", True))
        bar = tqdm(total=len(self.sampler), desc=bar_desc or f"epoch {self.epoch + 1}", leave=False,
                   disable=not show, dynamic_ncols=True)
        batches = iter(self.sampler.epoch(self.generator))
        while not max_steps or n_batches < max_steps:
            # a truncated epoch (benchmarks, smoke runs) runs the first batches of this shuffle
            with self._region("sample"):
                batch = next(batches, None)
            if batch is None:
                break
            terms = self.step(batch)
            for k, v in terms.items():
                sums[k] = sums.get(k, 0) + v
            n_batches += 1
            bar.update(1)
            if show and n_batches % 20 == 0:
                post = {"loss": f"{float(sum(v for k, v in terms.items() if not k.startswith('aux_'))):.4f}"}
                if self.device.type == "cuda":
                    post["gpu_mb"] = f"{torch.cuda.max_memory_allocated(self.device) / 2**20:.0f}"
                bar.set_postfix(post)
        bar.close()
        self.scheduler.step()
        self.last_steps = n_batches
        out = {k: float(v) / max(1, n_batches) for k, v in sums.items()}
        out["loss"] = sum(v for k, v in out.items() if not k.startswith("aux_"))
        return out

    def evaluate(self) -> Dict[str, float]:
        """One valid evaluation (the ``eval`` phase); its seconds join :attr:`eval_seconds`."""
        with self._phase("eval"):
            metrics = self.valid.evaluate(self.model)
        self.eval_seconds.append(self.valid.last_seconds)
        for cb in self.callbacks:
            cb.on_evaluation(self, metrics)
        return metrics

    def _improves(self, score: float) -> bool:
        # strict improvement, as MMRec
        return score < self.best_score if self.minimise else score > self.best_score

    def fit(self) -> dict:
        cfg = self.cfg
        max_epochs = int(cfg["epochs"])
        if self.sampler is None or not self.model.trainable() or max_epochs == 0:
            self.best_valid = self.evaluate()
            self.best_epoch = 0
            if self.checkpoints:
                checkpoint.save(self._path("best.pt"), self.model, epoch=0, valid=self.best_valid)
            self.stop_reason = "nothing to train"
            return self.summary()
        t_start = time.perf_counter()
        patience = int(cfg["patience"])
        epochs_bar = tqdm(total=max_epochs, initial=self.epoch, desc="epochs", disable=not cfg.get("progress", True),
                          dynamic_ncols=True)
        while self.epoch < max_epochs:
            t0 = time.perf_counter()
            with self._phase("train"):
                terms = self.train_epoch()
                if self.device.type == "cuda":
                    torch.cuda.synchronize(self.device)
            train_s = time.perf_counter() - t0
            self.epoch += 1
            self.train_seconds.append(train_s)
            rec: Dict[str, Any] = {"epoch": self.epoch, "train_s": round(train_s, 4),
                                   "lr": self.opt.param_groups[0]["lr"], **{k: round(v, 6) for k, v in terms.items()}}
            if self.epoch % int(cfg.get("eval_every", 1)) == 0 or self.epoch == max_epochs:
                valid = self.evaluate()
                rec["eval_s"] = round(self.valid.last_seconds, 4)
                rec["valid"] = valid
                if self.metric not in valid:
                    raise KeyError(f"valid_metric {self.metric!r} is not computed; have {sorted(valid)}")
                score = valid[self.metric]
                if self._improves(score):
                    self.best_score, self.best_epoch, self.best_valid = score, self.epoch, valid
                    self.bad_epochs = 0
                    if self.checkpoints:
                        checkpoint.save(self._path("best.pt"), self.model, epoch=self.epoch, valid=valid)
                    rec["best"] = True
                else:
                    self.bad_epochs += 1
            self.history.append(rec)
            if self.checkpoints:
                with open(self._path("epochs.jsonl"), "a") as f:
                    f.write(json.dumps(rec) + "\n")
                checkpoint.save(self._path("last.pt"), self.model, trainer=self._state())
            for cb in self.callbacks:
                cb.on_epoch_end(self, rec)
            if _TEST_EPOCH_SLEEP:  # lets the kill/resume test interrupt a tiny run between epochs
                time.sleep(_TEST_EPOCH_SLEEP)
            epochs_bar.update(1)
            epochs_bar.set_postfix({self.metric: f"{rec.get('valid', {}).get(self.metric, float('nan')):.4f}",
                                    "best": f"{self.best_score:.4f}@{self.best_epoch}",
                                    "loss": f"{terms['loss']:.4f}"})
            if patience >= 0 and self.bad_epochs > patience:
                self.stop_reason = f"early stop: no improvement of {self.metric} for {self.bad_epochs} evaluations"
                break
            if cfg.get("max_time_s") and time.perf_counter() - t_start > float(cfg["max_time_s"]):
                self.stop_reason = f"time budget of {cfg['max_time_s']} s reached"
                break
        else:
            self.stop_reason = f"reached {max_epochs} epochs"
        epochs_bar.close()
        log.info("%s; best %s=%.4f at epoch %d", self.stop_reason, self.metric, self.best_score, self.best_epoch)
        return self.summary()

    def summary(self) -> dict:
        ts = sorted(self.train_seconds)
        es = sorted(self.eval_seconds)
        med = (lambda v: v[len(v) // 2] if v else 0.0)
        return {"best_epoch": self.best_epoch, "epochs_run": self.epoch, "valid": self.best_valid,
                "train_s_per_epoch": med(ts), "eval_s": med(es), "stop_reason": self.stop_reason,
                "precision": self.precision}
