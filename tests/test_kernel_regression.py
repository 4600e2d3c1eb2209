"""Nadaraya-Watson kernel regression (chapter 1), each piece against a direct computation."""

import math

import numpy as np
import pytest
import torch

from companion.attention import masked_softmax, scaled_dot_product_attention
from companion.kernel_regression import (
    KERNELS,
    NadarayaWatson,
    boxcar_kernel,
    epanechnikov_kernel,
    gaussian_kernel,
    kernel_weights,
    laplace_kernel,
    nadaraya_watson,
    triangular_kernel,
)

# The kernels written out for one scalar u, independently of the module.
SCALAR_KERNELS = {
    "gaussian": lambda u: math.exp(-u * u / 2),
    "boxcar": lambda u: 1.0 if abs(u) <= 1 else 0.0,
    "epanechnikov": lambda u: max(0.0, 1 - u * u),
    "triangular": lambda u: max(0.0, 1 - abs(u)),
    "laplace": lambda u: math.exp(-abs(u)),
}


def loop_nadaraya_watson(xq, xt, yt, kernel, width, mask=None):
    """Eq. (1.nw) with Python loops: one query, one training point at a time."""
    n, m = len(xq), len(xt)
    w = np.zeros((n, m))
    pred = np.zeros(n)
    for i in range(n):
        k = [SCALAR_KERNELS[kernel]((xq[i] - xt[j]) / width) * (1 if mask is None else mask[i][j]) for j in range(m)]
        total = sum(k)
        if total > 0:
            w[i] = [kj / total for kj in k]
            pred[i] = sum(w[i, j] * yt[j] for j in range(m))
    return pred, w


def test_kernels_pointwise():
    u = torch.linspace(-3, 3, 61, dtype=torch.float64)
    for name, fn in (("gaussian", gaussian_kernel), ("boxcar", boxcar_kernel), ("epanechnikov", epanechnikov_kernel),
                     ("triangular", triangular_kernel), ("laplace", laplace_kernel)):
        assert KERNELS[name] is fn
        expected = torch.tensor([SCALAR_KERNELS[name](v) for v in u.tolist()], dtype=torch.float64)
        torch.testing.assert_close(fn(u), expected)
    # compact kernels vanish outside [-1, 1]; the boxcar includes its edges
    assert boxcar_kernel(torch.tensor([-1.0, 1.0, 1.0001])).tolist() == [1.0, 1.0, 0.0]
    assert (epanechnikov_kernel(torch.tensor([1.0, -2.0, 5.0])) == 0).all()


