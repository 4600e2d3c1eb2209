"""The references of the chapter's derivation exercises against independent computations:
autograd for the two gradients (which the checker forbids the reader), sampling for the
moments of a dot product. tests/test_exercises.py then checks each reference against the
checker and the typical mistakes."""

import torch

from companion.exercises import load_all
from companion.exercises.scoring_softmax import (
    _entropy_gradient,
    _entropy_of_scores,
    _jac_cases,
    _entropy_cases,
    _masked_jacobian,
    _moments_cases,
    _score_moments,
)
from companion.softmax import masked_softmax

REGISTRY = load_all()


def test_masked_jacobian_reference_is_autograd():
    for s, mask, tau in _jac_cases():
        expected = torch.autograd.functional.jacobian(lambda x: masked_softmax(x / tau, mask), s)
        torch.testing.assert_close(_masked_jacobian(s, mask, tau), expected)
    # blocked rows and columns are zero, a fully masked row gives the zero matrix
    s, mask, tau = _jac_cases()[1]
    J = _masked_jacobian(s, mask, tau)
    assert (J[~mask] == 0).all() and (J[:, ~mask] == 0).all()
    s, mask, tau = _jac_cases()[3]
    assert not mask.any() and (_masked_jacobian(s, mask, tau) == 0).all()


def test_entropy_gradient_reference_is_autograd():
    for s, tau in _entropy_cases():
        x = s.clone().requires_grad_()
        _entropy_of_scores(x, tau).sum().backward()
        torch.testing.assert_close(_entropy_gradient(s, tau), x.grad)
        # shift invariance: the components sum to zero
        torch.testing.assert_close(_entropy_gradient(s, tau).sum(-1), torch.zeros(s.shape[:-1], dtype=s.dtype))


def test_score_moments_reference_matches_sampling():
    g = torch.Generator().manual_seed(11)
    for mu_q, var_q, mu_k, var_k in _moments_cases():
        q = mu_q + var_q.sqrt() * torch.randn(400_000, len(mu_q), generator=g, dtype=torch.float64)
        k = mu_k + var_k.sqrt() * torch.randn(400_000, len(mu_k), generator=g, dtype=torch.float64)
        scores = (q * k).sum(-1)  # (400000,)
        mean, variance = _score_moments(mu_q, var_q, mu_k, var_k)
        assert abs(scores.mean() - mean) < 4 * (variance / len(scores)).sqrt()
        assert abs(scores.var() / variance - 1) < 0.02
    # zero means, unit variances: eq-dot-variance
    ones, zeros = torch.ones(64, dtype=torch.float64), torch.zeros(64, dtype=torch.float64)
    mean, variance = _score_moments(zeros, ones, zeros, ones)
    assert mean == 0 and variance == 64


def test_derivation_exercises_forbid_what_they_say():
    assert REGISTRY["scoring_softmax/masked-softmax"].forbid == ("softmax",)
    assert REGISTRY["scoring_softmax/masked-softmax-jacobian"].forbid == ("autograd",)
    assert REGISTRY["scoring_softmax/entropy-gradient"].forbid == ("autograd",)
    by_autograd = lambda s, mask, tau: torch.autograd.functional.jacobian(  # noqa: E731
        lambda x: masked_softmax(x / tau, mask), s)
    feedback = REGISTRY["scoring_softmax/masked-softmax-jacobian"].check(by_autograd)
    assert not feedback and "asks you not to use" in feedback.message
