"""PAMD (Han et al., WWW 2022) against plain BPR (`mf`), with the paper's ablations, over seeds.

    python benchmarks/accuracy_pamd.py --dataset ml100k --seeds 0,1,2
    python benchmarks/accuracy_pamd.py --dataset synthetic --seeds 0,1,2

Per seed: four pretraining runs (``pamd-pretrain``, modes full / con / en / de; checkpoint selected
by the held-out items' loss), then the recommenders, each fine-tuning one pretraining run's
encoder (``train.init_from`` + ``init_components: [encoder]``):

    PAMD (full, all four vectors), PAMD-¬s (full, common only), PAMD-¬c (full, specific only),
    PAMD-CON (con), PAMD_en (en), PAMD_de (de), PAMD without pretraining (random encoder), mf.

Every recommender is trained and selected under full ranking (valid Recall@20); its selected
checkpoint is then also judged by the sampled protocol (1,000 negatives per user, fixed per seed:
`graphrec.eval.sampled`). PAMD's attention analysis (paper Table 6) is computed on its correctly
recommended test pairs (full ranking, top 10). Writes benchmarks/results/accuracy_pamd_<dataset>.{md,json};
runs stay under --runs and are re-read, not re-run, when finished.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = ROOT.parent / "shared" / "data"

DATASETS = {
    "ml100k": f"mmrec:{DATA / 'mmrec_format' / 'ml100k_mm'}",
    "synthetic": "synthetic",  # 1,500 users, 800 items, 'image' (128-d) and 'text' (64-d), generic + unique factors
}
MODES = ("full", "con", "en", "de")
#: label -> (pretraining mode or None for no pretraining, model_params of the recommender, run folder)
VARIANTS = {
    "PAMD": ("full", {"components": "all"}, "PAMD"),
    "PAMD-¬s (common only)": ("full", {"components": "common"}, "PAMD-nots-common"),
    "PAMD-¬c (specific only)": ("full", {"components": "specific"}, "PAMD-notc-specific"),
    "PAMD-CON": ("con", {}, "PAMD-CON"),
    "PAMD_en": ("en", {}, "PAMD_en"),
    "PAMD_de": ("de", {}, "PAMD_de"),
    "PAMD, no pretraining": (None, {}, "PAMD-nopre"),
    # the encoder's learning rate: 0.1 x 5e-3 above; the paper's absolute 1e-4; frozen
    "PAMD, encoder lr 1e-4": ("full", {"encoder_lr_ratio": 0.02}, "PAMD-enclr1e-4"),
    "PAMD, encoder frozen": ("full", {"encoder_lr_ratio": 0.0}, "PAMD-frozen"),
}
#: the same budget for every recommender (mf included): lr 5e-3 (a CPU budget; all alike), at most
#: 80 epochs, early stop after 8 evaluations without a better valid Recall@20
REC_TRAIN = {"lr": 0.005, "epochs": 80, "patience": 8, "progress": False}
PRE_TRAIN = {"epochs": 100, "patience": 20, "progress": False}
#: the analysis under each table (written once the numbers are in; the table above it is regenerated)
ANALYSIS: dict = {"ml100k": """**PAMD does not beat plain BPR on ml100k_mm: test Recall@20 0.2789 ± 0.0032 against mf's 0.3210 ± 0.0080
(-13.1%, 3 seeds, full ranking); no variant wins** (the closest, the encoder frozen, is -2.7%; the
sampled protocol ranks the models the same way). Why, as far as these runs show:

1. *The more the content encoder moves, the worse.* Fine-tuned at 0.1 x lr (5e-4): 0.2789; at the
   paper's absolute 1e-4: 0.3026; frozen: 0.3125; the same encoder trained from random weights
   (no pretraining): 0.2668. The encoder (two linear maps from 1,664 standardised feature
   dimensions to 64, about as many parameters as the item-ID table) becomes a second item embedding
   computed from posters and plots; trained on the BPR loss it fits the training pairs (training
   BPR 0.09 by epoch 26) while valid Recall@20 peaks at epochs 9-17, below mf's plateau. Pretraining
   helps (0.2789 vs 0.2668 fine-tuned; 0.3125 frozen) but not enough.
2. *On ml100k the content carries little preference that the IDs do not.* The data are dense (48
   training interactions per item) and graphrec's own multimodal FREEDOM, on the same features, is
   below LightGCN here (0.3385 vs 0.3536, `accuracy_mm_ml100k_full.md`). The paper's datasets are
   sparse (7-15 interactions per user, 10-59 per item) and its BPR baseline is far weaker than its
   content models; here the ID signal dominates.
