"""One attention read with learned query and key projections: the associative-recall model.

    output = softmax(a(x W_q, x_j W_k)) V,   a = dot or scaled dot            (eq-scaled-dot-score)

The model of the ``scaling-retrieval`` experiments, where the only difference between the two
runs is whether the dot product is divided by ``sqrt(d_k)``.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import _validate
from .attention import attend
from .scoring import dot_score, scaled_dot_score


class RetrievalAttention(nn.Module):
    """Projects a query ``(N, 1, input_dim)`` and keys ``(N, m, input_dim)`` to ``key_dim``
    features and averages the values by the softmax of their (scaled) dot products."""

    def __init__(self, input_dim: int, key_dim: int, scaled: bool = True):
        super().__init__()
        _validate.positive_int(input_dim, "input_dim")
        _validate.positive_int(key_dim, "key_dim")
        if not isinstance(scaled, bool):
            raise TypeError(f"scaled must be True or False, got {scaled!r}")
        self.scaled = scaled
        # Entries N(0, 1/d_in): a unit-variance input gives unit-variance projected features.
        std = 1.0 / math.sqrt(input_dim)
        self.W_q = nn.Parameter(torch.randn(input_dim, key_dim) * std)
        self.W_k = nn.Parameter(torch.randn(input_dim, key_dim) * std)

    def scores(self, query: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        q = query @ self.W_q  # (N, 1, d_k)
        k = keys @ self.W_k  # (N, m, d_k)
        return scaled_dot_score(q, k) if self.scaled else dot_score(q, k)  # (N, 1, m)

    def forward(self, query, keys, values):
        """Returns ``(output (N, 1, d_v), weights (N, 1, m))``."""
        return attend(self.scores(query, keys), values)
