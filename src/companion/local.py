"""Local attention (Luong et al. 2015): attend to a window of 2D + 1 source positions.

Global attention scores every source position at every decoder step. Local attention picks a
centre ``p_t`` first and looks only at the window ``[p_t - D, p_t + D]``:

- local-m (monotonic): ``p_t = t``, the decoder step itself;
- local-p (predictive): ``p_t = S * sigmoid(v_p^T tanh(W_p z_t))``        (eq-local-p)

and the weights are the softmax of the scores *inside* the window (local-m stops there,
eq-local-m-weights); local-p multiplies them by a Gaussian centred at the (real-valued) ``p_t``
with ``sigma = D / 2``, not renormalised (as in the paper):

    alpha_tj = softmax_{j in window}(s_tj) * exp(-(j - p_t)^2 / (2 sigma^2))   (eq-local-weights)

Positions ``j`` count from 0; position ``j`` is inside the window when ``|j - p_t| <= D``.
The Gaussian factor is what lets the loss move ``p_t``: the window's edges are a step function
of ``p_t`` (no gradient), the Gaussian is smooth in it.

Shapes: ``scores (..., S)``, ``center (...)``, weights ``(..., S)``.
"""

from __future__ import annotations

import torch
from torch import nn

from . import _validate
from .softmax import masked_softmax


def _half_width(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"half_width must be a positive integer (the window's D), got {value!r}")
    return value


def window_mask(center: torch.Tensor, length: int, half_width: int) -> torch.Tensor:
    """``|j - p_t| <= D`` for ``j = 0..length-1``: boolean ``(..., length)``."""
    _validate.tensor(center, "center")
    _validate.positive_int(length, "length")
    D = _half_width(half_width)
    positions = torch.arange(length, dtype=center.dtype, device=center.device)  # (S,)
    return (positions - center.detach().unsqueeze(-1)).abs() <= D  # (..., S)


def local_weights(scores: torch.Tensor, center: torch.Tensor, half_width: int,
                  mask: torch.Tensor | None = None, *, gaussian: bool = True) -> torch.Tensor:
    """Luong's local attention weights, eq-local-weights: ``(..., S)``.

    Args:
        scores: float ``(..., S)``, the scores ``s_tj`` of every source position.
        center: float ``(...)``, the window's centre ``p_t`` (real-valued; local-m passes
            ``t``, local-p the output of :class:`PredictiveCenter`).
        half_width: the positive integer ``D``; the window is ``|j - p_t| <= D``.
        mask: optional boolean, broadcastable to ``scores``; False blocks a position (padding).
        gaussian: multiply by the Gaussian factor (local-p, eq-local-weights); False gives the
            plain softmax inside the window, eq-local-m-weights (Luong's local-m has no Gaussian).

    Returns:
        Weights, exactly zero outside the window (and where ``mask`` is False); all zeros when
        the window holds no allowed position. Differentiable in ``scores`` and in ``center``.
    """
    _validate.tensor(scores, "scores", min_dim=1)
    _validate.tensor(center, "center")
    _validate.finite(scores, "scores")
    if not torch.isfinite(center).all():
        raise ValueError(f"center must be finite, got shape {tuple(center.shape)} with non-finite values")
    if center.shape != scores.shape[:-1]:
        raise ValueError(f"center must have the scores' leading shape {tuple(scores.shape[:-1])} "
                         f"(one centre per row of scores {tuple(scores.shape)}), got {tuple(center.shape)}")
    _validate.same_dtype(scores=scores, center=center)
    D = _half_width(half_width)
    _validate.mask(mask, "mask", tuple(scores.shape))
    inside = window_mask(center, scores.shape[-1], D)  # (..., S)
    if mask is not None:
        inside = inside & mask
    if not isinstance(gaussian, bool):
        raise TypeError(f"gaussian must be True or False, got {gaussian!r}")
    weights = masked_softmax(scores, inside)  # (..., S), zero outside the window
    if not gaussian:
        return weights  # (..., S)
    positions = torch.arange(scores.shape[-1], dtype=scores.dtype, device=scores.device)  # (S,)
    sigma = D / 2
    gauss = torch.exp(-(positions - center.unsqueeze(-1)) ** 2 / (2 * sigma**2))  # (..., S)
    return weights * gauss  # (..., S)


class PredictiveCenter(nn.Module):
    """local-p's centre ``p_t = S * sigmoid(v_p^T tanh(W_p z_t))``, eq-local-p.

    ``S`` is the real length of each source (``lengths``), so that the window stays on the
    sentence's words. ``state (B, ..., d)``, ``lengths (B,)`` -> ``center (B, ...)``.
    """

    def __init__(self, state_dim: int, hidden: int):
        super().__init__()
        _validate.positive_int(state_dim, "state_dim")
        _validate.positive_int(hidden, "hidden")
        self.W_p = nn.Linear(state_dim, hidden, bias=False)
        self.v_p = nn.Linear(hidden, 1, bias=False)

    def forward(self, state: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        _validate.tensor(state, "state", min_dim=2)
        if state.shape[-1] != self.W_p.in_features:
            raise ValueError(f"state must end in {self.W_p.in_features} features, got {tuple(state.shape)}")
        if not isinstance(lengths, torch.Tensor) or lengths.shape != state.shape[:1]:
            raise ValueError(f"lengths must be a tensor of shape ({state.shape[0]},), got "
                             f"{getattr(lengths, 'shape', lengths)}")
        fraction = torch.sigmoid(self.v_p(torch.tanh(self.W_p(state)))).squeeze(-1)  # (B, ...)
        S = lengths.to(state.dtype).view(-1, *([1] * (fraction.dim() - 1)))  # (B, 1, ...)
        return S * fraction  # (B, ...)
