"""graphrec's SASRec beside RecBole's own SASRec on the same Amazon Scientific files and split.

    python benchmarks/compare_recbole.py [--data /work/shared/data/amazon_scientific_seq]
        [--recbole-venv /work/recbole-venv] [--seeds 0,1,2] [--threads 2] [--epochs 300]
        [--peer-only] [--peer-out FILE] [--reuse-peer FILE] [--peer-timing-epochs N]
        [--work DIR] [--out benchmarks/results/compare_recbole_scientific] [--label TEXT]
    python benchmarks/compare_recbole.py --render benchmarks/results/compare_recbole_scientific.json

RecBole 1.2.1 runs in its own virtualenv (``benchmarks/setup_recbole.sh``), as a child process per
seed; its ``run_recbole`` reads the three benchmark files ``Scientific.{train,valid,test}.inter``
as given (a folder of symlinks gives RecBole its ``<data_path>/Scientific/`` layout; no data is
copied). The only change to RecBole's behaviour, made in that child process alone: ``torch.load``
defaults to ``weights_only=False`` (torch >= 2.6 refuses RecBole's own end-of-training checkpoint,
which pickles its config).

graphrec runs its ``sasrec`` through the public run API, also as a child process per seed, on
``recbole-seq:<data>`` split leave-one-out. Before anything is compared, the script checks that
graphrec's leave-one-out valid/test targets and histories (the latest 50 items) are exactly
RecBole's valid/test rows.

Both sides: CE over all items, ``MAX_ITEM_LIST_LENGTH``/``max_len`` 50, batch 2048, Adam lr 0.001,
no weight decay, RecBole's SASRec defaults (2 layers, 2 heads, hidden 64, inner 256, dropout
0.5/0.5, GELU, layer-norm eps 1e-12, init N(0, 0.02)), full ranking with history items NOT masked
(RecBole's sequential evaluation does not mask them), validation every epoch, early stopping on
valid NDCG@10 after 10 evaluations without improvement, test once for the best-valid checkpoint.
Peak memory is each child's RSS high-water mark (``os.wait4``'s ``ru_maxrss``), the same measure on
both sides; seconds per epoch are the median training seconds per epoch (valid evaluation
excluded) as each side times it.

RecBole needs ~11 minutes per seed here, so its seeds can run earlier (``--peer-only``, results
saved to ``--peer-out`` after every seed) and be reused (``--reuse-peer FILE``); then
``--peer-timing-epochs N`` re-times RecBole for N epochs right before each graphrec seed, so the
s/epoch ratio is taken under the same machine load. The output records which numbers came from
where.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional, Tuple

DATA = "/work/shared/data/amazon_scientific_seq"
NAME = "Scientific"
MAX_LEN = 50
KS = (10, 20)
# RecBole's SASRec defaults (recbole/properties/model/SASRec.yaml), listed so a changed default
# cannot silently change the comparison; graphrec's configs/models/sasrec.yaml holds the same values
SASREC = {"n_layers": 2, "n_heads": 2, "hidden_size": 64, "inner_size": 256, "hidden_dropout_prob": 0.5,
          "attn_dropout_prob": 0.5, "hidden_act": "gelu", "layer_norm_eps": 1e-12, "initializer_range": 0.02,
          "loss_type": "CE"}
GRAPHREC_SETS = {"model.embedding_dim": 64, "model.n_layers": 2, "model.n_heads": 2, "model.inner_dim": 256,
                 "model.dropout": 0.5, "model.attn_dropout": 0.5, "model.max_len": MAX_LEN, "model.loss": "ce",
                 "train.lr": 0.001, "train.batch_size": 2048, "train.weight_decay": 0.0,
                 "train.valid_metric": "ndcg@10", "train.patience": 10, "train.eval_every": 1,
                 "train.progress": False, "data.split": "loo", "eval.ks": list(KS),
                 "eval.metrics": ["recall", "ndcg", "hit", "mrr"], "eval.mask_history": False}
METRICS = ["ndcg@10", "ndcg@20", "recall@10", "recall@20", "hit@10", "hit@20", "mrr@10", "mrr@20"]

_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_TRAIN_RE = re.compile(r"epoch (\d+) training \[time: ([0-9.]+)s")
_EVAL_RE = re.compile(r"epoch (\d+) evaluating \[time: ([0-9.]+)s, valid_score: ([0-9.]+)\]")
RESULT_MARKER = "GRAPHREC_COMPARE_RESULT "


# -- RecBole side ----------------------------------------------------------------------------
_PEER_WRAPPER = r'''
import json, sys
cfg, threads = json.loads(sys.argv[1]), int(sys.argv[2])
import torch
torch.set_num_threads(threads)
_load = torch.load
def _load_pickled(*a, **k):
    # torch >= 2.6 defaults to weights_only=True; RecBole's own checkpoint pickles its config
    k.setdefault("weights_only", False)
    return _load(*a, **k)
torch.load = _load_pickled
from recbole.quick_start import run_recbole
res = run_recbole(model="SASRec", dataset=cfg.pop("graphrec_dataset"), config_dict=cfg, saved=True)
print("''' + RESULT_MARKER + r'''" + json.dumps(res, default=float), flush=True)
'''


def link_data(data: str, work: str) -> str:
    """``<work>/data/Scientific/Scientific.*.inter`` -> the files in ``data`` (symlinks, no copy)."""
    d = os.path.join(work, "data", NAME)
    os.makedirs(d, exist_ok=True)
    for part in ("train", "valid", "test"):
        src, dst = os.path.join(os.path.abspath(data), f"{NAME}.{part}.inter"), os.path.join(d, f"{NAME}.{part}.inter")
        if not os.path.exists(src):
            raise FileNotFoundError(f"{src}: missing (RecBole benchmark file)")
        if os.path.lexists(dst):
            os.remove(dst)
        os.symlink(src, dst)
    return os.path.join(work, "data")


def recbole_config(data_root: str, work: str, seed: int, epochs: int, patience: int = 10) -> dict:
    return {
        "graphrec_dataset": NAME, "data_path": data_root, "checkpoint_dir": os.path.join(work, "saved"),
        # read the three files as given: prefixes for training, one row per user for valid and test
        "benchmark_filename": ["train", "valid", "test"], "alias_of_item_id": ["item_id_list"],
        "load_col": {"inter": ["user_id", "item_id_list", "item_id"]},
        "train_neg_sample_args": None, "MAX_ITEM_LIST_LENGTH": MAX_LEN,
        "eval_args": {"order": "TO", "mode": "full", "group_by": "user"},
        "metrics": ["Recall", "NDCG", "Hit", "MRR"], "topk": list(KS), "valid_metric": "NDCG@10",
        "epochs": int(epochs), "stopping_step": int(patience), "eval_step": 1,
        "train_batch_size": 2048, "eval_batch_size": 2048, "learning_rate": 0.001, "weight_decay": 0.0,
        "seed": int(seed), "reproducibility": True, "device": "cpu", "use_gpu": False, "worker": 0,
        "show_progress": False, "log_wandb": False, **SASREC,
    }


def run_child(cmd: List[str], cwd: str, log_path: str, timeout: Optional[float] = None,
              env: Optional[dict] = None) -> Tuple[int, float, float]:
    """Run ``cmd``, its output to ``log_path``; (exit code, wall seconds, peak RSS in MB of the child
    from ``os.wait4``'s ``ru_maxrss``, the kernel's high-water mark of that process)."""
    t0 = time.perf_counter()
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = None if timeout is None else t0 + timeout
        while True:
            pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if deadline is not None and time.perf_counter() > deadline:
                proc.kill()
            time.sleep(0.2)
        proc.returncode = os.waitstatus_to_exitcode(status)
    return proc.returncode, time.perf_counter() - t0, ru.ru_maxrss / 1024.0


def _tail(path: str, n: int = 12) -> str:
    with open(path, errors="replace") as f:
        return " | ".join(_ANSI.sub("", f.read()).strip().splitlines()[-n:])


def run_recbole_seed(venv: str, data_root: str, work: str, seed: int, threads: int, epochs: int,
                     timeout: Optional[float] = None) -> dict:
    """One ``run_recbole`` of SASRec: test/valid metrics, per-epoch seconds, peak RSS."""
    py = os.path.join(venv, "bin", "python")
    if not os.path.exists(py):
        raise FileNotFoundError(f"{py}: no RecBole virtualenv (run benchmarks/setup_recbole.sh {venv})")
    wrapper = os.path.join(work, "_recbole_sasrec.py")
    with open(wrapper, "w") as f:
        f.write(_PEER_WRAPPER)
    log_path = os.path.join(work, f"recbole_seed{seed}_e{epochs}.log")
    cfg = recbole_config(data_root, work, seed, epochs)
    rc, wall, peak_mb = run_child([py, wrapper, json.dumps(cfg), str(threads)], work, log_path, timeout)
    with open(log_path, errors="replace") as f:
        text = _ANSI.sub("", f.read())
    res = [json.loads(line[len(RESULT_MARKER):]) for line in text.splitlines() if line.startswith(RESULT_MARKER)]
    if rc != 0 or not res:
        raise RuntimeError(f"RecBole SASRec seed {seed} failed (exit {rc}): {_tail(log_path)}")
    train_s = [float(m.group(2)) for m in _TRAIN_RE.finditer(text)]
    evals = [(int(m.group(1)), float(m.group(2)), float(m.group(3))) for m in _EVAL_RE.finditer(text)]
    test = {k.lower(): float(v) for k, v in res[-1]["test_result"].items()}
    valid = {k.lower(): float(v) for k, v in res[-1]["best_valid_result"].items()}
    # RecBole keeps the last epoch whose valid score is >= the best so far (its early_stopping);
    # its log counts epochs from 0, graphrec's from 1: recorded here from 1 like graphrec's
    best_epoch, best = None, -1.0
    for ep, _, score in evals:
        if score >= best:
            best_epoch, best = ep + 1, score
    return {"seed": seed, "test": test, "valid": valid, "epochs_run": len(train_s), "best_epoch": best_epoch,
            "train_s_epochs": train_s, "train_s_per_epoch": statistics.median(train_s) if train_s else None,
            "eval_s": statistics.median([e[1] for e in evals]) if evals else None,
            "peak_rss_mb": round(peak_mb, 1), "wall_s": round(wall, 1), "max_epochs": epochs,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S"), "log": log_path}


# -- the split check -------------------------------------------------------------------------
def read_benchmark_rows(path: str) -> Dict[int, Tuple[List[int], int]]:
    """``user -> (history, target)`` of a RecBole valid/test benchmark file (one row per user)."""
    out: Dict[int, Tuple[List[int], int]] = {}
    with open(path) as f:
        header = f.readline().rstrip("\n").split("\t")
        want = ["user_id:token", "item_id_list:token_seq", "item_id:token"]
        if header != want:
            raise ValueError(f"{path}: header {header} is not {want}")
        for row, line in enumerate(f, start=2):
            u, hist, target = line.rstrip("\n").split("\t")
            if int(u) in out:
                raise ValueError(f"{path}: user {u} has a second row at line {row}")
            out[int(u)] = ([int(x) for x in hist.split()], int(target))
    return out


def read_train_rows(path: str) -> List[Tuple[int, Tuple[int, ...], int]]:
    """Sorted ``(user, history, target)`` rows of RecBole's train benchmark file (every prefix)."""
    with open(path) as f:
        f.readline()
        rows = []
        for line in f:
            u, hist, target = line.rstrip("\n").split("\t")
            rows.append((int(u), tuple(int(x) for x in hist.split())[-MAX_LEN:], int(target)))
    return sorted(rows)


