"""Attention-only decoders of several layers, and the two scores that recognise an induction
circuit in their attention maps (Olsson et al. 2022; Elhage et al. 2021).

    h_0       = E[x_t] + PE[t]                                 token embedding plus sinusoidal position
    h_{l+1}   = h_l + MultiHead_l(h_l, h_l, h_l, causal)       eq-sdpa per head, causal, residual
    logits    = h_n W_U + b_U                                  a linear read-out

No feed-forward network and no layer normalisation: what a position knows beyond its own token
is what the heads moved into its residual stream. One layer can only match the current token
against earlier tokens; two layers can first copy each token's predecessor into its position (a
*previous-token head*) and then match the current token against those copies, landing on the
token that *followed* the earlier occurrence and copying it (an *induction head*).

:func:`previous_token_score` and :func:`induction_score` measure the two patterns in the
weights of every layer and head.
"""

from __future__ import annotations

import torch
from torch import nn

from . import _validate
from .attention import MultiHeadAttention
from .positional import sinusoidal_encoding

__all__ = ["AttentionOnlyTransformer", "previous_token_score", "induction_score"]


class AttentionOnlyTransformer(nn.Module):
    """``num_layers`` causal multi-head attention layers on a residual stream, no MLP, no norm.

    ``forward(tokens (B, T) long, return_weights=False)`` returns logits ``(B, T, vocab_size)``
    (those at ``t`` predict token ``t + 1``); with ``return_weights=True``, ``(logits,
    {"decoder": (layers, B, h, T, T)})``, the same layout as
    :class:`companion.transformer.DecoderOnlyTransformer`.
    """

    def __init__(self, vocab_size: int, dim: int, num_heads: int, num_layers: int, max_len: int):
        super().__init__()
        for name, value in (("vocab_size", vocab_size), ("dim", dim), ("num_heads", num_heads),
                            ("num_layers", num_layers), ("max_len", max_len)):
            _validate.positive_int(value, name)
        if dim % num_heads or dim % 2:
            raise ValueError(f"dim={dim} must be even and divisible by num_heads={num_heads}")
        self.vocab_size, self.max_len = vocab_size, max_len
        self.embed = nn.Embedding(vocab_size, dim)
        self.register_buffer("pe", sinusoidal_encoding(max_len, dim), persistent=False)  # (max_len, d)
        self.layers = nn.ModuleList(MultiHeadAttention(dim, num_heads) for _ in range(num_layers))
        self.unembed = nn.Linear(dim, vocab_size)

    def forward(self, tokens, return_weights: bool = False):
        _check_tokens(tokens, self.vocab_size, self.max_len)
        T = tokens.shape[1]
        h = self.embed(tokens) + self.pe[:T]  # (B, T, d)
        weights = []
        for attn in self.layers:
            a, w = attn(h, h, h, is_causal=True)  # (B, T, d), (B, h, T, T)
            h = h + a
            weights.append(w)
        logits = self.unembed(h)  # (B, T, V)
        return (logits, {"decoder": torch.stack(weights)}) if return_weights else logits


def _check_tokens(tokens, vocab_size: int, max_len: int) -> None:
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must hold integer token ids, got dtype {tokens.dtype}")
    if tokens.dim() != 2 or not 0 < tokens.shape[1] <= max_len or tokens.shape[0] == 0:
        raise ValueError(f"tokens must have shape (batch, length) with 0 < length <= max_len={max_len}, "
                         f"got {tuple(tokens.shape)}")
    if tokens.min() < 0 or tokens.max() >= vocab_size:
        raise ValueError(f"tokens must hold ids in 0 .. {vocab_size - 1}, got ids from "
                         f"{int(tokens.min())} to {int(tokens.max())}")


def _check_weights(weights) -> None:
    _validate.tensor(weights, "weights")
    if weights.dim() != 5 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"weights must have shape (layers, batch, heads, T, T), got {tuple(weights.shape)}")


def previous_token_score(weights: torch.Tensor) -> torch.Tensor:
    """The mean weight each head puts on the position just before the query, ``(layers, heads)``,
    over every query ``t >= 1`` of every sequence. ``weights (layers, B, h, T, T)``."""
    _check_weights(weights)
    T = weights.shape[-1]
    t = torch.arange(1, T)
    return weights[..., t, t - 1].mean(dim=(1, 3))  # (layers, h)


def induction_score(weights: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
    """The mean weight each head puts, from a query whose token occurred earlier, on the position
    just *after* that earlier occurrence (the token the induction rule copies), ``(layers, heads)``.

    ``weights (layers, B, h, T, T)``, ``tokens (B, T)``. A query counts when its token occurred
    before it exactly once. Returns NaN for a model and batch with no such query.
    """
    _check_weights(weights)
    if not isinstance(tokens, torch.Tensor) or tuple(tokens.shape) != tuple(weights.shape[1:2] + weights.shape[-1:]):
        raise ValueError(f"tokens must have shape (batch, T) = {tuple(weights.shape[1:2] + weights.shape[-1:])}, "
                         f"got {tuple(getattr(tokens, 'shape', ()))}")
    T = tokens.shape[1]
    same = tokens[:, :, None] == tokens[:, None, :]  # (B, T, T): same token
    earlier = same & torch.ones(T, T, dtype=torch.bool).tril(-1)  # (B, Tq, Tk): key before query
    once = earlier.sum(-1) == 1  # (B, Tq)
    key = earlier.float().argmax(-1) + 1  # (B, Tq): just after the earlier occurrence (<= query)
    picked = weights.gather(-1, key[None, :, None, :, None].expand(*weights.shape[:-1], 1)).squeeze(-1)  # (layers, B, h, Tq)
    mask = once[None, :, None, :].to(picked.dtype)  # (1, B, 1, Tq)
    return (picked * mask).sum(dim=(1, 3)) / mask.sum(dim=(1, 3))  # (layers, h)
