"""Integer histograms of one run (thesis figure type 3; ``notebooks/fig_histograms.ipynb``)."""

from __future__ import annotations

from typing import Any, Mapping

from lqs_core.workflow.figures.style import log_ticks


def integer_bins(lo: int, hi: int, max_bins: int = 120):
    """Bin edges for integers ``lo..hi``: one bin per integer while there are at most ``max_bins`` of them, else
    bins of ``w`` integers each (``w`` the smallest integer giving at most ``max_bins`` bins), edges at integers
    ± 0.5 and aligned to multiples of ``w`` (0 starts a bin), so that every bin holds the same number of integers
    (no striping). Returns ``(edges, w)``."""
    import numpy as np

    n = hi - lo + 1
    width = max(1, -(-n // max_bins))
    start = (lo // width) * width
    stop = (hi // width + 1) * width
    return np.arange(start, stop + 1, width, dtype=float) - 0.5, width


def histogram_figure(integers: Mapping[str, Any], title: str, max_bins: int = 120):
    """Histograms of the integer values of every quantized tensor (thesis figure type 3), log y-axis.

    One panel per tensor in the given order; one bin per integer while the range has at most ``max_bins``
    values, else bins of a whole number of integers (:func:`integer_bins`, said in the x label). The panel
    title gives the tensor's shape, unique count and range.
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
        bins, width = integer_bins(lo, hi, max_bins)
        ax.hist(q, bins=bins, color="C0", edgecolor="none", log=True)
        ax.set_ylim(bottom=0.7)
        log_ticks(ax, "y", min_ticks=2, integer=True)
        ax.xaxis.set_major_locator(MaxNLocator(nbins=6, integer=True))
        shape = "×".join(str(int(d)) for d in np.shape(integers[name]))
        ax.set_title(f"{name} ({shape})\n{len(np.unique(q))} unique, range {lo}…{hi}")
        ax.set_xlabel("integer value $P_q$" + ("" if width == 1 else f" (bins of {width})"))
        if k % cols == 0:
            ax.set_ylabel("count (log)")
    for k in range(n, rows * cols):
        axes[k // cols, k % cols].set_visible(False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
