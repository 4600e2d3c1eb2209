"""Hard (stochastic) attention: choose one location, and two ways to train the choice.

A hard-attention model samples one location ``j ~ Categorical(alpha)`` and reads only it
(Xu et al. 2015; Mnih et al. 2014). The sample has no gradient with respect to ``alpha``.

- The score-function (REINFORCE) estimator (Williams 1992) differentiates the *expected*
  reward instead:

      grad E_{j~p_theta}[R(j)] = E[(R(j) - b) grad log p_theta(j)]            (eq-reinforce)

  for any baseline ``b`` that does not depend on ``j``. :func:`reinforce_surrogate` returns a
  scalar whose autograd gradient is the batch average of the bracket.

- The Gumbel-softmax (concrete) relaxation (Jang et al. 2017; Maddison et al. 2017) writes the
  sample as ``argmax_j (l_j + g_j)`` with Gumbel noise ``g_j = -log(-log u_j)`` (the Gumbel-max
  trick) and replaces the argmax by a softmax at temperature ``tau``:

      y_j = exp((l_j + g_j) / tau) / sum_k exp((l_k + g_k) / tau)             (eq-gumbel-softmax)

  With ``hard=True`` the forward value is the one-hot argmax of the same noisy logits and the
  gradient is the soft sample's (the straight-through estimator).

Both take log-probabilities or logits; turning scores into them (with a mask) is the caller's
business.
"""

from __future__ import annotations

import math

import torch

from . import _validate


def _same_shape(x, name: str, shape: torch.Size) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.shape != shape:
        raise ValueError(f"{name} must have the shape of log_prob {tuple(shape)}, got {tuple(x.shape)} "
                         "(no broadcasting: give one value per sample)")
    if not torch.is_floating_point(x):
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    if not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or infinite values (shape {tuple(x.shape)})")
    return x


def reinforce_surrogate(log_prob: torch.Tensor, reward: torch.Tensor,
                        baseline: torch.Tensor | None = None) -> torch.Tensor:
    """A scalar whose gradient is the score-function estimator of eq-reinforce.

    ``mean((reward - baseline) * log_prob)``, with reward and baseline detached, so that its
    gradient is ``mean((R - b) grad log p(j))``, an unbiased estimate of ``grad E[R]``. To
    *maximise* the reward, minimise the negative of this value.

    Args:
        log_prob: float ``(B, ...)``, ``log p_theta(j)`` of each sampled choice.
        reward: float, the shape of ``log_prob``; the reward each choice earned.
        baseline: None (zero) or float, the shape of ``log_prob``; must not depend on the
            choice (a running mean of the reward, or a learned value of the input).
    """
    _validate.tensor(log_prob, "log_prob", min_dim=1)
    if not torch.isfinite(log_prob).all():
        raise ValueError(f"log_prob contains NaN or infinite values (shape {tuple(log_prob.shape)}); "
                         "a sampled choice must have positive probability")
    _same_shape(reward, "reward", log_prob.shape)
    advantage = reward.detach().to(log_prob.dtype)  # (B, ...)
    if baseline is not None:
        _same_shape(baseline, "baseline", log_prob.shape)
        advantage = advantage - baseline.detach().to(log_prob.dtype)
    return (advantage * log_prob).mean()


def gumbel_noise(shape, *, generator: torch.Generator | None = None, dtype=torch.float32,
                 device=None) -> torch.Tensor:
    """Standard Gumbel noise ``-log(-log u)``, ``u ~ Uniform(0, 1)``, never infinite."""
    u = torch.rand(shape, generator=generator, dtype=dtype, device=device)  # [0, 1)
    u = u.clamp_min(torch.finfo(dtype).tiny)  # u = 0 would give -inf
    return -torch.log(-torch.log(u))


def _check_tau(tau) -> float:
    if isinstance(tau, bool) or not isinstance(tau, (int, float)) or not math.isfinite(tau):
        raise ValueError(f"tau must be a finite positive number, got {tau!r}")
    if tau <= 0:
        raise ValueError(f"tau must be positive (tau -> 0 is the hard argmax; use hard=True), got {tau!r}")
    return float(tau)


def gumbel_softmax(logits: torch.Tensor, tau: float, *, hard: bool = False,
                   generator: torch.Generator | None = None) -> torch.Tensor:
    """A Gumbel-softmax sample over the last axis, eq-gumbel-softmax: ``(..., K)``.

    Args:
        logits: float ``(..., K)``, unnormalised log-probabilities (finite; shift-invariant).
        tau: the temperature, a positive number.
        hard: return the one-hot ``argmax_j(l_j + g_j)`` in the forward pass, with the
            gradient of the soft sample (straight-through).
        generator: the random generator to draw the noise from; the same generator state gives
            the same noise, so the hard sample is the argmax of the soft one.
    """
    _validate.tensor(logits, "logits", min_dim=1)
    if logits.shape[-1] == 0:
        raise ValueError(f"logits must have at least one category, got shape {tuple(logits.shape)}")
    if not torch.isfinite(logits).all():
        raise ValueError(f"logits contains NaN or infinite values (shape {tuple(logits.shape)}); "
                         "block a category with a large negative logit instead")
    tau = _check_tau(tau)
    if not isinstance(hard, bool):
        raise TypeError(f"hard must be True or False, got {hard!r}")
    g = gumbel_noise(logits.shape, generator=generator, dtype=logits.dtype, device=logits.device)
    noisy = (logits + g) / tau  # (..., K)
    soft = torch.softmax(noisy, dim=-1)  # subtracts the max: no overflow at |logits| = 1e4
    if not hard:
        return soft
    index = noisy.argmax(dim=-1, keepdim=True)  # (..., 1)
    one_hot = torch.zeros_like(soft).scatter_(-1, index, 1.0)  # (..., K)
    return one_hot + (soft - soft.detach())  # forward: exactly one_hot; backward: soft's gradient
