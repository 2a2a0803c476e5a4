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
    """Tick labels of a log y-axis as plain numbers (0.4, 0.5, 200), several of them: :func:`log_ticks`."""
    log_ticks(ax, "y")


# ---------------------------------------------------------------------------------------------------------------
# Readable axes and labels, shared by the figure modules

#: Accuracies are fractions in the results table and percentages in every figure and table.
PERCENT = 100.0
#: Axis label of a final validation accuracy (in %).
ACCURACY_LABEL = "final validation accuracy [%]"
#: Default of how far below the float baseline (in percentage points) an accuracy axis reaches before the
#: settings below it are drawn on its edge (:func:`accuracy_limits`).
ZOOM_MARGIN = 10.0


def seeds_text(counts) -> str:
    """``1 seed``, ``3 seeds`` or, where the settings differ in their number of seeds, ``2–3 seeds``."""
    ns = sorted({int(c) for c in counts if c == c and int(c) > 0})
    if not ns:
        return "0 seeds"
    lo, hi = ns[0], ns[-1]
    if lo != hi:
        return f"{lo}–{hi} seeds"
    return f"{lo} seed" if lo == 1 else f"{lo} seeds"


def spread_text(counts) -> str:
    """What a figure's points and bands are: ``mean ± sd over 3 seeds`` (``2–3 seeds``), or ``1 seed`` where every
    setting has a single seed (no spread to show)."""
    ns = {int(c) for c in counts if c == c and int(c) > 0}
    return "1 seed" if ns == {1} else f"mean ± sd over {seeds_text(counts)}"


def accuracy_limits(values, spreads=None, reference=None, margin: float = ZOOM_MARGIN, pad: float = 0.06):
    """Limits ``(low, high)`` of an accuracy axis (in %) that show where the settings differ.

    The axis reaches from a bit below the lowest setting within ``margin`` points of ``reference`` (the float
    baseline; without one, the best setting) to a bit above the best setting or the reference; settings further
    below are not dropped but drawn on the axis' low edge (:func:`clip_low`, :func:`mark_cut`). ``spreads`` (the
    standard deviations) widen the range so that the error bars of the settings inside it stay visible.
    """
    values = [float(v) for v in values]
    spreads = [0.0] * len(values) if spreads is None else [float(s) for s in spreads]
    pairs = [(v, 0.0 if s != s else s) for v, s in zip(values, spreads) if v == v]
    if reference is not None and reference == reference:
        ref = float(reference)
    elif pairs:
        ref = max(v for v, _ in pairs)
    else:
        return 0.0, 100.0
    inside = [(v, s) for v, s in pairs if v >= ref - margin] or [(ref, 0.0)]
    low = min(min(v - s for v, s in inside), ref)
    high = max(max(v + s for v, s in inside), ref)
    span = max(high - low, 1.0)
    return max(low - pad * span, 0.0), high + pad * span


def clip_low(values, low: float):
    """``values`` with everything below ``low`` set to ``low`` (a setting below an axis drawn on its edge)."""
    import numpy as np

    arr = np.asarray(values, dtype=float)
    return np.where(arr < low, low, arr)


def mark_cut(ax, axis: str = "y") -> None:
    """The broken-axis cue: two short slanted strokes across the low end of the ``axis`` spine."""
    size = 0.012
    kw = {"transform": ax.transAxes, "color": "0.25", "linewidth": 0.9, "clip_on": False, "zorder": 5}
    for shift in (0.0, 0.014):
        if axis == "y":
            ax.plot([-size, size], [shift - size, shift + size], **kw)
        else:
            ax.plot([shift - size, shift + size], [-size, size], **kw)


def _log_tick_values(lo: float, hi: float, min_ticks: int, integer: bool) -> List[float]:
    import math

    sets = [(1,), (1, 2, 5), (1, 2, 3, 5), (1, 2, 3, 4, 5, 6, 8)]
    if not integer:
        sets.append((1, 1.5, 2, 3, 4, 5, 6, 8))
    lo_k, hi_k = math.floor(math.log10(lo)) - 1, math.ceil(math.log10(hi)) + 1
    for subs in sets:
        ticks = [float(f"{s * 10.0 ** k:.12g}") for k in range(lo_k, hi_k + 1) for s in subs]
        ticks = [t for t in ticks if lo <= t <= hi and (not integer or t >= 1)]
        if len(ticks) >= min_ticks:
            while len(ticks) > 8:  # many decades: every other one
                ticks = ticks[::2]
            return ticks
    return []


def _plain(v: float) -> str:
    import math

    if v == 0 or 1e-3 <= abs(v) < 1e6:
        return f"{v:g}"
    k = math.log10(abs(v))
    return f"$10^{{{int(round(k))}}}$" if abs(k - round(k)) < 1e-9 else f"{v:.0e}"


