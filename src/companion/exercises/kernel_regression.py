"""Exercises on Nadaraya-Watson regression as attention pooling (the chapter "What attention is").

- ``kernel_regression/nadaraya-watson``: the Gaussian estimator, batch-first, stable, without
  ``torch.softmax`` (enforced).
- ``kernel_regression/three-points``: weights and prediction for three training points, by hand.
- ``kernel_regression/loo-residual``: derive the leave-one-out residual from one fit (derivation).
- ``kernel_regression/smoothing-bias``: the estimator's bias to second order in the width
  (derivation).
- ``kernel_regression/epanechnikov-weights``: compact-kernel weights that survive an empty window.
- ``kernel_regression/width-limits``: what the estimator becomes as the width goes to zero.
- ``kernel_regression/no-mask-ablation``: train the width without the leave-one-out mask and
  report where it goes (ablation).

Each exercise carries its worked solution (``solution``, ``solution_text``), shown only through
``companion.exercises.solution``.
"""

from __future__ import annotations

import numpy as np
import torch

from ..kernel_regression import kernel_weights, nadaraya_watson
from .checker import ChoiceExercise, FunctionExercise, Mistake, ValueExercise, register


def _softmax_by_hand(scores, dim):
    """A stable softmax written out (the mistakes below may not call torch.softmax either)."""
    k = torch.exp(scores - scores.amax(dim, keepdim=True))
    return k / k.sum(dim, keepdim=True)


# ---------------------------------------------------------------- the Gaussian estimator
def _nw_reference(x_query, x_train, y_train, width):
    return nadaraya_watson(x_query, x_train, y_train, "gaussian", width)[0]  # (B, n)


def _nw_cases():
    g = torch.Generator().manual_seed(101)
    cases = []
    for B, n, m, width in ((1, 3, 4, 1.0), (2, 5, 7, 0.5), (3, 4, 6, 2.0)):
        cases.append((torch.rand(B, n, generator=g) * 5, torch.rand(B, m, generator=g) * 5,
                      torch.randn(B, m, generator=g), width))
    # different numbers of queries and training points, and a query far from every training
    # point: exp(-d^2 / 2 ell^2) underflows to 0 for all of them unless the largest score is
    # subtracted first.
    x_train = torch.tensor([[0.0, 0.5, 1.0, 1.5, 2.0]])
    cases.append((torch.tensor([[0.25, 30.0]]), x_train,
                  torch.tensor([[1.0, -1.0, 2.0, 0.0, 3.0]]), 0.3))
    return cases


def _sq_dist(x_query, x_train):
    return (x_query[..., :, None] - x_train[..., None, :]) ** 2  # (B, n, m)


def _nw_unnormalised(x_query, x_train, y_train, width):
    d2 = _sq_dist(x_query, x_train)
    return (torch.exp(-d2 / (2 * width**2)) * y_train[..., None, :]).sum(-1)


def _nw_softmax_over_queries(x_query, x_train, y_train, width):
    d2 = _sq_dist(x_query, x_train)
    return (_softmax_by_hand(-d2 / (2 * width**2), -2) * y_train[..., None, :]).sum(-1)


