"""The closed-form references of the chapter "Global attention" exercises, against autograd.

The generic tests (tests/test_exercises.py) check that each reference passes its own checker and
each typical mistake fails; here each derivation's reference is checked against an independent
computation, so that a wrong closed form cannot hide behind its own checker.
"""

import pytest
import torch

from companion.exercises import load_all

REGISTRY = load_all()
jacobian = torch.autograd.functional.jacobian


def _cases(name):
    return REGISTRY[f"global_attention/{name}"].cases()


@pytest.mark.parametrize("case", range(4))
def test_score_gradient_reference_is_the_autograd_jacobian(case):
    scores, H = _cases("score-gradient")[case]
    expected = jacobian(lambda s: torch.softmax(s, -1) @ H, scores)  # (d, S)
    torch.testing.assert_close(REGISTRY["global_attention/score-gradient"].reference(scores, H), expected)


@pytest.mark.parametrize("case", range(4))
def test_additive_query_gradient_reference_is_the_autograd_jacobian(case):
    z, H, W_a, U_a, v_a = _cases("additive-query-gradient")[case]
    expected = jacobian(lambda q: torch.tanh(H @ U_a.T + W_a @ q) @ v_a, z)  # (S, d)
    got = REGISTRY["global_attention/additive-query-gradient"].reference(z, H, W_a, U_a, v_a)
    torch.testing.assert_close(got, expected)


def _gated_last_state(u, w, v, x):
    h = torch.zeros((), dtype=x.dtype)
    for x_k in x:
        h = u * h + (1 - u) * torch.tanh(w * h + v * x_k)
    return h


@pytest.mark.parametrize("case", range(5))
def test_gated_gradient_reference_is_the_autograd_gradient(case):
    u, w, v, x, j = _cases("gated-gradient")[case]
    expected = jacobian(lambda xs: _gated_last_state(u, w, v, xs), x)[j]
    torch.testing.assert_close(REGISTRY["global_attention/gated-gradient"].reference(u, w, v, x, j), expected)


def test_gated_gradient_does_not_decay_when_the_gate_copies():
    """With u near 1 the step derivative u + (1 - u) w (1 - n^2) is near 1 whatever w: the
    product of the 29 step factors from x_1 to h_30 (the gradient divided by its first factor,
    the gradient for a one-word input) stays above 0.97; without the gate it is below 0.2^29."""
    x = torch.randn(30, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    reference = REGISTRY["global_attention/gated-gradient"].reference
    for u, low, high in ((0.999, 0.97, 1.0), (0.0, 0.0, 0.2**29)):
        chain = reference(u, 0.2, 1.0, x, 0) / reference(u, 0.2, 1.0, x[:1], 0)
        assert low < chain.item() <= high, (u, chain)