@pytest.mark.parametrize("kernel", sorted(KERNELS))
@pytest.mark.parametrize("width", [0.3, 1.0, 2.5])
def test_against_loops(kernel, width):
    g = torch.Generator().manual_seed(0)
    xq = torch.rand(9, generator=g, dtype=torch.float64) * 4
    xt = torch.rand(7, generator=g, dtype=torch.float64) * 4
    yt = torch.randn(7, generator=g, dtype=torch.float64)
    pred, w = nadaraya_watson(xq, xt, yt, kernel, width)
    exp_pred, exp_w = loop_nadaraya_watson(xq.tolist(), xt.tolist(), yt.tolist(), kernel, width)
    np.testing.assert_allclose(w.numpy(), exp_w, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(pred.numpy(), exp_pred, rtol=1e-10, atol=1e-12)


def test_with_mask_against_loops():
    g = torch.Generator().manual_seed(1)
    xq = torch.rand(5, generator=g, dtype=torch.float64)
    xt = torch.rand(6, generator=g, dtype=torch.float64)
    yt = torch.randn(6, generator=g, dtype=torch.float64)
    mask = torch.rand(5, 6, generator=g) > 0.4
    mask[2] = False  # a query that may attend to nothing
    for kernel in ("gaussian", "epanechnikov"):
        pred, w = nadaraya_watson(xq, xt, yt, kernel, 0.7, mask=mask)
        exp_pred, exp_w = loop_nadaraya_watson(xq.tolist(), xt.tolist(), yt.tolist(), kernel, 0.7, mask.int().tolist())
        np.testing.assert_allclose(w.numpy(), exp_w, atol=1e-12)
        np.testing.assert_allclose(pred.numpy(), exp_pred, atol=1e-12)
        assert (w[~mask] == 0).all() and (w[2] == 0).all() and pred[2] == 0


def test_gaussian_weights_are_a_softmax_and_scaled_dot_product_attention():
    """Eq. (1.gauss-softmax), and the same weights from attention on augmented features."""
    g = torch.Generator().manual_seed(2)
    xq, xt, yt = torch.randn(3, 4, generator=g), torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    h = 0.8
    pred, w = nadaraya_watson(xq, xt, yt, "gaussian", h)
    scores = -((xq[..., :, None] - xt[..., None, :]) ** 2) / (2 * h**2)
    torch.testing.assert_close(w, masked_softmax(scores))
    torch.testing.assert_close(w, torch.softmax(scores, -1))
    # -(q - k)^2 / 2h^2 = (q k - k^2 / 2) / h^2 + (a term of q alone, which the softmax ignores)
    q = torch.stack([xq, torch.ones_like(xq)], -1) * math.sqrt(2) / h**2  # (B, n, 2)
    k = torch.stack([xt, -xt**2 / 2], -1)  # (B, m, 2)
    out, w_sdpa = scaled_dot_product_attention(q, k, yt[..., None])
    torch.testing.assert_close(w_sdpa, w)
    torch.testing.assert_close(out[..., 0], pred)


def test_batch_axes_broadcast():
    g = torch.Generator().manual_seed(3)
    xq, xt, yt = torch.randn(2, 5, generator=g), torch.randn(7, generator=g), torch.randn(7, generator=g)
    pred, w = nadaraya_watson(xq, xt, yt, "laplace", 0.5)
    assert pred.shape == (2, 5) and w.shape == (2, 5, 7)
    for b in range(2):
        torch.testing.assert_close(pred[b], nadaraya_watson(xq[b], xt, yt, "laplace", 0.5)[0])
    widths = torch.tensor([0.1, 1.0, 10.0])[:, None, None]  # one batch entry per width
    pred, _ = nadaraya_watson(xq[0], xt, yt, "gaussian", widths)
    assert pred.shape == (3, 5)
    torch.testing.assert_close(pred[1], nadaraya_watson(xq[0], xt, yt, "gaussian", 1.0)[0])


def test_constant_targets_are_reproduced_and_rows_sum_to_one():
    x = torch.linspace(0, 3, 10)
    for kernel in KERNELS:
        pred, w = nadaraya_watson(torch.rand(20) * 3, x, torch.full((10,), 2.5), kernel, 0.7)
        torch.testing.assert_close(pred, torch.full((20,), 2.5))
        torch.testing.assert_close(w.sum(-1), torch.ones(20))
        assert (w >= 0).all()


def test_width_limits():
    xt = torch.tensor([0.0, 1.0, 3.0], dtype=torch.float64)
    yt = torch.tensor([1.0, 3.0, 2.0], dtype=torch.float64)
    xq = torch.tensor([0.4, 1.9, 2.2, 50.0], dtype=torch.float64)
    narrow, _ = nadaraya_watson(xq, xt, yt, "gaussian", 1e-3)
    torch.testing.assert_close(narrow, torch.tensor([1.0, 3.0, 2.0, 2.0], dtype=torch.float64))  # nearest neighbour
    wide, _ = nadaraya_watson(xq, xt, yt, "gaussian", 1e6)
    torch.testing.assert_close(wide, torch.full((4,), 2.0, dtype=torch.float64))  # the mean


def test_far_query_gets_nearest_neighbour_not_nan():
    """exp(-50^2 / 2) is 0 in floating point; the softmax form still gives the right weights."""
    pred, w = nadaraya_watson(torch.tensor([50.0, -60.0]), torch.tensor([0.0, 1.0]), torch.tensor([5.0, 7.0]), "gaussian", 1.0)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(pred, torch.tensor([7.0, 5.0]))


@pytest.mark.parametrize("kernel", ["boxcar", "epanechnikov", "triangular"])
def test_compact_kernel_with_empty_window_gives_zeros_not_nan(kernel):
    xt = torch.tensor([0.0, 1.0, 2.0], requires_grad=False)
    width = torch.tensor(0.4, requires_grad=True)
    pred, w = nadaraya_watson(torch.tensor([0.1, 5.0]), xt, torch.tensor([1.0, 2.0, 3.0]), kernel, width)
    assert torch.isfinite(w).all() and torch.isfinite(pred).all()
    assert (w[1] == 0).all() and pred[1] == 0
    torch.testing.assert_close(w[0].sum(), torch.tensor(1.0))
    if kernel != "boxcar":  # the boxcar's weights are piecewise constant in the width
        pred.sum().backward()
        assert torch.isfinite(width.grad)


def test_custom_kernel_function():
    cosine = lambda u: torch.where(u.abs() <= 1, torch.cos(math.pi * u / 2), torch.zeros_like(u))
    xq, xt, yt = torch.tensor([0.2, 0.9]), torch.tensor([0.0, 0.5, 1.0]), torch.tensor([1.0, 2.0, 4.0])
    _, w = nadaraya_watson(xq, xt, yt, cosine, 0.6)
    k = cosine((xq[:, None] - xt[None, :]) / 0.6)
    torch.testing.assert_close(w, k / k.sum(-1, keepdim=True))
    with pytest.raises(ValueError, match="negative or NaN"):
        kernel_weights(xq, xt, lambda u: -u.abs(), 1.0)
    with pytest.raises(ValueError, match="shape of its input"):
        kernel_weights(xq, xt, lambda u: u.sum(), 1.0)


@pytest.mark.parametrize("width", [0.0, -1.0, float("inf"), float("nan")])
def test_bad_widths_are_rejected(width):
    x = torch.rand(4)
    with pytest.raises(ValueError, match="width must be positive"):
        nadaraya_watson(x, x, x, "gaussian", width)
    with pytest.raises(ValueError, match="width must be positive"):
        nadaraya_watson(x, x, x, "gaussian", torch.tensor(width))


def test_bad_inputs_are_rejected():
    x = torch.rand(4)
    with pytest.raises(ValueError, match="kernel must be one of"):
        nadaraya_watson(x, x, x, "cauchy", 1.0)
    with pytest.raises(ValueError, match="y_train must have the shape of x_train"):
        nadaraya_watson(x, x, torch.rand(5), "gaussian", 1.0)
    with pytest.raises(TypeError, match="x_query must have a floating dtype"):
        nadaraya_watson(torch.arange(3), x, x, "gaussian", 1.0)
    with pytest.raises(TypeError, match="dtypes must match"):
        nadaraya_watson(x.double(), x, x, "gaussian", 1.0)
    with pytest.raises(TypeError, match="width must be a positive number or tensor"):
        nadaraya_watson(x, x, x, "gaussian", "wide")
    with pytest.raises(TypeError, match="width must have the inputs' dtype"):
        nadaraya_watson(x, x, x, "gaussian", torch.tensor(1.0, dtype=torch.float64))
    with pytest.raises(TypeError, match="x_train must be a torch.Tensor"):
        nadaraya_watson(x, [0.0, 1.0], x, "gaussian", 1.0)
    with pytest.raises(ValueError, match="x_query must have at least 1 dimensions"):
        nadaraya_watson(torch.tensor(1.0), x, x, "gaussian", 1.0)
    with pytest.raises(ValueError, match="batch dimensions do not broadcast"):
        nadaraya_watson(torch.rand(2, 3), torch.rand(3, 4), torch.rand(3, 4), "gaussian", 1.0)
    with pytest.raises(ValueError, match="does not broadcast to the scores' shape"):
        nadaraya_watson(x, x, x, "gaussian", 1.0, mask=torch.ones(3, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        nadaraya_watson(x, x, x, "gaussian", 1.0, mask=torch.ones(4, 4))
    with pytest.raises(ValueError, match="x_train contains NaN"):
        nadaraya_watson(x, torch.tensor([0.0, float("nan"), 1.0, 2.0]), x, "gaussian", 1.0)


def test_module_width_is_positive_and_learns():
    x = torch.linspace(0, 1, 5)
    model = NadarayaWatson(x, 2 * x, width=0.5)
    torch.testing.assert_close(model.width, torch.tensor(0.5))
    with torch.no_grad():
        model.log_width.fill_(-50.0)
    assert model.width > 0
    pred, w = model(torch.tensor([0.1, 0.7]))
    assert pred.shape == (2,) and w.shape == (2, 5)
    mask = model.leave_one_out_mask()
    assert mask.shape == (5, 5) and not mask.diagonal().any() and mask.sum() == 20
    _, w = model(x, mask=mask)
    assert (w.diagonal() == 0).all()
    assert "width=" in repr(model)
    with pytest.raises(ValueError, match="must have one shape"):
        NadarayaWatson(x, torch.rand(4))
    with pytest.raises(ValueError, match="width must be positive"):
        NadarayaWatson(x, x, width=0.0)
    with pytest.raises(ValueError, match="kernel must be one of"):
        NadarayaWatson(x, x, kernel="nope")


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "epanechnikov", "triangular"])
def test_gradcheck_width(kernel):
    g = torch.Generator().manual_seed(4)
    xt = torch.rand(2, 6, generator=g, dtype=torch.float64) * 3
    yt = torch.randn(2, 6, generator=g, dtype=torch.float64)
    xq = torch.rand(2, 4, generator=g, dtype=torch.float64) * 3
    mask = torch.rand(4, 6, generator=g) > 0.3

    def f(log_width):
        return nadaraya_watson(xq, xt, yt, kernel, log_width.exp(), mask=mask)[0]

    assert torch.autograd.gradcheck(f, (torch.tensor(0.3, dtype=torch.float64, requires_grad=True),))


def test_module_gradcheck_matches_finite_difference_of_loo_loss():
    x = torch.linspace(0, 4, 12, dtype=torch.float64)
    y = torch.sin(x)
    model = NadarayaWatson(x, y, width=0.6)
    mask = model.leave_one_out_mask()

    def loss(log_width):
        pred, _ = nadaraya_watson(x, x, y, "gaussian", log_width.exp(), mask=mask)
        return ((pred - y) ** 2).mean()

    assert torch.autograd.gradcheck(loss, (model.log_width.detach().clone().requires_grad_(),))
    model_loss = ((model(x, mask=mask)[0] - y) ** 2).mean()
    model_loss.backward()
    eps = 1e-6
    lw = model.log_width.detach()
    fd = (loss(lw + eps) - loss(lw - eps)) / (2 * eps)
    torch.testing.assert_close(model.log_width.grad, fd)


@pytest.mark.parametrize("kernel", ["gaussian", "laplace", "triangular"])
def test_leave_one_out_mask_is_refitting_without_the_point(kernel):
    """eq-loo: the masked prediction of point i is the estimator fitted on the other m - 1
    points, and it follows from the unmasked fit as (f_i - S_ii y_i) / (1 - S_ii)."""
    g = torch.Generator().manual_seed(5)
    x = torch.rand(10, generator=g, dtype=torch.float64) * 3
    y = torch.randn(10, generator=g, dtype=torch.float64)
    loo = ~torch.eye(10, dtype=torch.bool)
    masked, _ = nadaraya_watson(x, x, y, kernel, 1.5, mask=loo)
    refit = [loop_nadaraya_watson([x[i].item()], x[loo[i]].tolist(), y[loo[i]].tolist(), kernel, 1.5)[0][0]
             for i in range(10)]
    np.testing.assert_allclose(masked.numpy(), refit, rtol=1e-10, atol=1e-12)
    fitted, S = nadaraya_watson(x, x, y, kernel, 1.5)
    s_ii = S.diagonal()
    torch.testing.assert_close(y - masked, (y - fitted) / (1 - s_ii))


def test_scaled_dot_product_is_the_gaussian_kernel_of_width_dk_to_the_quarter():
    """eq-gauss-sdpa-width: for keys of equal norm, softmax(q.k / sqrt(d_k)) is the Gaussian
    weighting of width d_k ** 0.25, and not that of another width."""
    g = torch.Generator().manual_seed(6)
    for d_k in (1, 4, 16):
        q = torch.randn(2, 3, d_k, generator=g, dtype=torch.float64)
        k = torch.randn(2, 5, d_k, generator=g, dtype=torch.float64)
        k = 0.8 * k / k.norm(dim=-1, keepdim=True)
        v = torch.randn(2, 5, 2, generator=g, dtype=torch.float64)
        sq = ((q[..., :, None, :] - k[..., None, :, :]) ** 2).sum(-1)  # (B, n, m)
        _, w = scaled_dot_product_attention(q, k, v)
        torch.testing.assert_close(w, torch.softmax(-sq / (2 * math.sqrt(d_k)), -1))
        torch.testing.assert_close(torch.nn.functional.scaled_dot_product_attention(q, k, v),
                                   torch.softmax(-sq / (2 * math.sqrt(d_k)), -1) @ v)
        assert not torch.allclose(w, torch.softmax(-sq / (2 * 2.0 * math.sqrt(d_k)), -1))
