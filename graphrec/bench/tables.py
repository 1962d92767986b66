"""Markdown tables of bench records: SAND's Table-5 layout, details, scaling, MMRec side by side."""
from __future__ import annotations

from collections import OrderedDict
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from graphrec.bench import reference as ref

METHOD_NOTE = (
    "Each (model, dataset, scale, repeat) runs in its own process (`python -m graphrec.bench.worker`). "
    "Time per training epoch is the median of the epochs after one warm-up epoch (sampling, "
    "propagation, loss, backward, optimiser step; no evaluation inside); evaluation time is the median "
    "of full-ranking valid evaluations (one propagation, every valid user against all items, training "
    "items masked); graph build is timed from an empty graph cache. Memory: on CUDA "
    "`torch.cuda.max_memory_allocated` per phase; on CPU the phase's resident-set high-water mark "
    "(`VmHWM`, reset at each phase start through `/proc/self/clear_refs`) minus the process's RSS after "
    "imports and before loading data, so it counts graphrec's data, graphs, model, optimiser state and "
    "temporaries but not the Python/torch runtime. \"peak RSS\" is the absolute high-water mark over "
    "the graph, training and evaluation phases, the figure comparable with a whole-process measurement "
    "such as MMRec's. \"train CPU s/epoch\" is the process's CPU time (all threads) per epoch, "
    "less sensitive than wall time to other load on a shared machine. With several repeats, figures "
    "are medians over repeats.")


SCALING_NOTE = (
    "`--scale s` multiplies users, items and interactions together, so an epoch has ~s training steps. "
    "LightGCN and FREEDOM train batch-local: a 2-layer step takes one whole-graph product forward and "
    "one backward (the batch's 1-hop frontier is most of the graph) plus products over the batch's own "
    "rows, and exact Adam updates every row of the embedding tables (MMRec propagates the whole graph "
    "twice forward and twice backward in every step). A step therefore grows with the graph and an "
    "epoch about as s x (step cost), i.e. faster than s, for any exact full-graph trainer; `ms/step` "
    "isolates the per-step part. Full-ranking evaluation scores (users ~ s) x (items ~ s); below "
    "16,384 items it runs without the bf16 screen (`eval.screen: auto`). Memory grows about as s.")


def _median(v: Sequence[float]) -> Optional[float]:
    s = sorted(x for x in v if x is not None)
    if not s:
        return None
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _fmt(x: Optional[float], nd: int = 2) -> str:
    if x is None:
        return "-"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{nd}f}"


def display_model(name: str) -> str:
    return ref.PAPER_COLUMN.get(name, name)


def dataset_label(name: str) -> str:
    return ref.PAPER_DATASET.get(name, name)


def aggregate(records: Iterable[dict]) -> "OrderedDict[Tuple[str, str, float], dict]":
    """Medians over repeats per (model, dataset, scale); records with ``error`` are left out."""
    groups: "OrderedDict[Tuple[str, str, float], list]" = OrderedDict()
    for r in records:
        if r.get("error"):
            continue
        groups.setdefault((r["model"], r["dataset"], float(r.get("scale", 1.0))), []).append(r)
    out: "OrderedDict[Tuple[str, str, float], dict]" = OrderedDict()
    for key, rs in groups.items():
        agg = dict(rs[-1])
        for k in ("train_s_per_epoch", "eval_s", "graph_build_s", "peak_mem_mb", "peak_rss_mb",
                  "train_cpu_s_per_epoch", "eval_cpu_s"):
            vals = [r.get(k) for r in rs if r.get(k) is not None]
            agg[k] = _median(vals)
            agg[k + "_range"] = (min(vals), max(vals)) if vals else None
        for k in ("phase_mem_mb",):
            phases = {p for r in rs for p in (r.get(k) or {})}
            agg[k] = {p: _median([(r.get(k) or {}).get(p) for r in rs]) for p in phases}
        agg["n_repeats"] = len(rs)
        out[key] = agg
    return out


def _order_datasets(names: Iterable[str]) -> List[str]:
    names = set(names)
    first = [d for d in ref.PAPER_DATASET if d in names]
    return first + sorted(set(names) - set(first))


def _order_models(names: Iterable[str]) -> List[str]:
    pref = list(ref.PAPER_COLUMN) + ["vbpr+sand", "freedom+sand", "pop"]
    names = list(OrderedDict.fromkeys(names))
    return [m for m in pref if m in names] + [m for m in names if m not in pref]


def devices(records: Iterable[dict]) -> List[str]:
    seen = OrderedDict()
    for r in records:
        if r.get("error"):
            continue
        dev = f"{r.get('device_name', '?')} ({r.get('device', '?')}, torch threads: {r.get('threads', '?')}, " \
              f"torch {r.get('torch', '?')}, PyG {r.get('torch_geometric', '?')})"
        seen[dev] = None
    return list(seen)


