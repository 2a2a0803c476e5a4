"""Pareto fronts of one sweep (thesis figure type 1; ``notebooks/fig_pareto.ipynb``)."""

from __future__ import annotations

from lqs_core import spec
from lqs_core.workflow.aggregate import (aggregate_seeds, baseline_accuracy, pareto_mask, present_granularities,
                                         present_modes)
from lqs_core.workflow.figures.style import (ACCURACY_LABEL, PERCENT, ZOOM_MARGIN, accuracy_limits, clip_low,
                                             log_ticks, mark_cut, place_labels, spread_text)
from lqs_core.workflow.names import MODE_NAMES, family_title, format_value, param_symbol


def plain_settings(df):
    """The rows of ``df`` at the sweep's own settings: no ``variant`` (another learning rate, gradual
    quantization), so that such runs are not averaged into the thesis' points."""
    if "variant" not in df.columns:
        return df
    return df[df["variant"].isna() | (df["variant"].astype(str) == "")]


def pareto_figure(results, dataset: str, family: str, label_points: bool = True, margin: float = ZOOM_MARGIN):
    """Pareto fronts of one sweep (thesis figure type 1).

    x = final validation accuracy [%], y (log) = unique integers (top row) and integer range ``max|P_q|`` (bottom
    row); one column per granularity; per mode (QAT, PTQ) every λ/γ a point (mean over seeds, error bars ± one
    standard deviation in x and y, labelled by its λ/γ without overlaps), a thin dotted line through the points in
    λ/γ order (the sweep, not a front), and a bold staircase through the non-dominated points only, each ringed
    (the Pareto front: nothing else is at least as accurate with at most as many integers); the float baseline's
    accuracy as a dashed vertical line. The accuracy axis starts a bit below the lowest point within ``margin``
    points of the float baseline; points further left are drawn on its left edge, labelled with their accuracy.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D

    df = results[(results["dataset"] == dataset) & (results["family"] == family) & (results["kind"] == "run")]
    df = plain_settings(df)
    if df.empty:
        raise ValueError(f"No runs of {dataset}/{family} in the results table.")
    grans, modes = present_granularities(df), present_modes(df)
    agg = aggregate_seeds(df, ["granularity", "mode", "param"], ["val_accuracy", "unique_integers", "int_range"])
    agg["acc"], agg["acc_sd"] = agg["val_accuracy_mean"] * PERCENT, agg["val_accuracy_std"] * PERCENT
    base = baseline_accuracy(results, dataset)
    base = None if base is None else base * PERCENT
    low, high = accuracy_limits(agg["acc"], None, base, margin)
    cut = bool((agg["acc"] < low).any())
    colors = dict(zip(spec.MODES, sns.color_palette("deep", 2)))
    markers = {"qat": "o", "ptq": "s"}
    fig, axes = plt.subplots(2, len(grans), figsize=(3.6 * len(grans) + 0.6, 6.0), sharex=True, sharey="row",
                             squeeze=False)
    rows = [("unique_integers", "unique integers (log)"), ("int_range", "integer range max|$P_q$| (log)")]
    sym = param_symbol(family)
    labels = {}
    for j, gran in enumerate(grans):
        for i, (metric, ylabel) in enumerate(rows):
            ax = axes[i, j]
            items, marks = [], []
            for mode in modes:
                a = agg[(agg["granularity"] == gran) & (agg["mode"] == mode)].sort_values("param")
                if a.empty:
                    continue
                y = a[f"{metric}_mean"].where(a[f"{metric}_mean"] > 0)
                x = clip_low(a["acc"], low)
                below = (a["acc"] < low).to_numpy()
                c = colors[mode]
                ax.plot(x, y, color=c, linestyle=":", linewidth=0.9, alpha=0.8)
                bars = ax.errorbar(x[~below], y[~below], xerr=a["acc_sd"][~below], yerr=a[f"{metric}_std"][~below],
                                   color=c, marker=markers[mode], markersize=4.5, linestyle="none", capsize=2,
                                   elinewidth=0.8, label=MODE_NAMES[mode])
                for part in bars.lines[1] + bars.lines[2]:
                    part.set_alpha(0.5)
                if below.any():
                    ax.plot(x[below], y[below], color=c, marker=markers[mode], markersize=4.5, linestyle="none",
                            clip_on=False, zorder=4)
                on = pareto_mask(a["acc"], y)  # most accurate for fewest integers; NaN never
                front = a[on].assign(x=x[on], y=y[on]).sort_values(["y", "x"], kind="mergesort")
                ax.plot(front["x"], front["y"], color=c, linewidth=1.8, drawstyle="steps-pre", marker="o",
                        markersize=9, markerfacecolor="none", markeredgewidth=1.0, clip_on=False)
                marks += [(xx, yy) for xx, yy in zip(x, y) if yy == yy]
                if label_points:
                    for xx, yy, acc, p, is_below in zip(x, y, a["acc"], a["param"], below):
                        if yy != yy:
                            continue
                        text = format_value(p) + (f" ({acc:.1f}%)" if is_below else "")
                        items.append((xx, yy, text, c))
            labels[(i, j)] = (items, marks)
            if base is not None:
                ax.axvline(base, color="0.3", linestyle="--", linewidth=0.9, label="float baseline")
            ax.set_yscale("log", nonpositive="mask")
            if i == 0:
                ax.set_title(gran)
            if i == 1:
                ax.set_xlabel(ACCURACY_LABEL)
            if j == 0:
                ax.set_ylabel(ylabel)
    axes[0, 0].set_xlim(low, high)
    for i in range(len(rows)):
        log_ticks(axes[i, 0], "y")
        if cut:
            for ax in axes[i]:
                mark_cut(ax, "x")
    fig.tight_layout()
    for (i, j), (items, marks) in sorted(labels.items()):
        place_labels(axes[i, j], items, marks)
    handles, texts = axes[0, 0].get_legend_handles_labels()
    by_label = dict(zip(texts, handles))
    order = [MODE_NAMES[m] for m in spec.MODES if MODE_NAMES[m] in by_label]
    extra = [(Line2D([], [], color="0.35", linewidth=1.8, marker="o", markersize=9, markerfacecolor="none",
                     markeredgewidth=1.0), "Pareto front (non-dominated points)"),
             (Line2D([], [], color="0.35", linestyle=":", linewidth=0.9), f"{sym} order (the sweep, not a front)")]
    legend = [(by_label[k], k) for k in order] + extra
    if "float baseline" in by_label:
        legend.append((by_label["float baseline"], "float baseline"))
    fig.legend([h for h, _ in legend], [t for _, t in legend], loc="upper center", ncol=2 if len(grans) == 1 else 3,
               bbox_to_anchor=(0.5, 0.0), frameon=False)
    n_seeds = df.groupby(["granularity", "mode", "param"]).size()
    title = f"{dataset}: {family_title(family)} — points labelled by {sym}, {spread_text(n_seeds)}"
    if cut:
        title += f"\nleft of {low:.1f}%: drawn on the left edge (cut axis), with their accuracy"
    fig.suptitle(title, y=0.99, va="bottom")
    return fig
