"""Gradual quantization: the nested scheme with λ switched on at epoch k (``lqs_core.gradual``), against k."""

from __future__ import annotations

import re

from lqs_core.workflow.aggregate import aggregate_seeds, baseline_accuracy, present_granularities
from lqs_core.workflow.figures.style import PERCENT, log_ticks, seeds_text
from lqs_core.workflow.names import format_value

_FROM = re.compile(r"^from(\d+)$")
_LR = re.compile(r"^lr\d")


def _parts(variant):
    """``(start epoch k or None, learning-rate tag, the rest)`` of a ``variant`` such as ``from5-lr0.001``."""
    tokens = [t for t in str(variant).split("-") if t] if isinstance(variant, str) else []
    start = [int(_FROM.match(t).group(1)) for t in tokens if _FROM.match(t)]
    lr = "-".join(t for t in tokens if _LR.match(t))
    rest = "-".join(t for t in tokens if not _FROM.match(t) and not _LR.match(t))
    return (start[0] if start else None), lr, rest


def gradual_datasets(results) -> list:
    """Datasets of a results table with gradual quantization runs (nested, QAT, variant ``from<k>``), in the
    order of :data:`lqs_core.spec.DATASETS`: the ones :func:`gradual_figure` draws."""
    from lqs_core import spec

    if "variant" not in results.columns:
        return []
    runs = results[(results["kind"] == "run") & (results["family"] == "nested") & (results["mode"] == "qat")]
    found = {d for d, (start, _, rest) in zip(runs["dataset"], map(_parts, runs["variant"])) if start and not rest}
    return [d for d in spec.DATASETS if d in found]


def gradual_settings(results, dataset: str):
    """The numbers of :func:`gradual_figure`: per granularity, learning-rate tag, λ and start epoch k (k = 0: the
    plain QAT runs of that λ), and ``mode`` (``qat``; ``ptq`` for the PTQ-mode reference runs, k = 0), the mean,
    standard deviation and number of seeds of the final validation accuracy and the unique integers.

    Gradual runs are the rows of ``dataset`` with ``family == "nested"``, ``mode == "qat"`` and a ``variant``
    ``from<k>`` (optionally with a learning-rate tag ``lr…``); k is the ``scale_from_epoch`` column where present,
    else read from the variant. Only the (granularity, learning rate, λ) that have gradual runs are returned.
    Raises ValueError naming ``dataset`` if it has none.
    """
    import pandas as pd

    df = results[(results["dataset"] == dataset) & (results["kind"] == "run") & (results["family"] == "nested")]
    df = df.copy()
    variants = df["variant"] if "variant" in df.columns else pd.Series([None] * len(df), index=df.index)
    parts = [_parts(v) for v in variants]
    df["lr_tag"] = [lr for _, lr, _ in parts]
    rest = pd.Series([r for _, _, r in parts], index=df.index)
    k = pd.Series([s if s is not None else 0 for s, _, _ in parts], index=df.index, dtype=float)
    if "scale_from_epoch" in df.columns:
        col = pd.to_numeric(df["scale_from_epoch"], errors="coerce")
        k = col.where(col.notna(), k)
    df["start_epoch"] = k.astype(int)
    gradual = (df["mode"] == "qat") & (df["start_epoch"] > 0) & (rest == "")
    if not gradual.any():
        raise ValueError(f"No gradual quantization runs of {dataset} in the results table (nested, qat, variant "
                         "'from<k>').")
    keys = set(zip(df.loc[gradual, "granularity"], df.loc[gradual, "lr_tag"], df.loc[gradual, "param"]))
    same = pd.Series([key in keys for key in zip(df["granularity"], df["lr_tag"], df["param"])], index=df.index)
    plain = same & (rest == "") & (df["start_epoch"] == 0) & df["mode"].isin(["qat", "ptq"])
    df = df[gradual | plain]
    return aggregate_seeds(df, ["granularity", "lr_tag", "param", "mode", "start_epoch"],
                           ["val_accuracy", "unique_integers"])


