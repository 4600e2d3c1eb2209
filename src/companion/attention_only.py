"""A one-layer, attention-only model, and the tools to see what each of its heads does.

    h_0    = E[x_t] + PE[t]                            token embedding plus sinusoidal position
    h_1    = h_0 + MultiHead(h_0, h_0, h_0, causal)    one causal self-attention layer, residual
    logits = h_1 W_U + b_U                             a linear read-out

There is no MLP: what the model knows at position ``t`` beyond its own token is what its heads
copy from earlier positions, so when a task needs two facts from two places, two heads must go
and fetch them. :func:`ablate_heads` zeroes chosen heads (their part of the concatenation
before ``W_o``) to measure what each one contributes; :func:`attention_by_offset` says how far
back each head looks. With ``num_kv_heads`` set, the layer is a
:class:`~companion.grouped_query.GroupedQueryAttention` (eq-gqa) whose query heads share that many
key/value heads.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch
from torch import nn

from . import _validate
from .attention import MultiHeadAttention
from .grouped_query import GroupedQueryAttention
from .positional import sinusoidal_encoding


@dataclass(frozen=True)
class AttentionOnlyConfig:
    vocab: int  # input tokens
    num_classes: int  # outputs at each position
    max_length: int  # longest sequence (the size of the position table)
    embed_dim: int = 32
    num_heads: int = 2
    base: float = 10000.0  # of the sinusoidal encoding; a short sequence turns more pairs with less
    num_kv_heads: int | None = None  # None: multi-head attention; else grouped-query (1 = MQA)

    def __post_init__(self):
        for name in ("vocab", "num_classes", "max_length", "embed_dim", "num_heads"):
            _validate.positive_int(getattr(self, name), name)
        if _validate.positive_number(self.base, "base") <= 1:
            raise ValueError(f"base must be greater than 1, got {self.base!r}")
        if self.num_kv_heads is not None:
            _validate.positive_int(self.num_kv_heads, "num_kv_heads")
            if self.num_heads % self.num_kv_heads:
                raise ValueError(f"num_kv_heads={self.num_kv_heads} must divide "
                                 f"num_heads={self.num_heads}")
        if self.embed_dim % (2 * self.num_heads):
            raise ValueError(f"embed_dim={self.embed_dim} must be a multiple of 2 * num_heads="
                             f"{2 * self.num_heads} (heads of equal size, an even position table)")


class AttentionOnly(nn.Module):
    """Embedding, sinusoidal positions, one causal :class:`MultiHeadAttention`, a read-out.

    ``forward(tokens (B, L), ablate=())`` returns ``(logits (B, L, num_classes),
    weights (B, heads, L, L))``; the heads listed in ``ablate`` are zeroed (:func:`ablate_heads`).
    """

    def __init__(self, config: AttentionOnlyConfig):
        super().__init__()
        if not isinstance(config, AttentionOnlyConfig):
            raise TypeError(f"config must be an AttentionOnlyConfig, got {type(config).__name__}")
        self.config = config
        self.embed = nn.Embedding(config.vocab, config.embed_dim)
        pe = sinusoidal_encoding(config.max_length, config.embed_dim, config.base)  # (L_max, E)
        self.register_buffer("pe", pe, persistent=False)
        if config.num_kv_heads is None:
            self.attn = MultiHeadAttention(config.embed_dim, config.num_heads)
        else:
            self.attn = GroupedQueryAttention(config.embed_dim, config.num_heads, config.num_kv_heads)
        self.unembed = nn.Linear(config.embed_dim, config.num_classes)

    def forward(self, tokens: torch.Tensor, ablate=()):
        _check_tokens(tokens, self.config)
        L = tokens.shape[1]
        h = self.embed(tokens) + self.pe[:L]  # (B, L, E)
        with ablate_heads(self.attn, ablate):
            mixed, weights = self.attn(h, h, h, is_causal=True)  # (B, L, E), (B, heads, L, L)
        return self.unembed(h + mixed), weights  # (B, L, classes), (B, heads, L, L)


def _check_tokens(tokens, config: AttentionOnlyConfig) -> None:
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be integer token ids, got dtype {tokens.dtype}")
    if tokens.dim() != 2 or not 0 < tokens.shape[1] <= config.max_length:
        raise ValueError(f"tokens must have shape (batch, length) with length at most "
                         f"{config.max_length}, got {tuple(tokens.shape)}")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= config.vocab):
        raise ValueError(f"tokens must lie in 0 .. {config.vocab - 1}, got values from "
                         f"{tokens.min().item()} to {tokens.max().item()}")


@contextlib.contextmanager
def ablate_heads(attention, heads):
    """Within the block, the listed heads of ``attention`` contribute nothing: their slice of the
    concatenation ``[head_1; ...; head_h]`` is set to zero before the output projection ``W_o``
    (its bias stays). Their weights are still computed and returned. ``attention`` is a
    :class:`MultiHeadAttention` or a :class:`~companion.grouped_query.GroupedQueryAttention`."""
    if not isinstance(attention, (MultiHeadAttention, GroupedQueryAttention)):
        raise TypeError(f"attention must be a MultiHeadAttention or a GroupedQueryAttention, "
                        f"got {type(attention).__name__}")
    heads = sorted(set(heads))
    for head in heads:
        if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < attention.num_heads:
            raise ValueError(f"heads must be integers in 0 .. {attention.num_heads - 1}, got {heads}")
    if not heads:
        yield
        return
    keep = torch.ones(attention.num_heads, attention.head_dim)  # (h, d_h)
    keep[heads] = 0.0

    def zero_heads(module, args):
        (concat,) = args  # (B, L, h * d_h)
        return (concat * keep.flatten().to(concat),)

    handle = attention.W_o.register_forward_pre_hook(zero_heads)
    try:
        yield
    finally:
        handle.remove()


def attention_by_offset(weights: torch.Tensor, start: int = 0) -> torch.Tensor:
    """How much weight each head puts on each distance back: ``(heads, L)``.

    ``weights (B, heads, L, L)`` of causal self-attention; entry ``[h, k]`` is the weight that
    head ``h`` gives to the key ``k`` positions before the query, averaged over the batch and
    over the queries ``t >= start`` (give ``start`` at least the largest offset of interest, so
    that every averaged query has a key that far back). Each row sums to 1.
    """
    _validate.tensor(weights, "weights")
    if weights.dim() != 4 or weights.shape[-1] != weights.shape[-2]:
        raise ValueError(f"weights must have shape (batch, heads, L, L), got {tuple(weights.shape)}")
    L = weights.shape[-1]
    if isinstance(start, bool) or not isinstance(start, int) or not 0 <= start < L:
        raise ValueError(f"start must be an integer in 0 .. {L - 1}, got {start!r}")
    t = torch.arange(start, L)  # (T,) the queries averaged over
    offsets = torch.arange(L)  # (L,)
    keys = t[:, None] - offsets[None, :]  # (T, L): the key k positions before query t
    valid = keys >= 0  # (T, L)
    picked = weights[:, :, t[:, None], keys.clamp(min=0)] * valid  # (B, heads, T, L)
    return picked.mean(dim=(0, 2))  # (heads, L)
