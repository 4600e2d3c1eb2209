"""Attention pooling as Nadaraya-Watson kernel regression (book, chapter 1).

Given training pairs ``(x_j, y_j)``, a kernel ``K`` and a width ``h > 0``, the estimate at a
query ``x`` is the weighted average

    f(x) = sum_j alpha(x, x_j) y_j,
    alpha(x, x_j) = K((x - x_j) / h) / sum_j' K((x - x_j') / h)               (eq-nadaraya-watson)

With the Gaussian kernel the weights are a softmax over the training points:

    alpha(x, x_j) = softmax_j( -(x - x_j)^2 / (2 h^2) )                          (eq-gauss-softmax)

which is how this module computes them for every kernel: scores ``log K(u)`` pass through
:func:`companion.softmax.masked_softmax`, and the points where ``K(u) = 0`` (outside a compact
kernel's window) are masked out. This keeps far-away points from underflowing to ``0 / 0``.

Inputs are scalars (one-dimensional regression) and batch-first: ``x_query (..., n)``,
``x_train (..., m)``, ``y_train (..., m)``; weights have shape ``(..., n, m)`` (query ``i``
down the rows, training point ``j`` across), predictions ``(..., n)``. The batch axes ``...``
broadcast.

Empty windows: a query with no training point inside a compact kernel's window (boxcar,
Epanechnikov, triangular), or whose mask row is all False, gets **all-zero weights and the
prediction 0**, the book's convention for a row with nothing to attend to (as in
:func:`companion.softmax.masked_softmax`). It never gets NaN. Find such queries with
``weights.sum(-1) == 0``.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from . import _validate
from .softmax import masked_softmax

__all__ = [
    "gaussian_kernel",
    "boxcar_kernel",
    "epanechnikov_kernel",
    "triangular_kernel",
    "laplace_kernel",
    "KERNELS",
    "kernel_weights",
    "nadaraya_watson",
    "NadarayaWatson",
]


# The kernels, as functions of the scaled distance u = (x - x_j) / h. Their
# normalising constants are left out: they cancel in the ratio of eq-nadaraya-watson.
def gaussian_kernel(u: torch.Tensor) -> torch.Tensor:
    """Gaussian kernel ``K(u) = exp(-u^2 / 2)``; never zero, so every point gets some weight."""
    return torch.exp(-(u**2) / 2)


def boxcar_kernel(u: torch.Tensor) -> torch.Tensor:
    """Boxcar (uniform) kernel ``K(u) = 1[|u| <= 1]``: a plain average of the points in the window."""
    return (u.abs() <= 1).to(u.dtype)


def epanechnikov_kernel(u: torch.Tensor) -> torch.Tensor:
    """Epanechnikov kernel ``K(u) = max(0, 1 - u^2)``: a parabola on ``[-1, 1]``, zero outside."""
    return (1 - u**2).clamp_min(0)


def triangular_kernel(u: torch.Tensor) -> torch.Tensor:
    """Triangular kernel ``K(u) = max(0, 1 - |u|)``."""
    return (1 - u.abs()).clamp_min(0)


def laplace_kernel(u: torch.Tensor) -> torch.Tensor:
    """Laplace (exponential) kernel ``K(u) = exp(-|u|)``: heavier tails than the Gaussian."""
    return torch.exp(-u.abs())


KERNELS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "gaussian": gaussian_kernel,
    "boxcar": boxcar_kernel,
    "epanechnikov": epanechnikov_kernel,
    "triangular": triangular_kernel,
    "laplace": laplace_kernel,
}

# log K(u) written out for the kernels that are never zero, so that a point 50 widths away
# keeps its (tiny) relative weight instead of exp() underflowing to exactly zero.
_LOG_KERNELS = {
    "gaussian": lambda u: -(u**2) / 2,
    "laplace": lambda u: -u.abs(),
}


def _resolve_kernel(kernel) -> str | Callable:
    if callable(kernel):
        return kernel
    if isinstance(kernel, str) and kernel in KERNELS:
        return kernel
    raise ValueError(f"kernel must be one of {sorted(KERNELS)} or a function of u, got {kernel!r}")


def _check_width(width, like: torch.Tensor) -> torch.Tensor:
    if isinstance(width, torch.Tensor):
        _validate.tensor(width, "width")
        if width.dtype != like.dtype:
            raise TypeError(f"width must have the inputs' dtype {like.dtype}, got {width.dtype}")
        if not (width > 0).all() or not torch.isfinite(width).all():
            raise ValueError(f"width must be positive and finite, got {width.detach().tolist()}")
        return width
    if isinstance(width, bool) or not isinstance(width, (int, float)):
        raise TypeError(f"width must be a positive number or tensor, got {type(width).__name__}")
    if not (width > 0 and math.isfinite(width)):
        raise ValueError(f"width must be positive and finite, got {width!r}")
    return torch.tensor(float(width), dtype=like.dtype, device=like.device)


def kernel_weights(x_query, x_train, kernel="gaussian", width=1.0, mask=None) -> torch.Tensor:
    """The attention weights ``alpha(x_i, x_j)`` of eq. (1.nw), shape ``(..., n, m)``.

    Args:
        x_query: ``(..., n)`` query inputs.
        x_train: ``(..., m)`` training inputs (the keys).
        kernel: a name from :data:`KERNELS` or a function ``K(u) >= 0`` of the scaled distance.
        width: the bandwidth ``h > 0``, a number or a tensor broadcastable to ``(..., n, m)``
            (a learnable width is a 0-d tensor).
        mask: optional boolean, broadcastable to ``(..., n, m)``; True = may attend.
            ``~torch.eye(m, dtype=torch.bool)`` gives leave-one-out when the queries are the
            training inputs.

    Returns:
        Weights that are non-negative and sum to one over ``m`` in every row, except in a row
        with no admissible point (empty compact window or all-False mask): all zeros there.
    """
    _validate.tensor(x_query, "x_query", min_dim=1)
    _validate.tensor(x_train, "x_train", min_dim=1)
    _validate.same_dtype(x_query=x_query, x_train=x_train)
    _validate.finite(x_query, "x_query")
    _validate.finite(x_train, "x_train")
    _validate.batch_shapes_broadcast(x_query=x_query.shape[:-1], x_train=x_train.shape[:-1])
    kernel = _resolve_kernel(kernel)
    width = _check_width(width, x_query)
    u = (x_query.unsqueeze(-1) - x_train.unsqueeze(-2)) / width  # (..., n, m)
    _validate.mask(mask, "mask", tuple(u.shape))
    if kernel in _LOG_KERNELS:
        scores, inside = _LOG_KERNELS[kernel](u), None  # (..., n, m)
    else:
        k = KERNELS[kernel](u) if isinstance(kernel, str) else kernel(u)  # (..., n, m)
        if not isinstance(k, torch.Tensor) or k.shape != u.shape:
            raise ValueError(f"the kernel must return a tensor of the shape of its input {tuple(u.shape)}")
        if (k < 0).any() or torch.isnan(k).any():
            raise ValueError("the kernel returned negative or NaN values; a kernel must be >= 0")
        inside = k > 0
        # log of 1 where K = 0: those entries are masked out, and log(0) would poison the gradient.
        scores = torch.where(inside, k, torch.ones_like(k)).log()  # (..., n, m)
    if inside is not None:
        mask = inside if mask is None else mask & inside
    return masked_softmax(scores, mask)  # (..., n, m)


def nadaraya_watson(x_query, x_train, y_train, kernel="gaussian", width=1.0, mask=None):
    """Nadaraya-Watson estimate, eq. (1.nw): ``(prediction (..., n), weights (..., n, m))``.

    ``prediction[..., i] = sum_j weights[..., i, j] * y_train[..., j]``: attention pooling with
    the query ``x_i``, the keys ``x_j`` and the values ``y_j`` (eq-attention-pooling). See
    :func:`kernel_weights` for the arguments and for what an empty window returns (zero
    weights, prediction 0).
    """
    _validate.tensor(y_train, "y_train", min_dim=1)
    _validate.tensor(x_train, "x_train", min_dim=1)
    if y_train.shape != x_train.shape:
        raise ValueError(
            f"y_train must have the shape of x_train (one target per training input), got "
            f"x_train {tuple(x_train.shape)} and y_train {tuple(y_train.shape)}"
        )
    _validate.same_dtype(x_train=x_train, y_train=y_train)
    _validate.finite(y_train, "y_train")
    weights = kernel_weights(x_query, x_train, kernel, width, mask)  # (..., n, m)
    prediction = (weights @ y_train.unsqueeze(-1)).squeeze(-1)  # (..., n)
    return prediction, weights


class NadarayaWatson(nn.Module):
    """Nadaraya-Watson regression with a learnable width (eq-nw-learned).

    The training set is the model's memory: ``x_train`` are the keys and ``y_train`` the values,
    stored as buffers. The width is ``h = exp(log_width)``, positive whatever the optimiser does.

    ``forward(x_query, mask=None)`` takes ``x_query (..., n)`` and returns
    ``(prediction (..., n), weights (..., n, m))``. To train the width on the training set
    itself, query with ``x_train`` and the leave-one-out mask :meth:`leave_one_out_mask`:
    without it each point sees itself and the width collapses to zero.
    """

    def __init__(self, x_train: torch.Tensor, y_train: torch.Tensor, kernel: str = "gaussian", width: float = 1.0):
        super().__init__()
        _validate.tensor(x_train, "x_train", min_dim=1)
        _validate.tensor(y_train, "y_train", min_dim=1)
        if x_train.shape != y_train.shape:
            raise ValueError(f"x_train {tuple(x_train.shape)} and y_train {tuple(y_train.shape)} must have one shape")
        _resolve_kernel(kernel)
        _check_width(width, x_train)
        self.kernel = kernel
        self.register_buffer("x_train", x_train.detach().clone())
        self.register_buffer("y_train", y_train.detach().clone())
        self.log_width = nn.Parameter(torch.tensor(math.log(width), dtype=x_train.dtype))

    @property
    def width(self) -> torch.Tensor:
        return self.log_width.exp()

    def leave_one_out_mask(self) -> torch.Tensor:
        """``(m, m)`` boolean mask, False on the diagonal: training point ``i`` may not see itself."""
        m = self.x_train.shape[-1]
        return ~torch.eye(m, dtype=torch.bool, device=self.x_train.device)

    def forward(self, x_query: torch.Tensor, mask: torch.Tensor | None = None):
        return nadaraya_watson(x_query, self.x_train, self.y_train, self.kernel, self.width, mask)

    def extra_repr(self) -> str:
        return f"kernel={self.kernel!r}, m={self.x_train.shape[-1]}, width={self.width.item():.4g}"


def width_grid() -> torch.Tensor:
    """Fixed widths for a grid search: 60 values from 0.02 to 5, evenly spaced in log."""
    return torch.logspace(math.log10(0.02), math.log10(5.0), 60)


def fixed_width_mse(x_train, y_train, x_test, y_test, kernel, widths):
    """Leave-one-out training MSE and test MSE of the fixed-width estimator, one per width.

    ``x_train, y_train (m,)``, ``x_test, y_test (n,)``, ``widths (W,)``; returns two ``(W,)``
    tensors. The leave-one-out error (eq-loo) predicts each training point from the others.
    """
    for name, t in (("x_train", x_train), ("y_train", y_train), ("x_test", x_test),
                    ("y_test", y_test), ("widths", widths)):
        _validate.tensor(t, name, min_dim=1)
        if t.dim() != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {tuple(t.shape)}")
    if x_train.shape != y_train.shape or x_test.shape != y_test.shape:
        raise ValueError(
            f"inputs and targets must match: x_train {tuple(x_train.shape)}, y_train "
            f"{tuple(y_train.shape)}, x_test {tuple(x_test.shape)}, y_test {tuple(y_test.shape)}"
        )
    loo = ~torch.eye(len(x_train), dtype=torch.bool, device=x_train.device)  # (m, m)
    h = widths[:, None, None]  # (W, 1, 1): one batch entry per width
    train_pred, _ = nadaraya_watson(x_train, x_train, y_train, kernel, h, mask=loo)  # (W, m)
    test_pred, _ = nadaraya_watson(x_test, x_train, y_train, kernel, h)  # (W, n)
    return ((train_pred - y_train) ** 2).mean(-1), ((test_pred - y_test) ** 2).mean(-1)  # (W,), (W,)