def _nw_width_not_squared(x_query, x_train, y_train, width):
    d2 = _sq_dist(x_query, x_train)
    return (_softmax_by_hand(-d2 / (2 * width), -1) * y_train[..., None, :]).sum(-1)


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
    forbid=("softmax",),
    mistakes=(
        Mistake(_nw_unnormalised, "the kernel values must be normalised to sum to one over the "
                "training points: eq-nadaraya-watson is a weighted average, not a weighted sum."),
        Mistake(_nw_softmax_over_queries, "normalise over the training points (the last axis of the "
                "(B, n, m) scores), not over the queries: each query gets its own distribution."),
        Mistake(_nw_width_not_squared, "the Gaussian score is -(x - x_j)^2 / (2 ell^2): the width "
                "enters squared."),
        Mistake(_nw_unstable, "exp(-d^2 / 2 ell^2) underflows to 0 for a query far from every "
                "training point, and 0/0 is NaN. Subtract each row's largest score before "
                "exponentiating: the weights do not change (eq-gauss-softmax is a softmax, "
                "blind to a constant added to every score), and the largest term becomes exp(0) = 1."),
    ),
    solution='''\
def my_nadaraya_watson(x_query, x_train, y_train, width):
    d = x_query[..., :, None] - x_train[..., None, :]  # (B, n, m)
    scores = -(d**2) / (2 * width**2)  # (B, n, m), eq-gauss-softmax
    scores = scores - scores.amax(-1, keepdim=True)  # row maxima now 0
    k = torch.exp(scores)  # (B, n, m); each row holds a 1: sum >= 1
    weights = k / k.sum(-1, keepdim=True)  # (B, n, m)
    return (weights @ y_train[..., :, None])[..., 0]  # (B, n)
''',
    solution_answer="my_nadaraya_watson",
    solution_text=r"""
Broadcasting `x_query[..., :, None] - x_train[..., None, :]` gives every difference
$x_i - x_j$ at once, shape `(B, n, m)`. The weights are the softmax over the last axis of the
scores $-(x_i - x_j)^2 / (2\ell^2)$. Adding the same constant to every score of a row changes
no weight, since it multiplies numerator and denominator by the same factor; subtracting the row's
largest score makes that score $0$, so the denominator is at least $e^0 = 1$ and never the
$0/0$ that a far query would otherwise produce.
""",
))


# ---------------------------------------------------------------- three points by hand
THREE_X = (0.0, 1.0, 3.0)
THREE_Y = (1.0, 3.0, 2.0)
THREE_QUERY = 2.0  # the chapter's worked example queries x = 1; the exercise asks for x = 2
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
        Mistake(_three_points(lambda d: -(d**2)), "the Gaussian kernel is exp(-d^2 / (2 ell^2)); "
                "with ell = 1 that is exp(-d^2 / 2), not exp(-d^2)."),
        Mistake((_k, float(_k @ np.array(THREE_Y))), "normalise: divide the three kernel values by "
                "their sum so that the weights add up to one, then average the targets with them."),
        Mistake(_three_points(lambda d: -abs(d) / 2), "square the distance: the score is "
                "-(x - x_j)^2 / 2, not -|x - x_j| / 2."),
    ),
    solution='''\
x_j, y_j, x, ell = (0.0, 1.0, 3.0), (1.0, 3.0, 2.0), 2.0, 1.0
k = [math.exp(-((x - xj) ** 2) / (2 * ell**2)) for xj in x_j]
weights = [kj / sum(k) for kj in k]
prediction = sum(w * y for w, y in zip(weights, y_j))
print("weights", [round(w, 4) for w in weights],
      "prediction", round(prediction, 4))
answer = (weights, prediction)
''',
    solution_text=r"""
The squared distances from $x = 2$ are $4, 1, 1$, so the kernel values are $e^{-2}$,
$e^{-1/2}$, $e^{-1/2}$. The two neighbours at the same distance get the same weight
$e^{-1/2} / (e^{-2} + 2e^{-1/2})$, and the prediction is
$\big(e^{-2} \cdot 1 + e^{-1/2}(3 + 2)\big) / (e^{-2} + 2e^{-1/2})$: almost the mean of the
two neighbours' targets, pulled a little towards the far point's $1$.
""",
))


# ---------------------------------------------------------------- leave-one-out from one fit
def _loo_reference(weights, y):
    """Predict each point from the others by masking the diagonal and renormalising."""
    m = y.shape[-1]
    keep = ~torch.eye(m, dtype=torch.bool)  # (m, m)
    w = weights * keep  # (B, m, m)
    w = w / w.sum(-1, keepdim=True)
    return y - (w @ y[..., :, None])[..., 0]  # (B, m)