def gradual_figure(results, dataset: str):
    """Gradual quantization of ``dataset`` against the epoch k at which λ is switched on (one figure).

    Left: final validation accuracy [%], right: unique integers (log), both against k; one line per λ (and
    granularity / learning rate where there are several), mean ± sd over seeds, k = 0 being the plain QAT runs of
    the same λ. Horizontal references: the PTQ-mode runs of the same λ and granularity (dotted, where present) and
    the float baseline's accuracy (dashed black). Input: the results table (:func:`gradual_settings` says which
    rows); raises ValueError naming ``dataset`` if it has no gradual runs.
    """
    import matplotlib.pyplot as plt
    import seaborn as sns
    from matplotlib.lines import Line2D
    from matplotlib.ticker import FixedLocator

    agg = gradual_settings(results, dataset)
    qat, ptq = agg[agg["mode"] == "qat"], agg[agg["mode"] == "ptq"]
    order = present_granularities(qat)
    series = sorted(set(zip(qat["granularity"], qat["lr_tag"], qat["param"])),
                    key=lambda t: (order.index(t[0]) if t[0] in order else len(order), str(t[0]), t[1], t[2]))
    grans = list(dict.fromkeys(s[0] for s in series))
    lrs = sorted({s[1] for s in series})
    params = sorted({s[2] for s in series})
    colors = dict(zip(params, sns.color_palette("viridis", len(params))))
    styles = dict(zip(grans, ["-", "--", "-.", ":"] * 4))
    markers = dict(zip(lrs, ["o", "s", "^", "D"] * 4))
    fig, axes = plt.subplots(1, 2, figsize=(10.0, 4.0))
    panels = (("val_accuracy", "final validation accuracy [%]", PERCENT), ("unique_integers", "unique integers (log)",
                                                                            1.0))
    epochs = sorted(set(qat["start_epoch"]))
    for ax, (metric, ylabel, scale) in zip(axes, panels):
        for gran, lr, param in series:
            s = qat[(qat["granularity"] == gran) & (qat["lr_tag"] == lr) & (qat["param"] == param)]
            s = s.sort_values("start_epoch")
            label = f"λ = {format_value(param)}" + (f", {gran}" if len(grans) > 1 else "") + \
                (f", {lr or 'default lr'}" if len(lrs) > 1 else "")
            ax.errorbar(s["start_epoch"], s[f"{metric}_mean"] * scale, yerr=s[f"{metric}_std"] * scale,
                        color=colors[param], linestyle=styles[gran], marker=markers[lr], markersize=4.5,
                        linewidth=1.3, capsize=2, elinewidth=0.8, label=label)
            ref = ptq[(ptq["granularity"] == gran) & (ptq["lr_tag"] == lr) & (ptq["param"] == param)]
            if len(ref):
                ax.axhline(float(ref[f"{metric}_mean"].iloc[0]) * scale, color=colors[param], linestyle=":",
                           linewidth=1.1)
        if metric == "val_accuracy":
            base = baseline_accuracy(results, dataset)
            if base is not None:
                ax.axhline(base * PERCENT, color="black", linestyle="--", linewidth=0.9)
        else:
            ax.set_yscale("log")
            log_ticks(ax, "y", integer=True)
        ax.xaxis.set_major_locator(FixedLocator(epochs))
        ax.set_xlabel("epoch k at which λ is switched on (0: from the start)")
        ax.set_ylabel(ylabel)
    handles, labels = axes[0].get_legend_handles_labels()
    if len(ptq):
        handles.append(Line2D([], [], color="0.4", linestyle=":", linewidth=1.1))
        labels.append("PTQ mode, same λ (from the float baseline)")
    if baseline_accuracy(results, dataset) is not None:
        handles.append(Line2D([], [], color="black", linestyle="--", linewidth=0.9))
        labels.append("float baseline")
    fig.legend(handles, labels, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(f"{dataset}: gradual quantization (nested scheme, QAT) — final numbers against the epoch λ starts; "
                 f"mean ± sd over {seeds_text(qat['n_seeds'])}")
    fig.tight_layout()
    return fig