3. *The fused vector starts content-dominated.* In e~_i = e_i + sum_k a_k v_k the PAMD vectors have
   norms 0.8 (common) to 3.5 (specific) against about 0.3 for the Xavier-initialised ID embedding,
   so the ID part has to outgrow them within the same 80-epoch, lr 5e-3 budget as mf.
4. *Ablations.* PAMD-¬s (common only, -7.1%) beats PAMD (-13.1%) and PAMD-¬c (-13.0%): the paper's
   Table 3 order (¬s < ¬c < PAMD) is not reproduced. The specific parts have the larger norms and take
   the highest attention weight for 93-96% of the correctly recommended pairs (paper: 52-54%);
   dropping them shrinks the content share of e~_i. With a linear Theta, e^c = W e and e^s = (I - W) e
   are both invertible images of e (tests/test_pamd.py, planted tests), so these ablations change the
   scale and starting point of the vectors more than the information they hold. Pretraining modes:
   CON -14.0%, en -13.0%, de -20.0% against full's -13.1%: full ≈ en ≈ CON here; PAMD_de is the worst
   (without L_en its vectors grow to norms 10-29 once L_de saturates at 0.002), the paper's
   "PAMD_de < PAMD" holds, its "PAMD_en < PAMD_de" does not.
5. *Not the learning-rate budget.* At the paper's rates (embeddings 1e-3, encoder 1e-4, up to 300
   epochs, patience 20; seed 0 only, one run each, not in the table) PAMD reaches 0.2915 and mf
   0.3365 (-13.4%), the same gap.
6. *Pretraining itself behaves as intended*: on the held-out items the order L^c < L^p < L^s holds for
   91% of the items (CON, which has no ranking term: 71%; de: 100%), and nothing collapses (smallest
   per-dimension std of e_t, e_v >= 0.24).

Cost (the same run records; a 2-core CPU shared with other jobs at load average ~20, so absolute
times are several times an idle machine's: mf takes 0.39 s/epoch idle in `accuracy_cf_ml-100k.md`,
1.04 s here): pretraining 1.1 s/epoch (1,346 training items in batches of 128; 0.34 s for PAMD_en,
which has no cross-modal maps), fine-tuning 9-13 s/epoch against mf's 1.04 (each step re-encodes
the batch's ~1,300 items: about 9x), frozen encoder 9.0 s; peak memory 513-587 MB for every row
(the feature tables are 11 MB). The sampled protocol ranks each user's held-out items among 1,000
negatives (ml100k users have 1,682 - |known| >= 1,000 free items except the heaviest users, who get
all of theirs); it takes about 1 s per evaluation here.""",
                  "synthetic": """PAMD beats plain BPR on the synthetic preset by 1.4% (test Recall@20 0.5181 ± 0.0005 against
0.5111 ± 0.0045, 3 seeds; within about 1.5 of mf's seed standard deviations, so not significant at 3
seeds); every pretrained variant but PAMD_de is 1.4-2.9% above mf, the best being the encoder at
the paper's 1e-4 (+2.9%), PAMD-¬s (+2.8%) and the frozen encoder (+2.6%). The preset is dense (60
interactions per item) and its preference mixes a generic factor shared by both modalities with
one unique factor per modality, so content adds only a little to what the IDs learn. As on
ml100k, the specific parts take the highest attention weight for every correct pair (their norms
are larger), PAMD-¬s is not below PAMD, and PAMD_de is the weakest (-3.0%). Sampled protocol: the
preset has 800 items, fewer than 1,000 negatives per user, so each user is ranked against all of
its non-interacted items (the documented policy): those numbers differ from full ranking only in
leaving out the valid items. Timings come from the same loaded machine as ml100k's."""}
FULL = ["recall@10", "recall@20", "ndcg@10", "ndcg@20"]
SAMPLED = ["recall@5", "recall@10", "ndcg@5", "ndcg@10"]


def _run(model: str, dataset: str, out: str, seed: int, ov: dict) -> dict:
    from graphrec.experiment import read_result, run
    if os.path.exists(os.path.join(out, "result.json")):
        return read_result(out)
    if os.path.isdir(out):
        import shutil
        shutil.rmtree(out)  # an interrupted run: start it again (small runs)
    t0 = time.time()
    r = run(model=model, dataset=dataset, overrides={"threads": 1, **ov}, seed=seed, out=out, quiet=True)
    print(f"[{time.strftime('%H:%M:%S')}] {model} seed {seed} {out}: best epoch {r['best_epoch']}/{r['epochs_run']} "
          f"({time.time() - t0:.0f} s)", flush=True)
    return r


