"""Training curves of one sweep and mode (the thesis' per-epoch figures; ``notebooks/fig_curves.ipynb``)."""

from __future__ import annotations

from lqs_core.workflow.aggregate import present_granularities
from lqs_core.workflow.figures.style import PERCENT, accuracy_limits, log_ticks, spread_text
from lqs_core.workflow.names import MODE_NAMES, family_title, format_value, param_symbol

#: How far below the float baseline's last-epoch accuracy (in points) the zoomed accuracy row reaches: the band
#: where the settings that keep the accuracy differ (a 20–100 % axis hides differences of tenths of a point).
CURVE_ZOOM_MARGIN = 3.0
#: Line colours of the swept values (tab10 without its grey, which reads like the black float baseline), then the
#: line styles and markers that tell them apart in print and where colours repeat.
_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
_STYLES = ("-", "--", "-.", ":")
_MARKERS = ("o", "s", "^", "v", "D", "P", "X", "h", "*")


def line_styles(params):
    """``{param: matplotlib line keywords}``: a distinct colour per value (repeating after nine with another
    line style), alternating solid and dashed lines, a marker of its own."""
    styles = {}
    for i, p in enumerate(params):
        styles[p] = {"color": _COLORS[i % len(_COLORS)],
                     "linestyle": _STYLES[(i % 2) + 2 * ((i // len(_COLORS)) % 2)],
                     "marker": _MARKERS[i % len(_MARKERS)]}
    return styles


def curves_figure(histories, dataset: str, family: str, mode: str, zoom_margin: float = CURVE_ZOOM_MARGIN):
    """Validation accuracy (top: the full range; middle: zoomed on the band near the float baseline) and
    validation loss (bottom, log) per epoch — the thesis' per-epoch figures (finished thesis Figs. 4.3/4.4/4.7/4.12).

    One column per granularity, one line per λ/γ (mean over seeds, band = ± one standard deviation; a distinct
    colour, line style and marker each) plus the float baseline (dashed black); accuracy in %. The zoomed row
    reaches from a bit below the lowest last-epoch accuracy within ``zoom_margin`` points of the float baseline's
    last epoch up. PTQ runs start from the trained float baseline, so in a PTQ figure their epochs are drawn after
    the baseline's (epochs 21–40 after a 20-epoch baseline), not on top of them. Runs with a ``variant`` (another
    learning rate, gradual quantization), where ``histories`` has that column, are left out: they are not the
    sweep's own settings.
    """
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    h = histories[(histories["dataset"] == dataset)]
    if "variant" in h.columns:
        h = h[h["variant"].isna() | (h["variant"].astype(str) == "")]
    runs = h[(h["family"] == family) & (h["mode"] == mode) & (h["kind"] == "run")]
    base = h[h["kind"] == "baseline"]
    if runs.empty:
        raise ValueError(f"No histories of {dataset}/{family}/{mode}.")
    grans = present_granularities(runs)
    params = sorted(runs["param"].unique())
    styles = line_styles(params)
    sym = param_symbol(family)
    offset = int(base["epoch"].max()) if mode == "ptq" and len(base) else 0  # PTQ continues the float run
    last_epoch = int(runs["epoch"].max()) + offset
    markevery = max(1, last_epoch // 10)
    fig, axes = plt.subplots(3, len(grans), figsize=(3.4 * len(grans) + 1.6, 7.6), sharex=True, sharey="row",
                             squeeze=False, gridspec_kw={"height_ratios": [1.0, 1.15, 1.0]})
    rows = [("val_accuracy", "validation accuracy [%]"), ("val_accuracy", "zoom [%]"),
            ("val_loss", "validation loss (log)")]

    def curve(data, metric, shift=0):
        g = (data[metric] * (PERCENT if metric == "val_accuracy" else 1.0)).groupby(data["epoch"] + shift)
        return g.mean(), g.std(ddof=1).fillna(0.0)

    def band(ax, data, metric, label, style, shift=0, linewidth=1.2):
        mean, std = curve(data, metric, shift)
        ax.plot(mean.index, mean.values, label=label, linewidth=linewidth, markersize=3.0, markevery=markevery,
                **style)
        if len(data["seed"].unique()) > 1:
            ax.fill_between(mean.index, (mean - std).values, (mean + std).values, color=style["color"], alpha=0.12,
                            linewidth=0)

    finals = []  # last-epoch means of every line: the zoomed row's limits
    base_final = None
    if len(base):
        base_final = float(curve(base, "val_accuracy")[0].iloc[-1])
    for j, gran in enumerate(grans):
        for i, (metric, ylabel) in enumerate(rows):
            ax = axes[i, j]
            for p in params:
                data = runs[(runs["granularity"] == gran) & (runs["param"] == p)]
                band(ax, data, metric, f"{sym} = {format_value(p)}", styles[p], offset)
                if i == 0 and len(data):
                    finals.append(float(curve(data, metric, offset)[0].iloc[-1]))
            if len(base):
                band(ax, base, metric, "float baseline",
                     {"color": "black", "linestyle": (0, (4, 2)), "marker": None}, linewidth=1.5)
            if offset:
                ax.axvline(offset + 0.5, color="0.45", linestyle=":", linewidth=0.9)
            if metric == "val_loss":
                ax.set_yscale("log")
            if i == 0:
                ax.set_title(gran)
            if i == len(rows) - 1:
                ax.set_xlabel("epoch" if not offset else
                              f"epoch (float baseline 1–{offset}, then PTQ from it: {offset + 1}–{last_epoch})")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if j == 0:
                ax.set_ylabel(ylabel)
    low, high = accuracy_limits(finals, None, base_final, zoom_margin)
    axes[1, 0].set_ylim(low, high)  # shared by the row
    log_ticks(axes[2, 0], "y")  # after every line is drawn: the ticks of the final limits (shared by the row)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    n_seeds = runs.groupby(["granularity", "param"])["seed"].nunique()
    reference = "the float baseline's" if base_final is not None else "the best"
    title = (f"{dataset}: {family_title(family)}, {MODE_NAMES[mode]} — {spread_text(n_seeds)}\n"
             f"middle row: zoom on the last epochs' band (from {low:.1f} %: within {zoom_margin:g} points of "
             f"{reference} last epoch)")
    if offset:
        title += f"; PTQ starts from the trained float baseline after its epoch {offset} (dotted line)"
    fig.suptitle(title)
    fig.tight_layout()
    return fig
