"""Grouped-query attention: several query heads share one key/value head.

With ``h`` query heads and ``g`` key/value heads (``g`` divides ``h``), query head ``i``
reads the key/value head ``i // (h / g)`` (eq-gqa)::

    head_i = Attention(Q W_i^Q, K W_{i // r}^K, V W_{i // r}^V),   r = h / g
    GQA(Q, K, V) = [head_1; ...; head_h] W^O

``g = h`` is multi-head attention (eq-mha); ``g = 1`` is multi-query attention (Shazeer 2019),
``1 < g < h`` grouped-query attention (Ainslie et al. 2023). What a decoder keeps for every
past position, per layer, is the projected keys and values: ``2 g d_k`` numbers instead of
``2 h d_k``, which is what :func:`kv_cache_bytes` counts (eq-kv-cache-bytes). The parameters shrink
too, a little: eq-gqa-params.

The query heads of a group are not given copies of their key/value head: the keys and values
are viewed as ``(B, g, 1, Lk, d_k)`` and broadcast against the queries ``(B, g, r, Lq, d_k)``.
"""

from __future__ import annotations

import numbers

import torch
from torch import nn

from . import _validate
from .attention import MultiHeadAttention, scaled_dot_product_attention

__all__ = ["GroupedQueryAttention", "kv_cache_bytes"]


