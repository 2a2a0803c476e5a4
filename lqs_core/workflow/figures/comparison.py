"""Every method of a dataset on the same axes (``notebooks/fig_comparison.ipynb``)."""

from __future__ import annotations

import math
from typing import Dict, List, Sequence

from lqs_core import spec
from lqs_core.workflow.aggregate import baseline_accuracy, comparison_settings, pareto_mask
from lqs_core.workflow.figures.style import (ACCURACY_LABEL, PERCENT, ZOOM_MARGIN, accuracy_limits, clip_low,
                                             mark_cut, place_labels, spread_text)
from lqs_core.workflow.names import METHOD_NAMES, format_value, method_order

#: x axes of the comparison figure: (column, axis label, base of the log x-axis).
COMPARISON_AXES = (("entropy_bytes", "size: integer file, entropy-coded [kB] (log)", 10),
                   ("mean_bits_fixed", "bits per weight, fixed width (mean over weights; log)", 2),
                   ("entropy_bits_per_weight", "bits per weight, entropy of the integers (log)", 2))
#: At most this many settings of the thesis' schemes below the accuracy band get a label on the lower edge; with more
#: (a long sweep's collapsed λ/γ), only the comparators' are labelled and the title gives the count.
MAX_EDGE_LABELS = 8
#: The zoomed panel under the three: settings within this many points of the float baseline (the band where the
#: methods differ), up to :data:`ZOOM_SIZE_FACTOR` × the smallest file that reaches the best accuracy (larger files
#: are dominated by it), drawn where at least :data:`ZOOM_MIN_SETTINGS` settings crowd that window. Every setting
#: inside is labelled.
ZOOM_POINTS = 1.25
ZOOM_SIZE_FACTOR = 1.75
ZOOM_MIN_SETTINGS = 10
#: Marker of every method (matplotlib marker codes).
MARKERS = {"float": "*", "nested": "o", "maxbin": "v", "inverse": "^", "difference": "<", "reconstruction": ">",
           "ptq": "s", "fixed": "D", "lsq": "P", "cgmq": "X", "layer_importance": "h", "hgq2": "d",
           "keras_quantize": "p"}
#: Colours of the methods beyond tab10's ten (hgq2, keras_quantize), distinct from those of the others.
EXTRA_COLORS = {"hgq2": "#1b1b6e", "keras_quantize": "#8b0000"}
#: Short granularity names for point labels that would otherwise be the same.
_GRAN_SHORT = {"scalar": "tensor", "outputwise": "chan", "channelwise": "chan", "rowwise": "row",
               "columnwise": "col", "weightwise": "weight"}


def _method_styles(methods: Sequence[str]) -> Dict[str, dict]:
    import seaborn as sns

    palette = sns.color_palette("tab10", 10)
    styles = {}
    for m in methods:
        k = method_order(m)
        if m == "float":
            color = "black"
        elif m in EXTRA_COLORS:
            color = EXTRA_COLORS[m]
        else:
            color = palette[(k - 1) % 10]
        styles[m] = {"color": color, "marker": MARKERS.get(m, "o")}
    return styles


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _short_label(method: str, param) -> str:
    """The point label of a setting in the comparison figure: ``4b`` (bits), ``0.1`` (CGMQ budget), ``β1e-6``
    (HGQ2's regularizer), ``int8`` (Keras quantize), ``λ1e-10`` / ``γ1e-13`` (the thesis' schemes)."""
    if method == "float" or _missing(param):
        return ""
    if method == "cgmq":
        return format_value(param)
    if method == "hgq2":
        return f"β{format_value(param)}"
    if method == "keras_quantize":
        return f"int{int(param)}"
    if method == "nested":
        return f"λ{format_value(param)}"
    if method in spec.TERMS:
        return f"γ{format_value(param)}"
    return f"{int(param)}b"


def point_labels(agg) -> List[str]:
    """Short label of every row of :func:`comparison_settings`: :func:`_short_label`, and where one method has
    several settings with that label, what tells them apart (granularity, mode, variant such as ``from5``)."""
    base = [_short_label(m, p) for m, p in zip(agg["method"], agg["param"])]
    keys = list(zip(agg["method"], base))
    extra = []
    for i, key in enumerate(keys):
        same = [j for j, k in enumerate(keys) if k == key]
        parts = []
        if len(same) > 1 and base[i]:
            for col, short in (("granularity", _GRAN_SHORT), ("mode", {}), ("variant", {})):
                values = {str(agg[col].iloc[j]) for j in same}
                value = str(agg[col].iloc[i])
                if len(values) > 1 and value:
                    parts.append(short.get(value, value))
        extra.append("/".join(parts))
    return [b + ("/" + e if e else "") for b, e in zip(base, extra)]