def check_same_split(data: str) -> dict:
    """What graphrec trains and judges on, against RecBole's three benchmark files:

    - valid/test: the histories (latest ``MAX_LEN`` items, as both truncate) and targets that
      graphrec's next-item evaluator builds from its leave-one-out split of ``recbole-seq:<data>``
      (`graphrec.eval.sequential.next_item_targets`) equal RecBole's rows, user by user;
    - train: the (user, input prefix, target) transitions of graphrec's training windows
      (`graphrec.train.samplers.SequenceSampler`) equal RecBole's train rows as a multiset.

    Raises on the first difference; returns counts."""
    import numpy as np

    from graphrec.data.split import dataset_split
    from graphrec.datasets import load
    from graphrec.eval.sequential import next_item_targets
    from graphrec.train.samplers import SequenceSampler

    ds = load(f"recbole-seq:{data}")
    split = dataset_split(ds, method="loo")
    # the benchmark files hold dense indices; <name>.item2index / .user2index map original ids to them
    to_file = {}
    for side, m in (("item", split.item_map), ("user", split.user_map)):
        path = os.path.join(data, f"{NAME}.{side}2index")
        if os.path.exists(path):
            with open(path) as f:
                index = dict(line.rstrip("\n").split("\t") for line in f if line.strip())
            to_file[side] = np.array([int(index[str(o)]) for o in m.ids])
        else:
            to_file[side] = m.ids.astype(np.int64)
    fu, fi = to_file["user"], to_file["item"]
    counts = {}
    for part in ("valid", "test"):
        path = os.path.join(data, f"{NAME}.{part}.inter")
        rows = read_benchmark_rows(path)
        sets = next_item_targets(split, part)
        ours = {}
        for r, u in enumerate(sets.users.tolist()):
            tgt = sets.targets[r].tolist()
            if len(tgt) != 1:
                raise AssertionError(f"graphrec {part}: user {int(fu[u])} has {len(tgt)} targets, not one")
            ours[int(fu[u])] = (fi[sets.histories[r].numpy()].tolist()[-MAX_LEN:], int(fi[tgt[0]]))
        if set(ours) != set(rows):
            extra, missing = sorted(set(ours) - set(rows))[:5], sorted(set(rows) - set(ours))[:5]
            raise AssertionError(f"{path}: users differ from graphrec's {part} (only graphrec: {extra}, "
                                 f"only RecBole: {missing})")
        for u, (h, t) in rows.items():
            if ours[u] != (h[-MAX_LEN:], t):
                raise AssertionError(f"{path}: user {u}: RecBole history/target {h[-MAX_LEN:]}/{t}, "
                                     f"graphrec {ours[u][0]}/{ours[u][1]}")
        counts[part] = len(rows)
    win = SequenceSampler(split.train, max_len=MAX_LEN, batch_size=1).windows()
    pad = split.n_items
    seq, target, user = win["seq"].tolist(), win["target"].tolist(), win["user"].tolist()
    ours_train = []
    for s_row, t_row, u in zip(seq, target, user):
        prefix: List[int] = []
        for item, nxt in zip(s_row, t_row):
            if item != pad:
                prefix.append(int(fi[item]))
            if nxt != pad:
                ours_train.append((int(fu[u]), tuple(prefix[-MAX_LEN:]), int(fi[nxt])))
    theirs_train = read_train_rows(os.path.join(data, f"{NAME}.train.inter"))
    if sorted(ours_train) != theirs_train:
        a, b = set(ours_train), set(theirs_train)
        raise AssertionError(f"training transitions differ: {len(ours_train)} in graphrec's windows, "
                             f"{len(theirs_train)} RecBole train rows; e.g. only graphrec {sorted(a - b)[:2]}, "
                             f"only RecBole {sorted(b - a)[:2]}")
    counts["train_transitions"] = len(theirs_train)
    counts["train_windows"] = len(seq)
    return counts