class GroupedQueryAttention(nn.Module):
    """Grouped-query attention, eq-gqa (see the module docstring).

    ``W_q`` and ``W_o`` map ``embed_dim -> embed_dim`` as in :class:`MultiHeadAttention`;
    ``W_k`` and ``W_v`` map ``embed_dim -> num_kv_heads * head_dim``, with
    ``head_dim = embed_dim // num_heads``. ``bias`` switches the biases of all four.

    ``forward(query, key, value, mask=None, *, is_causal=False)`` takes ``query (B, Lq, E)``,
    ``key`` and ``value (B, Lk, E)`` and returns ``(output (B, Lq, E), weights (B, heads, Lq,
    Lk))``, with the masks of :class:`MultiHeadAttention`: 1-D ``(Lk,)`` or 2-D ``(Lq, Lk)``
    for every sequence and head, 3-D ``(B, Lq, Lk)`` for every head, 4-D ``(B, heads, Lq, Lk)``
    per query head (any axis may be 1). ``is_causal`` is the end-aligned causal mask of
    :func:`~companion.attention.scaled_dot_product_attention`.
    """

    def __init__(self, embed_dim: int, num_heads: int, num_kv_heads: int, bias: bool = True):
        super().__init__()
        _validate.positive_int(embed_dim, "embed_dim")
        _validate.positive_int(num_heads, "num_heads")
        _validate.positive_int(num_kv_heads, "num_kv_heads")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        if num_heads % num_kv_heads:
            raise ValueError(f"num_kv_heads={num_kv_heads} must divide num_heads={num_heads} "
                             "(each key/value head serves the same number of query heads)")
        if not isinstance(bias, bool):
            raise TypeError(f"bias must be True or False, got {bias!r}")
        self.embed_dim, self.num_heads, self.num_kv_heads = embed_dim, num_heads, num_kv_heads
        self.head_dim = embed_dim // num_heads
        self.group_size = num_heads // num_kv_heads  # r: query heads per key/value head
        kv_dim = num_kv_heads * self.head_dim
        self.W_q = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.W_k = nn.Linear(embed_dim, kv_dim, bias=bias)
        self.W_v = nn.Linear(embed_dim, kv_dim, bias=bias)
        self.W_o = nn.Linear(embed_dim, embed_dim, bias=bias)

    def _check_inputs(self, query, key, value) -> None:
        for t, name in ((query, "query"), (key, "key"), (value, "value")):
            if t is not None:
                _validate.tensor(t, name)
                if t.dim() != 3 or t.shape[-1] != self.embed_dim:
                    raise ValueError(f"{name} must have shape (batch, length, {self.embed_dim}), "
                                     f"got {tuple(t.shape)}")
        dtype = self.W_q.weight.dtype
        for t, name in ((query, "query"), (key, "key"), (value, "value")):
            if t is not None and t.dtype != dtype:
                raise TypeError(f"{name} has dtype {t.dtype} but the layer's weights are {dtype}: "
                                f"convert one of them (layer.to({t.dtype}) or {name}.to({dtype}))")
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(f"key and value must share batch and length, got key "
                             f"{tuple(key.shape)} and value {tuple(value.shape)}")
        if query is not None and query.shape[0] != key.shape[0]:
            raise ValueError(f"query and key must share the batch size, got query "
                             f"{tuple(query.shape)} and key {tuple(key.shape)}")

    def _group_mask(self, mask, batch: int, len_q: int, len_k: int):
        """The mask laid out as ``(B, g, r, Lq, Lk)`` (axes of size 1 broadcast), or None."""
        if mask is None:
            return None
        if isinstance(mask, torch.Tensor) and mask.dim() == 3:
            _validate.mask(mask, "mask", (batch, len_q, len_k),
                           target="(batch, len_q, len_k), as a 3-D mask is read,")
            return mask[:, None, None]  # (B, 1, 1, Lq, Lk): the same for every head
        if isinstance(mask, torch.Tensor) and mask.dim() > 4:
            raise ValueError(f"mask must have at most 4 dimensions, got shape {tuple(mask.shape)}")
        _validate.mask(mask, "mask", (batch, self.num_heads, len_q, len_k),
                       target="(batch, heads, len_q, len_k)")
        mask = mask.reshape((1,) * (4 - mask.dim()) + tuple(mask.shape))  # (B|1, h|1, Lq|1, Lk|1)
        if mask.shape[1] == 1:
            return mask.unsqueeze(2)  # (B|1, 1, 1, Lq|1, Lk|1)
        return mask.unflatten(1, (self.num_kv_heads, self.group_size))  # (B|1, g, r, Lq|1, Lk|1)

    def project_kv(self, key: torch.Tensor, value: torch.Tensor):
        """The keys and values of every key/value head, ``(B, g, Lk, d_k)`` each: what a
        decoder caches for its past positions (eq-kv-cache-bytes counts their bytes)."""
        self._check_inputs(None, key, value)
        B, Lk, _ = key.shape
        k = self.W_k(key).view(B, Lk, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, g, Lk, d_k)
        v = self.W_v(value).view(B, Lk, self.num_kv_heads, self.head_dim).transpose(1, 2)  # (B, g, Lk, d_k)
        return k, v

    def forward(self, query, key, value, mask=None, *, is_causal=False):
        self._check_inputs(query, key, value)
        B, Lq, E = query.shape
        g, r, d_k = self.num_kv_heads, self.group_size, self.head_dim
        mask = self._group_mask(mask, B, Lq, key.shape[1])  # broadcasts to (B, g, r, Lq, Lk)
        q = self.W_q(query).view(B, Lq, g, r, d_k).permute(0, 2, 3, 1, 4)  # (B, g, r, Lq, d_k)
        k, v = self.project_kv(key, value)  # (B, g, Lk, d_k) each
        heads, weights = scaled_dot_product_attention(
            q, k.unsqueeze(2), v.unsqueeze(2), mask, is_causal=is_causal
        )  # (B, g, r, Lq, d_k), (B, g, r, Lq, Lk): the r heads of a group share k and v
        heads = heads.flatten(1, 2)  # (B, h, Lq, d_k): head i = group i // r, member i % r
        concat = heads.transpose(1, 2).reshape(B, Lq, E)  # (B, Lq, h * d_k)
        return self.W_o(concat), weights.flatten(1, 2)  # (B, Lq, E), (B, h, Lq, Lk)

    @classmethod
    def from_multi_head(cls, mha: MultiHeadAttention, num_kv_heads: int) -> "GroupedQueryAttention":
        """A grouped-query layer made from a multi-head one by mean-pooling the key and value
        projections of each group of heads (the conversion of Ainslie et al. 2023, before their
        "uptraining"). Queries and output are copied. With ``num_kv_heads = num_heads`` the
        result computes exactly what ``mha`` computes."""
        if not isinstance(mha, MultiHeadAttention):
            raise TypeError(f"mha must be a MultiHeadAttention, got {type(mha).__name__}")
        if mha.kdim != mha.embed_dim or mha.vdim != mha.embed_dim:
            raise ValueError(f"mha must have kdim = vdim = embed_dim={mha.embed_dim}, got kdim="
                             f"{mha.kdim}, vdim={mha.vdim}")
        ref = mha.W_o.weight
        gqa = cls(mha.embed_dim, mha.num_heads, num_kv_heads, bias=mha.W_o.bias is not None)
        gqa.to(device=ref.device, dtype=ref.dtype)
        g, r, d_k = gqa.num_kv_heads, gqa.group_size, gqa.head_dim
        with torch.no_grad():
            for ours, theirs in ((gqa.W_q, mha.W_q), (gqa.W_o, mha.W_o)):
                ours.load_state_dict(theirs.state_dict())
            for ours, theirs in ((gqa.W_k, mha.W_k), (gqa.W_v, mha.W_v)):
                # output rows of head i are i*d_k .. (i+1)*d_k; average the r heads of a group
                ours.weight.copy_(theirs.weight.view(g, r, d_k, -1).mean(1).reshape(g * d_k, -1))
                if theirs.bias is not None:
                    ours.bias.copy_(theirs.bias.view(g, r, d_k).mean(1).reshape(g * d_k))
        return gqa


def kv_cache_bytes(batch: int, length: int, num_layers: int, num_kv_heads: int, head_dim: int,
                   bytes_per_element):
    """Bytes of the key/value cache of a decoder, eq-kv-cache-bytes::

        2 * batch * length * num_layers * num_kv_heads * head_dim * bytes_per_element

    (the 2: keys and values). ``num_kv_heads = num_heads`` for multi-head attention, 1 for
    multi-query attention. The sizes are positive integers; ``bytes_per_element`` is a positive
    number (2 for float16, 4 for float32, 0.5 for 4-bit values). Returns an ``int`` when it is
    a whole number of bytes, else a ``float``.
    """
    for value, name in ((batch, "batch"), (length, "length"), (num_layers, "num_layers"),
                        (num_kv_heads, "num_kv_heads"), (head_dim, "head_dim")):
        _validate.positive_int(value, name)
    if not isinstance(bytes_per_element, numbers.Real):
        raise TypeError(f"bytes_per_element must be a real number, got "
                        f"{type(bytes_per_element).__name__}")
    _validate.positive_number(bytes_per_element, "bytes_per_element")
    elements = 2 * batch * length * num_layers * num_kv_heads * head_dim
    total = elements * bytes_per_element
    return int(total) if float(total).is_integer() else float(total)
