"""A small causal self-attention model whose only switch is how it is told the positions.

    h_0    = E[x_t] (+ P[t] for "learned" and "sinusoidal")          (eq-self-attention)
    h_l    = h_{l-1} + Attn(LN(h_{l-1}));  h_l += MLP(LN(h_l))        one head a layer
    logits = LN(h_layers) W_U

``positions`` chooses one of five ways (see the chapter on self-attention):

- ``"none"``: nothing; causal attention alone sees each prefix as a bag of tokens;
- ``"learned"``: a trained table ``P (max_length, d)`` added to the inputs; its rows beyond the
  training length are never trained;
- ``"sinusoidal"``: the fixed table eq-sinusoidal added to the inputs, defined at any length;
- ``"rope"``: no addition; queries and keys rotated by their position (eq-rope);
- ``"alibi"``: no addition; ``-m (i - j)`` added to the score of query ``i`` and key ``j``
  (eq-alibi), with one fixed slope ``m``.

The attention is single-head and written out (eq-self-attention with the causal mask
eq-causal-mask), so that the rotations and the bias can be put where they belong.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from . import _validate
from .attention import attend
from .masks import causal_mask
from .positional import alibi_bias, rotary_embedding, sinusoidal_encoding

SCHEMES = ("none", "learned", "sinusoidal", "rope", "alibi")


@dataclass(frozen=True)
class PositionModelConfig:
    vocab: int  # input tokens
    num_classes: int  # outputs at each position
    positions: str = "rope"  # one of SCHEMES
    dim: int = 32  # d, the model width (= d_k = d_v: one head)
    layers: int = 1
    max_length: int = 256  # rows of the learned table (other schemes take any length)
    base: float = 10000.0  # of the sinusoidal table and of RoPE
    alibi_slope: float = 0.5  # m of ALiBi (one head: the steepest of Press et al.'s 8-head slopes)

    def __post_init__(self):
        for name in ("vocab", "num_classes", "dim", "layers", "max_length"):
            _validate.positive_int(getattr(self, name), name)
        if self.positions not in SCHEMES:
            raise ValueError(f"positions must be one of {SCHEMES}, got {self.positions!r}")
        if self.dim % 2:
            raise ValueError(f"dim must be even (sinusoids and rotations come in pairs), got {self.dim}")
        if _validate.positive_number(self.base, "base") <= 1:
            raise ValueError(f"base must be greater than 1, got {self.base!r}")
        _validate.positive_number(self.alibi_slope, "alibi_slope")


class CausalSelfAttention(nn.Module):
    """One head of causal self-attention, ``(B, L, d) -> (B, L, d)``, with RoPE or ALiBi inside.

    ``forward(x)`` returns ``(output (B, L, d), weights (B, L, L))``.
    """

    def __init__(self, config: PositionModelConfig):
        super().__init__()
        d = config.dim
        self.config = config
        self.W_q = nn.Linear(d, d)
        self.W_k = nn.Linear(d, d)
        self.W_v = nn.Linear(d, d)
        self.W_o = nn.Linear(d, d)

    def forward(self, x: torch.Tensor):
        _validate.tensor(x, "x")
        if x.dim() != 3 or x.shape[-1] != self.config.dim:
            raise ValueError(f"x must have shape (batch, length, {self.config.dim}), got {tuple(x.shape)}")
        L, d = x.shape[1], x.shape[2]
        q, k, v = self.W_q(x), self.W_k(x), self.W_v(x)  # (B, L, d) each
        if self.config.positions == "rope":
            q = rotary_embedding(q, base=self.config.base)  # (B, L, d): pair i turned by t w_i
            k = rotary_embedding(k, base=self.config.base)  # (B, L, d)
        scores = q @ k.transpose(1, 2) / math.sqrt(d)  # (B, L, L)
        if self.config.positions == "alibi":
            bias = alibi_bias(1, L, slopes=[self.config.alibi_slope], dtype=x.dtype)  # (1, L, L)
            scores = scores + bias  # (B, L, L): -m (i - j) below the diagonal
        out, weights = attend(scores, v, causal_mask(L, device=x.device))  # (B, L, d), (B, L, L)
        return self.W_o(out), weights


class Block(nn.Module):
    """Pre-norm residual block: causal self-attention, then a two-layer MLP."""

    def __init__(self, config: PositionModelConfig):
        super().__init__()
        d = config.dim
        self.ln_attn = nn.LayerNorm(d)
        self.attn = CausalSelfAttention(config)
        self.ln_mlp = nn.LayerNorm(d)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def forward(self, x: torch.Tensor):
        mixed, weights = self.attn(self.ln_attn(x))  # (B, L, d), (B, L, L)
        x = x + mixed  # (B, L, d)
        return x + self.mlp(self.ln_mlp(x)), weights  # (B, L, d), (B, L, L)


class PositionModel(nn.Module):
    """Token embedding, the chosen positions, ``layers`` blocks, a read-out at every position.

    ``forward(tokens (B, L))`` returns ``(logits (B, L, num_classes), weights (B, layers, L, L))``.
    """

    def __init__(self, config: PositionModelConfig):
        super().__init__()
        if not isinstance(config, PositionModelConfig):
            raise TypeError(f"config must be a PositionModelConfig, got {type(config).__name__}")
        self.config = config
        self.embed = nn.Embedding(config.vocab, config.dim)
        if config.positions == "learned":
            self.position_table = nn.Embedding(config.max_length, config.dim)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.layers))
        self.ln_out = nn.LayerNorm(config.dim)
        self.unembed = nn.Linear(config.dim, config.num_classes)

    def input_positions(self, length: int, dtype=torch.float32) -> torch.Tensor | None:
        """What is added to the token embeddings, ``(L, d)``, or None (none, RoPE, ALiBi)."""
        if self.config.positions == "learned":
            return self.position_table.weight[:length]  # (L, d)
        if self.config.positions == "sinusoidal":
            return sinusoidal_encoding(length, self.config.dim, self.config.base, dtype=dtype)  # (L, d)
        return None

    def forward(self, tokens: torch.Tensor):
        _check_tokens(tokens, self.config)
        h = self.embed(tokens)  # (B, L, d)
        added = self.input_positions(tokens.shape[1], dtype=h.dtype)
        if added is not None:
            h = h + added.to(h.device)  # (B, L, d)
        maps = []
        for block in self.blocks:
            h, weights = block(h)  # (B, L, d), (B, L, L)
            maps.append(weights)
        return self.unembed(self.ln_out(h)), torch.stack(maps, dim=1)  # (B, L, C), (B, layers, L, L)


def _check_tokens(tokens, config: PositionModelConfig) -> None:
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"tokens must be a torch.Tensor, got {type(tokens).__name__}")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be integer token ids, got dtype {tokens.dtype}")
    if tokens.dim() != 2 or tokens.shape[1] == 0:
        raise ValueError(f"tokens must have shape (batch, length) with length >= 1, got {tuple(tokens.shape)}")
    if config.positions == "learned" and tokens.shape[1] > config.max_length:
        raise ValueError(f"tokens of length {tokens.shape[1]} exceed the learned table's "
                         f"max_length={config.max_length}: got tokens {tuple(tokens.shape)}")
    if tokens.numel() and (tokens.min() < 0 or tokens.max() >= config.vocab):
        raise ValueError(f"tokens must lie in 0 .. {config.vocab - 1}, got values from "
                         f"{tokens.min().item()} to {tokens.max().item()}")