# -- the forward check -----------------------------------------------------------------------
_FORWARD_CHILD = r'''
import json, sys
import torch
from torch import nn
from recbole.model.layers import TransformerEncoder
from recbole.model.sequential_recommender.sasrec import SASRec
state = torch.load(sys.argv[1])
hp = json.loads(sys.argv[2])
d, n = hp["d"], hp["n_items"]
m = SASRec.__new__(SASRec)  # RecBole's own forward and full_sort_predict, without its dataset objects
nn.Module.__init__(m)
m.ITEM_SEQ, m.ITEM_SEQ_LEN = "item_id_list", "item_length"
m.item_embedding = nn.Embedding(n + 1, d, padding_idx=0)
m.position_embedding = nn.Embedding(hp["max_len"], d)
m.trm_encoder = TransformerEncoder(n_layers=hp["n_layers"], n_heads=hp["n_heads"], hidden_size=d,
                                   inner_size=hp["inner"], hidden_dropout_prob=0.5, attn_dropout_prob=0.5,
                                   hidden_act="gelu", layer_norm_eps=1e-12)
m.LayerNorm = nn.LayerNorm(d, eps=1e-12)
m.dropout = nn.Dropout(0.5)
with torch.no_grad():
    m.item_embedding.weight[1:] = state["item_emb.weight"][:n]  # RecBole's item 0 is its padding
    m.position_embedding.weight.copy_(state["pos_emb.weight"])
    m.LayerNorm.weight.copy_(state["encoder.input_norm.weight"])
    m.LayerNorm.bias.copy_(state["encoder.input_norm.bias"])
    for b, layer in enumerate(m.trm_encoder.layer):
        g = "encoder.blocks.%d." % b
        att, ffn = layer.multi_head_attention, layer.feed_forward
        for j, lin in enumerate((att.query, att.key, att.value)):
            lin.weight.copy_(state[g + "attention.qkv.weight"][j * d:(j + 1) * d])
            lin.bias.copy_(state[g + "attention.qkv.bias"][j * d:(j + 1) * d])
        for dst, src in ((att.dense, "attention.out"), (att.LayerNorm, "attention.norm"),
                         (ffn.dense_1, "ffn.fc1"), (ffn.dense_2, "ffn.fc2"), (ffn.LayerNorm, "ffn.norm")):
            dst.weight.copy_(state[g + src + ".weight"])
            dst.bias.copy_(state[g + src + ".bias"])
m.eval()
with torch.no_grad():
    scores = m.full_sort_predict({"item_id_list": state["recbole_seq"], "item_length": state["recbole_len"]})
print(sys.argv[3] + json.dumps({"scores": scores[:, 1:].tolist()}), flush=True)
'''


