"""Attention figures: heatmaps of weights with token labels."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch

from .style import WEIGHTS_CMAP


def _as_matrix(weights) -> np.ndarray:
    if isinstance(weights, torch.Tensor):
        weights = weights.detach().cpu().double().numpy()
    if not isinstance(weights, np.ndarray):
        raise TypeError(f"weights must be a torch.Tensor or numpy array, got {type(weights).__name__}")
    if weights.ndim != 2:
        raise ValueError(
            f"weights must be a 2-D matrix (len_q, len_k); got shape {weights.shape}. "
            "Select one example and head first, e.g. weights[0, head]."
        )
    if np.isnan(weights).any():
        raise ValueError(f"weights contain NaN (shape {weights.shape})")
    return weights


def attention_heatmap(
    weights,
    query_labels: Sequence[str] | None = None,
    key_labels: Sequence[str] | None = None,
    *,
    ax=None,
    title: str | None = None,
    annotate: bool | None = None,
    vmin: float | None = 0.0,
    vmax: float | None = None,
    colorbar: bool = True,
    xlabel: str = "keys",
    ylabel: str = "queries",
):
    """Draw a ``(len_q, len_k)`` weight matrix: queries down the rows, keys across.

    Labels, when given, must match the matrix's sides. ``annotate`` writes each weight in
    its cell (default: when the matrix is at most 12 x 12). Returns the ``Axes``.
    """
    w = _as_matrix(weights)
    n_q, n_k = w.shape
    for labels, n, name in ((query_labels, n_q, "query_labels"), (key_labels, n_k, "key_labels")):
        if labels is not None and len(labels) != n:
            raise ValueError(f"{name} has {len(labels)} entries but weights have shape {w.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(min(1.0 + 0.45 * n_k, 10), min(1.0 + 0.4 * n_q, 9)))
    image = ax.imshow(w, cmap=WEIGHTS_CMAP, vmin=vmin, vmax=vmax, aspect="auto")
    ax.grid(False)
    ax.set_xticks(range(n_k))
    ax.set_yticks(range(n_q))
    ax.set_xticklabels(key_labels if key_labels is not None else range(n_k), rotation=90 if key_labels is not None else 0)
    ax.set_yticklabels(query_labels if query_labels is not None else range(n_q))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    if annotate is None:
        annotate = n_q <= 12 and n_k <= 12
    if annotate:
        top = w.max() if vmax is None else vmax
        for i in range(n_q):
            for j in range(n_k):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="black" if w[i, j] > 0.6 * top else "white")
    if colorbar:
        ax.figure.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="weight")
    return ax
