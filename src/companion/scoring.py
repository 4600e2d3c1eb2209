"""Scoring functions: how well a query matches a key (book, chapter 2).

Each takes queries of shape ``(batch, ..., len_q, d_q)`` and keys of shape
``(batch, ..., len_k, d_k)`` and returns scores of shape ``(batch, ..., len_q, len_k)``.
The batch axes ``...`` broadcast.

=====================  ===========================================  ===================
name                   score a(q, k)                                 source
=====================  ===========================================  ===================
dot                    q^T k                                         Luong et al. 2015
scaled dot             q^T k / sqrt(d_k)                             Vaswani et al. 2017
general (bilinear)     q^T W k                                       Luong et al. 2015
additive (concat)      w_v^T tanh(W_q q + W_k k)                     Bahdanau et al. 2015
cosine                 beta q^T k / (|q| |k| tau)                    Graves et al. 2014
=====================  ===========================================  ===================
"""

from __future__ import annotations

import math
import numbers

import torch
from torch import nn

from . import _validate


def _check_pair(query, key, *, same_dim: bool = True) -> None:
    _validate.tensor(query, "query", min_dim=2)
    _validate.tensor(key, "key", min_dim=2)
    _validate.same_dtype(query=query, key=key)
    if same_dim and query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query and key must have the same feature size, got query {tuple(query.shape)} "
            f"and key {tuple(key.shape)}"
        )
    _validate.batch_shapes_broadcast(query=query.shape[:-2], key=key.shape[:-2])


