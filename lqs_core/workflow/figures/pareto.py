"""Pareto fronts of one sweep (thesis figure type 1; ``notebooks/fig_pareto.ipynb``)."""

from __future__ import annotations

import math

from lqs_core import spec
from lqs_core.workflow.aggregate import aggregate_seeds, baseline_accuracy, present_granularities, present_modes
from lqs_core.workflow.names import MODE_NAMES, family_title, format_value, param_symbol


def pareto_figure(results, dataset: str, family: str, label_points: bool = True):
    """Pareto fronts of one sweep (thesis figure type 1).

    x = final validation accuracy, y (log) = unique integers (top row) and integer range ``max|P_q|`` (bottom
    row); one column per granularity; one line per mode (QAT, PTQ) through the λ/γ points in order, each point
    the mean over seeds with error bars of one standard deviation in x and y, labelled by its λ/γ; the float
    baseline's accuracy as a dashed vertical line.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns

    df = results[(results["dataset"] == dataset) & (results["family"] == family) & (results["kind"] == "run")]
    if df.empty:
        raise ValueError(f"No runs of {dataset}/{family} in the results table.")
    grans, modes = present_granularities(df), present_modes(df)
    agg = aggregate_seeds(df, ["granularity", "mode", "param"], ["val_accuracy", "unique_integers", "int_range"])
    base = baseline_accuracy(results, dataset)
    colors = dict(zip(spec.MODES, sns.color_palette("deep", 2)))
    markers = {"qat": "o", "ptq": "s"}
    fig, axes = plt.subplots(2, len(grans), figsize=(3.4 * len(grans) + 0.6, 5.6), sharex=True, sharey="row",
                             squeeze=False)
    rows = [("unique_integers", "unique integers (log)"), ("int_range", "integer range max|$P_q$| (log)")]
    sym = param_symbol(family)
    for j, gran in enumerate(grans):
        for i, (metric, ylabel) in enumerate(rows):
            ax = axes[i, j]
            for mode in modes:
                a = agg[(agg["granularity"] == gran) & (agg["mode"] == mode)].sort_values("param")
                if a.empty:
                    continue
                y = a[f"{metric}_mean"].where(a[f"{metric}_mean"] > 0)
                ax.errorbar(a["val_accuracy_mean"], y, xerr=a["val_accuracy_std"], yerr=a[f"{metric}_std"],
                            color=colors[mode], marker=markers[mode], markersize=4, linewidth=1.2, capsize=2,
                            elinewidth=0.8, label=MODE_NAMES[mode])
                if label_points:
                    for x, yy, p in zip(a["val_accuracy_mean"], y, a["param"]):
                        if isinstance(yy, float) and math.isnan(yy):
                            continue
                        ax.annotate(format_value(p), (x, yy), textcoords="offset points",
                                    xytext=(4, 3 if mode == "qat" else -9), fontsize=6, color=colors[mode])
            if base is not None:
                ax.axvline(base, color="0.3", linestyle="--", linewidth=0.9, label="float baseline")
            ax.set_yscale("log", nonpositive="mask")
            if i == 0:
                ax.set_title(gran)
            if i == 1:
                ax.set_xlabel("final validation accuracy")
            if j == 0:
                ax.set_ylabel(ylabel)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    by_label = dict(zip(labels, handles))
    order = [MODE_NAMES[m] for m in spec.MODES if MODE_NAMES[m] in by_label] + [k for k in by_label if k not in
                                                                                 MODE_NAMES.values()]
    fig.legend([by_label[k] for k in order], order, loc="upper center", ncol=len(order),
               bbox_to_anchor=(0.5, 1.0), frameon=False)
    n_seeds = int(df.groupby(["granularity", "mode", "param"]).size().max())
    fig.suptitle(f"{dataset}: {family_title(family)} — points labelled by {sym}, mean ± sd over {n_seeds} seed(s)",
                 y=1.04)
    fig.tight_layout()
    return fig
