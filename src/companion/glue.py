"""Paste a number computed in a chapter into its prose.

The book's prose states no number by hand: a cell computes it and calls ``glue(name, value)``,
and the text cites it as ``{glue:text}`name:.3f```. The Jupyter Book build renders that through
``myst_nb.glue``; on Colab or in a bare kernel, where ``myst_nb`` is not installed, the same call
prints the value instead, so one set-up cell serves every reader.
"""

from __future__ import annotations

__all__ = ["glue"]


def glue(name: str, value, display: bool = True):
    """``myst_nb.glue(name, value, display)`` when myst-nb is installed, else print the value."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string, got {name!r}")
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        print(f"{name} = {value!r}")
        return None
    return myst_glue(name, value, display=display)
