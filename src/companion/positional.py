"""Positions for attention, which on its own cannot tell one order of the tokens from another.

Three ways to give it the order, each a function here:

- the sinusoidal encoding added to the inputs (Vaswani et al. 2017, section 3.5)::

      PE[pos, 2i]   = sin(pos * w_i)
      PE[pos, 2i+1] = cos(pos * w_i),        w_i = base^(-2i / d)

  Moving every position by a fixed offset ``k`` rotates each pair ``(PE[., 2i], PE[., 2i+1])``
  by the angle ``k * w_i``: the offset acts as a linear map that does not depend on ``pos``.

- the rotary position embedding, RoPE (Su et al. 2021, section 3.2), which rotates the
  queries and keys themselves: the pair ``(x[2i], x[2i+1])`` at position ``m`` turns by the
  angle ``m * w_i``. The dot product of a query rotated to ``m`` and a key rotated to ``n``
  then depends on the positions only through ``m - n``.

- ALiBi (Press et al. 2022, section 3), which adds nothing to the inputs and instead adds the
  bias ``-m_h * (i - j)`` to the score of query ``i`` and key ``j`` in head ``h``: a penalty
  that grows with the distance, with one slope ``m_h`` a head.
"""

from __future__ import annotations

import math

import torch

from . import _validate

__all__ = ["frequencies", "sinusoidal_encoding", "rotary_embedding", "alibi_slopes", "alibi_bias"]


def frequencies(dim: int, base: float = 10000.0, dtype=torch.float64, device=None) -> torch.Tensor:
    """The ``dim // 2`` angular frequencies ``w_i = base^(-2i / dim)``, ``i = 0 .. dim/2 - 1``.

    Pair ``i`` of the sinusoidal encoding and of RoPE turns by ``pos * w_i``: the first pair
    once a position (``w_0 = 1``), the last about ``base`` times more slowly.
    """
    _validate.positive_int(dim, "dim")
    if dim % 2:
        raise ValueError(f"dim must be even (the features come in pairs), got {dim}")
    base = _validate.positive_number(base, "base")
    two_i = torch.arange(0, dim, 2, dtype=torch.float64, device=device)  # (d/2,)
    return (base ** (-two_i / dim)).to(dtype)  # (d/2,)


