"""The Transformer of Vaswani et al. (2017), encoder-decoder and decoder-only, built from
:class:`companion.attention.MultiHeadAttention`.

One block, post-norm (the paper) or pre-norm (``norm_first=True``), eq-transformer-encoder-block::

    post-norm:  x = LayerNorm(x + SelfAttn(x));        x = LayerNorm(x + FFN(x))
    pre-norm:   x = x + SelfAttn(LayerNorm(x));        x = x + FFN(LayerNorm(x))

A decoder block (eq-transformer-decoder-block) has a third sub-layer between the two: the
cross-attention ``CrossAttn(x, memory)``, whose queries come from the decoder and whose keys and
values are the encoder's output ``memory``; its self-attention is causal. ``FFN`` is eq-ffn,
``LayerNorm`` eq-layer-norm. A pre-norm stack ends with one more LayerNorm (its sub-layers add
to an un-normalised residual stream).

Embeddings (section 3.4 of the paper): token embedding times ``sqrt(d)`` plus the sinusoidal
position table (:func:`companion.positional.sinusoidal_encoding`). The embedding is initialised
with standard deviation ``d^-1/2``, so the scaled embedding has entries of unit size, like the
position table. Weight tying: the output projection of the decoder is its own token embedding
(``logits = h E^T``, no bias). The paper also shares the encoder's embedding, which it can do
because its source and target share one vocabulary; here the two vocabularies differ, so the
encoder keeps its own.

Masks (True = may attend): the decoder's self-attention is causal (position ``t`` sees
``0 .. t``), and every attention to the source (encoder self-attention, cross-attention) is
blocked at the padded source positions ``>= src_lengths[b]``. So the logits at target position
``t`` depend on ``tgt[:, :t+1]`` and the real source tokens of their own row, nothing else.

Attention weights: ``forward(..., return_weights=True)`` returns ``(logits, weights)``, where
``weights`` is a dict of tensors, one per attention, with the layers stacked first::

    Transformer:             "encoder" (layers, B, h, S, S), "decoder" (layers, B, h, T, T),
                             "cross"   (layers, B, h, T, S)
    DecoderOnlyTransformer:  "decoder" (layers, B, h, T, T)

so ``weights["cross"][layer, b, head]`` is one map (rows: queries, columns: keys).

Decoding: :meth:`DecoderOnlyTransformer.generate` continues a prompt greedily, with or without a
key-value cache (eq-kv-cache): with the cache each new token is one query against the stored keys
and values of every earlier position, instead of a full pass over the whole prefix.
:func:`greedy_decode` and :func:`beam_search` decode with the encoder-decoder.
Training helpers: :func:`label_smoothing_loss` (eq-label-smoothing) and :func:`warmup_schedule`
(eq-warmup).

Dropout (``dropout > 0``) is applied, as in the paper, to the sum of embeddings and positions
and to the output of every sub-layer before it is added to the residual stream; there is no
dropout on the attention weights (:class:`MultiHeadAttention` has none).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate
from .attention import MultiHeadAttention, scaled_dot_product_attention
from .masks import padding_mask
from .positional import sinusoidal_encoding

__all__ = [
    "FeedForward",
    "EncoderBlock",
    "DecoderBlock",
    "Transformer",
    "DecoderOnlyTransformer",
    "KVCache",
    "greedy_decode",
    "beam_search",
    "label_smoothing_loss",
    "warmup_schedule",
]


# ---- checks ---------------------------------------------------------------------------------


def _check_sizes(**sizes) -> None:
    for name, value in sizes.items():
        _validate.positive_int(value, name)


def _check_dropout(dropout) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a number in [0, 1), got {dropout!r}")
    return float(dropout)


def _check_tokens(tokens, name: str, vocab_size: int, max_len: int, start: int = 0) -> None:
    """``tokens`` must be ``(B, L)`` integer ids in ``0 .. vocab_size - 1`` with ``start + L <= max_len``."""
    if not isinstance(tokens, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of token ids, got {type(tokens).__name__}")
    if tokens.dtype.is_floating_point or tokens.dtype.is_complex or tokens.dtype == torch.bool:
        raise TypeError(f"{name} must hold integer token ids (torch.long), got dtype {tokens.dtype}")
    if tokens.dim() != 2 or tokens.shape[0] == 0 or tokens.shape[1] == 0:
        raise ValueError(f"{name} must have shape (batch, length) with both positive, got {tuple(tokens.shape)}")
    if start + tokens.shape[1] > max_len:
        where = f" after {start} cached positions" if start else ""
        raise ValueError(f"{name} of shape {tuple(tokens.shape)} is longer than max_len={max_len}{where}")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise ValueError(f"{name} must hold ids in 0 .. {vocab_size - 1} (the vocabulary), "
                         f"got ids from {low} to {high}")


def _check_lengths(src_lengths, src: torch.Tensor) -> torch.Tensor | None:
    """``src_lengths`` ``(B,)`` integers in ``1 .. S`` (None: every source token is real)."""
    if src_lengths is None:
        return None
    if not isinstance(src_lengths, torch.Tensor):
        src_lengths = torch.as_tensor(src_lengths)
    if src_lengths.dtype.is_floating_point or src_lengths.dtype.is_complex or src_lengths.dtype == torch.bool:
        raise TypeError(f"src_lengths must be integers, got dtype {src_lengths.dtype}")
    B, S = src.shape
    if tuple(src_lengths.shape) != (B,):
        raise ValueError(f"src_lengths must have shape ({B},), one length a row of src {tuple(src.shape)}, "
                         f"got {tuple(src_lengths.shape)}")
    if (src_lengths < 1).any() or (src_lengths > S).any():
        raise ValueError(f"src_lengths must lie in 1 .. {S} (the length of src), got {src_lengths.tolist()}")
    return src_lengths.to(src.device)


# ---- the pieces -----------------------------------------------------------------------------


class FeedForward(nn.Module):
    """The position-wise feed-forward network, eq-ffn: ``FFN(x) = max(0, x W_1 + b_1) W_2 + b_2``,
    applied to every position alone (``dim -> ffn_dim -> dim``)."""

    def __init__(self, dim: int, ffn_dim: int, dropout: float = 0.0):
        super().__init__()
        self.fc1 = nn.Linear(dim, ffn_dim)
        self.fc2 = nn.Linear(ffn_dim, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x):
        return self.dropout(self.fc2(F.relu(self.fc1(x))))  # (B, L, d)


class EncoderBlock(nn.Module):
    """Self-attention then feed-forward, each wrapped in a residual connection and a LayerNorm
    (eq-transformer-encoder-block, eq-layer-norm), post-norm or pre-norm (``norm_first``).

    ``forward(x (B, S, d), mask)`` with ``mask`` broadcastable to ``(B, S, S)`` (a padding mask
    ``(B, 1, S)``) returns ``(x (B, S, d), weights (B, h, S, S))``.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0, norm_first: bool = False):
        super().__init__()
        self.norm_first = norm_first
        self.attn = MultiHeadAttention(dim, num_heads)
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x, mask=None):
        if self.norm_first:
            h = self.norm1(x)
            a, weights = self.attn(h, h, h, mask)  # (B, S, d), (B, h, S, S)
            x = x + self.dropout(a)
            x = x + self.ffn(self.norm2(x))  # (B, S, d)
        else:
            a, weights = self.attn(x, x, x, mask)
            x = self.norm1(x + self.dropout(a))
            x = self.norm2(x + self.ffn(x))  # (B, S, d)
        return x, weights


