"""Training: the common trainer, tasks (samplers and evaluators), checkpoints. A whole run (data ->
model -> trainer -> test) is composed above this package, in `graphrec.experiment`."""
from graphrec.train.samplers import BPRSampler
from graphrec.train.tasks import Task, get_task, register_task
from graphrec.train.trainer import Callback, Trainer

__all__ = ["BPRSampler", "Callback", "Task", "Trainer", "get_task", "register_task"]
