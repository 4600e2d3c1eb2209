"""Calculus of the softmax and of attention (book, chapter 2).

The softmax ``p = softmax(s)`` of a score vector, its temperature, its entropy, and the
derivatives that backpropagation needs:

    softmax_T(s)_j = exp(s_j / T) / sum_k exp(s_k / T)                     (eq-temperature)
    H(p) = - sum_j p_j log p_j                                             (eq-entropy)
    d p_i / d s_j = p_i (delta_ij - p_j),   J = diag(p) - p p^T              (eq-softmax-jacobian)

and, for scaled dot-product attention ``o_i = sum_j alpha_ij v_j`` with
``alpha_i = softmax(K q_i / sqrt(d))``,

    d o_i / d q_i = (1 / sqrt(d)) sum_j alpha_ij (v_j - o_i) k_j^T            (eq-do-dq)

and the vector-Jacobian products of the backward pass (eq-sdpa-backward):

    g_ij   = dL/do_i . v_j                      (how much L wants more of value j)
    dL/ds_ij = alpha_ij (g_ij - sum_j' alpha_ij' g_ij')
    dL/dQ = (dL/dS) K / sqrt(d),   dL/dK = (dL/dS)^T Q / sqrt(d),   dL/dV = A^T dL/dO.

Everything here is written with plain tensor algebra so that each line can be read against
the equation it implements; the tests check each function against ``torch.autograd``.
"""

from __future__ import annotations

import math

import torch

from . import _validate
from .attention import scaled_dot_product_attention
from .softmax import masked_softmax

__all__ = ["temperature_softmax", "entropy", "softmax_jacobian", "sdpa_query_jacobian", "sdpa_backward"]


def _check_temperature(temperature) -> float:
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)):
        raise TypeError(f"temperature must be a number, got {type(temperature).__name__}")
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be positive and finite, got {temperature!r}")
    return float(temperature)


def temperature_softmax(scores: torch.Tensor, temperature: float = 1.0, mask: torch.Tensor | None = None,
                        dim: int = -1) -> torch.Tensor:
    """``softmax(scores / temperature)`` along ``dim`` (eq-temperature), masked like
    :func:`companion.softmax.masked_softmax` (True = may attend; a fully blocked row is zeros).

    Small temperatures sharpen the distribution towards the arg-max (one-hot); large ones
    flatten it towards uniform.
    """
    _validate.tensor(scores, "scores", min_dim=1)
    t = _check_temperature(temperature)
    return masked_softmax(scores / t, mask, dim=dim)


def entropy(weights: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy ``-sum_j p_j log p_j`` in nats along ``dim`` (eq-entropy).

    ``0 log 0`` counts as 0, so exactly-zero (masked) weights are fine. The weights must be
    non-negative; rows need not sum to one (a fully masked, all-zero row has entropy 0).
    """
    _validate.tensor(weights, "weights", min_dim=1)
    _validate.finite(weights, "weights")
    if not -weights.dim() <= dim < weights.dim():
        raise ValueError(f"dim={dim} is out of range for weights of shape {tuple(weights.shape)}")
    if (weights < 0).any():
        raise ValueError(f"weights must be non-negative, got a minimum of {weights.min().item():.3g}")
    if torch.isinf(weights).any():
        raise ValueError(f"weights contain inf (shape {tuple(weights.shape)})")
    safe = torch.where(weights > 0, weights, torch.ones_like(weights))  # log(1) = 0 where p = 0
    return -(weights * torch.log(safe)).sum(dim)


def softmax_jacobian(scores: torch.Tensor) -> torch.Tensor:
    """Jacobian of the softmax over the last axis (eq-softmax-jacobian).

    Args:
        scores: ``(..., n)``.

    Returns:
        ``(..., n, n)`` with entry ``[..., i, j] = d p_i / d s_j = p_i (delta_ij - p_j)``,
        i.e. ``diag(p) - p p^T`` for every leading index.
    """
    _validate.tensor(scores, "scores", min_dim=1)
    p = masked_softmax(scores)  # (..., n)
    return torch.diag_embed(p) - p.unsqueeze(-1) * p.unsqueeze(-2)  # (..., n, n)


def sdpa_query_jacobian(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor,
                        mask: torch.Tensor | None = None) -> torch.Tensor:
    """Jacobian of each attention output with respect to its own query (eq-do-dq).

    ``d o_i / d q_i = (1/sqrt(d)) sum_j alpha_ij (v_j - o_i) k_j^T = (1/sqrt(d)) V^T (diag(alpha_i)
    - alpha_i alpha_i^T) K``.

    Args:
        query ``(B, ..., Lq, d)``, key ``(B, ..., Lk, d)``, value ``(B, ..., Lk, d_v)``, mask as in
        :func:`companion.attention.scaled_dot_product_attention`.

    Returns:
        ``(B, ..., Lq, d_v, d)``: one ``d_v x d`` matrix per query.
    """
    # scaled_dot_product_attention validates the inputs (types, dtypes, matching sizes)
    output, alpha = scaled_dot_product_attention(query, key, value, mask)  # (B, ..., Lq, d_v), (B, ..., Lq, Lk)
    d = query.shape[-1]
    centred = value.unsqueeze(-3) - output.unsqueeze(-2)  # (B, ..., Lq, Lk, d_v): v_j - o_i
    weighted = alpha.unsqueeze(-1) * centred  # (B, ..., Lq, Lk, d_v)
    return weighted.transpose(-2, -1) @ key.unsqueeze(-3) / math.sqrt(d)  # (B, ..., Lq, d_v, d)


def sdpa_backward(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, grad_output: torch.Tensor,
                  mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The backward pass of scaled dot-product attention by hand (eq-sdpa-backward).

    Given ``grad_output = dL/dO`` of shape ``(B, ..., Lq, d_v)``, returns ``(dL/dQ, dL/dK, dL/dV)``
    with the shapes of ``query``, ``key`` and ``value`` (for batch axes that broadcast, the
    gradient keeps the broadcast shape).
    """
    output, alpha = scaled_dot_product_attention(query, key, value, mask)  # (B, ..., Lq, d_v), (B, ..., Lq, Lk)
    _validate.tensor(grad_output, "grad_output", min_dim=2)
    _validate.same_dtype(value=value, grad_output=grad_output)
    d = query.shape[-1]
    if grad_output.shape != output.shape:
        raise ValueError(
            f"grad_output must have the output's shape {tuple(output.shape)}, got {tuple(grad_output.shape)}"
        )
    g = grad_output @ value.transpose(-2, -1)  # (B, ..., Lq, Lk): dL/dalpha_ij = grad_o_i . v_j
    grad_scores = alpha * (g - (alpha * g).sum(-1, keepdim=True))  # (B, ..., Lq, Lk): J^T g per row
    grad_query = grad_scores @ key / math.sqrt(d)  # (B, ..., Lq, d)
    grad_key = grad_scores.transpose(-2, -1) @ query / math.sqrt(d)  # (B, ..., Lk, d)
    grad_value = alpha.transpose(-2, -1) @ grad_output  # (B, ..., Lk, d_v)
    return grad_query, grad_key, grad_value