def check_same_forward(venv: str, work: str, seed: int = 0) -> dict:
    """graphrec's SASRec and RecBole's (its own TransformerEncoder, SASRec.forward and
    full_sort_predict), given the same weights (random, large enough that attention is far from
    uniform) and the same histories (left-padded here, right-padded there), must score every item
    alike. Returns the largest absolute difference; raises when it exceeds 1e-4 of the scores."""
    import torch

    import graphrec.models.sasrec  # noqa: F401  (registers the model)
    from graphrec.data.interactions import IdMap, Interactions
    from graphrec.models import ModelContext, get_model

    n_items, d, hp = 40, 16, {"n_layers": 2, "n_heads": 2, "inner": 32, "max_len": MAX_LEN}
    g = torch.Generator().manual_seed(seed)
    train = Interactions(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long),
                         IdMap(list(range(1)), "user"), IdMap(list(range(n_items)), "item"))
    model = get_model("sasrec")(ModelContext(n_users=1, n_items=n_items, train=train), embedding_dim=d,
                                n_layers=hp["n_layers"], n_heads=hp["n_heads"], inner_dim=hp["inner"],
                                max_len=MAX_LEN)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.5)
        model.item_emb.weight[n_items].zero_()
    model.eval()
    lens = torch.tensor([1, 2, 7, 30, MAX_LEN, 13])
    hists = [torch.randint(n_items, (int(k),), generator=g) for k in lens]
    left = torch.full((len(hists), MAX_LEN), n_items)
    right = torch.zeros((len(hists), MAX_LEN), dtype=torch.long)
    for r, h in enumerate(hists):
        left[r, MAX_LEN - len(h):] = h
        right[r, :len(h)] = h + 1
    with torch.no_grad():
        ours = model.score_sequences({"seq": left}, model.propagate())
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    state.update(recbole_seq=right, recbole_len=lens)
    path = os.path.join(work, "forward_check.pt")
    torch.save(state, path)
    hp.update(d=d, n_items=n_items)
    log_path = os.path.join(work, "forward_check.log")
    py = os.path.join(venv, "bin", "python")
    rc, _, _ = run_child([py, "-c", _FORWARD_CHILD, path, json.dumps(hp), RESULT_MARKER], work, log_path)
    with open(log_path, errors="replace") as f:
        res = [json.loads(line[len(RESULT_MARKER):]) for line in f if line.startswith(RESULT_MARKER)]
    if rc != 0 or not res:
        raise RuntimeError(f"RecBole forward check failed (exit {rc}): {_tail(log_path)}")
    theirs = torch.tensor(res[-1]["scores"])
    diff, scale = float((ours - theirs).abs().max()), float(theirs.abs().max())
    if diff > 1e-4 * max(1.0, scale):
        raise AssertionError(f"graphrec's SASRec scores differ from RecBole's by {diff:.3g} (scores up to {scale:.3g})")
    return {"max_abs_diff": diff, "max_abs_score": scale, "sequences": len(hists), "lengths": lens.tolist(),
            "n_items": n_items}


