"""The masked, numerically stable softmax and its logarithm (book, chapter 2).

    softmax(s)_j     = exp(s_j - m) / sum_k exp(s_k - m),  m = max_k s_k    (eq-softmax-stable)
    log_softmax(s)_j = (s_j - m) - log sum_k exp(s_k - m)

Subtracting the row maximum ``m`` changes nothing mathematically and keeps ``exp`` from
overflowing: the largest term is ``exp(0) = 1``, so the sum lies in ``[1, n]`` and its log in
``[0, log n]``. Blocked entries (mask False, or a score of ``-inf``) get weight exactly zero
(log-weight ``-inf``). A row in which every entry is blocked has no distribution to speak of;
we return all zeros there (all ``-inf`` for the log) rather than the NaN that ``0 / 0`` would
give, so that a padded query cannot poison a batch.

Checks: the metadata (type, dtype, ``dim``, the mask's dtype and shape) is checked on every
call. The data is not scanned as a whole: the only data check is on the row maxima ``m``,
which the computation needs anyway and which are ``len_k`` times smaller than the scores.
A NaN or ``+inf`` at an allowed entry makes its row's maximum NaN or ``+inf``, so exactly
the inputs that would give a NaN weight raise a ``ValueError``; a NaN or ``+inf`` at a
blocked entry is ignored, as the entry is. (Raising needs the check's answer on the host, so
on a GPU this one check waits for the device.)
"""

from __future__ import annotations

import torch

from . import _validate


def _check(scores, mask, dim) -> None:
    """The metadata checks shared by :func:`masked_softmax` and :func:`masked_log_softmax`."""
    _validate.tensor(scores, "scores", min_dim=1)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -scores.dim() <= dim < scores.dim():
        raise ValueError(f"dim={dim!r} is out of range for scores of shape {tuple(scores.shape)}")
    _validate.mask(mask, "mask", tuple(scores.shape))


def _shifted(scores: torch.Tensor, mask: torch.Tensor | None, dim: int) -> torch.Tensor:
    """``s - m`` of eq-softmax-stable, with ``-inf`` at blocked entries.

    The maximum of a fully blocked row is ``-inf``; we shift such a row by 0 instead, so that
    it stays all ``-inf`` (its ``exp`` all zeros) and never becomes ``-inf - (-inf) = NaN``.
    """
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    row_max = scores.amax(dim=dim, keepdim=True).detach()  # (..., 1, ...): one per row
    bad = torch.isnan(row_max) | torch.isposinf(row_max)
    if bad.any():
        what = "NaN" if torch.isnan(row_max).any() else "+inf"
        raise ValueError(
            f"scores contains {what} at an allowed entry (shape {tuple(scores.shape)}); "
            f"use a mask (or -inf) to block entries"
        )
    row_max = torch.where(row_max == float("-inf"), torch.zeros_like(row_max), row_max)
    return scores - row_max


def _normaliser(exp: torch.Tensor, dim: int) -> torch.Tensor:
    """``sum_k exp(s_k - m)``, in ``[1, n]``; 1 instead of 0 for a fully blocked row."""
    total = exp.sum(dim=dim, keepdim=True)  # (..., 1, ...)
    return torch.where(total > 0, total, torch.ones_like(total))


def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1) -> torch.Tensor:
    """:func:`masked_softmax` without the metadata checks (the kernel the public one calls)."""
    exp = torch.exp(_shifted(scores, mask, dim))  # 0 at blocked entries
    return exp / _normaliser(exp, dim)


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1) -> torch.Tensor:
    """Softmax of ``scores`` along ``dim`` over the entries where ``mask`` is True (eq-softmax-stable).

    Args:
        scores: float tensor, any shape (usually ``(batch, ..., len_q, len_k)``); ``-inf``
            blocks an entry like a False mask does.
        mask: optional boolean tensor broadcastable to ``scores``; True = may attend.
        dim: the axis to normalise over.

    Returns:
        Weights of the same shape as ``scores``; each row sums to one, or is all zeros
        when its mask is all False. Masked entries are exactly zero.

    Raises:
        ValueError: a NaN or ``+inf`` score at an allowed entry (the result would be NaN).
    """
    _check(scores, mask, dim)
    return _masked_softmax(scores, mask, dim)


def masked_log_softmax(scores: torch.Tensor, mask: torch.Tensor | None = None, dim: int = -1) -> torch.Tensor:
    """Logarithm of :func:`masked_softmax`, computed as a log-softmax (eq-softmax-stable).

    ``log w_j = (s_j - m) - log sum_k exp(s_k - m)`` over the allowed entries. It is finite at
    every allowed entry, even for scores of magnitude ``1e4`` (where ``log(masked_softmax)``
    gives ``-inf`` for every weight that underflows to zero), and ``-inf`` at every blocked
    entry; a fully blocked row is all ``-inf``. It is never NaN, and neither is its gradient:
    a loss that ignores the blocked entries, such as the REINFORCE term of hard attention
    ``log w[sampled]`` or ``logp.masked_fill(~mask, 0).sum()``, backpropagates finite
    gradients, zero into the blocked entries and the fully blocked rows.

    Args and Raises: as :func:`masked_softmax`.

    Returns:
        Log-weights of the same shape as ``scores``.
    """
    _check(scores, mask, dim)
    shifted = _shifted(scores, mask, dim)  # -inf at blocked entries
    return shifted - torch.log(_normaliser(torch.exp(shifted), dim))  # log 1 = 0 for a fully blocked row
