"""Sharded embedding tables (``train.shard_tables``, `graphrec.train.sharding`): two gloo processes
holding half of MF's rows each (row-wise) or one table each (table-wise) take the one-process
steps on the same global batches (their tables end where the one-process run's do, also across a
resume with the sharded rows' Adam moments), each rank holds only its rows, and a model whose step
reads whole tables is refused in one line. The row blocks are TorchRec's (checked against its
planner when torchrec is installed)."""
import json
import os
import socket
import subprocess
import sys
import tempfile

import pytest
import torch

from graphrec import experiment
from graphrec.errors import ConfigError
from graphrec.train.sharded_table import Layout

N_USERS, N_ITEMS = 300, 120
# 4,800 training pairs in batches of 511: every batch splits 256/255 over two ranks
ARGS = {"data": {"dataset_args": {"n_users": N_USERS, "n_items": N_ITEMS, "n_interactions": 6000, "seed": 4}},
        "threads": 1, "train": {"batch_size": 511}}
CLI = ["--set", f"data.dataset_args={{n_users: {N_USERS}, n_items: {N_ITEMS}, n_interactions: 6000, seed: 4}}",
       "--set", "threads=1", "--set", "train.batch_size=511", "--seed", "0", "--quiet"]


def _one_process(out, epochs, **train):
    ov = json.loads(json.dumps(ARGS))
    ov["train"].update(train)
    experiment.run("mf", "synthetic", overrides=ov, seed=0, epochs=epochs, out=str(out), quiet=True)
    return out


