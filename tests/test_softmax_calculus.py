"""Temperature softmax, entropy, the softmax Jacobian and the attention backward pass,
each against torch.autograd or a direct computation."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.attention import scaled_dot_product_attention
from companion.masks import causal_mask
from companion.softmax_calculus import entropy, sdpa_backward, sdpa_query_jacobian, softmax_jacobian, temperature_softmax


# --- temperature ---------------------------------------------------------------------------

def test_temperature_one_is_the_softmax_and_scaling_commutes():
    s = torch.randn(3, 5, dtype=torch.float64)
    torch.testing.assert_close(temperature_softmax(s), torch.softmax(s, -1))
    torch.testing.assert_close(temperature_softmax(s, 2.5), torch.softmax(s / 2.5, -1))
    torch.testing.assert_close(temperature_softmax(s, 0.5, dim=0), torch.softmax(s / 0.5, 0))


def test_temperature_limits():
    s = torch.tensor([1.0, 3.0, -2.0, 2.9], dtype=torch.float64)
    torch.testing.assert_close(temperature_softmax(s, 1e-4), torch.tensor([0.0, 1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(temperature_softmax(s, 1e8), torch.full((4,), 0.25, dtype=torch.float64))
    # a tie at the top splits the weight evenly in the zero-temperature limit
    tie = torch.tensor([2.0, 0.0, 2.0])
    torch.testing.assert_close(temperature_softmax(tie, 1e-3), torch.tensor([0.5, 0.0, 0.5]))


def test_temperature_with_mask_and_entropy_monotone():
    s = torch.randn(2, 6, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    mask = torch.tensor([[True, True, False, True, True, True], [False] * 6])
    w = temperature_softmax(s, 0.7, mask)
    assert (w[0, 2] == 0) and (w[1] == 0).all()
    torch.testing.assert_close(w[0].sum(), torch.tensor(1.0, dtype=torch.float64))
    temps = [0.05, 0.2, 0.5, 1.0, 2.0, 10.0, 100.0]
    h = [entropy(temperature_softmax(s[0], t)).item() for t in temps]
    assert all(a < b for a, b in zip(h, h[1:])), h
    assert h[-1] < math.log(6) and h[-1] > math.log(6) - 0.01


@pytest.mark.parametrize("bad", [0, -1.0, float("inf"), float("nan")])
def test_temperature_rejects_non_positive(bad):
    with pytest.raises(ValueError, match="temperature must be positive and finite"):
        temperature_softmax(torch.randn(3), bad)


def test_temperature_rejects_non_numbers():
    with pytest.raises(TypeError, match="temperature must be a number"):
        temperature_softmax(torch.randn(3), torch.tensor(1.0))
    with pytest.raises(TypeError, match="temperature must be a number"):
        temperature_softmax(torch.randn(3), True)
    with pytest.raises(TypeError, match="scores must be a torch.Tensor"):
        temperature_softmax([1.0, 2.0], 1.0)


# --- entropy -------------------------------------------------------------------------------

def test_entropy_direct():
    p = torch.tensor([[0.5, 0.25, 0.25, 0.0], [1.0, 0.0, 0.0, 0.0], [0.25] * 4], dtype=torch.float64)
    expected = torch.tensor([1.5 * math.log(2), 0.0, math.log(4)], dtype=torch.float64)
    torch.testing.assert_close(entropy(p), expected)
    torch.testing.assert_close(entropy(p.T, dim=0), expected)
    assert entropy(torch.zeros(3)).item() == 0.0  # a fully masked row


def test_entropy_rejects_bad_weights():
    with pytest.raises(ValueError, match="non-negative"):
        entropy(torch.tensor([0.5, -0.1, 0.6]))
    with pytest.raises(ValueError, match="NaN"):
        entropy(torch.tensor([0.5, float("nan")]))
    with pytest.raises(ValueError, match="inf"):
        entropy(torch.tensor([0.5, float("inf")]))
    with pytest.raises(ValueError, match="dim=1 is out of range"):
        entropy(torch.tensor([0.5, 0.5]), dim=1)
    with pytest.raises(TypeError, match="floating dtype"):
        entropy(torch.tensor([1, 0]))


# --- softmax Jacobian ----------------------------------------------------------------------

@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 8), scale=st.sampled_from([0.1, 1.0, 10.0]), seed=st.integers(0, 10_000))
def test_jacobian_matches_autograd_and_has_its_properties(n, scale, seed):
    s = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64) * scale
    J = softmax_jacobian(s)
    torch.testing.assert_close(J, torch.autograd.functional.jacobian(lambda x: torch.softmax(x, -1), s))
    torch.testing.assert_close(J, J.T)  # symmetric
    torch.testing.assert_close(J.sum(-1), torch.zeros(n, dtype=torch.float64))  # rows sum to zero
    assert torch.linalg.eigvalsh(J).min() > -1e-12  # positive semi-definite
    # rank n - 1 (the constant vector spans the null space) unless the softmax has saturated
    if n > 1 and scale <= 1.0:
        # rtol far above rounding (the default counted a 7e-17 singular value, seed 48) and far
        # below the smallest non-zero eigenvalue of an unsaturated softmax
        assert torch.linalg.matrix_rank(J, rtol=1e-8).item() == n - 1


def test_jacobian_batched():
    s = torch.randn(2, 3, 5, dtype=torch.float64)
    J = softmax_jacobian(s)
    assert J.shape == (2, 3, 5, 5)
    torch.testing.assert_close(J[1, 2], torch.autograd.functional.jacobian(lambda x: torch.softmax(x, -1), s[1, 2]))


def test_jacobian_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 1 dimensions"):
        softmax_jacobian(torch.tensor(1.0))
    with pytest.raises(ValueError, match="NaN"):
        softmax_jacobian(torch.tensor([1.0, float("nan")]))


# --- attention derivatives -----------------------------------------------------------------

def _qkv(B=2, Lq=3, Lk=5, d=4, dv=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (torch.randn(B, Lq, d, generator=g, dtype=torch.float64),
            torch.randn(B, Lk, d, generator=g, dtype=torch.float64),
            torch.randn(B, Lk, dv, generator=g, dtype=torch.float64))


def test_query_jacobian_matches_autograd():
    q, k, v = _qkv()
    J = sdpa_query_jacobian(q, k, v)
    assert J.shape == (2, 3, 6, 4)
    for b in range(2):
        for i in range(3):
            def out(x):
                return scaled_dot_product_attention(x[None], k[b], v[b])[0][0]
            torch.testing.assert_close(J[b, i], torch.autograd.functional.jacobian(out, q[b, i]))


def test_query_jacobian_with_mask():
    q, k, v = _qkv(B=1, Lq=4, Lk=4)
    mask = causal_mask(4)
    J = sdpa_query_jacobian(q, k, v, mask)
    # the first query sees only the first key: its output is v_0 whatever q is
    torch.testing.assert_close(J[0, 0], torch.zeros(6, 4, dtype=torch.float64))
    for i in range(4):
        def out(x):
            return scaled_dot_product_attention(x[None], k[0], v[0], mask[i : i + 1])[0][0]
        torch.testing.assert_close(J[0, i], torch.autograd.functional.jacobian(out, q[0, i]))


@pytest.mark.parametrize("masked", [False, True])
def test_backward_matches_autograd(masked):
    q, k, v = _qkv(seed=3)
    mask = torch.rand(2, 3, 5, generator=torch.Generator().manual_seed(5)) > 0.3 if masked else None
    if masked:
        mask[0, 1] = False  # a fully masked query: zero output, zero gradients
    grad_out = torch.randn(2, 3, 6, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (q, k, v)]
    out, _ = scaled_dot_product_attention(*leaves, mask)
    out.backward(grad_out)
    for ours, leaf in zip(sdpa_backward(q, k, v, grad_out, mask), leaves):
        torch.testing.assert_close(ours, leaf.grad)


def test_attention_inputs_rejected_with_clear_messages():
    q, k, v = _qkv()
    with pytest.raises(ValueError, match="same feature size d_k"):
        sdpa_query_jacobian(q, k[..., :3], v)
    with pytest.raises(ValueError, match="same length"):
        sdpa_backward(q, k, v[:, :4], torch.zeros(2, 3, 6, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"grad_output must have the output's shape \(2, 3, 6\)"):
        sdpa_backward(q, k, v, torch.zeros(2, 3, 5, dtype=torch.float64))
    with pytest.raises(TypeError, match="dtypes must match"):
        sdpa_query_jacobian(q.float(), k, v)
    with pytest.raises(TypeError, match="dtypes must match, got value: torch.float64, grad_output: torch.float32"):
        sdpa_backward(q, k, v, torch.zeros(2, 3, 6))
    with pytest.raises(TypeError, match="value must be a torch.Tensor"):
        sdpa_backward(q, k, v.numpy(), torch.zeros(2, 3, 6))