def dot_score(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Dot-product score ``a(q, k) = q^T k`` (eq-dot-score)."""
    _check_pair(query, key)
    return query @ key.transpose(-2, -1)  # (B, ..., Lq, Lk)


def scaled_dot_score(query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """Scaled dot-product score ``a(q, k) = q^T k / sqrt(d_k)`` (eq-scaled-dot-score).

    With independent zero-mean, unit-variance entries, ``q^T k`` has variance ``d_k``;
    dividing by ``sqrt(d_k)`` brings it back to one whatever the key size.
    """
    _check_pair(query, key)
    return query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])


def _leading_axes_scale(scale, scores_shape: tuple, dtype: torch.dtype):
    """Check a cosine score's ``scale`` and give it the scores' number of axes (see :func:`cosine_score`)."""
    if not isinstance(scale, torch.Tensor):
        if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not 0 <= scale < math.inf:
            raise ValueError(f"scale must be a non-negative finite number or tensor, got {scale!r}")
        return scale
    if not scale.dtype.is_floating_point:
        raise TypeError(f"scale must have a floating dtype, got {scale.dtype}")
    n = len(scores_shape)
    aligned = scale.reshape(*scale.shape, *([1] * (n - scale.dim()))) if scale.dim() <= n else scale
    try:
        fits = scale.dim() <= n and torch.broadcast_shapes(aligned.shape, scores_shape) == scores_shape
    except RuntimeError:
        fits = False
    if not fits:
        raise ValueError(
            f"scale of shape {tuple(scale.shape)} must match the leading axes of the scores "
            f"{tuple(scores_shape)} (each axis equal or 1), e.g. ({scores_shape[0]},) for one "
            f"scale per batch row"
        )
    if not (torch.isfinite(scale).all() and (scale >= 0).all()):  # one look at a few numbers
        raise ValueError(f"scale must be non-negative and finite, got {scale.detach()}")
    return aligned.to(dtype)  # (B, ..., 1, 1) or as many axes as the scores


def cosine_score(query: torch.Tensor, key: torch.Tensor, temperature: float = 1.0, eps: float = 1e-8,
                 *, scale=None) -> torch.Tensor:
    """Cosine-similarity score ``scale * q^T k / (|q| |k| tau)`` (eq-cosine-score; the NTM's content key).

    Args:
        query: ``(B, ..., Lq, d)``; key: ``(B, ..., Lk, d)``.
        temperature: ``tau``, a positive finite number.
        eps: guards the division: a zero vector has norm ``max(|q|, eps)``, so its score is 0
            (finite, with a finite gradient).
        scale: optional multiplier, e.g. the key strength ``beta`` of the neural Turing machine,
            one per batch row. Either a non-negative finite number, or a floating tensor whose
            axes are read as the *leading* axes of the scores ``(B, ..., Lq, Lk)``: singleton
            axes are appended on the right until it has as many axes as the scores, and each
            axis must then equal the scores' or be 1. So for scores ``(B, Lq, Lk)`` a ``beta``
            of shape ``(B,)`` or ``(B, 1)`` scales row ``b`` by ``beta[b]``, and ``(B, Lq)``
            gives one scale per query. (This is left alignment, unlike torch's broadcasting,
            which aligns on the right.) Zero is allowed (uniform weights); a negative or
            non-finite entry raises ``ValueError``. Gradients flow into a tensor ``scale``.

    Returns:
        Scores ``(B, ..., Lq, Lk)``.
    """
    _check_pair(query, key)
    _validate.positive_number(temperature, "temperature")
    _validate.positive_number(eps, "eps")
    batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2])
    scores_shape = (*batch, query.shape[-2], key.shape[-2])
    factor = None if scale is None else _leading_axes_scale(scale, scores_shape, query.dtype)
    q = query / query.norm(dim=-1, keepdim=True).clamp_min(eps)  # (B, ..., Lq, d), unit rows
    k = key / key.norm(dim=-1, keepdim=True).clamp_min(eps)  # (B, ..., Lk, d), unit rows
    scores = q @ k.transpose(-2, -1) / temperature  # (B, ..., Lq, Lk)
    return scores if factor is None else scores * factor  # factor: a number or (B, ..., 1, 1)-like


class GeneralScore(nn.Module):
    """Luong's *general* (bilinear) score ``a(q, k) = q^T W k`` (eq-general-score).

    ``W`` has shape ``(d_q, d_k)``, so queries and keys may have different sizes.
    """

    def __init__(self, query_dim: int, key_dim: int):
        super().__init__()
        _validate.positive_int(query_dim, "query_dim")
        _validate.positive_int(key_dim, "key_dim")
        self.W = nn.Parameter(torch.empty(query_dim, key_dim))
        nn.init.normal_(self.W, std=1.0 / math.sqrt(query_dim))

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        _check_pair(query, key, same_dim=False)
        d_q, d_k = self.W.shape
        if query.shape[-1] != d_q or key.shape[-1] != d_k:
            raise ValueError(
                f"GeneralScore expects query (..., {d_q}) and key (..., {d_k}), got query "
                f"{tuple(query.shape)} and key {tuple(key.shape)}"
            )
        return (query @ self.W) @ key.transpose(-2, -1)  # (B, ..., Lq, Lk)


class AdditiveScore(nn.Module):
    """Bahdanau's *additive* (concat) score ``a(q, k) = w_v^T tanh(W_q q + W_k k)`` (eq-additive-score).

    A one-hidden-layer network on the pair; ``hidden_dim`` is the alignment model's width.
    Luong et al.'s *concat* score, ``w_v^T tanh(W [q; k])``, is the same function with
    ``W = [W_q, W_k]``.
    """

    def __init__(self, query_dim: int, key_dim: int, hidden_dim: int):
        super().__init__()
        for value, name in ((query_dim, "query_dim"), (key_dim, "key_dim"), (hidden_dim, "hidden_dim")):
            _validate.positive_int(value, name)
        self.W_q = nn.Linear(query_dim, hidden_dim, bias=False)
        self.W_k = nn.Linear(key_dim, hidden_dim, bias=False)
        self.w_v = nn.Linear(hidden_dim, 1, bias=False)

    def forward(self, query: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
        _check_pair(query, key, same_dim=False)
        if query.shape[-1] != self.W_q.in_features or key.shape[-1] != self.W_k.in_features:
            raise ValueError(
                f"AdditiveScore expects query (..., {self.W_q.in_features}) and key "
                f"(..., {self.W_k.in_features}), got query {tuple(query.shape)} and key {tuple(key.shape)}"
            )
        q = self.W_q(query).unsqueeze(-2)  # (B, ..., Lq, 1, h)
        k = self.W_k(key).unsqueeze(-3)  # (B, ..., 1, Lk, h)
        return self.w_v(torch.tanh(q + k)).squeeze(-1)  # (B, ..., Lq, Lk)
