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
cosine                 q^T k / (|q| |k|), optionally divided by tau  Graves et al. 2014
=====================  ===========================================  ===================
"""

from __future__ import annotations

import math

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


def cosine_score(query: torch.Tensor, key: torch.Tensor, temperature: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    """Cosine-similarity score ``q^T k / (|q| |k| tau)`` (eq-cosine-score; the NTM's content key).

    ``eps`` guards the division for zero vectors, whose score is 0.
    """
    _check_pair(query, key)
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    q = query / query.norm(dim=-1, keepdim=True).clamp_min(eps)
    k = key / key.norm(dim=-1, keepdim=True).clamp_min(eps)
    return q @ k.transpose(-2, -1) / temperature


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