def _loo_cases():
    g = torch.Generator().manual_seed(303)
    cases = []
    for B, m, kernel, width in ((1, 5, "gaussian", 0.8), (2, 9, "gaussian", 0.3),
                                (3, 7, "laplace", 0.5), (2, 6, "epanechnikov", 6.0)):
        x = torch.rand(B, m, generator=g, dtype=torch.float64) * 4  # (B, m)
        y = torch.randn(B, m, generator=g, dtype=torch.float64)  # (B, m)
        cases.append((kernel_weights(x, x, kernel, width), y))  # (B, m, m), (B, m)
    return cases


def _fitted(weights, y):
    return (weights @ y[..., :, None])[..., 0]  # (B, m)


def _loo_plain(weights, y):
    return y - _fitted(weights, y)


def _loo_plus(weights, y):
    return (y - _fitted(weights, y)) / (1 + weights.diagonal(dim1=-2, dim2=-1))


def _loo_not_renormalised(weights, y):
    s_ii = weights.diagonal(dim1=-2, dim2=-1)  # (B, m)
    return y - (_fitted(weights, y) - s_ii * y)


register(FunctionExercise(
    id="kernel_regression/loo-residual",
    title="The leave-one-out residual from one fit",
    reference=_loo_reference,
    cases=_loo_cases,
    rtol=1e-6,
    atol=1e-9,
    mistakes=(
        Mistake(_loo_plain, "that is the ordinary residual y_i - f_i: the prediction f_i still "
                "contains the point's own target, with weight S_ii."),
        Mistake(_loo_not_renormalised, "removing the term S_ii y_i is not enough: the weights that "
                "are left sum to 1 - S_ii, and the leave-one-out estimate is a weighted average, so "
                "renormalise them."),
        Mistake(_loo_plus, "check the sign: the leave-one-out residual is larger than the ordinary "
                "one, since the point no longer pulls its own prediction towards itself."),
    ),
    solution='''\
def loo_residuals(weights, y):
    s_ii = weights.diagonal(dim1=-2, dim2=-1)  # (B, m), self-weights
    fitted = (weights @ y[..., :, None])[..., 0]  # (B, m), the fit f_i
    return (y - fitted) / (1 - s_ii)  # (B, m)


# The same residuals by refitting m times, each time without one point:
from companion.kernel_regression import kernel_weights, nadaraya_watson

g = torch.Generator().manual_seed(0)
x = torch.rand(12, generator=g, dtype=torch.float64) * 4
y = torch.randn(12, generator=g, dtype=torch.float64)
refit = torch.stack([
    y[i] - nadaraya_watson(x[i:i + 1], torch.cat([x[:i], x[i + 1:]]),
                           torch.cat([y[:i], y[i + 1:]]), "gaussian",
                           0.5)[0][0]
    for i in range(len(x))
])
weights = kernel_weights(x, x, "gaussian", 0.5)  # (m, m), no mask
torch.testing.assert_close(loo_residuals(weights, y), refit)
''',
    solution_answer="loo_residuals",
    solution_text=r"""
Write $K_{ij} = K\big((x_i - x_j)/\ell\big)$ and $S_{ij} = K_{ij} / \sum_{j'} K_{ij'}$, so that
the fit with every point is $f_i = \sum_j S_{ij} y_j$. Leaving point $i$ out removes the term
$j = i$ from numerator and denominator of {eq}`eq-nadaraya-watson`; dividing both by
$\sum_{j'} K_{ij'}$ turns them into sums of $S_{ij}$:

$$
f_{-i}(x_i) = \frac{\sum_{j \ne i} K_{ij}\, y_j}{\sum_{j' \ne i} K_{ij'}}
= \frac{\sum_{j \ne i} S_{ij}\, y_j}{1 - S_{ii}} = \frac{f_i - S_{ii}\, y_i}{1 - S_{ii}} .
$$

Then
$y_i - f_{-i}(x_i) = \big(y_i(1 - S_{ii}) - f_i + S_{ii} y_i\big) / (1 - S_{ii})
= (y_i - f_i) / (1 - S_{ii})$.
One fit gives all $m$ leave-one-out residuals, and the mean of their squares is the loss
{eq}`eq-loo`. As $\ell \to 0$ the self-weight $S_{ii} \to 1$: the ordinary residual goes to
zero, but the divisor $1 - S_{ii}$ goes to zero with it, which is why the leave-one-out loss
does not reward a vanishing width. The code checks the formula against refitting $m$ times.
""",
))


