"""Scaled dot-product attention and multi-head attention.

    Attention(Q, K, V) = softmax(Q K^T * scale, masked) V,  scale = 1 / sqrt(d_k)   (eq-sdpa)

    head_i = Attention(Q W_i^Q, K W_i^K, V W_i^V)
    MultiHead(Q, K, V) = [head_1; ...; head_h] W^O                                  (Vaswani et al. 2017, sec. 3.2.2)

Shapes are batch-first: ``query (B, ..., Lq, d_k)``, ``key (B, ..., Lk, d_k)``,
``value (B, ..., Lk, d_v)``; the batch axes ``...`` broadcast. Masks are boolean, True = may
attend, and broadcast to ``(B, ..., Lq, Lk)``. Each function returns the weights as well as
the output, because the book wants to show them; ``torch.nn.functional.scaled_dot_product_attention``
computes the same output without materialising them.

What is checked: types, dtypes, shapes and masks on every call (metadata only, cheap). The
data is not scanned: the softmax checks only its row maxima (see :mod:`companion.softmax`),
so a NaN or ``+inf`` score at an allowed entry raises a ``ValueError``; a NaN in ``value``
propagates to the output, as in torch. From finite input these functions never produce NaN,
fully masked rows included.

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
from .softmax import _masked_softmax, masked_log_softmax, masked_softmax

__all__ = [
    "scaled_dot_product_attention",
    "attend",
    "MultiHeadAttention",
    "masked_softmax",
    "masked_log_softmax",
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


def _attention(query, key, value, mask, scale: float):
    """Eq-sdpa in plain tensor algebra, with no checks: the kernel of
    :func:`scaled_dot_product_attention` (the benchmark times it to measure the checks)."""
    scores = query @ key.transpose(-2, -1) * scale  # (B, ..., Lq, Lk)
    weights = _masked_softmax(scores, mask)  # (B, ..., Lq, Lk): zero where blocked
    return weights @ value, weights  # (B, ..., Lq, d_v), (B, ..., Lq, Lk)


def _checked_arguments(query, key, value, mask, is_causal, scale):
    """Every check of :func:`scaled_dot_product_attention` (metadata only, no scan of the data).

    Returns the mask to use (the causal mask folded in) and the scale.
    """
    _validate.attention_inputs(query, key, value, mask, is_causal)
    len_q, len_k = query.shape[-2], key.shape[-2]
    scale = 1 / math.sqrt(query.shape[-1]) if scale is None else _validate.positive_number(scale, "scale")
    if is_causal:
        causal = causal_mask(len_q, len_k, offset=len_k - len_q, device=query.device)  # (Lq, Lk)
        mask = causal if mask is None else mask & causal
    return mask, scale


def scaled_dot_product_attention(query, key, value, mask=None, *, is_causal=False, scale=None):
    """Scaled dot-product attention, eq-sdpa. Returns ``(output, weights)``.

    Equal to ``torch.nn.functional.scaled_dot_product_attention(query, key, value,
    attn_mask=mask, is_causal=..., scale=scale)`` wherever a query may attend to at least
    one key; a query whose mask row is all False gets zero weights and a zero output, never NaN.

    Args:
        query: ``(B, ..., Lq, d_k)``; key: ``(B, ..., Lk, d_k)``; value: ``(B, ..., Lk, d_v)``.
            One floating dtype; the batch axes broadcast.
        mask: optional boolean, broadcastable to ``(B, ..., Lq, Lk)``; True = may attend.
        is_causal: apply the causal mask eq-causal-mask aligned to the *end* of the keys:
            query ``i`` sees key ``j`` iff ``j <= i + (Lk - Lq)``. With ``Lq == Lk`` this is
            torch's ``is_causal``; with a cache of ``Lk`` keys and ``Lq`` new queries, the
            queries are the last ``Lq`` positions (a single query sees every key). With
            ``Lq > Lk`` the first ``Lq - Lk`` queries see no key. Combined with ``mask`` by
            logical and.
        scale: multiplies the scores; ``None`` means ``1 / sqrt(d_k)``; otherwise a positive
            finite number.

    Returns:
        output ``(B, ..., Lq, d_v)`` and weights ``(B, ..., Lq, Lk)``.
    """
    mask, scale = _checked_arguments(query, key, value, mask, is_causal, scale)
    return _attention(query, key, value, mask, scale)


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017, sec. 3.2.2), written out.

    ``W_q`` maps ``embed_dim -> embed_dim``, ``W_k`` maps ``kdim -> embed_dim`` and ``W_v``
    ``vdim -> embed_dim`` (``kdim`` and ``vdim`` default to ``embed_dim``; cross-attention to
    image features, say, has other sizes), ``W_o`` maps ``embed_dim -> embed_dim``. ``bias``
    switches the biases of all four.

    ``forward(query, key, value, mask=None, *, is_causal=False)`` takes ``query (B, Lq, E)``,
    ``key (B, Lk, kdim)``, ``value (B, Lk, vdim)`` and returns
    ``(output (B, Lq, E), weights (B, heads, Lq, Lk))``; ``weights.mean(1)`` is torch's
    head-averaged weight. The boolean mask (True = may attend) is read by its number of axes:

    - 1-D ``(Lk,)`` or 2-D ``(Lq, Lk)``: the same for every sequence and head (a causal mask);
    - 3-D ``(B, Lq, Lk)`` (either of the first two may be 1): per sequence, the same for every
      head; the head axis is inserted, so a :func:`padding_mask` ``(B, 1, Lk)`` works as it is;
    - 4-D ``(B, heads, Lq, Lk)`` (any axis may be 1): as it is.

    ``is_causal`` applies the end-aligned causal mask of :func:`scaled_dot_product_attention`.
    """

    def __init__(self, embed_dim: int, num_heads: int, bias: bool = True, kdim: int | None = None,
                 vdim: int | None = None):
        super().__init__()
        _validate.positive_int(embed_dim, "embed_dim")
        _validate.positive_int(num_heads, "num_heads")
        if embed_dim % num_heads:
            raise ValueError(f"embed_dim={embed_dim} is not divisible by num_heads={num_heads}")
        self.embed_dim, self.num_heads = embed_dim, num_heads
        self.head_dim = embed_dim // num_heads
        self.kdim = embed_dim if kdim is None else _validate.positive_int(kdim, "kdim")
        self.vdim = embed_dim if vdim is None else _validate.positive_int(vdim, "vdim")
        self.W_q = nn.Linear(embed_dim, embed_dim, bias=bias)
        self.W_k = nn.Linear(self.kdim, embed_dim, bias=bias)
        self.W_v = nn.Linear(self.vdim, embed_dim, bias=bias)
        self.W_o = nn.Linear(embed_dim, embed_dim, bias=bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:
        B, L, _ = x.shape
        return x.view(B, L, self.num_heads, self.head_dim).transpose(1, 2)  # (B, h, L, d_h)

    def _check_inputs(self, query, key, value) -> None:
        for t, name, size in ((query, "query", self.embed_dim), (key, "key", self.kdim), (value, "value", self.vdim)):
            _validate.tensor(t, name)
            if t.dim() != 3 or t.shape[-1] != size:
                raise ValueError(f"{name} must have shape (batch, length, {size}), got {tuple(t.shape)}")
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

    def _head_mask(self, mask, batch: int, len_q: int, len_k: int):
        """The mask in the 4-D layout ``(B, heads, Lq, Lk)`` (see the class docstring)."""
        if isinstance(mask, torch.Tensor) and mask.dim() == 3:
            _validate.mask(mask, "mask", (batch, len_q, len_k),
                           target="(batch, len_q, len_k), as a 3-D mask is read,")
            return mask.unsqueeze(1)  # (B, 1, Lq, Lk): the same for every head
        if isinstance(mask, torch.Tensor) and mask.dim() > 4:
            raise ValueError(f"mask must have at most 4 dimensions, got shape {tuple(mask.shape)}")
        return _validate.mask(mask, "mask", (batch, self.num_heads, len_q, len_k),
                              target="(batch, heads, len_q, len_k)")

    def forward(self, query, key, value, mask=None, *, is_causal=False):
        self._check_inputs(query, key, value)
        B, Lq, E = query.shape
        mask = self._head_mask(mask, B, Lq, key.shape[1])  # broadcasts to (B, h, Lq, Lk)
        q = self._split(self.W_q(query))  # (B, h, Lq, d_h)
        k = self._split(self.W_k(key))  # (B, h, Lk, d_h)
        v = self._split(self.W_v(value))  # (B, h, Lk, d_h)
        heads, weights = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal)  # (B, h, Lq, d_h), (B, h, Lq, Lk)
        concat = heads.transpose(1, 2).reshape(B, Lq, E)  # (B, Lq, h * d_h)
        return self.W_o(concat), weights

    # ---- conversion to and from torch.nn.MultiheadAttention ------------------------------

    def _torch_pairs(self, module: nn.MultiheadAttention) -> list:
        """``(our parameter, torch's tensor)`` for every weight and bias.

        torch stacks the three input projections in ``in_proj_weight`` ``(3E, E)`` when
        ``kdim = vdim = E``, and keeps them apart (``q_proj_weight``, ``k_proj_weight``,
        ``v_proj_weight``) otherwise; the biases are stacked in ``in_proj_bias`` ``(3E,)``
        either way. The pieces of a stacked tensor are views, so copying into them writes it.
        """
        E = self.embed_dim
        ours = (self.W_q, self.W_k, self.W_v)
        if module._qkv_same_embed_dim:
            weights = module.in_proj_weight.split(E)  # 3 x (E, E)
        else:
            weights = (module.q_proj_weight, module.k_proj_weight, module.v_proj_weight)
        pairs = [(lin.weight, w) for lin, w in zip(ours, weights)]
        pairs.append((self.W_o.weight, module.out_proj.weight))
        if module.in_proj_bias is not None:
            pairs += [(lin.bias, b) for lin, b in zip(ours, module.in_proj_bias.split(E))]
            pairs.append((self.W_o.bias, module.out_proj.bias))
        return pairs

    @classmethod
    def from_torch(cls, module: nn.MultiheadAttention) -> "MultiHeadAttention":
        """Copy the weights of a ``torch.nn.MultiheadAttention`` (with its kdim and vdim).

        Raises ``ValueError`` for what has no counterpart here: ``batch_first=False``,
        ``dropout > 0`` (we have no dropout on the weights, so the copy would differ in
        training mode), ``add_bias_kv=True`` (``bias_k``, ``bias_v``) and ``add_zero_attn=True``.
        """
        if not isinstance(module, nn.MultiheadAttention):
            raise TypeError(f"module must be torch.nn.MultiheadAttention, got {type(module).__name__}")
        problems = []
        if not module.batch_first:
            problems.append("batch_first=False (our shapes are batch-first: build it with batch_first=True)")
        if module.dropout > 0:
            problems.append(f"dropout={module.dropout} (ours has no attention dropout: build it with dropout=0.0)")
        if module.bias_k is not None or module.bias_v is not None:
            problems.append("bias_k/bias_v (add_bias_kv=True)")
        if module.add_zero_attn:
            problems.append("add_zero_attn=True")
        if problems:
            raise ValueError("cannot copy this torch.nn.MultiheadAttention: " + "; ".join(problems))
        ours = cls(module.embed_dim, module.num_heads, bias=module.in_proj_bias is not None,
                   kdim=module.kdim, vdim=module.vdim)
        ref = module.out_proj.weight
        ours.to(device=ref.device, dtype=ref.dtype)
        with torch.no_grad():
            for mine, theirs in ours._torch_pairs(module):
                mine.copy_(theirs)
        return ours

    def to_torch(self) -> nn.MultiheadAttention:
        """An equal ``torch.nn.MultiheadAttention(batch_first=True)``, on our device and dtype."""
        ref = self.W_o.weight
        module = nn.MultiheadAttention(
            self.embed_dim, self.num_heads, bias=self.W_o.bias is not None, batch_first=True,
            kdim=self.kdim, vdim=self.vdim, device=ref.device, dtype=ref.dtype,
        )
        with torch.no_grad():
            for mine, theirs in self._torch_pairs(module):
                theirs.copy_(mine)
        return module