class KVCache:
    """The keys and values of every position seen so far, one ``(k, v)`` pair a layer, each
    ``(B, h, L_past, d_h)``: what :class:`DecoderOnlyTransformer` needs to process only the new
    tokens (eq-kv-cache). ``len(cache)`` is the number of cached positions."""

    def __init__(self, num_layers: int):
        self.layers: list[tuple[torch.Tensor, torch.Tensor] | None] = [None] * num_layers

    def __len__(self) -> int:
        first = self.layers[0]
        return 0 if first is None else first[0].shape[2]

    def nbytes(self) -> int:
        """Bytes held by the cached keys and values."""
        return sum(t.numel() * t.element_size() for kv in self.layers if kv is not None for t in kv)


def _cached_self_attention(attn: MultiHeadAttention, x, cache: KVCache, layer: int):
    """Causal self-attention of the new positions ``x (B, L_new, d)`` against the cached ones and
    themselves, through the projections of ``attn``; appends the new keys and values to the cache.

    The same computation as ``attn(x_all, x_all, x_all, is_causal=True)`` restricted to the last
    ``L_new`` queries: the causal mask is aligned to the end of the keys (eq-kv-cache).
    """
    B, L, d = x.shape
    q = attn._split(attn.W_q(x))  # (B, h, L_new, d_h)
    k = attn._split(attn.W_k(x))  # (B, h, L_new, d_h)
    v = attn._split(attn.W_v(x))  # (B, h, L_new, d_h)
    past = cache.layers[layer]
    if past is not None:
        k = torch.cat([past[0], k], dim=2)  # (B, h, L_past + L_new, d_h)
        v = torch.cat([past[1], v], dim=2)
    cache.layers[layer] = (k, v)
    heads, weights = scaled_dot_product_attention(q, k, v, is_causal=True)  # (B, h, L_new, d_h), (B, h, L_new, L_all)
    return attn.W_o(heads.transpose(1, 2).reshape(B, L, d)), weights  # (B, L_new, d)


