"""Chapter 1's exercises: Nadaraya-Watson regression as attention pooling.

- ``kernel_regression/nadaraya-watson``: the Gaussian-kernel estimator, vectorised and batch-first.
- ``kernel_regression/three-points``: weights and prediction for three training points, by hand.
- ``kernel_regression/epanechnikov-weights``: compact-kernel weights that survive an empty window.
- ``kernel_regression/width-limits``: what the estimator becomes as the width goes to zero.
"""

from __future__ import annotations

import numpy as np
import torch

from ..kernel_regression import kernel_weights, nadaraya_watson
from .checker import ChoiceExercise, FunctionExercise, Mistake, ValueExercise, register


# ---------------------------------------------------------------- 1. the Gaussian estimator
def _nw_reference(x_query, x_train, y_train, width):
    return nadaraya_watson(x_query, x_train, y_train, "gaussian", width)[0]  # (B, n)


def _nw_cases():
    g = torch.Generator().manual_seed(101)
    cases = []
    for B, n, m, width in ((1, 3, 4, 1.0), (2, 5, 7, 0.5), (3, 4, 6, 2.0)):
        cases.append((torch.rand(B, n, generator=g) * 5, torch.rand(B, m, generator=g) * 5,
                      torch.randn(B, m, generator=g), width))
    # different numbers of queries and training points, and a query far from every training
    # point: exp(-d^2 / 2h^2) underflows to 0 for all of them unless the softmax is stabilised.
    x_train = torch.tensor([[0.0, 0.5, 1.0, 1.5, 2.0]])
    cases.append((torch.tensor([[0.25, 30.0]]), x_train, torch.tensor([[1.0, -1.0, 2.0, 0.0, 3.0]]), 0.3))
    return cases


def _sq_dist(x_query, x_train):
    return (x_query[..., :, None] - x_train[..., None, :]) ** 2  # (B, n, m)


def _nw_unnormalised(x_query, x_train, y_train, width):
    d2 = _sq_dist(x_query, x_train)
    return (torch.exp(-d2 / (2 * width**2)) * y_train[..., None, :]).sum(-1)


def _nw_softmax_over_queries(x_query, x_train, y_train, width):
    d2 = _sq_dist(x_query, x_train)
    return (torch.softmax(-d2 / (2 * width**2), dim=-2) * y_train[..., None, :]).sum(-1)


def _nw_width_not_squared(x_query, x_train, y_train, width):
    d2 = _sq_dist(x_query, x_train)
    return (torch.softmax(-d2 / (2 * width), dim=-1) * y_train[..., None, :]).sum(-1)


def _nw_unstable(x_query, x_train, y_train, width):
    d2 = _sq_dist(x_query, x_train)
    k = torch.exp(-d2 / (2 * width**2))
    return (k / k.sum(-1, keepdim=True) * y_train[..., None, :]).sum(-1)


register(FunctionExercise(
    id="kernel_regression/nadaraya-watson",
    title="Gaussian Nadaraya-Watson estimator",
    reference=_nw_reference,
    cases=_nw_cases,
    rtol=1e-4,
    atol=1e-5,
    mistakes=(
        Mistake(_nw_unnormalised, "the kernel values must be normalised to sum to one over the "
                "training points (divide by their sum, or use a softmax): eq. (1.nw) is a weighted "
                "average, not a weighted sum."),
        Mistake(_nw_softmax_over_queries, "normalise over the training points (the last axis of the "
                "(B, n, m) scores), not over the queries: each query gets its own distribution."),
        Mistake(_nw_width_not_squared, "the Gaussian score is -(x - x_i)^2 / (2 h^2): the width enters squared."),
        Mistake(_nw_unstable, "exp(-d^2 / 2h^2) underflows to 0 for a query far from every training "
                "point, and 0/0 is NaN. Compute the weights as a softmax of the scores "
                "(torch.softmax subtracts the row maximum first), eq. (1.gauss-softmax)."),
    ),
))


# ---------------------------------------------------------------- 2. three points by hand
THREE_X = (0.0, 1.0, 3.0)
THREE_Y = (1.0, 3.0, 2.0)
THREE_QUERY = 1.0
THREE_WIDTH = 1.0


def _three_points(score):
    s = np.array([score(THREE_QUERY - x) for x in THREE_X])
    w = np.exp(s) / np.exp(s).sum()
    return w, float(w @ np.array(THREE_Y))


def _three_expected():
    return _three_points(lambda d: -(d**2) / (2 * THREE_WIDTH**2))


_k = np.exp([-(THREE_QUERY - x) ** 2 / 2 for x in THREE_X])

