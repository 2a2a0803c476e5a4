"""The figures' fixed style and deterministic files.

:func:`set_style` resets matplotlib and applies :data:`RC_PARAMS` on top of seaborn's ``whitegrid`` theme, so a
figure does not depend on the user's matplotlibrc; :func:`savefig` writes PNG and PDF (and SVG) byte-identically on
every re-run: no software version or timestamps in the files, a fixed SVG hash salt, atomic writes.
"""

from __future__ import annotations

import os
from typing import List, Sequence

from lqs_core import atomic

#: rcParams every figure uses (on top of matplotlib's defaults and seaborn's "whitegrid" theme).
RC_PARAMS = {
    "figure.dpi": 100,
    "savefig.dpi": 120,
    "savefig.bbox": "tight",
    "savefig.pad_inches": 0.05,
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.titlesize": 9,
    "axes.labelsize": 9,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "pdf.fonttype": 42,
    "pdf.compression": 6,
    "svg.hashsalt": "lqs",
    "svg.fonttype": "path",
    "path.simplify": True,
    "axes.unicode_minus": True,
}
#: ``metadata`` for :func:`matplotlib.figure.Figure.savefig` per format: no software version, no timestamps.
SAVE_METADATA = {
    "png": {"Software": None},
    "pdf": {"Creator": None, "Producer": None, "CreationDate": None, "ModDate": None},
    "svg": {"Creator": None, "Date": None},
}


def set_style() -> None:
    """Reset matplotlib to its defaults, apply seaborn's ``whitegrid`` theme and :data:`RC_PARAMS`.

    The backend is left alone (inline in a notebook, Agg in a script without display).
    """
    import matplotlib
    import matplotlib.pyplot as plt
    import seaborn as sns

    matplotlib.rcdefaults()
    sns.set_theme(context="paper", style="whitegrid", palette="deep", font="DejaVu Sans", rc=RC_PARAMS)
    plt.rcParams.update(RC_PARAMS)


def savefig(fig, stem, formats: Sequence[str] = ("png", "pdf")) -> List[str]:
    """Save ``fig`` as ``<stem>.<ext>`` for every format, byte-identically on every re-run.

    PNG without the ``Software`` entry, PDF without creator/producer/dates, SVG with a fixed hash salt and no
    date; rcParams of :data:`RC_PARAMS` apply while saving. Each file is written to a temporary name and renamed,
    so an interrupted save leaves no truncated figure. Returns the paths written.
    """
    import matplotlib

    stem = str(stem)
    directory = os.path.dirname(os.path.abspath(stem))
    os.makedirs(directory, exist_ok=True)
    written = []
    with matplotlib.rc_context({k: v for k, v in RC_PARAMS.items() if k.startswith(("savefig.", "pdf.", "svg."))}):
        for ext in formats:
            if ext not in SAVE_METADATA:
                raise ValueError(f"Unsupported figure format {ext!r}; allowed: {', '.join(SAVE_METADATA)}.")
            path = f"{stem}.{ext}"
            with atomic.atomic_path(path) as tmp:
                fig.savefig(tmp, format=ext, metadata=SAVE_METADATA[ext])
            written.append(path)
    return written


def plain_log_labels(ax) -> None:
    """Tick labels of a log y-axis as plain numbers (0.4, 0.5, 200) instead of mantissa x 10^k."""
    from matplotlib.ticker import FuncFormatter

    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    lo, hi = ax.get_ylim()
    if hi / max(lo, 1e-300) < 100:  # few decades: label the 2s and 5s too
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: f"{v:g}" if f"{v:g}"[0] in "25" else ""))
    else:
        ax.yaxis.set_minor_formatter(FuncFormatter(lambda v, _: ""))
