"""TensorBoard scalars of a run, beside its JSON-lines log: per epoch, each loss term
(``loss/<term>``), each valid metric (``valid/<metric>``), the learning rate and the seconds of
training and evaluation (``seconds/train``, ``seconds/eval``), step = epoch, in ``<run_dir>/tb/``.

Optional: it needs the ``tensorboard`` package (``pip install 'graphrec[tensorboard]'``);
:func:`tensorboard_callback` returns None without it and training goes on unchanged.
"""
from __future__ import annotations

import os
from typing import Any

from graphrec.train.trainer import Callback
from graphrec.utils import log

#: epoch-record keys that are not loss terms
_NOT_TERMS = ("epoch", "train_s", "eval_s", "lr", "valid", "best")


def _writer_class():
    """torch's SummaryWriter, or None when tensorboard is not installed (or does not import)."""
    if os.environ.get("GRAPHREC_TENSORBOARD", "").strip().lower() in ("0", "off", "false", "no"):
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except Exception as e:  # ImportError without the package; a broken install must not stop training
        log.debug("tensorboard unavailable (%s): no TensorBoard scalars", e)
        return None
    return SummaryWriter


def available() -> bool:
    return _writer_class() is not None


class TensorBoardCallback(Callback):
    """Writes one set of scalars per epoch (`Trainer` epoch records) into ``<run_dir>/tb``. A resumed
    run purges the steps after its checkpoint, so no epoch appears twice."""

    def __init__(self, run_dir: str, writer_class: Any):
        self.log_dir = os.path.join(run_dir, "tb")
        self._writer_class = writer_class
        self.writer = None

    def on_epoch_end(self, trainer: Any, record: dict[str, Any]) -> None:
        step = int(record["epoch"])
        if self.writer is None:  # opened at the first epoch: a run that fails to start leaves no tb/
            self.writer = self._writer_class(log_dir=self.log_dir, purge_step=step if step > 1 else None)
        w = self.writer
        for k, v in record.items():
            if k not in _NOT_TERMS and isinstance(v, (int, float)):
                w.add_scalar(f"loss/{k}", float(v), step)
        for k, v in (record.get("valid") or {}).items():
            w.add_scalar(f"valid/{k}", float(v), step)
        if "lr" in record:
            w.add_scalar("lr", float(record["lr"]), step)
        w.add_scalar("seconds/train", float(record.get("train_s", 0.0)), step)
        if "eval_s" in record:
            w.add_scalar("seconds/eval", float(record["eval_s"]), step)
        w.flush()  # the trainer has no end-of-fit hook: every epoch is on disk when it ends

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def tensorboard_callback(run_dir: str) -> TensorBoardCallback | None:
    """A callback writing ``<run_dir>/tb``, or None when tensorboard is not installed (or
    ``GRAPHREC_TENSORBOARD=0``)."""
    cls = _writer_class()
    return TensorBoardCallback(run_dir, cls) if cls is not None else None