def log_ticks(ax, axis: str = "y", min_ticks: int = 3, integer: bool = False) -> None:
    """Readable major ticks on a log ``axis`` of ``ax``, labelled as plain numbers (0.06, 0.1, 0.2, 200).

    Call after everything is drawn (the ticks are chosen for the axis' final limits): the ticks are 10^k where
    the axis spans several decades, else 1-2-5, 1-2-3-5, 1…8 (and 1.5 unless ``integer``) times 10^k, whichever
    first gives ``min_ticks`` ticks; a range narrower than that gets linear ticks. Shared axes share the ticks.
    """
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter, NullLocator

    a = ax.yaxis if axis == "y" else ax.xaxis
    lo, hi = sorted(ax.get_ylim() if axis == "y" else ax.get_xlim())
    lo = max(lo, 1e-300)
    ticks = _log_tick_values(lo, hi, min_ticks, integer)
    if ticks:
        a.set_major_locator(FixedLocator(ticks))
    else:
        a.set_major_locator(MaxNLocator(nbins=4, integer=integer))
    a.set_major_formatter(FuncFormatter(lambda v, _: _plain(v)))
    if ticks and len(ticks) > 1 and ticks[1] / ticks[0] >= 10:
        a.set_minor_locator(LogLocator(base=10, subs=tuple(range(2, 10))))
    else:
        a.set_minor_locator(NullLocator())
    a.set_minor_formatter(NullFormatter())
    if axis == "y":  # keep the limits the ticks were chosen for
        ax.set_ylim(ax.get_ylim())
    else:
        ax.set_xlim(ax.get_xlim())


def _text_size(text: str, fontsize: float, dpi: float):
    """Width and height of ``text`` in pixels at ``dpi`` (Agg's font metrics, as the PNG draws it)."""
    from matplotlib.backends.backend_agg import RendererAgg
    from matplotlib.font_manager import FontProperties

    renderer = RendererAgg(1, 1, dpi)
    w, h, _ = renderer.get_text_width_height_descent(text, FontProperties(size=fontsize), ismath=False)
    return w, h


def _overlap(a, b) -> float:
    dx = min(a[2], b[2]) - max(a[0], b[0])
    dy = min(a[3], b[3]) - max(a[1], b[1])
    return dx * dy if dx > 0 and dy > 0 else 0.0


#: Where :func:`place_labels` tries a label: (distance from the point in points, directions in degrees), nearest
#: first; right-above first.
_RINGS = ((3.0, (35, -35, 145, 215, 90, 270, 0, 180)),
          (9.0, (35, -35, 145, 215, 90, 270, 0, 180, 60, -60, 120, 240)),
          (16.0, tuple(range(30, 390, 30))),
          (26.0, tuple(range(15, 375, 30))),
          (40.0, tuple(range(30, 390, 30))))


def place_labels(ax, items, obstacles=(), fontsize: float = 6.0, marker_size: float = 7.0) -> list:
    """Label points of ``ax`` without overlaps: each label goes to the first of a ring of places around its point
    (right-above first) that overlaps no label placed before it, no marker and stays inside the axes, farther out
    (with a thin leader line) where the near places are taken; where none is free, the least covered one.

    ``items``: ``(x, y, text, color)`` in data coordinates; ``obstacles``: ``(x, y)`` of every marker drawn (the
    labelled points are obstacles too). Call after the axes' limits, scales and the figure layout are final (after
    ``tight_layout``); the placement is deterministic (items in the given order). Returns the annotations.
    """
    import math

    fig = ax.figure
    dpi = fig.dpi
    px = dpi / 72.0  # pixels per point
    box = ax.get_window_extent()
    frame = (box.x0, box.y0, box.x1, box.y1)
    r = marker_size * px / 2
    points = [tuple(ax.transData.transform((float(x), float(y)))) for x, y, *_ in items]
    marks = [tuple(ax.transData.transform((float(x), float(y)))) for x, y in obstacles] + points
    marks = [(u - r, v - r, u + r, v + r) for u, v in marks if math.isfinite(u) and math.isfinite(v)]
    placed, out = [], []
    for (x, y, text, color), (u, v) in zip(items, points):
        if not text or not (math.isfinite(u) and math.isfinite(v)):
            continue
        w, h = _text_size(text, fontsize, dpi)
        best = None
        for ring, (d, angles) in enumerate(_RINGS):
            d *= px
            for angle in angles:
                c, s = math.cos(math.radians(angle)), math.sin(math.radians(angle))
                dx, dy = d * c - w * (1 - c) / 2, d * s - h * (1 - s) / 2
                rect = (u + dx, v + dy, u + dx + w, v + dy + h)
                cost = sum(_overlap(rect, p) for p in placed) + sum(_overlap(rect, m) for m in marks)
                cost += 10.0 * (w * h - _overlap(rect, frame)) + ring * 0.5
                if best is None or cost < best[0] - 1e-9:
                    best = (cost, ring, dx, dy, rect)
            if best[0] <= best[1] * 0.5 + 1e-9:  # a free place in this ring or a nearer one
                break
        _, ring, dx, dy, rect = best
        placed.append(rect)
        arrow = {"arrowstyle": "-", "color": color, "linewidth": 0.4, "alpha": 0.7,
                 "shrinkA": 0, "shrinkB": 2} if ring > 0 else None
        out.append(ax.annotate(text, (x, y), xytext=(dx / px, dy / px), textcoords="offset points", ha="left",
                               va="bottom", fontsize=fontsize, color=color, arrowprops=arrow, annotation_clip=False))
    return out