# ---------------------------------------------------------------- the bias to second order
def _bias_reference(x, ell):
    """ell^2 (f''/2 + f' p'/p) for f = sin and the design density p = N(0, 1)."""
    return ell**2 * (-torch.sin(x) / 2 - x * torch.cos(x))


def _bias_cases():
    g = torch.Generator().manual_seed(404)
    cases = [(torch.linspace(-2.5, 2.5, 11, dtype=torch.float64), 0.1)]
    cases.append(((torch.rand(3, 4, generator=g, dtype=torch.float64) - 0.5) * 5, 0.05))
    cases.append((torch.tensor([0.0, 0.7, -1.3, 2.0], dtype=torch.float64), 0.3))
    return cases


register(FunctionExercise(
    id="kernel_regression/smoothing-bias",
    title="The bias of the estimator to second order",
    reference=_bias_reference,
    cases=_bias_cases,
    rtol=1e-6,
    atol=1e-10,
    mistakes=(
        Mistake(lambda x, ell: -ell**2 * torch.sin(x) / 2, "you have the curvature term f''/2; the "
                "denominator of eq-nadaraya-watson also varies with x when the inputs are not "
                "uniform. Expand numerator and denominator both, to order ell^2."),
        Mistake(lambda x, ell: ell**2 * (-torch.sin(x) - x * torch.cos(x)), "the Taylor term of "
                "second order carries a factor 1/2: f(x + ell v) = f + ell v f' + ell^2 v^2 f''/2 + ..."),
        Mistake(lambda x, ell: ell**2 * (-torch.sin(x) / 2 + x * torch.cos(x)), "check the sign of "
                "p'/p for the standard normal density: p'(x) = -x p(x)."),
        Mistake(lambda x, ell: ell * (-torch.sin(x) / 2 - x * torch.cos(x)), "the first-order terms "
                "vanish because the kernel is symmetric; the bias is of order ell^2, not ell."),
    ),
    solution='''\
def smoothing_bias(x, ell):
    # ell^2 (f''/2 + f' p'/p), with f = sin and p'/p = -x
    return ell**2 * (-torch.sin(x) / 2 - x * torch.cos(x))


# Against the exact bias, by quadrature: the rest shrinks like ell^4.
u = torch.linspace(-9, 9, 36001, dtype=torch.float64)  # quadrature grid
x = torch.linspace(-2, 2, 9, dtype=torch.float64)


def exact_bias(ell):
    # K((x - u) / ell) p(u), up to constants that cancel
    k = torch.exp(-((x[:, None] - u) ** 2) / (2 * ell**2) - u**2 / 2)
    f_bar = torch.trapezoid(k * torch.sin(u), u) / torch.trapezoid(k, u)
    return f_bar - torch.sin(x)


remainders = [(exact_bias(ell) - smoothing_bias(x, ell)).abs().max()
              for ell in (0.2, 0.1)]
remainders = [r.item() for r in remainders]
ratio = remainders[0] / remainders[1]
print(f"largest remainder: {remainders[0]:.2e} at ell = 0.2, "
      f"{remainders[1]:.2e} at ell = 0.1 (ratio {ratio:.1f})")
assert 12 < ratio < 20  # fourth order: 2^4 = 16
''',
    solution_answer="smoothing_bias",
    solution_text=r"""
With infinitely many training inputs drawn from the density $p$, the sums of
{eq}`eq-nadaraya-watson` become integrals. Substitute $u = x + \ell v$:

$$
\bar f_\ell(x) = \frac{\int K(v)\, f(x + \ell v)\, p(x + \ell v)\, dv}{\int K(v)\, p(x + \ell v)\, dv} .
$$

Expand $g(x + \ell v) = g + \ell v g' + \tfrac12 \ell^2 v^2 g'' + O(\ell^3)$ for $g = fp$ and
$g = p$. The terms in $v$ vanish because $K$ is symmetric, and
$\mu_2 = \int v^2 K(v)\,dv / \int K(v)\,dv$ is $1$ for the Gaussian kernel:

$$
\bar f_\ell(x) = \frac{fp + \tfrac12 \ell^2 (fp)''}{p + \tfrac12 \ell^2 p''} + O(\ell^4)
= f + \ell^2\Big(\frac{f''}{2} + \frac{f'\, p'}{p}\Big) + O(\ell^4) ,
$$

using $(fp)'' = f''p + 2f'p' + fp''$. (The odd terms of order $\ell^3$ vanish too, so the
remainder is of order $\ell^4$.) The first term is the curvature bias: averaging over a curve
that bends misses its peaks. The second appears when the inputs are denser on one side of $x$
than the other: more neighbours come from that side and pull the average towards their targets.
For $f = \sin$ and $p = \mathcal{N}(0, 1)$, $p'/p = -x$, so the bias is
$\ell^2\big(-\tfrac12 \sin x - x \cos x\big)$. The code checks it against the exact bias,
computed by quadrature: halving $\ell$ divides what the formula leaves out by about $16$.
""",
))