def table5(records: Iterable[dict], with_paper: bool = True) -> str:
    """SAND Table-5 layout: rows = dataset x {Memory (GB), Time (s/epoch)}, a column per model
    (ours at scale 1, and the paper's published figure beside it)."""
    agg = aggregate(records)
    full = {k: v for k, v in agg.items() if abs(k[2] - 1.0) < 1e-9}
    if not full:
        return "_no scale-1 records_\n"
    models = _order_models(k[0] for k in full)
    datasets = _order_datasets(k[1] for k in full)
    header = ["Dataset", "Metric"]
    for m in models:
        header.append(f"{display_model(m)} (ours)")
        if with_paper and m in ref.PAPER_COLUMN:
            header.append(f"{display_model(m)} (paper)")
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for d in datasets:
        for metric, idx, key in (("Memory (GB)", 0, "peak_mem_mb"), ("Time (s/epoch)", 1, "train_s_per_epoch")):
            row = [dataset_label(d), metric]
            for m in models:
                a = full.get((m, d, 1.0))
                v = a.get(key) if a else None
                if v is not None and key == "peak_mem_mb":
                    v = v / 1024
                row.append(_fmt(v, 3 if key == "peak_mem_mb" else 2))
                if with_paper and m in ref.PAPER_COLUMN:
                    pf = ref.paper_figures(d, m)
                    row.append(_fmt(pf[idx]) if pf else "-")
            lines.append("| " + " | ".join(row) + " |")
    devs = devices(records)
    lines.append("")
    lines.append("Devices: ours = " + "; ".join(devs) + (f". Paper = {ref.PAPER_DEVICE} ({ref.PAPER_SOURCE})."
                                                        if with_paper else "."))
    return "\n".join(lines) + "\n"


