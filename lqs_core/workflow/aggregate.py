"""From the results table to the numbers the figures and tables show.

Means and spreads over seeds (:func:`aggregate_seeds`), the operating point of a sweep (the most compressed setting
within an accuracy tolerance of the float baseline: :func:`select_operating_point`, :func:`compression_table`), the
run whose integers a histogram shows (:func:`pick_histogram_run`), every method of a dataset on the same numbers and
its Pareto-optimal settings (:func:`comparison_settings`, :func:`pareto_points`), and their readable forms
(:func:`table_display`, :func:`pareto_points_display`, :func:`to_markdown`).
"""

from __future__ import annotations

import math
from typing import List, Optional, Sequence

from lqs_core import spec
from lqs_core.workflow import names
from lqs_core.workflow.table import thesis_runs

#: Metrics of the comparison of every method (the comparison figure's x axes and the Pareto table's columns).
COMPARISON_METRICS = ("val_accuracy", "entropy_bytes", "packed_bytes", "mean_bits_fixed", "entropy_bits_per_weight",
                      "huffman_bytes", "zip_bytes", "unique_integers")
#: The model's size in the comparison (figure, Pareto table, equal-bytes table): the bytes of its integer file,
#: every tensor entropy-coded with its scales (:func:`lqs_core.metrics.entropy_bytes`); float32 for the baseline.
MODEL_SIZE = "entropy_bytes"
_SETTING_KEYS = ["method", "granularity", "mode", "param", "variant"]