# ---------------------------------------------------------------- Epanechnikov weights
def _epa_reference(x_query, x_train, width):
    return kernel_weights(x_query, x_train, "epanechnikov", width)  # (B, n, m)


def _epa_cases():
    g = torch.Generator().manual_seed(202)
    cases = [(torch.rand(2, 4, generator=g) * 4, torch.rand(2, 6, generator=g) * 4, 1.5)]
    x_train = torch.tensor([[0.0, 1.0, 2.0, 6.0]])
    # the second query has no training point within one width: its row must be all zeros
    cases.append((torch.tensor([[0.5, 4.0, 6.2]]), x_train, 0.8))
    cases.append((torch.tensor([[0.1, 1.9], [10.0, 2.0]]),
                  torch.tensor([[0.0, 1.0, 2.0], [0.0, 2.5, 3.0]]), 1.2))
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
        Mistake(_epa_naive, "a query with no training point within one width has kernel values "
                "that are all zero, and 0/0 is NaN. Divide by the sum only where it is positive "
                "(torch.where(total > 0, total, 1)) so that such a row stays all zeros."),
        Mistake(_epa_no_clamp, "the Epanechnikov kernel is max(0, 1 - u^2): without the max, points "
                "outside the window get negative weights."),
        Mistake(_epa_boxcar, "that is the boxcar kernel (equal weights inside the window); the "
                "Epanechnikov kernel weights a point by 1 - u^2, more the closer it is."),
        Mistake(_epa_not_scaled, "scale the distance by the width first: u = (x - x_j) / ell."),
    ),
    solution='''\
def my_epanechnikov_weights(x_query, x_train, width):
    d = x_query[..., :, None] - x_train[..., None, :]  # (B, n, m)
    k = (1 - (d / width) ** 2).clamp_min(0)  # (B, n, m)
    total = k.sum(-1, keepdim=True)  # (B, n, 1)
    return k / torch.where(total > 0, total, torch.ones_like(total))


x_j = torch.tensor([[0.0, 1.0, 2.0]])
w = my_epanechnikov_weights(torch.tensor([[0.5, 9.0]]), x_j, 0.8)
assert (w[0, 1] == 0).all()  # 9.0 has an empty window
assert not w.isnan().any()
''',
    solution_answer="my_epanechnikov_weights",
    solution_text=r"""
The kernel values $\max(0, 1 - u^2)$ of a row are all zero exactly when no training input lies
within $\ell$ of the query; their sum is then $0$. Dividing by the sum only where it is positive
(and by $1$ elsewhere) leaves such a row all zeros, the book's convention for a query with
nothing to attend to, and changes nothing in the other rows.
""",
))