class DecoderBlock(nn.Module):
    """Masked (causal) self-attention, then, when ``cross=True``, attention to the encoder's
    output, then feed-forward; each sub-layer residual with a LayerNorm, post- or pre-norm
    (eq-transformer-decoder-block, eq-layer-norm). A decoder-only model has ``cross=False``.

    ``forward(x (B, T, d), memory (B, S, d) or None, memory_mask (B, 1, S) or None, cache=None,
    layer=0)`` returns ``(x (B, T, d), self weights (B, h, T, T), cross weights (B, h, T, S) or
    None)``. With a :class:`KVCache` the ``T`` positions of ``x`` follow the cached ones.
    """

    def __init__(self, dim: int, num_heads: int, ffn_dim: int, dropout: float = 0.0,
                 norm_first: bool = False, cross: bool = True):
        super().__init__()
        self.norm_first = norm_first
        self.self_attn = MultiHeadAttention(dim, num_heads)
        self.cross_attn = MultiHeadAttention(dim, num_heads) if cross else None
        self.ffn = FeedForward(dim, ffn_dim, dropout)
        self.norm1, self.norm3 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim) if cross else None
        self.dropout = nn.Dropout(dropout)

    def _self(self, h, cache, layer):
        if cache is None:
            return self.self_attn(h, h, h, is_causal=True)  # (B, T, d), (B, h, T, T)
        return _cached_self_attention(self.self_attn, h, cache, layer)

    def forward(self, x, memory=None, memory_mask=None, cache=None, layer: int = 0):
        cross_weights = None
        if self.norm_first:
            a, self_weights = self._self(self.norm1(x), cache, layer)
            x = x + self.dropout(a)  # (B, T, d)
            if self.cross_attn is not None:
                c, cross_weights = self.cross_attn(self.norm2(x), memory, memory, memory_mask)  # (B, T, d), (B, h, T, S)
                x = x + self.dropout(c)
            x = x + self.ffn(self.norm3(x))
        else:
            a, self_weights = self._self(x, cache, layer)
            x = self.norm1(x + self.dropout(a))
            if self.cross_attn is not None:
                c, cross_weights = self.cross_attn(x, memory, memory, memory_mask)
                x = self.norm2(x + self.dropout(c))
            x = self.norm3(x + self.ffn(x))  # (B, T, d)
        return x, self_weights, cross_weights


