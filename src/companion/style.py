"""One figure style for the whole book.

Call :func:`use_book_style` once at the top of a chapter (the chapters' set-up cell does).
Colours: a sequential map for attention weights (``WEIGHTS_CMAP``) and a short qualitative
palette for lines.
"""

from __future__ import annotations

import matplotlib as mpl

WEIGHTS_CMAP = "viridis"
PALETTE = ["#1f5fa8", "#d1495b", "#2a9d8f", "#e9a03b", "#6d597a", "#5c677d"]

BOOK_RC = {
    "figure.figsize": (6.4, 4.0),
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "savefig.bbox": "tight",
    "font.size": 10,
    "axes.titlesize": 11,
    "axes.labelsize": 10,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "legend.frameon": False,
    "image.cmap": WEIGHTS_CMAP,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
}


def use_book_style() -> None:
    """Apply the book's matplotlib settings to the current session."""
    mpl.rcParams.update(BOOK_RC)
