"""companion.hard: the REINFORCE surrogate (eq-reinforce) and the Gumbel-softmax
(eq-gumbel-softmax) against exact computations on tiny categorical distributions."""

import pytest
import torch

from companion.hard import gumbel_noise, gumbel_softmax, reinforce_surrogate

THETA = torch.tensor([0.3, -1.2, 0.8, 0.0], dtype=torch.float64)
REWARD = torch.tensor([1.0, 4.0, -2.0, 0.5], dtype=torch.float64)


def exact_gradient(theta, reward):
    """grad_theta of E_{j ~ softmax(theta)}[R(j)] = sum_j p_j R_j, by autograd."""
    theta = theta.clone().requires_grad_(True)
    (torch.softmax(theta, 0) @ reward).backward()
    return theta.grad


def estimator_gradient(theta, choices, reward, baseline=None):
    """The gradient of reinforce_surrogate for a batch of sampled choices."""
    theta = theta.clone().requires_grad_(True)
    log_prob = torch.log_softmax(theta, 0)[choices]  # (N,)
    b = None if baseline is None else torch.full_like(log_prob, baseline)
    reinforce_surrogate(log_prob, reward[choices], b).backward()
    return theta.grad


@pytest.mark.parametrize("baseline", [None, 0.7, -3.0])
def test_reinforce_is_unbiased_by_enumeration(baseline):
    """Sum over every choice j of p_j times the one-sample estimate = the exact gradient."""
    p = torch.softmax(THETA, 0)
    expected = sum(p[j] * estimator_gradient(THETA, torch.tensor([j]), REWARD, baseline) for j in range(4))
    torch.testing.assert_close(expected, exact_gradient(THETA, REWARD))


def test_reinforce_batch_average_converges_to_the_exact_gradient():
    g = torch.Generator().manual_seed(0)
    choices = torch.multinomial(torch.softmax(THETA, 0), 200_000, replacement=True, generator=g)
    got = estimator_gradient(THETA, choices, REWARD)
    torch.testing.assert_close(got, exact_gradient(THETA, REWARD), atol=0.02, rtol=0)


def test_baseline_reduces_the_variance():
    """Rewards with a large common offset: without a baseline the one-sample estimates scatter
    widely; with the mean reward as baseline they do not. Measured over 2000 samples."""
    reward = REWARD + 20.0
    p = torch.softmax(THETA, 0)
    g = torch.Generator().manual_seed(1)
    choices = torch.multinomial(p, 2000, replacement=True, generator=g)
    mean_reward = float(p @ reward)
    plain = torch.stack([estimator_gradient(THETA, c.view(1), reward) for c in choices])
    based = torch.stack([estimator_gradient(THETA, c.view(1), reward, mean_reward) for c in choices])
    var_plain, var_based = plain.var(0).sum().item(), based.var(0).sum().item()
    assert var_based < 0.1 * var_plain, (var_based, var_plain)
    torch.testing.assert_close(based.mean(0), exact_gradient(THETA, reward), atol=0.15, rtol=0)


def test_reward_and_baseline_are_not_differentiated():
    log_prob = torch.tensor([-0.5, -1.0], requires_grad=True)
    reward = torch.tensor([2.0, 3.0], requires_grad=True)
    baseline = torch.tensor([1.0, 1.0], requires_grad=True)
    reinforce_surrogate(log_prob, reward, baseline).backward()
    assert reward.grad is None and baseline.grad is None
    torch.testing.assert_close(log_prob.grad, torch.tensor([0.5, 1.0]))


def test_reinforce_rejects_other_shapes_and_bad_values():
    lp = torch.zeros(4, 3)
    with pytest.raises(ValueError, match="reward"):
        reinforce_surrogate(lp, torch.zeros(4, 1))
    with pytest.raises(ValueError, match="reward"):
        reinforce_surrogate(lp, torch.zeros(3))
    with pytest.raises(ValueError, match="baseline"):
        reinforce_surrogate(lp, torch.zeros(4, 3), torch.tensor(0.0).expand(()))
    with pytest.raises(ValueError, match="baseline"):
        reinforce_surrogate(lp, torch.zeros(4, 3), torch.zeros(4))
    with pytest.raises(ValueError, match="log_prob"):
        reinforce_surrogate(torch.tensor([float("-inf")]), torch.zeros(1))
    with pytest.raises(ValueError, match="reward"):
        reinforce_surrogate(torch.zeros(2), torch.tensor([1.0, float("nan")]))
    with pytest.raises(TypeError, match="reward"):
        reinforce_surrogate(torch.zeros(2), [1.0, 2.0])
    with pytest.raises(ValueError, match="log_prob"):
        reinforce_surrogate(torch.tensor(0.0), torch.tensor(0.0))


