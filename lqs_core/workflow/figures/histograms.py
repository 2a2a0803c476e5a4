"""Integer histograms of one run (thesis figure type 3; ``notebooks/fig_histograms.ipynb``)."""

from __future__ import annotations

from typing import Any, Mapping

from lqs_core.workflow.figures.style import plain_log_labels


def histogram_figure(integers: Mapping[str, Any], title: str, max_bins: int = 120):
    """Histograms of the integer values of every quantized tensor (thesis figure type 3), log y-axis.

    One panel per tensor in the given order; one bin per integer while the range has at most ``max_bins``
    values, else ``max_bins`` equal bins. The panel title gives the tensor's shape, unique count and range.
    """
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.ticker import MaxNLocator

    names = list(integers)
    n = len(names)
    cols = min(n, 4)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.0 * cols, 2.5 * rows + 0.5), squeeze=False)
    for k, name in enumerate(names):
        ax = axes[k // cols, k % cols]
        q = np.asarray(integers[name]).astype(np.int64).ravel()
        lo, hi = int(q.min()), int(q.max())
        if hi - lo + 1 <= max_bins:
            bins = np.arange(lo, hi + 2) - 0.5
        else:
            bins = np.linspace(lo - 0.5, hi + 0.5, max_bins + 1)
        ax.hist(q, bins=bins, color="C0", edgecolor="none", log=True)
        ax.set_ylim(bottom=0.7)
        plain_log_labels(ax)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        shape = "×".join(str(int(d)) for d in np.shape(integers[name]))
        ax.set_title(f"{name} ({shape})\n{len(np.unique(q))} unique, range {lo}…{hi}")
        ax.set_xlabel("integer value $P_q$")
        if k % cols == 0:
            ax.set_ylabel("count (log)")
    for k in range(n, rows * cols):
        axes[k // cols, k % cols].set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