# ---------------------------------------------------------------- the limits of the width
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
    explanation=("The weights are a softmax of -(x - x_j)^2 / (2 ell^2). As ell -> 0 every score "
                 "goes to -infinity, the nearest point's most slowly: the ratio of any other "
                 "weight to the nearest one is exp(-(d_j^2 - d_min^2) / (2 ell^2)) -> 0. The "
                 "estimator becomes 1-nearest-neighbour regression, a hard lookup."),
    mistakes=(
        Mistake("b", "that is the other limit, ell -> infinity, where all scores become equal."),
        Mistake("c", "the kernel values do go to zero, but the weights are normalised: divide by "
                "their sum and look at the ratio of two weights."),
        Mistake("d", "mathematically the ratio has a limit; look at weight_j / weight_nearest. "
                "(Numerically, a softmax that subtracts the largest score never divides 0 by 0.)"),
    ),
    solution='''\
from companion.kernel_regression import nadaraya_watson

answer = "a"
x_j, y_j = torch.tensor([0.0, 1.0, 3.0]), torch.tensor([1.0, 3.0, 2.0])
near, _ = nadaraya_watson(torch.tensor([1.4]), x_j, y_j, "gaussian",
                          1e-3)
assert near.item() == y_j[1].item()  # x_j = 1 is nearest to 1.4
''',
    solution_text=r"""
The ratio of two weights is
$\alpha(x, x_j) / \alpha(x, x_k) = \exp\big(-(d_j^2 - d_k^2) / (2\ell^2)\big)$ with
$d_j = |x - x_j|$. When $x_k$ is the nearest point, $d_j^2 - d_k^2 > 0$ for every other $j$, and
the ratio goes to $0$ as $\ell \to 0$: all the weight ends on the nearest point, answer (a),
nearest-neighbour regression. Answer (b) is the opposite limit, $\ell \to \infty$, and (d) does
not happen, because the *ratios* of the weights have a limit even though each kernel value goes
to zero.
""",
))


# ---------------------------------------------------------------- ablation: no mask
def _collapsed_width():
    from .. import experiments

    return experiments.run("nadaraya-watson", progress=False, leave_one_out=False).metrics["learned_width"]


register(ValueExercise(
    id="kernel_regression/no-mask-ablation",
    title="Training the width without the mask",
    expected=_collapsed_width,
    rtol=0.25,  # a range: a faithful re-run of the ablation lands well inside it
    atol=1e-6,
    mistakes=(
        Mistake(1.0, "that is the width before training: take the Adam steps first."),
        Mistake(0.0, "the width is e^theta, which never reaches 0: report the width at which "
                "the training stops, model.width.item()."),
    ),
    solution='''\
from companion import experiments
from companion.kernel_regression import NadarayaWatson
from companion.tasks.regression import make_data

config = experiments.config_of("nadaraya-watson")
x_train, y_train, x_test, y_test = make_data(config)
model = NadarayaWatson(x_train, y_train, width=config.init_width)
optimiser = torch.optim.Adam(model.parameters(), lr=config.lr)
for step in range(config.steps):
    prediction, _ = model(x_train)  # no mask: each point sees itself
    loss = ((prediction - y_train) ** 2).mean()
    optimiser.zero_grad()
    loss.backward()
    optimiser.step()
answer = model.width.item()

masked = experiments.run("nadaraya-watson", progress=False)
with torch.no_grad():
    test_mse = ((model(x_test)[0] - y_test) ** 2).mean().item()
print(f"without the mask: width {answer:.4f}, "
      f"training MSE {loss.item():.3f}, test MSE {test_mse:.3f}")
print(f"with the mask:    width {masked.metrics['learned_width']:.4f}, "
      f"test MSE {masked.metrics['test_mse']:.3f}")
# The width collapses, and the test error grows:
assert answer < 0.2 * masked.metrics["learned_width"]
assert test_mse > 1.3 * masked.metrics["test_mse"]
''',
    solution_text=r"""
Without the mask the training error is minimised by a vanishing width: each query's nearest
key is itself, at distance $0$, and as $\ell \to 0$ its weight on itself goes to $1$ and its
prediction to its own target. Gradient descent follows that slope until the self-weight is so
close to $1$ that the gradient vanishes. The width it stops at is a nearest-neighbour estimator
in disguise, and its test error is that of interpolating the noise.
""",
))
