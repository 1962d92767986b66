"""Run directories: created only where nothing else lives, written by one process at a time, and
resumed only against the data they were made from.

- A new run goes into a directory that does not exist yet or is empty; a file, a directory holding
  anything else, or another run is refused before anything is written.
- `RunLock` holds an exclusive ``flock`` on ``<run>/.lock`` for as long as a process writes the run;
  a second process is refused with the holder's pid. The kernel drops the lock when the process
  ends, however it ends, so a crash never leaves a stale lock.
- ``run.json`` records what the run was made from: the resolved config's hash, the content hash of
  the dataset's interactions, the split's hash and the hash of each item-feature table the model
  reads. ``--resume`` recomputes them and refuses with the names of those that changed.
- `new_run` removes the directory it created when the start fails (bad data, a model that cannot be
  built): no half-made run is left behind. Once training has begun, nothing is removed.
"""
from __future__ import annotations

import json
import os
import shutil
from contextlib import contextmanager
from typing import Any, Dict, Iterator, Optional

from graphrec.errors import RunDirError
from graphrec.utils import atomic_write_json

MARKER = "run.json"
LOCK = ".lock"
#: config keys a resumed run may change: how long and where it trains, not what it trains
RESUMABLE = {("train", "epochs"), ("train", "patience"), ("train", "max_time_s"), ("train", "progress"),
             ("train", "eval_every"), ("threads",), ("device",), ("eval", "user_chunk"), ("eval", "screen")}


def is_run(path: str) -> bool:
    """A graphrec run directory: its marker, or (runs written before the marker) config + split."""
    return os.path.isfile(os.path.join(path, MARKER)) or (
        os.path.isfile(os.path.join(path, "config.yaml")) and os.path.isfile(os.path.join(path, "split.json")))


def check_new(path: str) -> None:
    """Refuse a path that a new run must not write into."""
    if os.path.lexists(path) and not os.path.isdir(path):
        raise RunDirError(f"{path}: exists and is not a directory; give --out a new directory")
    if os.path.isdir(path):
        if is_run(path):
            raise RunDirError(f"{path}: already holds a graphrec run; use --resume {path} to continue it "
                              f"or another --out")
        entries = [e for e in os.listdir(path) if e != LOCK]
        if entries:
            raise RunDirError(f"{path}: is not empty and not a graphrec run (holds {sorted(entries)[:3]}); "
                              f"graphrec writes runs only into new or empty directories")


class RunLock:
    """Exclusive lock of one run directory for the lifetime of this object (or process)."""

    def __init__(self, run_dir: str):
        import fcntl

        self.path = os.path.join(run_dir, LOCK)
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(self.fd, 32).decode(errors="replace").strip() or "?"
            os.close(self.fd)
            raise RunDirError(f"{run_dir}: another graphrec process (pid {holder}) is writing this run; "
                              f"wait for it or use another --out") from None
        os.ftruncate(self.fd, 0)
        os.write(self.fd, str(os.getpid()).encode())

    def release(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)  # closing the descriptor drops the flock
            self.fd = -1


@contextmanager
def new_run(path: str) -> Iterator[RunLock]:
    """Create and lock ``path`` for a new run; if the body raises, remove what was created."""
    check_new(path)
    created = not os.path.exists(path)
    os.makedirs(path, exist_ok=True)
    lock = RunLock(path)
    try:
        yield lock
    except BaseException:
        lock.release()
        if created:
            shutil.rmtree(path, ignore_errors=True)
        else:  # an empty directory the user made: leave it empty again
            for e in os.listdir(path):
                full = os.path.join(path, e)
                shutil.rmtree(full, ignore_errors=True) if os.path.isdir(full) else os.remove(full)
        raise


def write_fingerprint(run_dir: str, fingerprint: Dict[str, Any]) -> None:
    atomic_write_json(os.path.join(run_dir, MARKER), {"graphrec_run": 1, **fingerprint})


def read_fingerprint(run_dir: str) -> Optional[Dict[str, Any]]:
    path = os.path.join(run_dir, MARKER)
    if not os.path.exists(path):
        return None  # a run written before fingerprints: nothing to compare
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise RunDirError(f"{path}: unreadable run record ({e})") from None


def check_unchanged(run_dir: str, recorded: Optional[Dict[str, Any]], now: Dict[str, Any]) -> None:
    """Refuse to resume when anything the run was made from has changed; name every change. Only
    the keys of ``now`` are compared (the config can be checked before any data is loaded)."""
    if recorded is None:
        return
    names = {"config_hash": "its config.yaml", "dataset_hash": "the dataset's interactions",
             "split_hash": "its split"}
    changed = [names[k] for k in names if k in now and recorded.get(k) is not None and recorded[k] != now[k]]
    if "feature_hashes" in now:
        old_f, new_f = recorded.get("feature_hashes") or {}, now["feature_hashes"] or {}
        changed += [f"item features '{m}'" for m in sorted(set(old_f) | set(new_f)) if old_f.get(m) != new_f.get(m)]
    if changed:
        raise RunDirError(f"{run_dir}: cannot resume, changed since the run began: {', '.join(changed)}")


def check_resumable(overrides: Dict[str, Any], prefix: tuple = ()) -> None:
    """Raise on any key of ``overrides`` that a resumed run may not change (`RESUMABLE`)."""
    for k, v in overrides.items():
        path = prefix + (k,)
        if isinstance(v, dict) and path not in RESUMABLE:
            check_resumable(v, path)
        elif path not in RESUMABLE:
            allowed = ", ".join(".".join(p) for p in sorted(RESUMABLE))
            raise RunDirError(f"--resume: '{'.'.join(path)}' cannot change in a resumed run (it would no longer "
                              f"be the run that began); resumable keys: {allowed}")