# -- graphrec side ---------------------------------------------------------------------------
_OURS_CHILD = r'''
import json, sys
data, seed, threads, epochs, out, sets = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], json.loads(sys.argv[6])
import torch
torch.set_num_threads(threads)
try:
    from graphrec.experiment import run
except ImportError:
    from graphrec.train import run
ov = {"threads": threads}
for k, v in sets.items():
    d = ov
    *head, last = k.split(".")
    for h in head:
        d = d.setdefault(h, {})
    d[last] = v
r = run(model="sasrec", dataset="recbole-seq:" + data, overrides=ov, seed=seed, epochs=epochs, out=out, quiet=True)
print("''' + RESULT_MARKER + r'''" + json.dumps(r, default=str), flush=True)
'''


def run_graphrec_seed(data: str, work: str, seed: int, threads: int, epochs: int,
                      timeout: Optional[float] = None) -> dict:
    wrapper = os.path.join(work, "_graphrec_sasrec.py")
    with open(wrapper, "w") as f:
        f.write(_OURS_CHILD)
    run_dir = os.path.join(work, f"graphrec_seed{seed}_{int(time.time())}")
    log_path = run_dir + ".log"
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo + os.pathsep + os.environ.get("PYTHONPATH", ""))
    rc, wall, peak_mb = run_child([sys.executable, wrapper, os.path.abspath(data), str(seed), str(threads),
                                   str(epochs), run_dir, json.dumps(GRAPHREC_SETS)], work, log_path, timeout, env)
    with open(log_path, errors="replace") as f:
        text = f.read()
    res = [json.loads(line[len(RESULT_MARKER):]) for line in text.splitlines() if line.startswith(RESULT_MARKER)]
    if rc != 0 or not res:
        raise RuntimeError(f"graphrec SASRec seed {seed} failed (exit {rc}): {_tail(log_path)}")
    r = res[-1]
    train_s = []
    ep_path = os.path.join(run_dir, "epochs.jsonl")
    if os.path.exists(ep_path):
        with open(ep_path) as f:
            for line in f:
                rec = json.loads(line)
                if rec.get("train_s") is not None:
                    train_s.append(float(rec["train_s"]))
    return {"seed": seed, "test": {k: float(v) for k, v in r["test"].items()},
            "valid": {k: float(v) for k, v in (r.get("valid") or {}).items()},
            "epochs_run": r.get("epochs_run"), "best_epoch": r.get("best_epoch"), "train_s_epochs": train_s,
            "train_s_per_epoch": r.get("train_s_per_epoch"), "eval_s": r.get("eval_s"),
            "peak_rss_mb": round(peak_mb, 1), "wall_s": round(wall, 1), "split_hash": r.get("split_hash"),
            "device_name": r.get("device_name"), "torch": r.get("torch"), "run_dir": run_dir,
            "measured_at": time.strftime("%Y-%m-%d %H:%M:%S")}