def _two_ranks(*args):
    """``graphrec train ARGS`` as the two ranks of one run (what ``--nproc 2`` starts)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "WORLD_SIZE": "2",
           "GRAPHREC_DIST_TIMEOUT": "120"}
    logs = [tempfile.TemporaryFile("w+") for _ in range(2)]  # not pipes: a full one would stall its rank
    ranks = [subprocess.Popen([sys.executable, "-m", "graphrec", "train", *args],
                              env={**env, "RANK": str(r), "LOCAL_RANK": str(r)},
                              stdout=subprocess.DEVNULL, stderr=logs[r], text=True) for r in range(2)]
    try:
        for p in ranks:
            p.wait(timeout=300)
    finally:
        for p in ranks:
            if p.poll() is None:
                p.kill()
    errs = [(f.seek(0), f.read())[1] for f in logs]
    assert all(p.returncode == 0 for p in ranks), errs[0][-2000:] + errs[1][-2000:]


def _tables(run_dir, name="best.pt"):
    ck = torch.load(os.path.join(run_dir, name), weights_only=True)
    return {c: ck["components"][c]["weight"] for c in ("user_emb", "item_emb")}


def _same_run(one, two, init):
    """``two`` (sharded) ends where ``one`` (one process) does: metrics, and tables far closer to
    each other than the steps moved them from ``init`` (the runs' initial tables)."""
    a, b = (json.loads((d / "result.json").read_text()) for d in (one, two))
    assert a["split_hash"] == b["split_hash"] and b["world_size"] == 2
    for part in ("valid", "test"):
        for k, v in a[part].items():
            assert abs(b[part][k] - v) < 2e-3, (part, k, v, b[part][k])
    ta, tb, t0 = _tables(one), _tables(two), _tables(init)
    for k in ta:  # the same steps up to float summation order
        diff, moved = float((ta[k] - tb[k]).abs().max()), float((ta[k] - t0[k]).abs().max())
        assert ta[k].shape == tb[k].shape and diff < moved / 50, (k, diff, moved)
    return b


def test_row_wise_two_ranks_take_the_one_process_steps_also_across_a_resume(tmp_path):
    init, one = _one_process(tmp_path / "init", 0), _one_process(tmp_path / "one", 3)
    two = tmp_path / "two"
    _two_ranks("--model", "mf", "--dataset", "synthetic", "--epochs", "2", "--out", str(two),
               "--set", "train.shard_tables=row_wise", *CLI)
    _two_ranks("--resume", str(two), "--epochs", "3", "--quiet")
    # a resume that restarted the sharded rows' Adam moments (or handed rank 1 rank 0's) would
    # take other steps in its third epoch
    b = _same_run(one, two, init)
    assert b["epochs_run"] == 3
    assert sorted(os.listdir(two / "sharded_optimizer")) == [f"rank{r}-epoch{e}.pt" for r in (0, 1) for e in (2, 3)]
    held = b["shard_tables"]["tables"]
    assert held["user_emb"]["rows_per_rank"] == [150, 150] and held["item_emb"]["rows_per_rank"] == [60, 60]
    assert held["user_emb"]["bytes_per_rank"] == [150 * 64 * 4] * 2
    assert b["params"] == (150 + 60) * 64  # rank 0's parameters: its rows only


def test_table_wise_sgd_steps_weigh_each_ranks_rows_by_its_share(tmp_path):
    # plain SGD: unlike Adam's, its step scales with the gradient, so a wrongly weighted sum of the
    # ranks' row gradients moves the tables elsewhere
    init, one = _one_process(tmp_path / "init", 0), _one_process(tmp_path / "one", 2, optimizer="sgd", lr=5.0)
    two = tmp_path / "two"
    _two_ranks("--model", "mf", "--dataset", "synthetic", "--epochs", "2", "--out", str(two),
               "--set", "train.shard_tables=table_wise", "--set", "train.optimizer=sgd", "--set", "train.lr=5.0", *CLI)
    b = _same_run(one, two, init)
    held = b["shard_tables"]["tables"]  # the larger table goes first, to rank 0
    assert held["user_emb"]["rows_per_rank"] == [N_USERS, 0] and held["item_emb"]["rows_per_rank"] == [0, N_ITEMS]


def test_a_model_whose_step_reads_whole_tables_is_refused_in_one_line(tmp_path):
    ov = {"train": {"shard_tables": "row_wise"}}
    with pytest.raises(ConfigError) as e:  # exact propagation: every row in every step
        experiment.run("lightgcn", "synthetic", overrides=ov, out=str(tmp_path / "lgcn"), quiet=True)
    assert "model 'lightgcn' reads its whole table" in str(e.value) and "\n" not in str(e.value)
    with pytest.raises(ConfigError, match="model 'ngcf' cannot shard"):
        experiment.run("ngcf", "synthetic", overrides=ov, out=str(tmp_path / "ngcf"), quiet=True)
    with pytest.raises(ConfigError, match="--nproc N"):  # one process has nothing to shard across
        experiment.run("mf", "synthetic", overrides=ov, out=str(tmp_path / "mf"), quiet=True)
    with pytest.raises(ConfigError, match="grad_clip"):
        experiment.run("mf", "synthetic", overrides={"train": {"shard_tables": "table_wise", "grad_clip": 1.0}},
                       out=str(tmp_path / "clip"), quiet=True)
    # refused before anything is written
    assert not any((tmp_path / n).exists() for n in ("lgcn", "ngcf", "mf", "clip"))


@pytest.mark.parametrize("n,world", [(300, 2), (101, 3), (7, 3), (10, 4), (1, 2)])
def test_row_wise_blocks_hold_each_row_once_and_owners_agree(n, world):
    lay = Layout(n, world, "row_wise")
    bounds = [lay.bounds(r) for r in range(world)]
    assert bounds[0][0] == 0 and bounds[-1][1] == n and all(b[1] == c[0] for b, c in zip(bounds, bounds[1:]))
    ids = torch.arange(n)
    owner = lay.owner_of(ids)
    for r, (lo, hi) in enumerate(bounds):
        assert torch.equal(ids[owner == r], torch.arange(lo, hi))


def test_row_wise_blocks_are_torchrecs():
    pytest.importorskip("torchrec", reason="needs the 'dist' extra (torchrec)")
    from torchrec import EmbeddingCollection, EmbeddingConfig
    from torchrec.distributed.embedding import EmbeddingCollectionSharder
    from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
    sizes, world = (101, 7, 10), 3
    ec = EmbeddingCollection(device=torch.device("meta"), tables=[
        EmbeddingConfig(name=f"t{n}", embedding_dim=8, num_embeddings=n, feature_names=[f"f{n}"]) for n in sizes])
    planner = EmbeddingShardingPlanner(topology=Topology(world_size=world, compute_device="cpu"), constraints={
        f"t{n}": ParameterConstraints(sharding_types=["row_wise"]) for n in sizes})
    plan = planner.plan(ec, [EmbeddingCollectionSharder()]).plan[""]
    for n in sizes:
        shards = plan[f"t{n}"].sharding_spec.shards
        got = [(s.shard_offsets[0], s.shard_offsets[0] + s.shard_sizes[0]) for s in shards]
        assert got == [Layout(n, world, "row_wise").bounds(r) for r in range(world)]


def test_sampled_lightgcn_shards_its_table_and_takes_the_unsharded_steps(tmp_path):
    from graphrec.train import link_neighbor
    if not link_neighbor.available():
        pytest.skip("needs pyg-lib or torch_sparse (ext extra)")
    # sampled subgraph steps (lazy row-sparse Adam): sharded rows give the steps the replicated
    # table takes in the same two-process run (the same subgraphs: a rank's draws do not depend
    # on where the rows live)
    sampled = ["--set", "train.sampler=neighbor", "--set", "train.num_neighbors=[5, 5]", "--set", "train.lr=0.01"]
    runs = {}
    for mode in ("none", "row_wise"):
        runs[mode] = tmp_path / mode
        _two_ranks("--model", "lightgcn", "--dataset", "synthetic", "--epochs", "2", "--out", str(runs[mode]),
                   "--set", f"train.shard_tables={mode}", *sampled, *CLI)
    init = tmp_path / "init"
    ov = json.loads(json.dumps(ARGS))
    experiment.run("lightgcn", "synthetic", overrides=ov, seed=0, epochs=0, out=str(init), quiet=True)
    a, b = (json.loads((runs[m] / "result.json").read_text()) for m in ("none", "row_wise"))
    for part in ("valid", "test"):
        for k, v in a[part].items():
            assert abs(b[part][k] - v) < 2e-3, (part, k, v, b[part][k])
    ta, tb, t0 = (torch.load(d / "best.pt", weights_only=True)["components"]["embedding"]["weight"]
                  for d in (runs["none"], runs["row_wise"], init))
    diff, moved = float((ta - tb).abs().max()), float((ta - t0).abs().max())
    assert diff < moved / 50, (diff, moved)
    assert b["shard_tables"]["tables"]["embedding"]["rows_per_rank"] == [(N_USERS + N_ITEMS) // 2] * 2


def test_optimiser_rows_saved_by_two_ranks_are_read_back_by_three(tmp_path):
    from graphrec.train.sharding import ShardedModel
    from graphrec.train.sharded_table import ShardedTable
    full = torch.randn(11, 4)
    grads = torch.randn(11, 4)

    def rank_of(world, rank):
        table = ShardedTable(full, Layout(11, world, "row_wise"), rank, lambda: 1.0)
        opt = torch.optim.Adam([table.shard], lr=0.1)
        return ShardedModel(None, "row_wise", {"emb": table}), table, opt
    moments = []
    for r in range(2):  # one Adam step of each rank on its rows of the same gradient
        sharded, table, opt = rank_of(2, r)
        table.shard.grad = grads[table.lo:table.lo + table.shard.shape[0]].clone()
        opt.step()
        sharded.save_optimizer(opt, str(tmp_path), epoch=1)
        moments.append(opt.state[table.shard]["exp_avg"])
    whole = torch.cat(moments)
    assert whole.shape == (11, 4)
    for r in range(3):
        sharded, table, opt = rank_of(3, r)
        sharded.restore_optimizer(opt, str(tmp_path), epoch=1)
        st = opt.state[table.shard]
        assert torch.equal(st["exp_avg"], whole[table.lo:table.lo + table.shard.shape[0]])
        assert float(st["step"]) == 1.0
    with pytest.raises(Exception, match="epoch 2"):
        rank_of(3, 0)[0].restore_optimizer(opt, str(tmp_path), epoch=2)
