"""Benchmarking: seconds per epoch, evaluation seconds and peak memory of two models, each measured
in its own process by the trainer's own loop (`graphrec bench` does the same from the command line).

Run: python examples/benchmark_models.py
"""
from graphrec.bench.runner import run_bench
from graphrec.bench.tables import details_table

records = run_bench(["mf", "lightgcn"], "synthetic", epochs=2, threads=1,
                    sets=["data.dataset_args={n_users: 400, n_items: 200, n_interactions: 8000}"])
print(details_table(records))
for r in records:
    print(f"{r['model']}: {r['train_s_per_epoch']:.3f} s/epoch, evaluation {r['eval_s']:.3f} s, "
          f"peak {r['peak_mem_mb']:.0f} MB over the process baseline")