def sinusoidal_encoding(length: int, dim: int, base: float = 10000.0, dtype=torch.float32) -> torch.Tensor:
    """The ``(length, dim)`` table of the sinusoidal encoding (Vaswani et al. 2017, section 3.5).

    ``PE[pos, 2i] = sin(pos * w_i)`` and ``PE[pos, 2i+1] = cos(pos * w_i)`` with
    ``w_i = base^(-2i / dim)`` (:func:`frequencies`). ``dim`` must be even and ``base`` greater
    than 1 (with ``base <= 1`` the wavelengths no longer grow along the features). Computed in
    float64 and returned in ``dtype``.
    """
    _validate.positive_int(length, "length")
    _validate.positive_int(dim, "dim")
    if dim % 2:
        raise ValueError(f"dim must be even (sines and cosines come in pairs), got {dim}")
    if _validate.positive_number(base, "base") <= 1:
        raise ValueError(f"base must be greater than 1, got {base!r}")
    if dtype not in _validate.FLOAT_DTYPES:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    pos = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    angle = pos * frequencies(dim, base)[None, :]  # (L, d/2)
    pe = torch.empty(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe.to(dtype)  # (L, d)


def _rotary_positions(positions, x: torch.Tensor) -> torch.Tensor:
    """``positions`` checked and shaped to broadcast against ``x (B, ..., L, d)`` without its
    feature axis: ``(L,)``, or ``(B, 1, ..., 1, L)`` for per-sequence positions ``(B, L)``."""
    length = x.shape[-2]
    if positions is None:
        return torch.arange(length, device=x.device)  # (L,)
    if not isinstance(positions, torch.Tensor):
        raise TypeError(f"positions must be an integer torch.Tensor or None, got {type(positions).__name__}")
    if positions.dtype.is_floating_point or positions.dtype.is_complex or positions.dtype == torch.bool:
        raise TypeError(f"positions must be an integer tensor (torch.long), got dtype {positions.dtype}")
    if positions.dim() == 1 and positions.shape[0] == length:
        return positions.to(x.device)  # (L,)
    if positions.dim() == 2 and x.dim() >= 3 and tuple(positions.shape) == (x.shape[0], length):
        middle = (1,) * (x.dim() - 3)  # one singleton a head (or other) axis
        return positions.to(x.device).view(x.shape[0], *middle, length)  # (B, 1, ..., 1, L)
    expected = f"({length},)" if x.dim() < 3 else f"({length},) or ({x.shape[0]}, {length})"
    raise ValueError(
        f"positions must have shape {expected} (length, or batch and length, of x), "
        f"got positions {tuple(positions.shape)} for x {tuple(x.shape)}"
    )


def rotary_embedding(x: torch.Tensor, positions=None, base: float = 10000.0) -> torch.Tensor:
    """Rotary position embedding (Su et al. 2021, section 3.2): rotate each pair of features
    of ``x`` by an angle proportional to its position.

    With ``w_i = base^(-2i / d)`` (:func:`frequencies`) and ``theta = pos * w_i``::

        out[..., 2i]   = x[..., 2i] * cos(theta) - x[..., 2i+1] * sin(theta)
        out[..., 2i+1] = x[..., 2i] * sin(theta) + x[..., 2i+1] * cos(theta)

    the interleaved pairing of the RoFormer paper (some libraries pair feature ``i`` with
    ``i + d/2`` instead; that is a permutation of the features, not the same function). Read as
    complex numbers ``z_i = x[2i] + 1j x[2i+1]``, RoPE multiplies ``z_i`` by ``exp(1j theta)``,
    so a rotated query at position ``m`` and a rotated key at ``n`` have the dot product
    ``Re sum_i q_i conj(k_i) exp(1j (m - n) w_i)``: it depends on the positions only through
    ``m - n``. Rotations keep the norm of every pair.

    Args:
        x: ``(B, ..., L, d)`` (or ``(L, d)``), a floating dtype, ``d`` even: queries or keys,
            heads on any axis before the length.
        positions: the position of each of the ``L`` rows; ``None`` means ``0 .. L-1``. An
            integer tensor ``(L,)``, shared by every sequence, or ``(B, L)``, one row of
            positions a sequence, broadcast over the axes between batch and length (the heads).
            Positions may be negative or exceed ``L`` (a decoder's cache puts the new queries
            at its end).
        base: a positive number; 10000 in the paper.

    Returns:
        a tensor shaped and typed like ``x``. The angles, sines and cosines are computed in
        ``x``'s dtype (float64 stays float64), in float32 for half-precision inputs.
    """
    _validate.tensor(x, "x", min_dim=2)
    if x.shape[-1] % 2:
        raise ValueError(f"the last axis of x must be even (features come in pairs), got x {tuple(x.shape)}")
    base = _validate.positive_number(base, "base")
    pos = _rotary_positions(positions, x)  # (L,) or (B, 1, ..., 1, L)
    work = torch.promote_types(x.dtype, torch.float32)  # float64 stays, half -> float32
    w = frequencies(x.shape[-1], base, dtype=work, device=x.device)  # (d/2,)
    theta = pos.to(work)[..., None] * w  # (L, d/2) or (B, 1, ..., 1, L, d/2)
    cos, sin = torch.cos(theta), torch.sin(theta)
    even, odd = x[..., 0::2].to(work), x[..., 1::2].to(work)  # (B, ..., L, d/2) each
    turned = torch.stack([even * cos - odd * sin, even * sin + odd * cos], dim=-1)  # (B, ..., L, d/2, 2)
    return turned.flatten(-2).to(x.dtype)  # (B, ..., L, d): pairs interleaved again


def alibi_slopes(num_heads: int, dtype=torch.float32, device=None) -> torch.Tensor:
    """The ALiBi slope of each head (Press et al. 2022, section 3): ``(num_heads,)``.

    For ``h`` a power of two, the geometric sequence ``m_k = 2^(-8k / h)``, ``k = 1 .. h``
    (``1/2, 1/4, ..., 1/256`` for 8 heads). For other ``h``, the rule of the authors' code:
    the ``n`` slopes of the largest power of two ``n < h``, then the first ``h - n`` of the odd
    terms ``2^(-4k / n)``, ``k = 1, 3, 5, ...`` (every other slope of the ``2n``-head sequence).
    """
    _validate.positive_int(num_heads, "num_heads")
    if dtype not in _validate.FLOAT_DTYPES:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    n = 2 ** int(math.floor(math.log2(num_heads)))  # the largest power of two <= h
    k = torch.arange(1, n + 1, dtype=torch.float64)  # (n,)
    slopes = 2.0 ** (-8.0 * k / n)  # (n,)
    if n < num_heads:
        odd = torch.arange(1, 2 * (num_heads - n), 2, dtype=torch.float64)  # (h - n,)
        slopes = torch.cat([slopes, 2.0 ** (-4.0 * odd / n)])  # (h,)
    return slopes.to(dtype=dtype, device=device)  # (h,)


def alibi_bias(num_heads: int, len_q: int, len_k: int | None = None, *, slopes=None,
               dtype=None, device=None) -> torch.Tensor:
    """The ALiBi bias (Press et al. 2022, section 3), ``(num_heads, len_q, len_k)``, to add to
    the scores of causal attention.

    ``bias[h, i, j] = -m_h * (i + offset - j)`` for the keys ``j <= i + offset`` a query may
    see, with ``offset = len_k - len_q``: the queries sit at the end of the keys, as in
    :func:`companion.masks.causal_mask` with that offset and in ``is_causal`` of
    :func:`companion.attention.scaled_dot_product_attention` (query ``i`` is at position
    ``i + offset``). The entries of the keys a query may not see are 0: the causal mask
    blocks them, and the bias stays finite. Add it to the scores of every sequence (it
    broadcasts over the batch): ``scores (B, h, Lq, Lk) + bias``, then a causal softmax.

    Args:
        num_heads: ``h``, a positive integer.
        len_q: number of queries; len_k: number of keys (defaults to ``len_q``).
        slopes: ``m_h``, a sequence or 1-D tensor of ``h`` positive finite numbers; ``None``
            means :func:`alibi_slopes`.
        dtype: of the result; defaults to the slopes' dtype for a floating tensor, else float32.
        device: of the result; defaults to the slopes' device for a tensor.
    """
    _validate.positive_int(num_heads, "num_heads")
    _validate.positive_int(len_q, "len_q")
    len_k = len_q if len_k is None else _validate.positive_int(len_k, "len_k")
    if dtype is None:
        floating = isinstance(slopes, torch.Tensor) and slopes.dtype in _validate.FLOAT_DTYPES
        dtype = slopes.dtype if floating else torch.float32
    if dtype not in _validate.FLOAT_DTYPES:
        raise TypeError(f"dtype must be a floating dtype, got {dtype}")
    if device is None and isinstance(slopes, torch.Tensor):
        device = slopes.device
    m = alibi_slopes(num_heads, dtype=torch.float64) if slopes is None else _checked_slopes(slopes, num_heads)  # (h,)
    m = m.to(dtype=dtype, device=device)
    offset = len_k - len_q
    i = torch.arange(len_q, device=device)[:, None] + offset  # (Lq, 1): the queries' positions
    j = torch.arange(len_k, device=device)[None, :]  # (1, Lk)
    distance = (i - j).clamp(min=0).to(dtype)  # (Lq, Lk): 0 where the key is in the future
    return -m[:, None, None] * distance  # (h, Lq, Lk)


def _checked_slopes(slopes, num_heads: int) -> torch.Tensor:
    """``slopes`` as a 1-D tensor of ``num_heads`` positive finite numbers (a tensor keeps its
    autograd graph, so the slopes may be learned)."""
    if not isinstance(slopes, torch.Tensor):
        try:
            slopes = torch.tensor([float(s) for s in slopes], dtype=torch.float64)
        except (TypeError, ValueError):
            raise TypeError(f"slopes must be a sequence or tensor of numbers, got {slopes!r}") from None
    if slopes.dtype == torch.bool or slopes.dtype.is_complex:
        raise TypeError(f"slopes must be real numbers, got dtype {slopes.dtype}")
    if tuple(slopes.shape) != (num_heads,):
        raise ValueError(f"slopes must have shape ({num_heads},), one a head, got {tuple(slopes.shape)}")
    values = slopes.detach()
    if not (torch.isfinite(values).all() and (values > 0).all()):
        raise ValueError(f"slopes must be positive and finite, got {values.tolist()}")
    return slopes
