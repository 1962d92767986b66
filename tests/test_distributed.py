"""Data-parallel training (`graphrec train --nproc N`, `graphrec.train.distributed`): two gloo
processes on the CPU reach the one-process run's metrics (same global batches, gradients averaged
with the shares' sizes as weights, evaluation users dealt to ranks), also across a resume; rank 0
alone writes the run directory; a rank that dies ends its peer with one line naming the failure."""
import json
import os
import signal
import subprocess
import sys
import time

import torch

from graphrec.train.distributed import ShardedSampler, World

# 4,800 training pairs in batches of 511: every batch splits 256/255, the last 201 as 101/100
DATA = ["--set", "data.dataset_args={n_users: 300, n_items: 120, n_interactions: 6000, seed: 4}",
        "--set", "threads=1", "--set", "train.batch_size=511", "--seed", "0", "--quiet"]


def _graphrec(*args, env=None, **kw):
    return subprocess.run([sys.executable, "-m", "graphrec", *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300, **kw)


def test_two_processes_reach_the_one_process_metrics_also_across_a_resume(tmp_path):
    one = _graphrec("train", "--model", "lightgcn", "--dataset", "synthetic", "--epochs", "3",
                    "--out", str(tmp_path / "one"), *DATA)
    assert one.returncode == 0, one.stderr[-2000:]
    two = _graphrec("train", "--model", "lightgcn", "--dataset", "synthetic", "--epochs", "2", "--nproc", "2",
                    "--out", str(tmp_path / "two"), *DATA)
    assert two.returncode == 0, two.stderr[-2000:]
    more = _graphrec("train", "--resume", str(tmp_path / "two"), "--epochs", "3", "--nproc", "2", "--quiet")
    assert more.returncode == 0, more.stderr[-2000:]
    a = json.loads((tmp_path / "one" / "result.json").read_text())
    b = json.loads((tmp_path / "two" / "result.json").read_text())
    assert b["world_size"] == 2 and b["epochs_run"] == 3 and a["split_hash"] == b["split_hash"]
    for part in ("valid", "test"):
        for k, v in a[part].items():  # the same steps up to float summation order
            assert abs(b[part][k] - v) < 2e-3, (part, k, v, b[part][k])
    lines = (tmp_path / "two" / "epochs.jsonl").read_text().splitlines()
    assert [json.loads(x)["epoch"] for x in lines] == [1, 2, 3]  # one writer


def test_a_rank_that_dies_ends_its_peer_with_one_line(tmp_path):
    out = tmp_path / "run"
    import socket
    with socket.socket() as sock:  # a free port: a fixed one can be taken by another test's ranks
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
           "GRAPHREC_TEST_EPOCH_SLEEP": "0.3", "GRAPHREC_DIST_TIMEOUT": "60"}
    cmd = [sys.executable, "-m", "graphrec", "train", "--model", "mf", "--dataset", "synthetic", "--epochs", "200",
           "--out", str(out), *DATA]
    ranks = [subprocess.Popen(cmd, env={**os.environ, **env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for r in range(2)]
    try:
        t0 = time.monotonic()
        while not (out / "epochs.jsonl").exists() and time.monotonic() - t0 < 120:
            time.sleep(0.2)
        assert (out / "epochs.jsonl").exists(), ranks[0].stderr.read()[-2000:] if ranks[0].poll() is not None else ""
        ranks[1].send_signal(signal.SIGKILL)
        _, err = ranks[0].communicate(timeout=90)
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
    assert ranks[0].returncode == 2, err[-2000:]
    last = err.strip().splitlines()[-1]
    assert last.startswith("graphrec: error: rank 0/2: ") and "another rank died or stalled" in last
    assert (out / "last.pt").exists()  # what rank 0 finished stays resumable


def test_shards_cover_each_global_batch_once_and_weigh_it():
    class Batches:
        def __len__(self):
            return 2

        def epoch(self, g):
            yield {"user": torch.arange(7), "pos": torch.arange(7) * 10}
            yield {"user": torch.arange(3), "pos": torch.arange(3)}
    got, weights = [], []
    for r in range(2):
        s = ShardedSampler(Batches(), World(rank=r, size=2))
        for b in s.epoch(None):
            got.append((r, b["user"].tolist()))
            weights.append(s.weight)
    by_batch = [got[0][1] + got[2][1], got[1][1] + got[3][1]]  # rank 0's share, then rank 1's
    assert by_batch == [list(range(7)), list(range(3))]
    assert abs(weights[0] + weights[2] - 1) < 1e-12 and abs(weights[1] + weights[3] - 1) < 1e-12


def test_nproc_must_be_positive():
    r = _graphrec("train", "--model", "mf", "--nproc", "0")
    assert r.returncode == 2 and "--nproc must be >= 1" in r.stderr