def aggregate_seeds(df, by: Sequence[str], columns: Sequence[str]):
    """Mean, standard deviation (ddof 1; 0 for one seed) and count over seeds of ``columns`` per ``by`` group."""
    import pandas as pd

    out = []
    for key, group in df.groupby(list(by), sort=True, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        row = dict(zip(by, key))
        row["n_seeds"] = int(len(group))
        for col in columns:
            values = pd.to_numeric(group[col], errors="coerce").astype(float)
            row[f"{col}_mean"] = float(values.mean())
            row[f"{col}_std"] = float(values.std(ddof=1)) if len(values) > 1 else 0.0
        out.append(row)
    return pd.DataFrame(out)


def baseline_accuracy(results, dataset: str) -> Optional[float]:
    """Mean final validation accuracy over seeds of the float baseline of ``dataset`` (None without one)."""
    base = results[(results["kind"] == "baseline") & (results["dataset"] == dataset)]
    return float(base["val_accuracy"].mean()) if len(base) else None


def select_operating_point(agg, reference_accuracy: Optional[float], tolerance: float, size: str = "zip_bytes"):
    """The row of ``agg`` (per-setting means, see :func:`aggregate_seeds`) with the smallest mean ``size`` whose
    mean validation accuracy is at least ``reference_accuracy - tolerance`` (ties: higher accuracy, then larger
    param); without a reference or a qualifying row, the most accurate row. Returns ``(row, within_tolerance)``.
    """
    if agg.empty:
        raise ValueError("No runs to choose an operating point from.")
    ordered = agg.sort_values([f"{size}_mean", "val_accuracy_mean", "param"], ascending=[True, False, False],
                              kind="mergesort")
    if reference_accuracy is not None and not math.isnan(reference_accuracy):
        ok = ordered[ordered["val_accuracy_mean"] >= reference_accuracy - tolerance - 1e-12]
        if len(ok):
            return ok.iloc[0], True
    best = agg.sort_values(["val_accuracy_mean", f"{size}_mean"], ascending=[False, True], kind="mergesort")
    return best.iloc[0], False


def present_granularities(df) -> List[str]:
    """The granularities of ``df`` in figure-column order (:data:`lqs_core.workflow.names.GRANULARITY_ORDER`)."""
    present = set(df["granularity"].dropna())
    return [g for g in names.GRANULARITY_ORDER if g in present]


def present_modes(df) -> List[str]:
    present = set(df["mode"].dropna())
    return [m for m in spec.MODES if m in present]


def nearest_value(available: Sequence[float], value: float) -> float:
    """The value of ``available`` nearest to ``value`` on a log scale (0 only matches 0, or when nothing else)."""
    available = [float(a) for a in available]
    if not available:
        raise ValueError("No values to choose from.")
    value = float(value)
    positive = [a for a in available if a > 0]
    if value <= 0 or not positive:
        return min(available, key=lambda a: (abs(a - value), a))
    return min(positive, key=lambda a: (abs(math.log10(a) - math.log10(value)), a))


def pick_histogram_run(results, dataset: str, family: str, granularity: Optional[str] = None,
                       mode: Optional[str] = "qat", seed: Optional[int] = None, param: Optional[float] = None,
                       tolerance: float = 0.01):
    """The run whose integer histograms are shown for one sweep: at ``param`` (λ/γ; None = the most compressed
    setting within ``tolerance`` of the float baseline's accuracy), ``granularity`` (None = the first present),
    ``mode`` (falls back to the first present), ``seed`` (None = the smallest). Returns the results row.
    """
    df = results[(results["dataset"] == dataset) & (results["family"] == family) & (results["kind"] == "run")]
    df = df[df["integers"].notna()]
    if df.empty:
        raise ValueError(f"No runs of {dataset}/{family} with an integer file.")
    grans, modes = present_granularities(df), present_modes(df)
    granularity = granularity if granularity in grans else grans[0]
    mode = mode if mode in modes else modes[0]
    df = df[(df["granularity"] == granularity) & (df["mode"] == mode)]
    if param is None:
        agg = aggregate_seeds(df, ["param"], ["val_accuracy", "zip_bytes"])
        row, _ = select_operating_point(agg, baseline_accuracy(results, dataset), tolerance)
        param = float(row["param"])
    else:
        param = nearest_value(sorted(df["param"].unique()), param)
    df = df[df["param"] == param]
    seeds = sorted(df["seed"].unique())
    seed = seed if seed in seeds else seeds[0]
    return df[df["seed"] == seed].iloc[0]


# ---------------------------------------------------------------------------------------------------------------
# Compression table (thesis figure type 4)


def compression_table(results, tolerance: float = 0.01):
    """Compression per dataset and scheme (thesis figure type 4); returns ``(table, all_settings)``.

    ``all_settings``: every (dataset, family, granularity, mode, λ/γ) with means over seeds of accuracy and
    sizes. ``table``: per dataset and family the most compressed setting (smallest mean ``zip_bytes``, the
    thesis measure) whose mean validation accuracy is within ``tolerance`` of the float baseline's (else the most
    accurate, flagged ``within_tolerance = False``), with the float baseline's size and accuracy beside it.
    Sizes in bytes: ``zip`` (int ``.npy`` files zipped, the thesis measure; float: float32 ``.npy`` zipped),
    ``packed`` (fixed-width bit-packed + float32 scales), ``entropy`` (the integer file: every tensor
    entropy-coded, scales, header; :func:`lqs_core.metrics.entropy_bytes`), ``huffman`` (Huffman-coded integers
    alone, without code tables);
    ``float32_bytes`` is 4 bytes per parameter.
    """
    import pandas as pd

    runs = thesis_runs(results)
    sizes = ["val_accuracy", "zip_bytes", "float_zip_bytes", "packed_bytes", "entropy_bytes", "huffman_bytes",
             "float32_bytes", "unique_integers", "int_range", "bits_fixed"]
    if "entropy_bytes" not in runs.columns:
        runs = runs.assign(entropy_bytes=float("nan"))
    all_settings = aggregate_seeds(runs, ["dataset", "family", "granularity", "mode", "param"], sizes)
    order = {"dataset": lambda s: s.map(spec.DATASETS.index), "family": lambda s: s.map(names.family_order)}
    all_settings = all_settings.sort_values(
        ["dataset", "family", "granularity", "mode", "param"],
        key=lambda s: order[s.name](s) if s.name in order else s, kind="mergesort").reset_index(drop=True)
    rows = []
    for (dataset, family), group in all_settings.groupby(["dataset", "family"], sort=False):
        base = baseline_accuracy(results, dataset)
        row, ok = select_operating_point(group, base, tolerance)
        rows.append({
            "dataset": dataset,
            "scheme": "nested" if family == "nested" else "loss_terms",
            "family": family,
            "granularity": row["granularity"],
            "mode": row["mode"],
            "param_symbol": names.param_symbol(family),
            "param": float(row["param"]),
            "n_seeds": int(row["n_seeds"]),
            "val_accuracy": row["val_accuracy_mean"],
            "val_accuracy_std": row["val_accuracy_std"],
            "float_val_accuracy": base,
            "within_tolerance": bool(ok),
            "float_zip_bytes": row["float_zip_bytes_mean"],
            "zip_bytes": row["zip_bytes_mean"],
            "zip_ratio": row["float_zip_bytes_mean"] / row["zip_bytes_mean"] if row["zip_bytes_mean"] else None,
            "float32_bytes": row["float32_bytes_mean"],
            "packed_bytes": row["packed_bytes_mean"],
            "packed_ratio": row["float32_bytes_mean"] / row["packed_bytes_mean"] if row["packed_bytes_mean"] else None,
            "entropy_bytes": row["entropy_bytes_mean"],
            "entropy_ratio": (row["float32_bytes_mean"] / row["entropy_bytes_mean"]
                              if row["entropy_bytes_mean"] else None),
            "huffman_bytes": row["huffman_bytes_mean"],
            "huffman_ratio": (row["float32_bytes_mean"] / row["huffman_bytes_mean"]
                              if row["huffman_bytes_mean"] else None),
            "unique_integers": row["unique_integers_mean"],
            "int_range": row["int_range_mean"],
            "bits_fixed": row["bits_fixed_mean"],
        })
    return pd.DataFrame(rows), all_settings


def _kb(x) -> str:
    return "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x / 1000:.2f}"


def table_display(table):
    """The compression table formatted for reading (kB = 1000 bytes, accuracies in %)."""
    import pandas as pd

    out = []
    for r in table.itertuples(index=False):
        out.append({
            "dataset": r.dataset,
            "scheme": "nested" if r.family == "nested" else names.TERM_NAMES.get(r.family, r.family),
            "granularity / mode": f"{r.granularity} / {r.mode}",
            "λ/γ": f"{r.param_symbol}={names.format_value(r.param)}" + ("" if r.within_tolerance else " *"),
            "val acc %": f"{100 * r.val_accuracy:.1f} ± {100 * r.val_accuracy_std:.1f}",
            "float acc %": "–" if r.float_val_accuracy is None or math.isnan(r.float_val_accuracy)
            else f"{100 * r.float_val_accuracy:.1f}",
            "zip kB float → quant": f"{_kb(r.float_zip_bytes)} → {_kb(r.zip_bytes)}",
            "zip ×": f"{r.zip_ratio:.1f}" if r.zip_ratio else "–",
            "packed kB (×)": f"{_kb(r.packed_bytes)} ({r.packed_ratio:.1f})" if r.packed_ratio else "–",
            "file kB (×)": f"{_kb(r.entropy_bytes)} ({r.entropy_ratio:.1f})"
            if r.entropy_ratio and not math.isnan(r.entropy_ratio) else "–",
            "Huffman kB (×)": f"{_kb(r.huffman_bytes)} ({r.huffman_ratio:.1f})" if r.huffman_ratio else "–",
            "unique ints": f"{r.unique_integers:.0f}",
        })
    return pd.DataFrame(out)


def to_markdown(df) -> str:
    """A GitHub-flavoured Markdown table of ``df`` (no extra dependency)."""
    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for row in df.itertuples(index=False):
        lines.append("| " + " | ".join(str(v).replace("|", "\\|") for v in row) + " |")
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Every method of a dataset on the same numbers


def strip_lr(variant) -> str:
    """A variant without its learning-rate part (``lr0.001``, :func:`lqs_core.workflow.sweep.lr_tag`)."""
    parts = [p for p in str(variant or "").split("-") if p and not (p.startswith("lr") and p[2:3].isdigit())]
    return "-".join(parts)


def best_learning_rate(agg):
    """Of every setting trained at several learning rates, the row of the rate with the higher mean validation
    accuracy (ties: the smaller rate); ``agg`` has a ``learning_rate`` column (:func:`comparison_settings`)."""
    keys = ["method", "granularity", "mode", "param", "variant"]
    order = agg.sort_values(keys + ["val_accuracy_mean", "learning_rate"], ascending=[True] * 5 + [False, True],
                            kind="mergesort")
    return order.drop_duplicates(keys, keep="first").sort_index()


def comparison_settings(results, dataset: str, best_lr: bool = True):
    """Every setting of ``dataset`` (method × granularity × mode × param × variant, plus the float baseline as
    method ``float`` with its float32 size and 32 bits per weight), with mean / sd / count over seeds of
    :data:`COMPARISON_METRICS`, sorted by method, granularity, mode, param. A setting trained at several learning
    rates (a profile's ``learning_rates``) is shown at the better one (``best_lr``, :func:`best_learning_rate`);
    the ``learning_rate`` column says which."""
    import pandas as pd

    df = results[results["dataset"] == dataset].copy()
    if "method" not in df.columns:
        df["method"] = df["family"]
    if "variant" not in df.columns:
        df["variant"] = None
    base = df["kind"] == "baseline"
    df.loc[base, "method"] = "float"
    for col in ("packed_bytes", "entropy_bytes"):
        if col not in df.columns:
            df[col] = float("nan")
        df.loc[base, col] = df.loc[base, "float32_bytes"]
    for col in ("mean_bits_fixed", "entropy_bits_per_weight"):
        if col not in df.columns:
            df[col] = float("nan")
        df.loc[base, col] = 32.0
    for col in COMPARISON_METRICS:
        if col not in df.columns:
            df[col] = float("nan")
    for col in ("granularity", "mode", "variant"):
        df[col] = df[col].where(df[col].notna(), "")
    df["param"] = pd.to_numeric(df["param"], errors="coerce").fillna(-1.0)
    if df.empty:
        raise ValueError(f"No runs of {dataset} in the results table.")
    lrs = pd.to_numeric(df["learning_rate"], errors="coerce") if "learning_rate" in df.columns else None
    df["learning_rate"] = lrs.fillna(-1.0) if lrs is not None else -1.0
    df["variant"] = [strip_lr(v) for v in df["variant"]]
    agg = aggregate_seeds(df, _SETTING_KEYS + ["learning_rate"], COMPARISON_METRICS)
    if best_lr:
        agg = best_learning_rate(agg)
    agg["learning_rate"] = agg["learning_rate"].where(agg["learning_rate"] > 0)
    agg["_m"] = agg["method"].map(names.method_order)
    agg = agg.sort_values(["_m", "granularity", "mode", "param", "variant"], kind="mergesort").drop(columns="_m")
    agg["param"] = agg["param"].where(agg["param"] >= 0)
    agg["setting"] = [names.setting_label(m, p, v) for m, p, v in zip(agg["method"], agg["param"], agg["variant"])]
    agg.insert(0, "dataset", dataset)
    return agg.reset_index(drop=True)


def pareto_mask(accuracy: Sequence[float], size: Sequence[float]) -> List[bool]:
    """Which points are Pareto-optimal for maximal ``accuracy`` and minimal ``size``: no other point is at least
    as accurate and at most as large, and better in one of the two (NaN points are never optimal)."""
    pts = [(float(a), float(s)) for a, s in zip(accuracy, size)]
    out = []
    for i, (a, s) in enumerate(pts):
        if math.isnan(a) or math.isnan(s):
            out.append(False)
            continue
        dominated = any(not (math.isnan(a2) or math.isnan(s2)) and a2 >= a and s2 <= s and (a2 > a or s2 < s)
                        for j, (a2, s2) in enumerate(pts) if j != i)
        out.append(not dominated)
    return out


def pareto_points(results, dataset: str, size: str = MODEL_SIZE):
    """The Pareto-optimal settings of ``dataset`` over every method (maximal mean validation accuracy, minimal
    mean ``size``), from the smallest to the largest, as a DataFrame (see :func:`comparison_settings`)."""
    agg = comparison_settings(results, dataset)
    front = agg[pareto_mask(agg["val_accuracy_mean"], agg[f"{size}_mean"])]
    return front.sort_values([f"{size}_mean", "val_accuracy_mean"], ascending=[True, False],
                             kind="mergesort").reset_index(drop=True)


def _pm(mean, std, scale=1.0, digits=1) -> str:
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "–"
    return f"{scale * mean:.{digits}f} ± {scale * std:.{digits}f}"


def pareto_points_display(points):
    """The Pareto table formatted for reading (accuracy in %, sizes in bytes, bits per weight)."""
    import pandas as pd

    rows = []
    for r in points.itertuples(index=False):
        rows.append({
            "method": names.METHOD_NAMES.get(r.method, r.method),
            "setting": r.setting,
            "granularity / mode": " / ".join(x for x in (r.granularity, r.mode) if x) or "–",
            "seeds": int(r.n_seeds),
            "lr": "–" if (r.learning_rate is None or math.isnan(r.learning_rate)) else f"{r.learning_rate:g}",
            "val acc %": _pm(r.val_accuracy_mean, r.val_accuracy_std, 100),
            "file bytes": "–" if math.isnan(r.entropy_bytes_mean) else f"{r.entropy_bytes_mean:.0f}",
            "packed bytes": f"{r.packed_bytes_mean:.0f}",
            "bits/weight (fixed)": _pm(r.mean_bits_fixed_mean, r.mean_bits_fixed_std, digits=2),
            "bits/weight (entropy)": _pm(r.entropy_bits_per_weight_mean, r.entropy_bits_per_weight_std, digits=2),
        })
    return pd.DataFrame(rows)