class Embedding(nn.Module):
    """Token embedding times ``sqrt(d)`` plus the sinusoidal position of each token
    (Vaswani et al. 2017, sections 3.4 and 3.5); positions start at ``start`` (a cache's length)."""

    def __init__(self, vocab_size: int, dim: int, max_len: int, dropout: float = 0.0):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        nn.init.normal_(self.tokens.weight, std=dim ** -0.5)
        self.register_buffer("pe", sinusoidal_encoding(max_len, dim), persistent=False)  # (max_len, d)
        self.scale = math.sqrt(dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, tokens, start: int = 0):
        L = tokens.shape[1]
        x = self.tokens(tokens) * self.scale + self.pe[start:start + L]  # (B, L, d)
        return self.dropout(x)


def _check_common(dim, num_heads, num_layers, ffn_dim, max_len, dropout, norm_first) -> None:
    _check_sizes(dim=dim, num_heads=num_heads, num_layers=num_layers, ffn_dim=ffn_dim, max_len=max_len)
    if dim % num_heads:
        raise ValueError(f"dim={dim} is not divisible by num_heads={num_heads}")
    if dim % 2:
        raise ValueError(f"dim must be even (the sinusoidal positions come in pairs), got {dim}")
    _check_dropout(dropout)
    if not isinstance(norm_first, bool):
        raise TypeError(f"norm_first must be True or False, got {norm_first!r}")


def _stack(per_layer: list) -> torch.Tensor:
    return torch.stack(per_layer)  # (layers, B, h, Lq, Lk)


# ---- the encoder-decoder ---------------------------------------------------------------------