def details_table(records: Iterable[dict]) -> str:
    agg = aggregate(records)
    header = ["model", "dataset", "scale", "users", "items", "train pairs", "params", "graphs s",
              "train s/epoch", "train CPU s/epoch", "eval s", "mem graphs MB", "mem train MB", "mem eval MB",
              "peak RSS MB", "repeats", "device"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    projected = False
    for (m, d, s), a in agg.items():
        pm = a.get("phase_mem_mb") or {}
        train_s = _fmt(a.get("train_s_per_epoch"))
        if a.get("train_s_per_epoch_projected"):  # the worker projected a truncated epoch
            projected, train_s = True, train_s + " (p)"
        lines.append("| " + " | ".join([
            m, d, f"{s:g}", f"{a.get('n_users', 0):,}", f"{a.get('n_items', 0):,}", f"{a.get('n_train', 0):,}",
            f"{a.get('params', 0):,}", _fmt(a.get("graph_build_s")), train_s,
            _fmt(a.get("train_cpu_s_per_epoch")), _fmt(a.get("eval_s")), _fmt(pm.get("graph_build"), 0),
            _fmt(pm.get("train"), 0), _fmt(pm.get("eval"), 0), _fmt(a.get("peak_rss_mb"), 0), str(a["n_repeats"]),
            f"{a.get('device_name', '?')} ({a.get('device', '?')}, {a.get('threads', '?')} thr)"]) + " |")
    errs = [r for r in records if r.get("error")]
    out = "\n".join(lines) + "\n"
    if projected:
        out += ("\n(p): epochs cut to `train.max_steps_per_epoch` batches; train s/epoch and CPU s/epoch are "
                "the measured seconds per step x the full epoch's batches.\n")
    if errs:
        out += "\nFailed: " + "; ".join(f"{r['model']} on {r['dataset']} (scale {r.get('scale', 1)}): "
                                        f"{r['error']}" for r in errs) + "\n"
    return out


def growth(agg_rows: Sequence[dict], key: str) -> Optional[Tuple[float, float, float]]:
    """(interaction ratio, cost ratio, cost ratio per 4x interactions) between the smallest and
    largest scale, the exponent taken from a power-law fit through the two ends."""
    import math
    rows = [r for r in agg_rows if r.get(key) and r.get("n_train")]
    if len(rows) < 2:
        return None
    rows = sorted(rows, key=lambda r: r["n_train"])
    x = rows[-1]["n_train"] / rows[0]["n_train"]
    y = rows[-1][key] / rows[0][key]
    if x <= 1:
        return None
    per4 = 4 ** (math.log(y) / math.log(x))
    return x, y, per4


def scaling_table(records: Iterable[dict]) -> str:
    agg = aggregate(records)
    by_md: "OrderedDict[Tuple[str, str], list]" = OrderedDict()
    for (m, d, s), a in agg.items():
        by_md.setdefault((m, d), []).append(a)
    blocks = []
    header = ["model", "dataset", "scale", "train pairs", "train s/epoch", "ms/step", "eval s", "graphs s",
              "peak MB", "peak RSS MB"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    summary = []
    for (m, d), rows in by_md.items():
        if len(rows) < 2:
            continue
        rows = sorted(rows, key=lambda r: r["scale"])
        for a in rows:
            if a.get("train_s_per_step") is not None:  # recorded by the worker
                a["ms_per_step"] = 1e3 * a["train_s_per_step"]
            else:  # records written before the worker kept it
                steps = -(-int(a.get("n_train") or 0) // int(a.get("batch_size") or 2048))
                a["ms_per_step"] = 1e3 * a["train_s_per_epoch"] / steps if steps and a.get("train_s_per_epoch") else None
            lines.append("| " + " | ".join([m, d, f"{a['scale']:g}", f"{a.get('n_train', 0):,}",
                                            _fmt(a.get("train_s_per_epoch"), 3), _fmt(a.get("ms_per_step"), 1),
                                            _fmt(a.get("eval_s"), 3),
                                            _fmt(a.get("graph_build_s"), 3), _fmt(a.get("peak_mem_mb"), 0),
                                            _fmt(a.get("peak_rss_mb"), 0)]) + " |")
        for key, what in (("train_s_per_epoch", "epoch time"), ("ms_per_step", "time per training step"),
                          ("eval_s", "evaluation time"), ("peak_mem_mb", "peak memory")):
            g = growth(rows, key)
            if g:
                ok = "meets" if g[2] <= ref.TARGET_GROWTH_4X else "MISSES"
                summary.append(f"- {m} on {d}: {g[0]:.1f}x interactions -> {g[1]:.2f}x {what}; "
                               f"{g[2]:.2f}x per 4x interactions ({ok} the <= {ref.TARGET_GROWTH_4X}x target)")
    if len(lines) == 2:
        return "_no model was measured at more than one scale_\n"
    blocks.append("\n".join(lines))
    blocks.append(SCALING_NOTE)
    if summary:
        blocks.append("\n".join(summary))
    return "\n\n".join(blocks) + "\n"


def mmrec_table(records: Iterable[dict], measured: Optional[Dict[Tuple[str, str], dict]] = None,
                source: str = ref.MMREC_SOURCE, device: str = ref.MMREC_DEVICE) -> str:
    """graphrec beside MMRec's own implementation: time, evaluation, memory and their ratios.

    ``measured`` maps (dataset, model) -> {train_s: (lo, hi), eval_s: (lo, hi), rss_gb: (lo, hi)};
    by default the figures recorded in ``reference.MMREC_MEASURED``. Speed-up = MMRec's midpoint /
    ours; memory ratio = our peak RSS / MMRec's peak RSS (both absolute process figures)."""
    measured = ref.MMREC_MEASURED if measured is None else measured
    agg = aggregate(records)
    header = ["dataset", "model", "MMRec s/epoch", "graphrec s/epoch", "speed-up", f"target {ref.TARGET_SPEEDUP:g}x",
              "MMRec eval s", "graphrec eval s", "MMRec peak RSS GB", "graphrec peak RSS GB", "memory ratio",
              f"target <= {ref.TARGET_MEMORY_FRACTION:g}"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]

    def rng(t: Optional[Tuple[float, float]], nd: int = 2) -> str:
        if not t:
            return "-"
        return _fmt(t[0], nd) if abs(t[0] - t[1]) < 1e-12 else f"{_fmt(t[0], nd)}-{_fmt(t[1], nd)}"

    n = 0
    for (m, d, s), a in agg.items():
        if abs(s - 1.0) > 1e-9 or (d, m) not in measured:
            continue
        mm = measured[(d, m)]
        ours_t, ours_gb = a.get("train_s_per_epoch"), (a.get("peak_rss_mb") or 0) / 1024 or None
        mid_t = sum(mm["train_s"]) / 2
        mid_gb = sum(mm["rss_gb"]) / 2
        sp = mid_t / ours_t if ours_t else None
        mr = ours_gb / mid_gb if ours_gb else None
        lines.append("| " + " | ".join([
            dataset_label(d), display_model(m), rng(mm["train_s"]), _fmt(ours_t, 3),
            f"{sp:.1f}x" if sp else "-", ("yes" if sp and sp >= ref.TARGET_SPEEDUP else "no"),
            rng(mm.get("eval_s")), _fmt(a.get("eval_s"), 3), rng(mm["rss_gb"]), _fmt(ours_gb, 3),
            f"{mr:.2f}" if mr else "-", ("yes" if mr and mr <= ref.TARGET_MEMORY_FRACTION else "no")]) + " |")
        n += 1
    if not n:
        return "_no graphrec record matches a measured MMRec configuration_\n"
    return "\n".join(lines) + f"\n\nMMRec: {device}; {source}. graphrec: " + "; ".join(devices(records)) + ".\n"


def render_run(records: Sequence[dict], title: str = "graphrec bench", note: str = "") -> str:
    """Markdown for one `graphrec bench` invocation."""
    parts = [f"# {title}\n"]
    if note:
        parts.append(note.strip() + "\n")
    parts.append("## Memory and time (SAND Table-5 layout)\n\n" + table5(records))
    parts.append("## Details\n\n" + details_table(records))
    sc = scaling_table(records)
    if not sc.startswith("_"):
        parts.append("## Growth with the number of interactions\n\n" + sc)
    mm = mmrec_table(records)
    if not mm.startswith("_"):
        parts.append("## Beside MMRec on the same machine kind (reference figures)\n\n" + mm)
    parts.append("## Method\n\n" + METHOD_NOTE + "\n")
    return "\n".join(parts)
