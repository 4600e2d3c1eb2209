"""Scaled dot-product attention and multi-head attention (book, chapters 2 and 6).

    Attention(Q, K, V) = softmax(Q K^T / sqrt(d_k) + mask) V                  (eq-sdpa)

    head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    MultiHead(Q, K, V) = [head_1; ...; head_h] W^O                             (eq. 6.mha)

Shapes are batch-first: ``query (B, ..., Lq, d)``, ``key (B, ..., Lk, d)``,
``value (B, ..., Lk, d_v)``. Masks are boolean, True = may attend, and broadcast to
``(B, ..., Lq, Lk)``.

This module also re-exports the pieces a reader meets first, so that
``from companion.attention import masked_softmax, causal_mask`` works.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from . import _validate
from .masks import causal_mask, padding_mask
from .scoring import AdditiveScore, GeneralScore, cosine_score, dot_score, scaled_dot_score
from .softmax import masked_softmax

__all__ = [
    "scaled_dot_product_attention",
    "attend",
    "MultiHeadAttention",
    "masked_softmax",
    "causal_mask",
    "padding_mask",
    "dot_score",
    "scaled_dot_score",
    "cosine_score",
    "GeneralScore",
    "AdditiveScore",
]


def attend(scores: torch.Tensor, value: torch.Tensor, mask: torch.Tensor | None = None):
    """Turn scores into weights and average the values: ``(softmax(scores) V, weights)``.

    This is the half of every attention mechanism that does not depend on the scoring
    function: ``scores (B, ..., Lq, Lk)``, ``value (B, ..., Lk, d_v)``.
    """
    _validate.tensor(scores, "scores", min_dim=2)
    _validate.tensor(value, "value", min_dim=2)
    if scores.shape[-1] != value.shape[-2]:
        raise ValueError(
            f"scores cover {scores.shape[-1]} keys but value has {value.shape[-2]} positions: "
            f"scores {tuple(scores.shape)}, value {tuple(value.shape)}"
        )
    weights = masked_softmax(scores, mask)  # (B, ..., Lq, Lk)
    return weights @ value.to(weights.dtype), weights  # (B, ..., Lq, d_v)


def scaled_dot_product_attention(query, key, value, mask=None):
    """Scaled dot-product attention, eq. (2.sdpa). Returns ``(output, weights)``.

    Equal to ``torch.nn.functional.scaled_dot_product_attention(query, key, value,
    attn_mask=mask)`` for every query that may attend to at least one key; a query whose
    mask row is all False gets zero weights and a zero output (a plain ``torch.softmax`` of
    ``-inf``-filled scores gives NaN there).

    Args:
        query: ``(B, ..., Lq, d_k)``; key: ``(B, ..., Lk, d_k)``; value: ``(B, ..., Lk, d_v)``.
        mask: optional boolean, broadcastable to ``(B, ..., Lq, Lk)``; True = may attend.

    Returns:
        output ``(B, ..., Lq, d_v)`` and weights ``(B, ..., Lq, Lk)``.
    """
    _validate.tensor(query, "query", min_dim=2)
    _validate.tensor(key, "key", min_dim=2)
    _validate.tensor(value, "value", min_dim=2)
    _validate.same_dtype(query=query, key=key, value=value)
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query and key must have the same feature size d_k, got query {tuple(query.shape)} "
            f"and key {tuple(key.shape)}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key and value must have the same length, got key {tuple(key.shape)} and value "
            f"{tuple(value.shape)}"
        )
    _validate.batch_shapes_broadcast(
        query=query.shape[:-2], key=key.shape[:-2], value=value.shape[:-2]
    )
    scores = query @ key.transpose(-2, -1) / math.sqrt(query.shape[-1])  # (B, ..., Lq, Lk)
    return attend(scores, value, mask)


class MultiHeadAttention(nn.Module):
    """Multi-head attention, eq. (6.mha), written out.

    ``forward(query, key, value, mask=None)`` takes ``(B, Lq, E)``, ``(B, Lk, E)``,
    ``(B, Lk, E)`` and a boolean mask broadcastable to ``(B, heads, Lq, Lk)`` (a
    ``(Lq, Lk)`` or ``(B, 1, Lq, Lk)`` mask works; a padding mask from
    :func:`companion.masks.padding_mask` needs ``.unsqueeze(1)``). Returns
    ``(output (B, Lq, E), weights (B, heads, Lq, Lk))``.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True):
        super().__init__()
        _validate.positive_int(embed_dim, "embed_dim")
        _validate.positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.W_q = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.W_k = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.W_v = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.W_o = nn.Linear(embed_dim, embed_dim, bias=bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, L, d_h)

    def forward(self, query, key, value, mask=None):
        E = self.embed_dim
        for t, name in ((query, "query"), (key, "key"), (value, "value")):
            _validate.tensor(t, name)
            if t.dim() != 3 or t.shape[-1] != E:
                raise ValueError(f"{name} must have shape (batch, length, {E}), got {tuple(t.shape)}")
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(
                f"key and value must share batch and length, got key {tuple(key.shape)} and "
                f"value {tuple(value.shape)}"
            )
        if query.shape[0] != key.shape[0]:
            raise ValueError(
                f"query and key must share the batch size, got query {tuple(query.shape)} and "
                f"key {tuple(key.shape)}"
            )
        B, Lq, _ = query.shape
        target = (B, self.num_heads, Lq, key.shape[1])
        _validate.mask(mask, "mask", target)
        q = self._split(self.W_q(query))  # (B, h, Lq, d_h)
        k = self._split(self.W_k(key))  # (B, h, Lk, d_h)
        v = self._split(self.W_v(value))  # (B, h, Lk, d_h)
        heads, weights = scaled_dot_product_attention(q, k, v, mask)  # (B, h, Lq, d_h), (B, h, Lq, Lk)
        concat = heads.transpose(1, 2).reshape(B, Lq, E)  # (B, Lq, h * d_h)
        return self.W_o(concat), weights

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of a ``torch.nn.MultiheadAttention`` (``batch_first=True``).

        torch stores the three input projections stacked in ``in_proj_weight``
        ``(3E, E)``; we split it into ``W_q``, ``W_k``, ``W_v``.
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"module must be torch.nn.MultiheadAttention, got {type(module).__name__}")
        if not module.batch_first:
            raise ValueError("module must be built with batch_first=True (our shapes are batch-first)")
        if not module._qkv_same_embed_dim or module.bias_k is not None or module.add_zero_attn:
            raise ValueError("only modules with kdim = vdim = embed_dim, no bias_k/bias_v and no add_zero_attn are supported")
        bias = module.in_proj_bias is not None
        ours = cls(module.embed_dim, module.num_heads, bias=bias).to(module.in_proj_weight.dtype)
        with torch.no_grad():
            for i, lin in enumerate((ours.W_q, ours.W_k, ours.W_v)):
                E = module.embed_dim
                lin.weight.copy_(module.in_proj_weight[i * E : (i + 1) * E])
                if bias:
                    lin.bias.copy_(module.in_proj_bias[i * E : (i + 1) * E])
            ours.W_o.weight.copy_(module.out_proj.weight)
            if bias:
                ours.W_o.bias.copy_(module.out_proj.bias)
        return ours