class Transformer(nn.Module):
    """The encoder-decoder Transformer (Vaswani et al. 2017, figure 1).

    ``forward(src (B, S) long, tgt (B, T) long, src_lengths=None, return_weights=False)`` returns
    the logits ``(B, T, tgt_vocab_size)``; ``tgt`` is the decoder's input as the caller shifted it
    (start token first), so the logits at position ``t`` predict ``tgt[:, t+1]`` (the next token)
    from ``tgt[:, :t+1]``. Source positions ``>= src_lengths[b]`` are padding: no attention ever
    reads them. With ``return_weights=True`` the result is ``(logits, weights)``, ``weights`` a
    dict with ``"encoder"``, ``"decoder"`` and ``"cross"`` (see the module docstring).

    Post-norm (``norm_first=False``) by default, as in the paper. The decoder's output projection
    is tied to its token embedding. :meth:`encode` and :meth:`decode` are the two halves.
    """

    def __init__(self, src_vocab_size: int, tgt_vocab_size: int, dim: int, num_heads: int,
                 num_layers: int, ffn_dim: int, max_len: int, dropout: float = 0.0,
                 norm_first: bool = False):
        super().__init__()
        _check_sizes(src_vocab_size=src_vocab_size, tgt_vocab_size=tgt_vocab_size)
        _check_common(dim, num_heads, num_layers, ffn_dim, max_len, dropout, norm_first)
        self.src_vocab_size, self.tgt_vocab_size = src_vocab_size, tgt_vocab_size
        self.dim, self.num_heads, self.num_layers = dim, num_heads, num_layers
        self.max_len, self.norm_first = max_len, norm_first
        self.src_embed = Embedding(src_vocab_size, dim, max_len, dropout)
        self.tgt_embed = Embedding(tgt_vocab_size, dim, max_len, dropout)
        self.encoder = nn.ModuleList(
            EncoderBlock(dim, num_heads, ffn_dim, dropout, norm_first) for _ in range(num_layers))
        self.decoder = nn.ModuleList(
            DecoderBlock(dim, num_heads, ffn_dim, dropout, norm_first) for _ in range(num_layers))
        self.encoder_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()
        self.decoder_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def encode(self, src, src_lengths=None, return_weights: bool = False):
        """The encoder: ``memory (B, S, d)`` (and the ``(layers, B, h, S, S)`` weights)."""
        _check_tokens(src, "src", self.src_vocab_size, self.max_len)
        src_lengths = _check_lengths(src_lengths, src)
        mask = None if src_lengths is None else padding_mask(src_lengths, src.shape[1])  # (B, 1, S)
        x = self.src_embed(src)  # (B, S, d)
        weights = []
        for block in self.encoder:
            x, w = block(x, mask)  # (B, S, d), (B, h, S, S)
            weights.append(w)
        memory = self.encoder_norm(x)
        return (memory, _stack(weights)) if return_weights else memory

    def decode(self, tgt, memory, src_lengths=None, return_weights: bool = False):
        """The decoder on ``memory (B, S, d)`` from :meth:`encode`: logits ``(B, T, tgt_vocab)``
        (and the decoder-self and cross weights, each stacked over layers)."""
        _check_tokens(tgt, "tgt", self.tgt_vocab_size, self.max_len)
        _validate.tensor(memory, "memory")
        if memory.dim() != 3 or memory.shape[0] != tgt.shape[0] or memory.shape[2] != self.dim:
            raise ValueError(f"memory must have shape (batch={tgt.shape[0]}, S, dim={self.dim}), "
                             f"got {tuple(memory.shape)}")
        src_lengths = _check_lengths(src_lengths, memory[..., 0])
        mask = None if src_lengths is None else padding_mask(src_lengths, memory.shape[1])  # (B, 1, S)
        x = self.tgt_embed(tgt)  # (B, T, d)
        self_weights, cross_weights = [], []
        for block in self.decoder:
            x, ws, wc = block(x, memory, mask)  # (B, T, d), (B, h, T, T), (B, h, T, S)
            self_weights.append(ws)
            cross_weights.append(wc)
        logits = self.decoder_norm(x) @ self.tgt_embed.tokens.weight.T  # (B, T, V): tied weights
        if return_weights:
            return logits, {"decoder": _stack(self_weights), "cross": _stack(cross_weights)}
        return logits

    def forward(self, src, tgt, src_lengths=None, return_weights: bool = False):
        _check_tokens(src, "src", self.src_vocab_size, self.max_len)
        _check_tokens(tgt, "tgt", self.tgt_vocab_size, self.max_len)
        if src.shape[0] != tgt.shape[0]:
            raise ValueError(f"src and tgt must have the same batch size, got src {tuple(src.shape)} "
                             f"and tgt {tuple(tgt.shape)}")
        if not return_weights:
            return self.decode(tgt, self.encode(src, src_lengths), src_lengths)
        memory, encoder_weights = self.encode(src, src_lengths, return_weights=True)
        logits, weights = self.decode(tgt, memory, src_lengths, return_weights=True)
        return logits, {"encoder": encoder_weights, **weights}


# ---- the decoder-only model ------------------------------------------------------------------