def _extra_evaluations(run_dir: str, seed: int, attention: bool) -> dict:
    """Sampled-protocol test metrics of the run's selected checkpoint (and PAMD's Table 6 shares)."""
    import torch
    from graphrec.eval.ranking import RankingEvaluator
    from graphrec.experiment import load_run
    from graphrec.nn.disentangle import common_specific_shares
    from graphrec.train.task_sampled import sampled_evaluator
    path = os.path.join(run_dir, "extra.json")
    if os.path.exists(path):
        with open(path) as f:
            return json.load(f)
    p = load_run(run_dir)
    t0 = time.perf_counter()
    ev = sampled_evaluator(p.split, "test", seed, n_neg=1000, ks=(5, 10, 20), metrics=("recall", "ndcg"))
    out = {"sampled_test": ev.evaluate(p.model), "sampled_users": int(ev.users.numel()),
           "sampled_s": round(time.perf_counter() - t0, 3)}
    if attention:
        with torch.no_grad():
            rk = RankingEvaluator(p.split.test, [p.split.train], ks=[10], train=p.split.train)
            reps = p.model.propagate()
            idx, ok = rk.topk(p.model, reps, rk.users, 10)
            keys = rk.users.unsqueeze(1) * p.split.n_items + idx
            pos = torch.searchsorted(rk.target_keys, keys).clamp(max=rk.target_keys.numel() - 1)
            hit = (rk.target_keys[pos] == keys) & ok
            users = rk.users.unsqueeze(1).expand_as(idx)[hit]
            w = p.model.attention_weights(users, idx[hit])
            c, s = common_specific_shares(w, p.model.common_mask())
            out["attention"] = {"pairs": int(hit.sum()), "common_share": c, "specific_share": s,
                                "mean_weights": [round(float(x), 4) for x in w.mean(0)]}
    with open(path, "w") as f:
        json.dump(out, f, indent=1)
    return out


def bench(dataset: str, seeds: list[int], runs: str, results: dict, only: tuple = ()) -> dict:
    """Run (or re-read) every run of ``seeds``, appending to ``results``."""
    name = DATASETS[dataset]
    base = os.path.join(runs, dataset)
    for seed in seeds:
        pre_dirs = {}
        for mode in MODES:
            if only and not any(VARIANTS[v][0] == mode for v in only if v in VARIANTS):
                continue
            out = os.path.join(base, f"pretrain-{mode}", f"seed{seed}")
            r = _run("pamd-pretrain", name, out, seed, {"model_params": {"mode": mode}, "train": PRE_TRAIN})
            pre_dirs[mode] = out
            results["pretrain"][mode].append(r)
        for label, (mode, mp, slug) in VARIANTS.items():
            if only and label not in only:
                continue
            out = os.path.join(base, f"rec-{slug}", f"seed{seed}")
            train = dict(REC_TRAIN)
            if mode is not None:
                train["init_from"] = pre_dirs[mode]
            r = _run("pamd", name, out, seed, {"model_params": mp, "train": train})
            r["extra"] = _extra_evaluations(out, seed, attention=label == "PAMD")
            results["rec"][label].append(r)
        if only and "mf (BPR)" not in only:
            continue
        out = os.path.join(base, "rec-mf", f"seed{seed}")
        r = _run("mf", name, out, seed, {"train": dict(REC_TRAIN)})
        r["extra"] = _extra_evaluations(out, seed, attention=False)
        results["rec"]["mf (BPR)"].append(r)
    return results


def _ms(v: list[float]) -> str:
    if len(v) == 1:
        return f"{v[0]:.4f}"
    return f"{statistics.mean(v):.4f} ± {statistics.stdev(v):.4f}"