register(ValueExercise(
    id="kernel_regression/three-points",
    title="Three points by hand",
    expected=_three_expected,
    rtol=1e-3,
    atol=1e-4,
    mistakes=(
        Mistake(_three_points(lambda d: -(d**2)), "the Gaussian kernel is exp(-d^2 / (2 h^2)); with h = 1 "
                "that is exp(-d^2 / 2), not exp(-d^2)."),
        Mistake((_k, float(_k @ np.array(THREE_Y))), "normalise: divide the three kernel values by their "
                "sum so that the weights add up to one, then average the targets with them."),
        Mistake(_three_points(lambda d: -abs(d) / 2), "square the distance: the score is -(x - x_i)^2 / 2, not -|x - x_i| / 2."),
    ),
))


# ---------------------------------------------------------------- 3. Epanechnikov weights
def _epa_reference(x_query, x_train, width):
    return kernel_weights(x_query, x_train, "epanechnikov", width)  # (B, n, m)


def _epa_cases():
    g = torch.Generator().manual_seed(202)
    cases = [(torch.rand(2, 4, generator=g) * 4, torch.rand(2, 6, generator=g) * 4, 1.5)]
    x_train = torch.tensor([[0.0, 1.0, 2.0, 6.0]])
    # the second query has no training point within one width: its row must be all zeros
    cases.append((torch.tensor([[0.5, 4.0, 6.2]]), x_train, 0.8))
    cases.append((torch.tensor([[0.1, 1.9], [10.0, 2.0]]), torch.tensor([[0.0, 1.0, 2.0], [0.0, 2.5, 3.0]]), 1.2))
    return cases


def _epa_naive(x_query, x_train, width):
    u = (x_query[..., :, None] - x_train[..., None, :]) / width
    k = (1 - u**2).clamp_min(0)
    return k / k.sum(-1, keepdim=True)


def _epa_no_clamp(x_query, x_train, width):
    u = (x_query[..., :, None] - x_train[..., None, :]) / width
    k = 1 - u**2
    return k / k.sum(-1, keepdim=True)


def _epa_boxcar(x_query, x_train, width):
    u = (x_query[..., :, None] - x_train[..., None, :]) / width
    k = (u.abs() <= 1).float()
    total = k.sum(-1, keepdim=True)
    return k / torch.where(total > 0, total, torch.ones_like(total))


def _epa_not_scaled(x_query, x_train, width):
    u = x_query[..., :, None] - x_train[..., None, :]
    k = (1 - u**2).clamp_min(0)
    total = k.sum(-1, keepdim=True)
    return k / torch.where(total > 0, total, torch.ones_like(total))


register(FunctionExercise(
    id="kernel_regression/epanechnikov-weights",
    title="Epanechnikov weights with empty windows",
    reference=_epa_reference,
    cases=_epa_cases,
    rtol=1e-4,
    atol=1e-6,
    mistakes=(
        Mistake(_epa_naive, "a query with no training point within one width has kernel values that are "
                "all zero, and 0/0 is NaN. Divide by the sum only where it is positive "
                "(torch.where(total > 0, total, 1)) so that such a row stays all zeros."),
        Mistake(_epa_no_clamp, "the Epanechnikov kernel is max(0, 1 - u^2): without the max, points outside "
                "the window get negative weights."),
        Mistake(_epa_boxcar, "that is the boxcar kernel (equal weights inside the window); the Epanechnikov "
                "kernel weights a point by 1 - u^2, more the closer it is."),
        Mistake(_epa_not_scaled, "scale the distance by the width first: u = (x - x_i) / h."),
    ),
))


# ---------------------------------------------------------------- 4. the limits of the width
register(ChoiceExercise(
    id="kernel_regression/width-limits",
    title="A vanishing width",
    options={
        "a": "the target y_j of the training point nearest to x",
        "b": "the mean of all the training targets",
        "c": "zero, because every kernel value goes to zero",
        "d": "NaN, because the weights become 0/0",
    },
    answer="a",
    explanation=("The weights are a softmax of -(x - x_j)^2 / (2 h^2). As h -> 0 every score goes to "
                 "-infinity, the nearest point's most slowly: the ratio of any other "
                 "weight to the nearest one is exp(-(d_j^2 - d_min^2) / (2 h^2)) -> 0. The estimator "
                 "becomes 1-nearest-neighbour regression, a hard lookup."),
    mistakes=(
        Mistake("b", "that is the other limit, h -> infinity, where all scores become equal."),
        Mistake("c", "the kernel values do go to zero, but the weights are normalised: divide by their sum "
                "and look at the ratio of two weights."),
        Mistake("d", "mathematically the ratio has a limit; look at weight_j / weight_nearest. (Numerically, "
                "a softmax that subtracts the largest score never divides 0 by 0.)"),
    ),
))