class DecoderOnlyTransformer(nn.Module):
    """A stack of causal decoder blocks without cross-attention (a GPT-style language model).

    ``forward(tokens (B, T) long, cache=None, return_weights=False)`` returns the logits
    ``(B, T, vocab_size)``; those at position ``t`` predict token ``t + 1`` from ``tokens[:, :t+1]``.
    With a :class:`KVCache` (from :meth:`new_cache`) the tokens are the next ones after the cached
    positions, and their keys and values are appended to it (eq-kv-cache). With
    ``return_weights=True`` the result is ``(logits, {"decoder": (layers, B, h, T, T_all)})``.

    Pre-norm (``norm_first=True``) by default, as in GPT-2 and most language models since; the
    output projection is tied to the token embedding.
    """

    def __init__(self, vocab_size: int, dim: int, num_heads: int, num_layers: int, ffn_dim: int,
                 max_len: int, dropout: float = 0.0, norm_first: bool = True):
        super().__init__()
        _check_sizes(vocab_size=vocab_size)
        _check_common(dim, num_heads, num_layers, ffn_dim, max_len, dropout, norm_first)
        self.vocab_size, self.dim, self.num_heads = vocab_size, dim, num_heads
        self.num_layers, self.max_len, self.norm_first = num_layers, max_len, norm_first
        self.embed = Embedding(vocab_size, dim, max_len, dropout)
        self.blocks = nn.ModuleList(
            DecoderBlock(dim, num_heads, ffn_dim, dropout, norm_first, cross=False) for _ in range(num_layers))
        self.final_norm = nn.LayerNorm(dim) if norm_first else nn.Identity()

    def new_cache(self) -> KVCache:
        """An empty key-value cache for :meth:`forward` and :meth:`generate`."""
        return KVCache(self.num_layers)

    def forward(self, tokens, cache: KVCache | None = None, return_weights: bool = False):
        if cache is not None and (not isinstance(cache, KVCache) or len(cache.layers) != self.num_layers):
            raise TypeError(f"cache must be a KVCache from this model's new_cache(), got {cache!r}")
        start = 0 if cache is None else len(cache)
        _check_tokens(tokens, "tokens", self.vocab_size, self.max_len, start)
        if cache is not None and start and cache.layers[0][0].shape[0] != tokens.shape[0]:
            raise ValueError(f"tokens has batch {tokens.shape[0]} but the cache holds "
                             f"{cache.layers[0][0].shape[0]} sequences")
        x = self.embed(tokens, start)  # (B, T, d)
        weights = []
        for layer, block in enumerate(self.blocks):
            x, w, _ = block(x, cache=cache, layer=layer)  # (B, T, d), (B, h, T, T_all)
            weights.append(w)
        logits = self.final_norm(x) @ self.embed.tokens.weight.T  # (B, T, V): tied weights
        return (logits, {"decoder": _stack(weights)}) if return_weights else logits

    @torch.no_grad()
    def generate(self, prompt, max_new_tokens: int, use_cache: bool = True) -> torch.Tensor:
        """Greedy continuation: ``(B, T0 + max_new_tokens)``, the prompt then the argmax token of
        each step. ``use_cache=False`` runs the whole sequence again at every step; the tokens are
        the same. Runs in evaluation mode (no dropout) and restores the mode after."""
        _validate.non_negative_int(max_new_tokens, "max_new_tokens")
        _check_tokens(prompt, "prompt", self.vocab_size, self.max_len)
        if prompt.shape[1] + max_new_tokens > self.max_len:
            raise ValueError(f"prompt of length {prompt.shape[1]} plus max_new_tokens={max_new_tokens} "
                             f"exceeds max_len={self.max_len}")
        was_training = self.training
        self.eval()
        try:
            tokens = prompt
            cache = self.new_cache() if use_cache else None
            step_input = prompt
            for _ in range(max_new_tokens):
                logits = self(step_input if use_cache else tokens, cache)  # (B, L, V)
                nxt = logits[:, -1].argmax(-1, keepdim=True)  # (B, 1)
                tokens = torch.cat([tokens, nxt], dim=1)  # (B, L + 1)
                step_input = nxt
        finally:
            self.train(was_training)
        return tokens


# ---- decoding the encoder-decoder ------------------------------------------------------------


def _check_decoding(model, src, max_len, start, end) -> None:
    if not isinstance(model, Transformer):
        raise TypeError(f"model must be a Transformer, got {type(model).__name__}")
    _validate.positive_int(max_len, "max_len")
    if max_len + 1 > model.max_len:
        raise ValueError(f"max_len={max_len} plus the start token exceeds the model's max_len={model.max_len}")
    for name, token in (("start", start), ("end", end)):
        if token is None and name == "end":
            continue
        if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < model.tgt_vocab_size:
            raise ValueError(f"{name} must be a token id in 0 .. {model.tgt_vocab_size - 1}, got {token!r}")


