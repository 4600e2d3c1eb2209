"""Attention at scale: the online softmax, tiled attention and linear attention.

    m_b = max(m_{b-1}, max_j s_j),  l_b = l_{b-1} exp(m_{b-1} - m_b) + sum_j exp(s_j - m_b)
                                                                              (eq-online-softmax)
    O_b = O_{b-1} exp(m_{b-1} - m_b) + sum_j exp(s_j - m_b) v_j,   output = O_B / l_B
                                                                              (eq-tiled-update)
    phi(Q) (phi(K)^T V) / (phi(Q) phi(K)^T 1),   phi(x) = elu(x) + 1           (eq-linear-attention)
    S_i = S_{i-1} + phi(k_i) v_i^T,  z_i = z_{i-1} + phi(k_i),
    o_i = S_i^T phi(q_i) / (z_i^T phi(q_i))                                   (eq-linear-recurrence)

The online softmax (Milakov and Gimelshein 2018) reads the scores block by block and keeps a
running maximum ``m`` and a running sum ``l`` of exponentials, rescaling the sum whenever the
maximum grows. Tiled attention (the forward pass of FlashAttention, Dao et al. 2022) applies
the same rescaling to a running, unnormalised output, so that it never holds more than one
``(block, block)`` tile of scores: memory grows like ``L``, not ``L^2``. Linear attention
(Katharopoulos et al. 2020) replaces ``exp(q.k)`` by ``phi(q).phi(k)`` and multiplies in the
other order, so that its cost is linear in the length; its causal form is a recurrence.

Conventions as in :mod:`companion.attention`: batch-first shapes, boolean masks with True =
may attend, the causal mask aligned with the end of the keys, and a query that may attend to
no key gets a zero output, never NaN. A NaN or ``+inf`` score at an allowed entry raises a
``ValueError``, as in :mod:`companion.softmax`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from . import _validate
from .retrieval import RetrievalAttention

__all__ = ["online_softmax", "tiled_attention", "linear_attention", "elu_feature_map", "LinearRetrieval"]

NEG_INF = float("-inf")


def _check_block_size(block_size) -> int:
    return _validate.positive_int(block_size, "block_size")


def _safe_max(m: torch.Tensor) -> torch.Tensor:
    """``m`` with ``-inf`` replaced by 0: the shift of a row that has seen only blocked
    entries, so that ``exp(-inf - shift)`` is 0 and never ``exp(-inf + inf) = NaN``."""
    return torch.where(m == NEG_INF, torch.zeros_like(m), m)


def _check_maximum(m: torch.Tensor, name: str, shape: tuple) -> None:
    """Raise when a running maximum is NaN or ``+inf``: an allowed score was NaN or ``+inf``."""
    bad = torch.isnan(m) | torch.isposinf(m)
    if bad.any():
        what = "NaN" if torch.isnan(m).any() else "+inf"
        raise ValueError(
            f"{name} contains {what} at an allowed entry (shape {shape}); "
            f"use a mask (or -inf) to block entries"
        )


# --- the online softmax -------------------------------------------------------------------


def online_softmax(scores: torch.Tensor, block_size: int, dim: int = -1) -> torch.Tensor:
    """The softmax of ``scores`` along ``dim``, its normaliser computed in one pass over blocks.

    eq-online-softmax: blocks of ``block_size`` entries (the last block may be shorter) are
    read in order; after block ``b`` the running maximum ``m_b`` and the running sum ``l_b``
    of ``exp(s - m_b)`` over the entries read so far are kept, and ``l`` is rescaled by
    ``exp(m_{b-1} - m_b)`` when the maximum grows. At the end ``softmax(s) = exp(s - m) / l``.

    Args:
        scores: float tensor of any shape (at least one axis); ``-inf`` blocks an entry, and
            whole blocks of ``-inf`` are fine.
        block_size: a positive integer; need not divide the length of ``dim``.
        dim: the axis to normalise over.

    Returns:
        A tensor of the shape of ``scores``, equal to ``torch.softmax(scores, dim)`` where a
        row has an allowed entry; a row of only ``-inf`` gives zeros, not NaN.

    Raises:
        ValueError: a NaN or ``+inf`` score (the softmax would be NaN), a bad ``block_size``
            or ``dim``. TypeError: ``scores`` is not a float tensor.
    """
    _validate.tensor(scores, "scores", min_dim=1)
    _check_block_size(block_size)
    if isinstance(dim, bool) or not isinstance(dim, int) or not -scores.dim() <= dim < scores.dim():
        raise ValueError(f"dim={dim!r} is out of range for scores of shape {tuple(scores.shape)}")
    x = scores.movedim(dim, -1)  # (..., n): the axis to normalise last
    m = torch.full_like(x[..., :1], NEG_INF)  # (..., 1) running maximum
    l = torch.zeros_like(x[..., :1])  # (..., 1) running sum of exp(s - m)
    for start in range(0, x.shape[-1], block_size):
        block = x[..., start:start + block_size]  # (..., b)
        m_new = torch.maximum(m, block.amax(-1, keepdim=True).detach())  # (..., 1)
        _check_maximum(m_new, "scores", tuple(scores.shape))
        shift = _safe_max(m_new)
        l = l * torch.exp(m - shift) + torch.exp(block - shift).sum(-1, keepdim=True)  # (..., 1)
        m = m_new
    weights = torch.exp(x - _safe_max(m)) / torch.where(l > 0, l, torch.ones_like(l))  # (..., n)
    return weights.movedim(-1, dim)


# --- tiled attention ----------------------------------------------------------------------


def _check_attention_inputs(query, key, value, mask, is_causal):
    """The checks of :func:`tiled_attention`, all on metadata. Returns the batch shape."""
    batch = _validate.attention_inputs(query, key, value, mask, is_causal)
    if query.shape[-2] == 0 or key.shape[-2] == 0:
        raise ValueError(
            f"query and key need at least one position each, got query {tuple(query.shape)} "
            f"and key {tuple(key.shape)}"
        )
    return batch


def tiled_attention(query, key, value, *, block_size: int = 64, mask=None, is_causal: bool = False):
    """Scaled dot-product attention (eq-sdpa) computed tile by tile, as FlashAttention's forward
    pass does (eq-tiled-update); returns the output only.

    The queries are cut into blocks of ``block_size`` rows and the keys and values into blocks
    of ``block_size`` positions (the last block of each may be shorter). For each query block,
    a loop over the key blocks keeps the running maximum ``m`` and sum ``l`` of the online
    softmax (eq-online-softmax) and an unnormalised output ``O``, both rescaled by
    ``exp(m_old - m_new)`` when the maximum grows; the output is ``O / l`` at the end. Only one
    ``(block, block)`` tile of scores exists at a time: no ``(Lq, Lk)`` tensor is ever built.
    With ``is_causal`` the key blocks that lie wholly after a query block's last visible key
    are skipped, not computed and masked.

    Args:
        query: ``(B, ..., Lq, d_k)``; key: ``(B, ..., Lk, d_k)``; value: ``(B, ..., Lk, d_v)``;
            one floating dtype; the batch axes broadcast.
        block_size: a positive integer, the tile's height and width.
        mask: optional boolean, broadcastable to ``(B, ..., Lq, Lk)``; True = may attend. It is
            read one tile at a time (through a broadcast view, which copies nothing).
        is_causal: the end-aligned causal mask eq-causal-mask: query ``i`` sees key ``j`` iff
            ``j <= i + (Lk - Lq)``, as in
            :func:`companion.attention.scaled_dot_product_attention`; and-ed with ``mask``.

    Returns:
        ``(B, ..., Lq, d_v)``, equal to ``scaled_dot_product_attention``'s output; a query that
        may attend to no key gets zeros.

    The backward pass here is autograd's, which keeps every tile it used; FlashAttention's
    backward recomputes the tiles instead, so that training is memory-light too.
    """
    batch = _check_attention_inputs(query, key, value, mask, is_causal)
    _check_block_size(block_size)
    len_q, len_k, d_v = query.shape[-2], key.shape[-2], value.shape[-1]
    scale = 1 / math.sqrt(query.shape[-1])
    offset = len_k - len_q  # query i sees key j iff j <= i + offset (causal)
    if mask is not None:
        mask = mask.expand(*batch, len_q, len_k)  # a view: no memory
    q_all = query.expand(*batch, len_q, query.shape[-1])  # (B, ..., Lq, d_k), a view
    outputs = []
    for q0 in range(0, len_q, block_size):
        q1 = min(q0 + block_size, len_q)
        q = q_all[..., q0:q1, :] * scale  # (B, ..., bq, d_k)
        m = torch.full((*batch, q1 - q0, 1), NEG_INF, dtype=query.dtype, device=query.device)
        l = torch.zeros_like(m)  # (B, ..., bq, 1)
        o = torch.zeros((*batch, q1 - q0, d_v), dtype=query.dtype, device=query.device)
        last_key = len_k if not is_causal else min(len_k, q1 - 1 + offset + 1)
        for k0 in range(0, max(last_key, 0), block_size):  # causal: later blocks skipped
            k1 = min(k0 + block_size, len_k)
            s = q @ key[..., k0:k1, :].transpose(-2, -1)  # (B, ..., bq, bk)
            allowed = None if mask is None else mask[..., q0:q1, k0:k1]  # (B, ..., bq, bk)
            if is_causal and k1 - 1 > q0 + offset:  # the tile crosses the diagonal
                rows = torch.arange(q0, q1, device=query.device)[:, None]
                cols = torch.arange(k0, k1, device=query.device)[None, :]
                diagonal = cols <= rows + offset  # (bq, bk)
                allowed = diagonal if allowed is None else allowed & diagonal
            if allowed is not None:
                s = s.masked_fill(~allowed, NEG_INF)
            m_new = torch.maximum(m, s.amax(-1, keepdim=True).detach())  # (B, ..., bq, 1)
            _check_maximum(m_new, "the scores of query and key", (*batch, len_q, len_k))
            shift = _safe_max(m_new)
            p = torch.exp(s - shift)  # (B, ..., bq, bk): 0 where blocked
            rescale = torch.exp(m - shift)  # (B, ..., bq, 1): 0 on the first block
            l = l * rescale + p.sum(-1, keepdim=True)
            o = o * rescale + p @ value[..., k0:k1, :]  # (B, ..., bq, d_v)
            m = m_new
        outputs.append(o / torch.where(l > 0, l, torch.ones_like(l)))  # (B, ..., bq, d_v)
    return torch.cat(outputs, dim=-2)  # (B, ..., Lq, d_v)


# --- linear attention ---------------------------------------------------------------------


def elu_feature_map(x: torch.Tensor) -> torch.Tensor:
    """``phi(x) = elu(x) + 1`` (eq-linear-attention), the feature map of Katharopoulos et al.
    (2020): positive everywhere, so every kernel value ``phi(q).phi(k)`` is positive."""
    _validate.tensor(x, "x")
    return F.elu(x) + 1


def _features(x: torch.Tensor, feature_map, name: str) -> torch.Tensor:
    """``feature_map(x)``, checked: a float tensor of ``x``'s shape but its last axis, with no
    negative entry (a kernel with negative values would not give weights) and no NaN."""
    phi = feature_map(x)
    if not isinstance(phi, torch.Tensor) or phi.shape[:-1] != x.shape[:-1]:
        got = tuple(phi.shape) if isinstance(phi, torch.Tensor) else type(phi).__name__
        raise ValueError(
            f"feature_map must map {name} {tuple(x.shape)} to a tensor of shape "
            f"{tuple(x.shape[:-1])} + (features,), got {got}"
        )
    if not phi.dtype.is_floating_point:
        raise TypeError(f"feature_map({name}) must be a float tensor, got dtype {phi.dtype}")
    if torch.isnan(phi).any() or (phi < 0).any():
        raise ValueError(f"feature_map({name}) must be non-negative and not NaN (shape {tuple(phi.shape)})")
    return phi


def linear_attention(query, key, value, *, causal: bool = False, feature_map=None):
    """Linear attention (eq-linear-attention): ``phi(Q) (phi(K)^T V)`` normalised by
    ``phi(Q) phi(K)^T 1``, never building an ``(Lq, Lk)`` matrix.

    Non-causal: the ``(d_phi, d_v)`` summary ``phi(K)^T V`` and the ``(d_phi,)`` sum of the key
    features are computed once and read by every query: cost ``O(L d_phi d_v)``. Causal: the
    recurrence eq-linear-recurrence, running sums over the keys a query may see (end-aligned as
    in :func:`tiled_attention`: query ``i`` sees keys ``j <= i + Lk - Lq``), the form in which a
    Transformer is an RNN.

    Args:
        query: ``(B, ..., Lq, d_k)``; key: ``(B, ..., Lk, d_k)``; value: ``(B, ..., Lk, d_v)``;
            one floating dtype; the batch axes broadcast.
        causal: True or False.
        feature_map: a function applied to queries and keys along their last axis, returning
            non-negative features ``(..., L, d_phi)``; ``None`` means :func:`elu_feature_map`.

    Returns:
        ``(B, ..., Lq, d_v)``, equal to the quadratic form
        ``sum_j phi(q_i).phi(k_j) v_j / sum_j phi(q_i).phi(k_j)`` with the same feature map;
        a query with no visible key, or whose kernel values are all zero, gets zeros.
    """
    _check_attention_inputs(query, key, value, None, causal)
    if feature_map is None:
        feature_map = elu_feature_map
    elif not callable(feature_map):
        raise TypeError(f"feature_map must be a function or None, got {type(feature_map).__name__}")
    phi_q = _features(query, feature_map, "query")  # (B, ..., Lq, d_phi)
    phi_k = _features(key, feature_map, "key")  # (B, ..., Lk, d_phi)
    if phi_q.shape[-1] != phi_k.shape[-1]:
        raise ValueError(
            f"feature_map gave {phi_q.shape[-1]} features for query but {phi_k.shape[-1]} for key"
        )
    if not causal:
        kv = phi_k.transpose(-2, -1) @ value  # (B, ..., d_phi, d_v)
        z = phi_k.sum(-2, keepdim=True)  # (B, ..., 1, d_phi)
        numerator = phi_q @ kv  # (B, ..., Lq, d_v)
        denominator = (phi_q * z).sum(-1, keepdim=True)  # (B, ..., Lq, 1)
    else:
        numerator, denominator = _causal_sums(phi_q, phi_k, value)
    return numerator / torch.where(denominator > 0, denominator, torch.ones_like(denominator))


def _causal_sums(phi_q, phi_k, value):
    """eq-linear-recurrence: the numerators ``(..., Lq, d_v)`` and denominators ``(..., Lq, 1)``
    of causal linear attention, from running sums ``S`` and ``z`` over the keys."""
    len_q, len_k = phi_q.shape[-2], phi_k.shape[-2]
    offset = len_k - len_q
    batch = torch.broadcast_shapes(phi_q.shape[:-2], phi_k.shape[:-2], value.shape[:-2])
    d_phi, d_v = phi_k.shape[-1], value.shape[-1]
    S = torch.zeros((*batch, d_phi, d_v), dtype=value.dtype, device=value.device)  # running sum
    z = torch.zeros((*batch, d_phi), dtype=value.dtype, device=value.device)  # running sum
    seen = 0  # keys 0 .. seen-1 are in S and z
    numerators, denominators = [], []
    for i in range(len_q):
        upto = min(max(i + offset + 1, 0), len_k)  # query i sees keys j < upto
        if upto > seen:  # one key per step, or a whole prefix at once for the first query
            k_new = phi_k[..., seen:upto, :]  # (B, ..., n, d_phi)
            S = S + k_new.transpose(-2, -1) @ value[..., seen:upto, :]  # (B, ..., d_phi, d_v)
            z = z + k_new.sum(-2)  # (B, ..., d_phi)
            seen = upto
        q = phi_q[..., i, :]  # (B, ..., d_phi)
        numerators.append((q.unsqueeze(-2) @ S).squeeze(-2))  # (B, ..., d_v)
        denominators.append((q * z).sum(-1, keepdim=True))  # (B, ..., 1)
    return torch.stack(numerators, -2), torch.stack(denominators, -2)


# --- a model: associative recall with linear attention ------------------------------------


class LinearRetrieval(RetrievalAttention):
    """The associative-recall model of :class:`companion.retrieval.RetrievalAttention` with
    linear attention (eq-linear-attention) in place of the softmax: learned projections
    ``W_q``, ``W_k`` (``input_dim -> key_dim``), then ``phi(q)^T (phi(K)^T V)`` normalised,
    ``phi(x) = elu(x) + 1``.

    ``forward(query (N, 1, input_dim), keys (N, m, input_dim), values (N, m, d_v))`` returns
    ``(output (N, 1, d_v), weights (N, 1, m))`` like the softmax model; the weights
    ``phi(q).phi(k_j) / sum_j' phi(q).phi(k_j')`` are computed for inspection only (an
    ``(N, 1, m)`` tensor), the output never uses them.
    """

    def __init__(self, input_dim: int, key_dim: int, init_scale: float = 1.0):
        super().__init__(input_dim, key_dim, scaled=True, init_scale=init_scale)

    def forward(self, query, keys, values):
        q = query @ self.W_q  # (N, 1, d_k)
        k = keys @ self.W_k  # (N, m, d_k)
        output = linear_attention(q, k, values)  # (N, 1, d_v)
        kernel = elu_feature_map(q) @ elu_feature_map(k).transpose(-2, -1)  # (N, 1, m)
        return output, kernel / kernel.sum(-1, keepdim=True)
