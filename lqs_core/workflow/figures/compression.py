"""The compression table as a figure (thesis figure type 4; ``notebooks/table_compression.ipynb``)."""

from __future__ import annotations


def table_figure(display, title: str = ""):
    """Render a (formatted) table as a figure for PNG/PDF."""
    import matplotlib.pyplot as plt

    n_rows, n_cols = display.shape
    fig, ax = plt.subplots(figsize=(max(6.0, 0.95 * n_cols), 0.32 * (n_rows + 1) + 0.7))
    ax.axis("off")
    table = ax.table(cellText=display.values, colLabels=list(display.columns), loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(7)
    table.auto_set_column_width(list(range(n_cols)))
    table.scale(1.0, 1.3)
    for (r, _), cell in table.get_celld().items():
        cell.set_linewidth(0.4)
        if r == 0:
            cell.set_facecolor("#e6e6e6")
            cell.set_text_props(weight="bold")
    if title:
        ax.set_title(title, fontsize=9)
    return fig