# -- tables ----------------------------------------------------------------------------------
def _ms(xs: List[float]) -> Tuple[float, float]:
    xs = [float(x) for x in xs if x is not None]
    if not xs:
        return float("nan"), float("nan")
    return statistics.mean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def summarise(peer: List[dict], ours: List[dict], peer_timing: List[dict]) -> dict:
    s = {"metrics": {}}
    for k in METRICS:
        s["metrics"][k] = {"recbole": _ms([r["test"].get(k) for r in peer]),
                           "graphrec": _ms([r["test"].get(k) for r in ours])}
    timed = peer_timing or peer
    s["recbole_s_per_epoch"] = _ms([r["train_s_per_epoch"] for r in timed])
    s["graphrec_s_per_epoch"] = _ms([r["train_s_per_epoch"] for r in ours])
    s["recbole_peak_rss_mb"] = _ms([r["peak_rss_mb"] for r in peer])
    s["graphrec_peak_rss_mb"] = _ms([r["peak_rss_mb"] for r in ours])
    s["recbole_epochs"] = _ms([r["epochs_run"] for r in peer])
    s["graphrec_epochs"] = _ms([r["epochs_run"] for r in ours])
    if ours and timed:
        s["speedup_s_per_epoch"] = s["recbole_s_per_epoch"][0] / s["graphrec_s_per_epoch"][0]
        s["memory_ratio"] = s["graphrec_peak_rss_mb"][0] / s["recbole_peak_rss_mb"][0]
        rb, gr = s["metrics"]["ndcg@10"]["recbole"], s["metrics"]["ndcg@10"]["graphrec"]
        s["targets"] = {"ndcg10_threshold": rb[0] - 2 * rb[1], "ndcg10_met": gr[0] >= rb[0] - 2 * rb[1],
                        "speedup_met": s["speedup_s_per_epoch"] >= 3.0}
    return s