def write(dataset: str, seeds: list[int], results: dict) -> None:
    out = ROOT / "benchmarks" / "results"
    out.mkdir(parents=True, exist_ok=True)
    stem = f"accuracy_pamd_{dataset}"
    rec = {k: v for k, v in results["rec"].items() if v}
    mf = rec.get("mf (BPR)", [])
    mf_r20 = statistics.mean(r["test"]["recall@20"] for r in mf) if mf else float("nan")
    lines = [f"# PAMD on {dataset} ({DATASETS[dataset].split(':')[0]}), seeds {seeds}", "",
             "Recommenders trained and selected under full ranking (valid Recall@20); test read once at the "
             f"selected epoch. Same budget for every row: {REC_TRAIN}. Pretraining: {PRE_TRAIN}, selected by the "
             "held-out items' loss. `sampled` = the selected checkpoint judged by PAMD's protocol (1,000 "
             "negatives per user, fixed per seed). Δ R@20 = relative test Recall@20 change against mf.", "",
             "| model | seeds | full test " + " | full test ".join(FULL) + " | Δ R@20 vs mf | sampled test "
             + " | sampled test ".join(SAMPLED) + " | best epoch | s/epoch | peak MB |",
             "|---" * (5 + len(FULL) + len(SAMPLED)) + "|"]
    summary = {}
    for label, rs in rec.items():
        full = [_ms([r["test"][m] for r in rs]) for m in FULL]
        samp = [_ms([r["extra"]["sampled_test"][m] for r in rs]) for m in SAMPLED]
        r20 = statistics.mean(r["test"]["recall@20"] for r in rs)
        delta = f"{100 * (r20 / mf_r20 - 1):+.1f}%" if mf else "-"
        be = statistics.mean(r["best_epoch"] for r in rs)
        spe = statistics.mean(r["train_s_per_epoch"] for r in rs)
        mem = max(r["peak_mem_mb"] for r in rs)
        lines.append(f"| {label} | {len(rs)} | " + " | ".join(full) + f" | {delta} | " + " | ".join(samp)
                     + f" | {be:.0f} | {spe:.2f} | {mem:.0f} |")
        summary[label] = {"test": {m: [r["test"][m] for r in rs] for m in FULL},
                          "valid": {m: [r["valid"][m] for r in rs] for m in FULL},
                          "sampled_test": {m: [r["extra"]["sampled_test"][m] for r in rs] for m in SAMPLED},
                          "best_epoch": [r["best_epoch"] for r in rs], "s_per_epoch": [r["train_s_per_epoch"] for r in rs],
                          "peak_mem_mb": [r["peak_mem_mb"] for r in rs], "seeds": [r["seed"] for r in rs],
                          "attention": [r["extra"].get("attention") for r in rs if r["extra"].get("attention")]}
    lines += ["", "## Pretraining (items only)", "",
              "| mode | seeds | held-out loss | order fraction L^c<L^p<L^s | min std e_t / e_v | best epoch | s/epoch | peak MB |",
              "|---|---|---|---|---|---|---|---|"]
    pre_summary = {}
    for mode, rs in results["pretrain"].items():
        if not rs:
            continue
        v = [r["valid"] for r in rs]
        order = _ms([x["order_frac"] for x in v]) if "order_frac" in v[0] else "-"
        std = f"{statistics.mean(x['std_min_t'] for x in v):.3f} / {statistics.mean(x['std_min_v'] for x in v):.3f}"
        lines.append(f"| {mode} | {len(rs)} | {_ms([x['loss'] for x in v])} | {order} | {std} | "
                     f"{statistics.mean(r['best_epoch'] for r in rs):.0f} | "
                     f"{statistics.mean(r['train_s_per_epoch'] for r in rs):.3f} | {max(r['peak_mem_mb'] for r in rs):.0f} |")
        pre_summary[mode] = {"valid": v, "best_epoch": [r["best_epoch"] for r in rs],
                             "s_per_epoch": [r["train_s_per_epoch"] for r in rs],
                             "peak_mem_mb": [r["peak_mem_mb"] for r in rs]}
    att = summary.get("PAMD", {}).get("attention") or []
    if att:
        lines += ["", "## Attention analysis (PAMD Table 6)", "",
                  "Share of correctly recommended test pairs (full ranking, top 10) whose highest attention weight is "
                  "on a common vs a specific vector; mean weights in the order [t^c, v^c, t^s, v^s].", "",
                  "| seed | pairs | common | specific | mean weights |", "|---|---|---|---|---|"]
        for s, a in zip(summary["PAMD"]["seeds"], att):
            lines.append(f"| {s} | {a['pairs']} | {100 * a['common_share']:.1f}% | {100 * a['specific_share']:.1f}% | "
                         f"{a['mean_weights']} |")
    if ANALYSIS.get(dataset):
        lines += ["", "## Analysis", "", ANALYSIS[dataset].strip()]
    (out / f"{stem}.md").write_text("\n".join(lines) + "\n")
    with open(out / f"{stem}.json", "w") as f:
        json.dump({"dataset": DATASETS[dataset].split(":")[0], "seeds": seeds, "rec_train": REC_TRAIN,
                   "pretrain_train": PRE_TRAIN, "recommenders": summary, "pretraining": pre_summary}, f, indent=1)
    print((out / f"{stem}.md").read_text(), flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATASETS), default="ml100k")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--runs", default=str(ROOT / "runs" / "accuracy_pamd"))
    ap.add_argument("--only", default="", help="semicolon list of variant labels to run (default: all, and mf)")
    a = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)
    seeds = [int(s) for s in a.seeds.split(",")]
    results: dict = {"pretrain": {m: [] for m in MODES}, "rec": {v: [] for v in [*VARIANTS, "mf (BPR)"]}}
    for j, seed in enumerate(seeds):  # the table is rewritten after every seed
        bench(a.dataset, [seed], a.runs, results, tuple(x for x in a.only.split(";") if x))
        write(a.dataset, seeds[:j + 1], results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
