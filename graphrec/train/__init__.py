"""Training: the common trainer, samplers, checkpoints, and the end-to-end `run`."""
from graphrec.train.pipeline import load_run, prepare, run
from graphrec.train.samplers import BPRSampler
from graphrec.train.trainer import Trainer

__all__ = ["run", "prepare", "load_run", "Trainer", "BPRSampler"]
