"""Boolean attention masks.

Convention (as in ``torch.nn.functional.scaled_dot_product_attention``): ``True`` means
*may attend*, ``False`` means *blocked*. Masks broadcast against scores of shape
``(batch, ..., len_q, len_k)``.

The causal mask (eq-causal-mask) lets query ``i`` see key ``j`` iff ``j <= i + offset``.
With ``offset = 0`` and ``len_q == len_k`` it is the lower triangle of the decoder's
self-attention. When a decoder keeps a cache of ``len_k`` keys and feeds the last ``len_q``
positions, the queries sit at the *end* of the key sequence, and ``offset = len_k - len_q``
aligns them there: a single new query (``len_q = 1``) sees every cached key.
"""

from __future__ import annotations

import torch

from . import _validate


def causal_mask(len_q: int, len_k: int | None = None, offset: int = 0, device=None) -> torch.Tensor:
    """Causal mask of shape ``(len_q, len_k)``: query ``i`` may see key ``j`` iff ``j <= i + offset``.

    This is eq-causal-mask. ``causal_mask(L)`` is the ``(L, L)`` lower triangle.

    Args:
        len_q: number of queries, a positive integer.
        len_k: number of keys, a positive integer; defaults to ``len_q``.
        offset: an integer (may be negative) that shifts the diagonal to the right;
            ``len_k - len_q`` aligns the queries with the end of the keys.
        device: where the mask is created.
    """
    _validate.positive_int(len_q, "len_q")
    len_k = len_q if len_k is None else _validate.positive_int(len_k, "len_k")
    if isinstance(offset, bool) or not isinstance(offset, int):
        raise ValueError(f"offset must be an integer, got {offset!r} ({type(offset).__name__})")
    return torch.ones(len_q, len_k, dtype=torch.bool, device=device).tril(offset)  # (Lq, Lk)


def padding_mask(lengths, max_length: int | None = None) -> torch.Tensor:
    """Key-padding mask of shape ``(batch, 1, max_length)`` from valid lengths.

    Entry ``[b, 0, j]`` is True when key ``j`` is a real token of sequence ``b``
    (``j < lengths[b]``). The singleton axis lets it broadcast over queries:
    ``scores`` of shape ``(batch, len_q, len_k)``. :class:`companion.attention.MultiHeadAttention`
    takes it as it is (it inserts the head axis of a 3-D mask); for multi-head scores of shape
    ``(batch, heads, len_q, len_k)`` used directly, take ``mask.unsqueeze(1)``.
    """
    if not isinstance(lengths, torch.Tensor):
        lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths must be one-dimensional (batch,), got shape {tuple(lengths.shape)}")
    if lengths.dtype.is_floating_point or lengths.dtype == torch.bool:
        raise TypeError(f"lengths must be integers, got dtype {lengths.dtype}")
    if (lengths < 0).any():
        raise ValueError(f"lengths must be non-negative, got {lengths.tolist()}")
    longest = int(lengths.max()) if lengths.numel() else 0
    if max_length is None:
        max_length = longest
    _validate.positive_int(max_length, "max_length")
    if longest > max_length:
        raise ValueError(f"max_length={max_length} is shorter than the longest length {longest}")
    positions = torch.arange(max_length, device=lengths.device)
    return (positions[None, :] < lengths[:, None]).unsqueeze(1)