def test_gumbel_max_frequencies_match_the_softmax():
    logits = torch.tensor([1.0, 0.0, -1.0, 2.0])
    g = torch.Generator().manual_seed(0)
    samples = gumbel_softmax(logits.expand(40_000, 4), 0.5, hard=True, generator=g)  # (N, K)
    torch.testing.assert_close(samples.mean(0), torch.softmax(logits, 0), atol=0.01, rtol=0)


def test_soft_sample_is_the_formula_with_the_generators_noise():
    logits = torch.randn(3, 5, dtype=torch.float64)
    soft = gumbel_softmax(logits, 0.7, generator=torch.Generator().manual_seed(5))
    noise = gumbel_noise((3, 5), generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    torch.testing.assert_close(soft, torch.softmax((logits + noise) / 0.7, -1))
    torch.testing.assert_close(soft.sum(-1), torch.ones(3, dtype=torch.float64))


def test_hard_and_soft_share_the_noise_and_hard_is_straight_through():
    logits = torch.randn(6, 5, requires_grad=True)
    w = torch.randn(6, 5)
    soft = gumbel_softmax(logits, 0.8, generator=torch.Generator().manual_seed(3))
    hard = gumbel_softmax(logits, 0.8, hard=True, generator=torch.Generator().manual_seed(3))
    assert torch.equal(hard.detach(), torch.nn.functional.one_hot(soft.argmax(-1), 5).float())
    assert set(hard.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(hard.detach().sum(-1), torch.ones(6))
    (g_soft,) = torch.autograd.grad((soft * w).sum(), logits)
    (g_hard,) = torch.autograd.grad((hard * w).sum(), logits)
    torch.testing.assert_close(g_hard, g_soft)


@pytest.mark.parametrize("tau", [1e-3, 1.0, 100.0])
@pytest.mark.parametrize("hard", [False, True])
def test_no_nan_for_huge_logits(tau, hard):
    logits = torch.tensor([[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], requires_grad=True)
    y = gumbel_softmax(logits, tau, hard=hard, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(y).all()
    torch.testing.assert_close(y.detach().sum(-1), torch.ones(3))
    (y * torch.arange(3.0)).sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_gumbel_noise_is_finite_even_for_u_zero(monkeypatch):
    zeros = torch.zeros  # torch.rand may return exactly 0: make it always do so
    monkeypatch.setattr(torch, "rand", lambda shape, **kw: zeros(shape, dtype=kw.get("dtype")))
    noise = gumbel_noise((4,))
    assert torch.isfinite(noise).all() and (noise < -4).all()  # very negative, not -inf
    y = gumbel_softmax(torch.zeros(4), 0.5)
    assert torch.isfinite(y).all()


@pytest.mark.parametrize("tau", [0, 0.0, -1.0, float("nan"), float("inf"), True, "1"])
def test_bad_tau(tau):
    with pytest.raises(ValueError, match="tau"):
        gumbel_softmax(torch.zeros(3), tau)


def test_bad_logits():
    with pytest.raises(ValueError, match="logits"):
        gumbel_softmax(torch.tensor(1.0), 1.0)
    with pytest.raises(ValueError, match="logits"):
        gumbel_softmax(torch.zeros(2, 0), 1.0)
    with pytest.raises(ValueError, match="logits"):
        gumbel_softmax(torch.tensor([0.0, float("nan")]), 1.0)
    with pytest.raises(TypeError, match="logits"):
        gumbel_softmax(torch.zeros(3, dtype=torch.long), 1.0)
    with pytest.raises(TypeError, match="hard"):
        gumbel_softmax(torch.zeros(3), 1.0, hard=1)
