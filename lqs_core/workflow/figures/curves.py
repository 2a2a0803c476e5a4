"""Training curves of one sweep and mode (thesis figure type 2; ``notebooks/fig_curves.ipynb``)."""

from __future__ import annotations

from lqs_core.workflow.aggregate import present_granularities
from lqs_core.workflow.figures.style import PERCENT, log_ticks, seeds_text
from lqs_core.workflow.names import MODE_NAMES, family_title, format_value, param_symbol


def _palette(n: int):
    import seaborn as sns

    return sns.color_palette("viridis", n)


def curves_figure(histories, dataset: str, family: str, mode: str):
    """Validation accuracy (top) and validation loss (bottom, log) per epoch (thesis figure type 2).

    One column per granularity, one line per λ/γ (mean over seeds, band = ± one standard deviation) plus the
    float baseline (dashed black); accuracy in %. Runs with a ``variant`` (another learning rate, gradual
    quantization), where ``histories`` has that column, are left out: they are not the sweep's own settings.
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
    colors = dict(zip(params, _palette(len(params))))
    sym = param_symbol(family)
    fig, axes = plt.subplots(2, len(grans), figsize=(3.4 * len(grans) + 1.6, 5.2), sharex=True, sharey="row",
                             squeeze=False)
    metrics = [("val_accuracy", "validation accuracy [%]"), ("val_loss", "validation loss (log)")]

    def band(ax, data, metric, color, label, style="-"):
        g = (data[metric] * (PERCENT if metric == "val_accuracy" else 1.0)).groupby(data["epoch"])
        mean, std = g.mean(), g.std(ddof=1).fillna(0.0)
        ax.plot(mean.index, mean.values, style, color=color, linewidth=1.2, label=label)
        if len(data["seed"].unique()) > 1:
            ax.fill_between(mean.index, (mean - std).values, (mean + std).values, color=color, alpha=0.15,
                            linewidth=0)

    for j, gran in enumerate(grans):
        for i, (metric, ylabel) in enumerate(metrics):
            ax = axes[i, j]
            for p in params:
                band(ax, runs[(runs["granularity"] == gran) & (runs["param"] == p)], metric, colors[p],
                     f"{sym} = {format_value(p)}")
            if len(base):
                band(ax, base, metric, "black", "float baseline", "--")
            if metric == "val_loss":
                ax.set_yscale("log")
            if i == 0:
                ax.set_title(gran)
            else:
                ax.set_xlabel("epoch")
                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            if j == 0:
                ax.set_ylabel(ylabel)
    log_ticks(axes[1, 0], "y")  # after every line is drawn: the ticks of the final limits (shared by the row)
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    n_seeds = runs.groupby(["granularity", "param"])["seed"].nunique()
    fig.suptitle(f"{dataset}: {family_title(family)}, {MODE_NAMES[mode]} — mean ± sd over {seeds_text(n_seeds)}")
    fig.tight_layout()
    return fig