@torch.no_grad()
def greedy_decode(model: Transformer, src, max_len: int, start: int, src_lengths=None,
                  end: int | None = None) -> torch.Tensor:
    """Decode ``src (B, S)`` greedily: ``(B, max_len)`` tokens, the start token excluded.

    Step ``t`` feeds ``[start, y_0, ..., y_{t-1}]`` and appends the argmax of the last logits.
    Once a row has produced ``end`` (if given), its later tokens are ``end`` too, and decoding
    stops when every row has ended. The model is put in evaluation mode and restored.
    """
    _check_decoding(model, src, max_len, start, end)
    was_training = model.training
    model.eval()
    try:
        memory = model.encode(src, src_lengths)  # (B, S, d)
        B = src.shape[0]
        tokens = torch.full((B, 1), start, dtype=torch.long, device=src.device)  # (B, 1)
        done = torch.zeros(B, dtype=torch.bool, device=src.device)
        for _ in range(max_len):
            nxt = model.decode(tokens, memory, src_lengths)[:, -1].argmax(-1)  # (B,)
            if end is not None:
                nxt = torch.where(done, end, nxt)
                done |= nxt == end
            tokens = torch.cat([tokens, nxt[:, None]], dim=1)  # (B, t + 2)
            if end is not None and done.all():
                break
        out = tokens[:, 1:]
        if out.shape[1] < max_len:  # every row ended early: pad with the end token
            out = torch.cat([out, out.new_full((B, max_len - out.shape[1]), end)], dim=1)
    finally:
        model.train(was_training)
    return out  # (B, max_len)


@torch.no_grad()
def beam_search(model: Transformer, src, beam_size: int, max_len: int, start: int, end: int,
                src_lengths=None, length_penalty: float = 0.0) -> torch.Tensor:
    """Beam search (Vaswani et al. 2017, section 6.1, after Sutskever et al. 2014): keep the
    ``beam_size`` most probable prefixes at every step, rank finished hypotheses by their total
    log-probability divided by ``length ** length_penalty`` (0: no normalisation). Returns the best
    hypothesis of each row, ``(B, max_len)`` without the start token, padded with ``end`` after it
    ends. ``beam_size=1`` is :func:`greedy_decode`.
    """
    _check_decoding(model, src, max_len, start, end)
    _validate.positive_int(beam_size, "beam_size")
    if isinstance(length_penalty, bool) or not isinstance(length_penalty, (int, float)) or length_penalty < 0:
        raise ValueError(f"length_penalty must be a non-negative number, got {length_penalty!r}")
    was_training = model.training
    model.eval()
    try:
        memory = model.encode(src, src_lengths)  # (B, S, d)
        lengths = _check_lengths(src_lengths, src)
        rows = [_beam_one(model, memory[b:b + 1], None if lengths is None else lengths[b:b + 1],
                          beam_size, max_len, start, end, length_penalty) for b in range(src.shape[0])]
    finally:
        model.train(was_training)
    return torch.stack(rows)  # (B, max_len)


def _beam_one(model, memory, src_lengths, beam_size, max_len, start, end, alpha):
    """Beam search for one source: ``memory (1, S, d)``; returns ``(max_len,)``."""
    device = memory.device
    beams = torch.full((1, 1), start, dtype=torch.long, device=device)  # (K, t + 1): live prefixes
    scores = torch.zeros(1, device=device)  # (K,) their log-probabilities
    finished = []  # (normalised score, tokens without start)
    for t in range(max_len):
        K = beams.shape[0]
        lengths = None if src_lengths is None else src_lengths.expand(K)
        logp = model.decode(beams, memory.expand(K, -1, -1), lengths)[:, -1].log_softmax(-1)  # (K, V)
        total = (scores[:, None] + logp).flatten()  # (K * V,)
        top, index = total.topk(min(beam_size, total.numel()))  # (k,), (k,)
        V = logp.shape[1]
        prev, token = index // V, index % V  # (k,), (k,)
        candidates = torch.cat([beams[prev], token[:, None]], dim=1)  # (k, t + 2)
        keep = []
        for i in range(len(top)):
            if int(token[i]) == end or t == max_len - 1:
                length = candidates.shape[1] - 1
                finished.append((float(top[i]) / length ** alpha, candidates[i, 1:]))
            else:
                keep.append(i)
        best_finished = max((s for s, _ in finished), default=-math.inf)
        # a live prefix can only lose probability; with alpha = 0 stop once none can win
        keep = [i for i in keep if alpha > 0 or float(top[i]) > best_finished]
        if not keep:
            break
        beams, scores = candidates[keep], top[keep]
    _, best = max(finished, key=lambda f: f[0])
    out = torch.full((max_len,), end, dtype=torch.long, device=device)
    out[: len(best)] = best
    return out