def _plain_log_x(ax, base: int = 10) -> None:
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter

    if base == 2:  # bits: 0.5, 1, 2, 4, 8, 16, 32
        ax.xaxis.set_major_locator(LogLocator(base=2))
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.xaxis.set_minor_formatter(NullFormatter())
        return
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))


def zoom_window(agg, base, points: float = ZOOM_POINTS, factor: float = ZOOM_SIZE_FACTOR,
                metric: str = "entropy_bytes", min_settings: int = ZOOM_MIN_SETTINGS):
    """``(x_low, x_high, y_low, y_high)`` (kB, %) of the comparison figure's zoomed panel, or None where fewer than
    ``min_settings`` settings fall in it (the three panels show them well enough): the settings (not the float
    baseline) within ``points`` of ``base`` (the float baseline's accuracy in %; without one, the best setting's),
    and files up to ``factor`` × the smallest file of the most accurate setting. ``agg``:
    :func:`comparison_settings` with ``acc`` / ``acc_sd`` in %."""
    own = agg[(agg["method"] != "float") & agg[f"{metric}_mean"].notna()]
    if own.empty:
        return None
    reference = float(own["acc"].max()) if base is None else base
    best = own.sort_values(["acc", f"{metric}_mean"], ascending=[False, True], kind="mergesort").iloc[0]
    x_high = float(best[f"{metric}_mean"]) * factor / 1000
    shown = own[(own["acc"] >= reference - points) & (own[f"{metric}_mean"] / 1000 <= x_high)]
    if len(shown) < max(min_settings, 2):
        return None
    sizes = shown[f"{metric}_mean"] / 1000
    x_low, x_high = float(sizes.min()) / 1.12, max(x_high, float(sizes.max()) * 1.05)
    y_low, y_high = reference - points, max(float(shown["acc"].max()), reference)
    pad = 0.06 * (y_high - y_low)
    return x_low, x_high, y_low - pad / 2, y_high + pad


