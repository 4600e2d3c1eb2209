"""Boolean attention masks.

Convention (as in ``torch.nn.functional.scaled_dot_product_attention``): ``True`` means
*may attend*, ``False`` means *blocked*. Masks broadcast against scores of shape
``(batch, ..., len_q, len_k)``.
"""

from __future__ import annotations

import torch

from . import _validate


def causal_mask(length: int, device=None) -> torch.Tensor:
    """Lower-triangular mask of shape ``(length, length)``: query ``i`` may see keys ``j <= i``.

    This is the mask of the decoder's self-attention (book, chapter 2, eq. "causal mask").
    """
    _validate.positive_int(length, "length")
    return torch.ones(length, length, dtype=torch.bool, device=device).tril()


def padding_mask(lengths, max_length: int | None = None) -> torch.Tensor:
    """Key-padding mask of shape ``(batch, 1, max_length)`` from valid lengths.

    Entry ``[b, 0, j]`` is True when key ``j`` is a real token of sequence ``b``
    (``j < lengths[b]``). The singleton axis lets it broadcast over queries:
    ``scores`` of shape ``(batch, len_q, len_k)``. For multi-head scores of shape
    ``(batch, heads, len_q, len_k)`` use ``mask.unsqueeze(1)``.
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
