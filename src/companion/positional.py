"""Sinusoidal positional encoding (Vaswani et al. 2017, section 3.5).

    PE[pos, 2i]   = sin(pos / 10000^(2i / d))
    PE[pos, 2i+1] = cos(pos / 10000^(2i / d))
"""

from __future__ import annotations

import torch

from . import _validate


def sinusoidal_encoding(length: int, dim: int, base: float = 10000.0, dtype=torch.float32) -> torch.Tensor:
    """The ``(length, dim)`` table of eq. (6.pe); ``dim`` must be even."""
    _validate.positive_int(length, "length")
    _validate.positive_int(dim, "dim")
    if dim % 2:
        raise ValueError(f"dim must be even (sines and cosines come in pairs), got {dim}")
    if not base > 1:
        raise ValueError(f"base must be greater than 1, got {base!r}")
    if dtype not in _validate.FLOAT_DTYPES:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    pos = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)[None, :]  # (1, d/2)
    angle = pos / base ** (two_i / dim)  # (L, d/2)
    pe = torch.empty(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.to(dtype)