def markdown(out: dict) -> str:
    s = out["summary"]
    peer, ours = out["recbole"], out["graphrec"]
    f = lambda p: f"{p[0]:.4f} ± {p[1]:.4f}"
    lines = [f"# graphrec SASRec beside RecBole {out['recbole_version']} SASRec, Amazon Scientific", "",
             out["how"] + (f" Note: {out['label']}." if out.get("label") else ""), "",
             f"Device: {out['device']}. Seeds {', '.join(str(r['seed']) for r in ours or peer)}; "
             f"means ± sample std over seeds.", "",
             "| metric (test) | RecBole | graphrec |", "|---|---|---|"]
    for k in METRICS:
        m = s["metrics"][k]
        lines.append(f"| {k} | {f(m['recbole'])} | {f(m['graphrec']) if ours else '-'} |")
    g = lambda p, d=2: f"{p[0]:.{d}f} ± {p[1]:.{d}f}"
    lines += [f"| training s/epoch (median per run) | {g(s['recbole_s_per_epoch'])} | "
              f"{g(s['graphrec_s_per_epoch'], 3) if ours else '-'} |",
              f"| epochs run (early stopping) | {g(s['recbole_epochs'], 1)} | {g(s['graphrec_epochs'], 1) if ours else '-'} |",
              f"| wall s per run (start-up, training, valid every epoch, test) | {g(_ms([r['wall_s'] for r in peer]), 0)} | "
              f"{g(_ms([r['wall_s'] for r in ours]), 0) if ours else '-'} |",
              f"| peak RSS MB (child process) | {g(s['recbole_peak_rss_mb'], 0)} | "
              f"{g(s['graphrec_peak_rss_mb'], 0) if ours else '-'} |", ""]
    if out.get("recbole_timing"):
        full = _ms([r["train_s_per_epoch"] for r in peer])
        lines += [f"RecBole's wall time, epochs and memory come from its full runs, whose machine load differed "
                  f"(median {full[0]:.1f} s/epoch there against {s['recbole_s_per_epoch'][0]:.1f} s in the timing "
                  f"runs beside graphrec's seeds): compare wall times with that in mind.", ""]
    if "speedup_s_per_epoch" in s:
        t = s["targets"]
        lines += [f"graphrec is **{s['speedup_s_per_epoch']:.1f}x** faster per training epoch and uses "
                  f"**{s['memory_ratio']:.2f}x** RecBole's peak memory.", "",
                  f"Targets: graphrec mean test NDCG@10 >= RecBole mean - 2 std = {t['ndcg10_threshold']:.4f}: "
                  f"{'met' if t['ndcg10_met'] else 'NOT met'}; >= 3x faster per epoch: "
                  f"{'met' if t['speedup_met'] else 'NOT met'}.", ""]
    lines += ["Per seed:", "", "| side | seed | NDCG@10 | Recall@10 | Recall@20 | HR@10 | MRR@10 | epochs (best) "
              "| s/epoch | peak RSS MB |", "|---|---|---|---|---|---|---|---|---|---|"]
    timing = {r["seed"]: r for r in out.get("recbole_timing") or []}
    for side, rows in (("RecBole", peer), ("graphrec", ours)):
        for r in rows:
            t = r["test"]
            spe = r["train_s_per_epoch"]
            if side == "RecBole" and r["seed"] in timing:
                spe_txt = f"{timing[r['seed']]['train_s_per_epoch']:.2f} (full run: {spe:.2f})"
            else:
                spe_txt = f"{spe:.3f}" if spe is not None else "-"
            lines.append(f"| {side} | {r['seed']} | {t.get('ndcg@10', float('nan')):.4f} | "
                         f"{t.get('recall@10', float('nan')):.4f} | {t.get('recall@20', float('nan')):.4f} | "
                         f"{t.get('hit@10', float('nan')):.4f} | {t.get('mrr@10', float('nan')):.4f} | "
                         f"{r['epochs_run']} ({r['best_epoch']}) | {spe_txt} | {r['peak_rss_mb']:.0f} |")
    if out.get("split_check"):
        c = out["split_check"]
        lines += ["", f"Split check passed: the latest-{MAX_LEN} histories and targets of graphrec's leave-one-out "
                      f"next-item evaluation equal RecBole's valid ({c['valid']} users) and test ({c['test']} users) "
                      f"rows, and the transitions of graphrec's training windows equal RecBole's "
                      f"{c['train_transitions']:,} train rows.", "",
                  f"An epoch passes every training transition once on both sides: RecBole as "
                  f"{c['train_transitions']:,} prefix rows ({math.ceil(c['train_transitions'] / 2048)} batches of "
                  f"2,048 prefixes, the loss at each prefix's last position), graphrec as {c['train_windows']:,} "
                  f"shifted-sequence windows ({math.ceil(c['train_windows'] / 2048)} batches of 2,048 sequences, "
                  f"the loss at every position). graphrec therefore takes fewer optimiser steps per epoch and "
                  f"needs more epochs; wall time per run is in the table too."]
    if out.get("forward_check"):
        c = out["forward_check"]
        lines += ["", f"Forward check passed: with the same weights, RecBole's SASRec (its TransformerEncoder and "
                      f"full_sort_predict) and graphrec's score all {c['n_items']} items after {c['sequences']} "
                      f"histories of {min(c['lengths'])}-{max(c['lengths'])} items alike (largest difference "
                      f"{c['max_abs_diff']:.1e}, scores up to {c['max_abs_score']:.1f})."]
    return "\n".join(lines) + "\n"