def comparison_figure(results, dataset: str, margin: float = ZOOM_MARGIN, zoom_points: float = ZOOM_POINTS):
    """Accuracy vs. size for every method of ``dataset`` on the same axes (one figure per dataset).

    Panels: final validation accuracy [%] against the model's size — its integer file, every tensor
    entropy-coded with its scales (:data:`lqs_core.workflow.aggregate.MODEL_SIZE`; log x) —, the
    fixed-width bits per weight and the entropy of the integers in bits per weight. Every setting of every method
    is one point (mean over seeds, error bars ± one standard deviation in x and y); each method's own Pareto front
    in the panel's plane (the most accurate setting for its size: only non-dominated settings, as the staircase
    of what is reachable) is a line; the float baseline a star at its float32 size / 32 bits and a dashed line.

    The accuracy axis shows the band where the methods differ: from a bit below the lowest setting within
    ``margin`` points of the float baseline up. Settings below it are drawn on the axis' lower edge (cut marks on
    the spine), labelled with their accuracy, so that no setting is left out (with more than
    :data:`MAX_EDGE_LABELS` such settings of the thesis' schemes, only the comparators' are labelled and the title
    gives the count). Comparator points are labelled by
    their bits (``4b``), CGMQ budget (``0.1``), HGQ2 β (``β1e-6``) or Keras mode (``int8``), without overlaps.

    Under the three panels, a wide panel zooms into the first one where the methods differ (:func:`zoom_window`:
    the settings within ``zoom_points`` of the float baseline, files up to a bit more than the most accurate
    setting's), with every setting in it labelled (λ/γ with granularity and mode where a method has several); its
    window is outlined in the first panel.
    """
    import matplotlib.pyplot as plt

    agg = comparison_settings(results, dataset)
    agg = agg.assign(acc=agg["val_accuracy_mean"] * PERCENT, acc_sd=agg["val_accuracy_std"] * PERCENT,
                     label=point_labels(agg))
    methods = sorted(agg["method"].unique(), key=method_order)
    styles = _method_styles(methods)
    base = baseline_accuracy(results, dataset)
    base = None if base is None else base * PERCENT
    low, high = accuracy_limits(agg["acc"], None, base, margin)
    cut = bool((agg["acc"] < low).any())
    below_own = int(((agg["acc"] < low) & ~agg["method"].isin(spec.COMPARATORS) & (agg["method"] != "float")).sum())
    label_own_below = below_own <= MAX_EDGE_LABELS
    zoom = zoom_window(agg, base, zoom_points)
    heights = [4.6, 5.6] if zoom else [4.6]
    fig = plt.figure(figsize=(4.3 * len(COMPARISON_AXES), sum(heights)))
    grid = fig.add_gridspec(len(heights), len(COMPARISON_AXES), height_ratios=heights)
    axes = [fig.add_subplot(grid[0, 0])]
    for k in range(1, len(COMPARISON_AXES)):
        axes.append(fig.add_subplot(grid[0, k], sharey=axes[0]))
        axes[k].tick_params(labelleft=False)
    labels_of = []  # per axes: (x, y, text, colour) and the markers drawn
    for ax, (metric, xlabel, log) in zip(axes, COMPARISON_AXES):  # log: base of the log x-axis
        scale = 1e-3 if metric.endswith("_bytes") else 1.0  # bytes -> kB
        items, marks = [], []
        for m in methods:
            a = agg[(agg["method"] == m) & agg[f"{metric}_mean"].notna()]
            if a.empty:
                continue
            x, xsd = a[f"{metric}_mean"] * scale, a[f"{metric}_std"] * scale
            y = clip_low(a["acc"], low)
            below = (a["acc"] < low).to_numpy()
            st = styles[m]
            kw = {"linestyle": "none", "marker": st["marker"], "color": st["color"],
                  "markersize": 8 if m == "float" else 4.5, "alpha": 1.0 if m == "float" else 0.6}
            bars = ax.errorbar(x[~below], y[~below], xerr=xsd[~below], yerr=a["acc_sd"][~below], elinewidth=0.6,
                               capsize=1.5, label=METHOD_NAMES.get(m, m), **kw)
            for part in bars.lines[1] + bars.lines[2]:  # error bars lighter than the points
                part.set_alpha(0.35)
            if below.any():  # on the lower edge, drawn over the spine
                ax.plot(x[below], y[below], clip_on=False, zorder=4, markeredgecolor="white", markeredgewidth=0.5,
                        **kw)
            if m != "float" and len(a) > 1:
                on = pareto_mask(a["acc"], x)
                order = x[on].sort_values(kind="mergesort").index
                ax.plot(x[order], clip_low(a.loc[order, "acc"], low), color=st["color"], linewidth=1.3,
                        drawstyle="steps-post", alpha=0.9)
            marks += list(zip(x, y))
            for xi, yi, acc, text, is_below in zip(x, y, a["acc"], a["label"], below):
                if is_below:
                    if m not in spec.COMPARATORS and not label_own_below:
                        continue
                    text = f"{text} {acc:.1f}%".strip()
                elif m not in spec.COMPARATORS:
                    continue
                items.append((xi, yi, text, st["color"]))
        labels_of.append((items, marks))
        if base is not None:
            ax.axhline(base, color="0.3", linestyle="--", linewidth=0.9)
        if log:
            ax.set_xscale("log", base=log, nonpositive="mask")
            _plain_log_x(ax, log)
        ax.set_xlabel(xlabel)
    axes[0].set_ylim(low, high)
    axes[0].set_ylabel(ACCURACY_LABEL)
    if cut:
        for ax in axes:
            mark_cut(ax, "y")
    zoom_labels = _zoom_panel(fig.add_subplot(grid[1, :]), axes[0], agg, methods, styles, base, zoom) if zoom else None
    fig.tight_layout()
    for ax, (items, marks) in zip(axes, labels_of):
        ax.set_xlim(ax.get_xlim())
        place_labels(ax, items, marks)
    if zoom_labels:
        place_labels(*zoom_labels, fontsize=6.5)
    handles, labels = axes[0].get_legend_handles_labels()
    ncol = min(len(labels), 7)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, bbox_to_anchor=(0.5, 1.0), frameon=False,
               markerscale=1.3)
    title = (f"{dataset}: all methods, same data, network and seeds — {spread_text(agg['n_seeds'])}; "
             "lines: each method's Pareto front (non-dominated settings); star / dashed: float baseline")
    if cut and label_own_below:
        title += f"\nbelow {low:.1f}%: drawn on the lower edge (cut axis), labelled with their accuracy"
    elif cut:
        title += (f"\nbelow {low:.1f}%: drawn on the lower edge (cut axis); comparators labelled with their accuracy, "
                  f"the {below_own} settings of the thesis' schemes there unlabelled (see the comparison table)")
    if zoom:
        title += (f"\nbottom: zoom on the dashed box of the left panel — every setting within {zoom_points:g} points "
                  f"of the float baseline and at most {zoom[1]:.0f} kB, labelled")
    fig.suptitle(title, y=1.0 + (0.02 + 0.06 * -(-len(labels) // ncol)) * heights[0] / sum(heights), va="bottom")
    return fig


def _zoom_ticks(low: float, high: float, most: int = 12) -> List[float]:
    """Round tick values (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8 × 10^k) between ``low`` and ``high`` on a short log axis,
    at most ``most`` of them (every other one while there are more)."""
    import math

    decades = range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 1)
    ticks = [float(f"{m * 10.0 ** k:.6g}") for k in decades for m in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 7, 8)]
    ticks = [t for t in ticks if low <= t <= high]
    while len(ticks) > most:
        ticks = ticks[::2]
    return ticks


def _zoom_panel(ax, source, agg, methods, styles, base, window):
    """Draw the zoomed panel of :func:`comparison_figure` into ``ax`` (accuracy against file size, the window of
    :func:`zoom_window`) and outline its window in ``source``; returns ``(ax, label items, markers)`` for
    :func:`place_labels`, to be placed once the layout is final."""
    from matplotlib.patches import Rectangle
    from matplotlib.ticker import FixedLocator, NullLocator

    x_low, x_high, y_low, y_high = window
    items, marks = [], []
    for m in methods:
        a = agg[(agg["method"] == m) & agg["entropy_bytes_mean"].notna()]
        if a.empty:
            continue
        x, y = a["entropy_bytes_mean"] / 1000, a["acc"]
        inside = ((x >= x_low) & (x <= x_high) & (y >= y_low) & (y <= y_high)).to_numpy()  # error bars may leave it
        st = styles[m]
        kw = {"linestyle": "none", "marker": st["marker"], "color": st["color"], "markersize": 9 if m == "float" else 6,
              "alpha": 0.85}
        if inside.any():
            bars = ax.errorbar(x[inside], y[inside], xerr=a["entropy_bytes_std"][inside] / 1000,
                               yerr=a["acc_sd"][inside], elinewidth=0.6, capsize=1.5, **kw)
            for part in bars.lines[1] + bars.lines[2]:
                part.set_alpha(0.3)
        if m != "float" and len(a) > 1:
            on = pareto_mask(y, x)
            order = x[on].sort_values(kind="mergesort").index
            ax.plot(x[order], y[order], color=st["color"], linewidth=1.3, drawstyle="steps-post", alpha=0.8)
        for xi, yi, text, ok in zip(x, y, a["label"], inside):
            if ok:
                marks.append((xi, yi))
                if text:
                    items.append((xi, yi, text, st["color"]))
    if base is not None:
        ax.axhline(base, color="0.3", linestyle="--", linewidth=0.9)
    ax.set_xscale("log")
    _plain_log_x(ax, 10)
    ax.set_xlim(x_low, x_high)
    ax.xaxis.set_major_locator(FixedLocator(_zoom_ticks(x_low, x_high)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_ylim(y_low, y_high)
    ax.set_xlabel(COMPARISON_AXES[0][1].replace("(log)", "(log) — zoom"))
    ax.set_ylabel(ACCURACY_LABEL)
    source.add_patch(Rectangle((x_low, y_low), x_high - x_low, y_high - y_low, fill=False, linestyle="--",
                               linewidth=0.9, edgecolor="0.3", zorder=6))
    items.sort(key=lambda it: -it[1])  # the most accurate first: they get the nearest places
    return ax, items, marks
