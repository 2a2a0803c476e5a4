"""Every method of a dataset on the same axes (``notebooks/fig_comparison.ipynb``)."""

from __future__ import annotations

import math
from typing import Dict, Sequence

from lqs_core import spec
from lqs_core.workflow.aggregate import baseline_accuracy, comparison_settings, pareto_mask
from lqs_core.workflow.names import METHOD_NAMES, format_value, method_order

#: x axes of the comparison figure: (column, axis label, base of the log x-axis).
COMPARISON_AXES = (("packed_bytes", "packed size of the quantized weights [kB] (log)", 10),
                   ("mean_bits_fixed", "bits per weight, fixed width (mean over weights; log)", 2),
                   ("entropy_bits_per_weight", "bits per weight, entropy of the integers (log)", 2))


def _method_styles(methods: Sequence[str]) -> Dict[str, dict]:
    import seaborn as sns

    palette = sns.color_palette("tab10", 10)
    markers = {"float": "*", "nested": "o", "maxbin": "v", "inverse": "^", "difference": "<",
               "reconstruction": ">", "ptq": "s", "fixed": "D", "lsq": "P", "cgmq": "X", "layer_importance": "h"}
    styles = {}
    for m in methods:
        k = method_order(m)
        styles[m] = {"color": "black" if m == "float" else palette[(k - 1) % 10], "marker": markers.get(m, "o")}
    return styles


def _short_label(method: str, param) -> str:
    """The point label of a comparator setting in the comparison figure: ``4b`` (bits), ``0.1`` (CGMQ budget)."""
    if param is None or (isinstance(param, float) and math.isnan(param)):
        return ""
    return format_value(param) if method == "cgmq" else f"{int(param)}b"


def _plain_log_x(ax, base: int = 10) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if base == 2:  # bits: 0.5, 1, 2, 4, 8, 16, 32
        ax.xaxis.set_major_locator(LogLocator(base=2))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        return
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))


def comparison_figure(results, dataset: str):
    """Accuracy vs. size for every method of ``dataset`` on the same axes (one figure per dataset).

    Panels: final validation accuracy against the packed size of the quantized weights (log x), the fixed-width
    bits per weight and the entropy of the integers in bits per weight. Every setting of every method is one
    point (mean over seeds, error bars ± one standard deviation in x and y); each method's own Pareto front in the
    panel's plane (most accurate for its size) is drawn as a line; the float baseline as a star at its float32 size
    / 32 bits and as a dashed accuracy line. Comparator points are labelled by their bits (``4b``) or CGMQ budget.
    """
    import matplotlib.pyplot as plt

    agg = comparison_settings(results, dataset)
    methods = sorted(agg["method"].unique(), key=method_order)
    styles = _method_styles(methods)
    fig, axes = plt.subplots(1, len(COMPARISON_AXES), figsize=(4.0 * len(COMPARISON_AXES), 4.2), sharey=True,
                             squeeze=False)
    axes = axes[0]
    base = baseline_accuracy(results, dataset)
    for ax, (metric, xlabel, log) in zip(axes, COMPARISON_AXES):  # log: base of the log x-axis
        scale = 1e-3 if metric == "packed_bytes" else 1.0  # bytes -> kB
        for m in methods:
            a = agg[(agg["method"] == m) & agg[f"{metric}_mean"].notna()].copy()
            if a.empty:
                continue
            a[f"{metric}_mean"] *= scale
            a[f"{metric}_std"] *= scale
            st = styles[m]
            ax.errorbar(a[f"{metric}_mean"], a["val_accuracy_mean"], xerr=a[f"{metric}_std"],
                        yerr=a["val_accuracy_std"], linestyle="none", marker=st["marker"], color=st["color"],
                        markersize=7 if m == "float" else 4, alpha=0.55 if m != "float" else 1.0, elinewidth=0.6,
                        capsize=1.5, label=METHOD_NAMES.get(m, m))
            if m != "float" and len(a) > 1:
                front = a[pareto_mask(a["val_accuracy_mean"], a[f"{metric}_mean"])].sort_values(f"{metric}_mean")
                ax.plot(front[f"{metric}_mean"], front["val_accuracy_mean"], color=st["color"], linewidth=1.3,
                        drawstyle="steps-post", marker=st["marker"], markersize=4)
            if m in spec.COMPARATORS:
                for x, y, p in zip(a[f"{metric}_mean"], a["val_accuracy_mean"], a["param"]):
                    ax.annotate(_short_label(m, p), (x, y), textcoords="offset points", xytext=(3, 3), fontsize=6,
                                color=st["color"])
        if base is not None:
            ax.axhline(base, color="0.3", linestyle="--", linewidth=0.9)
        if log:
            ax.set_xscale("log", base=log, nonpositive="mask")
            _plain_log_x(ax, log)
        ax.set_xlabel(xlabel)
    axes[0].set_ylabel("final validation accuracy")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.tight_layout()
    ncol = min(len(labels), 6)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, 1.0), frameon=False,
               markerscale=1.3)
    runs = results[(results["dataset"] == dataset) & (results["kind"] == "run")]
    n_seeds = sorted(set(runs.groupby(["family", "granularity", "mode", "param"], dropna=False).size()))
    seeds = "–".join(str(n) for n in (n_seeds[:1] + n_seeds[-1:] if len(n_seeds) > 1 else n_seeds))
    fig.suptitle(f"{dataset}: all methods, same data, network and seeds — mean ± sd over {seeds} seed(s); "
                 "lines: each method's Pareto front; star / dashed: float baseline",
                 y=1.02 + 0.065 * -(-len(labels) // ncol), va="bottom")
    return fig
