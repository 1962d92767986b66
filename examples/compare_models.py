"""Comparing models over seeds: LightGCN against FREEDOM on the embedded synthetic dataset, two
seeds each; prints mean ± std per test metric and a paired test against the first model.

Run: python examples/compare_models.py
The same from the shell: graphrec compare --models lightgcn,freedom --dataset synthetic --seeds 0,1
"""
import os
import tempfile

from graphrec.compare import Experiment

tiny = ["data.dataset_args={n_users: 300, n_items: 120, n_interactions: 6000}",  # a small synthetic set
        "train.epochs=5", "threads=1"]
runs = os.environ.get("GRAPHREC_EXAMPLE_OUT") or tempfile.mkdtemp(prefix="graphrec-compare-")

exp = Experiment(["lightgcn", "freedom"], "synthetic", seeds=[0, 1], sets=tiny, runs_dir=runs)
exp.run()             # every (model, seed) once; run it again and the finished runs are re-read
print(exp.markdown())
print("written:", ", ".join(exp.write().values()))