def _device_line(threads: int) -> str:
    cpu = platform.processor() or "CPU"
    try:
        with open("/proc/cpuinfo") as f:
            names = [ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")]
        cpu = f"{names[0]}, {len(names)} cores" if names else cpu
    except OSError:
        pass
    import torch
    return f"{cpu}, torch {torch.__version__.split('+')[0]} CPU, {threads} threads per side"


def render(json_path: str) -> str:
    """The markdown table of a written JSON record (to re-render it after a change of layout)."""
    with open(json_path) as f:
        return markdown(json.load(f))


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", default=DATA)
    ap.add_argument("--recbole-venv", default=os.environ.get("RECBOLE_VENV", "/work/recbole-venv"))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--epochs", type=int, default=300, help="maximum epochs (early stopping ends runs sooner)")
    ap.add_argument("--peer-only", action="store_true", help="run RecBole's seeds only (saved to --peer-out)")
    ap.add_argument("--graphrec-only", action="store_true", help="with --reuse-peer: measure graphrec only")
    ap.add_argument("--peer-out", help="JSON file updated after every RecBole seed (default <work>/recbole_peer.json)")
    ap.add_argument("--reuse-peer", help="JSON file of an earlier --peer-only run: its finished seeds are not re-run")
    ap.add_argument("--peer-timing-epochs", type=int, default=0,
                    help="re-time RecBole for this many epochs right before each graphrec seed (same load)")
    ap.add_argument("--work", help="work directory (symlinked data, RecBole's logs and checkpoints, graphrec runs)")
    ap.add_argument("--out", default="benchmarks/results/compare_recbole_scientific", help="output prefix (.json, .md)")
    ap.add_argument("--label", default="")
    ap.add_argument("--timeout", type=float, help="seconds per child run")
    ap.add_argument("--render", metavar="JSON", help="only re-write <out>.md from an existing JSON record")
    a = ap.parse_args(argv)
    if a.render:
        text = render(a.render)
        with open(a.out + ".md", "w") as f:
            f.write(text)
        print(text)
        return 0

    seeds = [int(s) for s in a.seeds.split(",") if s.strip()]
    work = os.path.abspath(a.work or tempfile.mkdtemp(prefix="graphrec-recbole-"))
    os.makedirs(work, exist_ok=True)
    data_root = link_data(a.data, work)
    peer_out = a.peer_out or os.path.join(work, "recbole_peer.json")
    peer: Dict[int, dict] = {}
    if a.reuse_peer:
        with open(a.reuse_peer) as f:
            peer = {int(k): v for k, v in json.load(f)["runs"].items()}
        print(f"reusing RecBole seeds {sorted(peer)} from {a.reuse_peer}")

    def save_peer() -> None:
        with open(peer_out, "w") as f:
            json.dump({"kind": "recbole-sasrec-peer", "data": a.data, "threads": a.threads,
                       "max_epochs": a.epochs, "runs": {str(k): v for k, v in sorted(peer.items())}}, f, indent=2)

    split_check = forward_check = None
    if not a.peer_only:
        split_check = check_same_split(a.data)
        print(f"split check passed: {split_check}")
        forward_check = check_same_forward(a.recbole_venv, work)
        print(f"forward check passed: {forward_check}")
    ours: List[dict] = []
    timing: List[dict] = []
    for seed in seeds:  # peer and graphrec interleaved per seed, so machine load touches both alike
        if seed not in peer and not a.graphrec_only:
            print(f"RecBole SASRec seed {seed} ...", flush=True)
            peer[seed] = run_recbole_seed(a.recbole_venv, data_root, work, seed, a.threads, a.epochs, a.timeout)
            save_peer()
            r = peer[seed]
            print(f"  RecBole seed {seed}: NDCG@10 {r['test'].get('ndcg@10'):.4f}, {r['epochs_run']} epochs, "
                  f"{r['train_s_per_epoch']:.2f} s/epoch, {r['peak_rss_mb']:.0f} MB", flush=True)
        if a.peer_only:
            continue
        if a.peer_timing_epochs:
            print(f"RecBole SASRec seed {seed}: timing {a.peer_timing_epochs} epochs ...", flush=True)
            t = run_recbole_seed(a.recbole_venv, data_root, work, seed, a.threads, a.peer_timing_epochs, a.timeout)
            timing.append({k: t[k] for k in ("seed", "train_s_epochs", "train_s_per_epoch", "eval_s", "peak_rss_mb",
                                             "wall_s", "measured_at")})
            print(f"  {t['train_s_per_epoch']:.2f} s/epoch", flush=True)
        print(f"graphrec SASRec seed {seed} ...", flush=True)
        r = run_graphrec_seed(a.data, work, seed, a.threads, a.epochs, a.timeout)
        ours.append(r)
        print(f"  graphrec seed {seed}: NDCG@10 {r['test'].get('ndcg@10'):.4f}, {r['epochs_run']} epochs, "
              f"{r['train_s_per_epoch']:.3f} s/epoch, {r['peak_rss_mb']:.0f} MB", flush=True)
    if a.peer_only:
        print(f"wrote {peer_out}")
        return 0

    peer_rows = [peer[s] for s in seeds if s in peer]
    how = ("RecBole's seeds ran " + (f"earlier (--peer-only, {', '.join(r['measured_at'] for r in peer_rows)}) and were "
                                      "reused" if a.reuse_peer else "in this run, interleaved with graphrec's")
           + "; graphrec's seeds ran in this run"
           + (f", each right after a {a.peer_timing_epochs}-epoch RecBole timing run of the same seed, whose median "
              "training s/epoch is RecBole's s/epoch below (accuracy, epochs and memory are from the full runs)"
              if a.peer_timing_epochs else "")
           + ". Both sides: one child process per seed, training seconds per epoch as each side times it "
             "(valid evaluation excluded), peak RSS of the child (ru_maxrss).")
    out = {"kind": "graphrec-compare-recbole", "label": a.label, "data": a.data, "dataset": f"recbole-seq:{NAME}",
           "seeds": seeds, "threads": a.threads, "max_epochs": a.epochs, "device": _device_line(a.threads),
           "recbole_version": "1.2.1", "settings": {"recbole": recbole_config("<data>", "<work>", -1, a.epochs),
                                                    "graphrec": GRAPHREC_SETS},
           "how": how, "split_check": split_check, "forward_check": forward_check, "recbole": peer_rows, "recbole_timing": timing, "graphrec": ours}
    out["summary"] = summarise(peer_rows, ours, timing)
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    with open(a.out + ".json", "w") as f:
        json.dump(out, f, indent=2, default=str)
    text = markdown(out)
    with open(a.out + ".md", "w") as f:
        f.write(text)
    print(text)
    print(f"wrote {a.out}.json and {a.out}.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
