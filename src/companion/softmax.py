"""The masked, numerically stable softmax (book, chapter 2).

softmax(s)_j = exp(s_j - m) / sum_k exp(s_k - m),  m = max_k s_k            (eq-softmax-stable)

Subtracting the row maximum ``m`` changes nothing mathematically and keeps ``exp`` from
overflowing. Blocked entries get weight exactly zero. A row in which every entry is blocked
has no distribution to speak of; we return all zeros there rather than the NaN that
``0 / 0`` would give, so that a padded query cannot poison a batch.
"""

from __future__ import annotations

import torch

from . import _validate


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` along ``dim`` over the entries where ``mask`` is True.

    Args:
        scores: float tensor, any shape (usually ``(batch, ..., len_q, len_k)``).
        mask: optional boolean tensor broadcastable to ``scores``; True = may attend.
        dim: the axis to normalise over.

    Returns:
        Weights of the same shape as ``scores``; each row sums to one, or is all zeros
        when its mask is all False. Masked entries are exactly zero.
    """
    _validate.tensor(scores, "scores", min_dim=1)
    _validate.finite(scores, "scores")
    if torch.isposinf(scores).any():
        raise ValueError(f"scores contains +inf (shape {tuple(scores.shape)}); use a mask to block entries")
    if not -scores.dim() <= dim < scores.dim():
        raise ValueError(f"dim={dim} is out of range for scores of shape {tuple(scores.shape)}")
    _validate.mask(mask, "mask", tuple(scores.shape))
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    row_max = scores.amax(dim=dim, keepdim=True)
    # A fully blocked row has max -inf; shift it by 0 instead so that exp gives zeros, not NaN.
    row_max = torch.where(torch.isfinite(row_max), row_max, torch.zeros_like(row_max)).detach()
    exp = torch.exp(scores - row_max)
    total = exp.sum(dim=dim, keepdim=True)
    return exp / torch.where(total > 0, total, torch.ones_like(total))