# ---- training helpers ------------------------------------------------------------------------


def label_smoothing_loss(logits, targets, smoothing: float, ignore_index: int | None = None):
    """Cross-entropy against smoothed targets, eq-label-smoothing (Szegedy et al. 2016; used
    with ``smoothing = 0.1`` by Vaswani et al. 2017, section 5.4).

    The target distribution puts ``1 - smoothing`` on the true class and spreads ``smoothing``
    uniformly over all ``K`` classes (the true one included):
    ``q = (1 - eps) onehot(y) + eps / K``; the loss is ``-sum_k q_k log p_k`` averaged over the
    positions whose target is not ``ignore_index``. Equal to ``F.cross_entropy(...,
    label_smoothing=smoothing)``.

    Args:
        logits: ``(N, K)`` or ``(B, T, K)``; targets: integer ids of the same shape without ``K``.
    """
    _validate.tensor(logits, "logits", min_dim=2)
    if not isinstance(targets, torch.Tensor) or targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor, got {getattr(targets, 'dtype', type(targets).__name__)}")
    if tuple(targets.shape) != tuple(logits.shape[:-1]):
        raise ValueError(f"targets must have shape {tuple(logits.shape[:-1])} (logits {tuple(logits.shape)} "
                         f"without the class axis), got {tuple(targets.shape)}")
    if isinstance(smoothing, bool) or not isinstance(smoothing, (int, float)) or not 0 <= smoothing <= 1:
        raise ValueError(f"smoothing must be a number in [0, 1], got {smoothing!r}")
    K = logits.shape[-1]
    keep = torch.ones_like(targets, dtype=torch.bool) if ignore_index is None else targets != ignore_index
    y = targets[keep]  # (N_kept,)
    if y.numel() and (y.min() < 0 or y.max() >= K):
        raise ValueError(f"targets must lie in 0 .. {K - 1} (or be ignore_index), got {y.min()} to {y.max()}")
    logp = logits[keep].log_softmax(-1)  # (N_kept, K)
    nll = -logp.gather(1, y[:, None]).squeeze(1)  # (N_kept,)
    uniform = -logp.mean(-1)  # (N_kept,): cross-entropy against the uniform distribution
    return ((1 - smoothing) * nll + smoothing * uniform).mean()


def warmup_schedule(step: int, dim: int, warmup: int) -> float:
    """The learning rate of Vaswani et al. (2017), eq. 3 (eq-warmup):
    ``lr(step) = dim^-0.5 * min(step^-0.5, step * warmup^-1.5)``, steps counted from 1: it grows
    linearly for ``warmup`` steps, peaks at ``(dim * warmup)^-0.5``, then decays as ``step^-0.5``.
    ``step = 0`` gives 0.

    With torch, give the optimiser ``lr=1`` and
    ``LambdaLR(optimizer, lambda s: warmup_schedule(s + 1, dim, warmup))`` (LambdaLR counts from 0).
    """
    _validate.non_negative_int(step, "step")
    _validate.positive_int(dim, "dim")
    _validate.positive_int(warmup, "warmup")
    if step == 0:
        return 0.0
    return dim ** -0.5 * min(step ** -0.5, step * warmup ** -1.5)
