"""Two lookbacks: at every position, name the tokens found at two fixed distances back.

A sequence ``x_0 .. x_{L-1}`` of random tokens from a vocabulary of ``V``; with lags ``(a, b)``
the target at position ``t`` is the pair ``(x_{t-a}, x_{t-b})``, one class of ``V * V``::

    y_t = x_{t-a} * V + x_{t-b}        for t >= max(a, b)

Each target needs two pieces of information at two different relative positions, and the pair
is ordered, so a model cannot get it from an average of the two tokens: a causal attention
layer with two heads solves it when each head looks at one lag. The positions before
``max(a, b)`` have no target and hold :data:`IGNORE` (the ``ignore_index`` of
``torch.nn.functional.cross_entropy``).
"""

from __future__ import annotations

import torch

from .. import _validate

IGNORE = -100  # the target of a position with too little history


def make_batch(size: int, length: int, vocab: int, lags=(1, 4), rng=0):
    """``(tokens (N, L), targets (N, L))``, both ``torch.long``.

    Args:
        size: ``N``, the number of sequences; length: ``L``; vocab: ``V``, at least 2.
        lags: two different positive integers ``(a, b)``, both less than ``length``.
        rng: an integer seed (the same batch every time), or a ``torch.Generator`` to draw
            successive batches from one stream.
    """
    _validate.positive_int(size, "size")
    _validate.positive_int(length, "length")
    _validate.positive_int(vocab, "vocab")
    if vocab < 2:
        raise ValueError(f"vocab must be at least 2, got {vocab}")
    a, b = check_lags(lags, length)
    generator = _validate.generator(rng, "rng")
    tokens = torch.randint(0, vocab, (size, length), generator=generator)  # (N, L)
    targets = torch.full_like(tokens, IGNORE)  # (N, L)
    start = max(a, b)
    first = tokens[:, start - a : length - a]  # (N, L - start): x_{t-a} for t = start .. L-1
    second = tokens[:, start - b : length - b]  # (N, L - start): x_{t-b}
    targets[:, start:] = first * vocab + second
    return tokens, targets


def check_lags(lags, length: int) -> tuple[int, int]:
    """``lags`` as a pair of different positive integers less than ``length``."""
    try:
        a, b = lags
    except (TypeError, ValueError):
        raise ValueError(f"lags must be a pair of integers (a, b), got {lags!r}") from None
    for lag in (a, b):
        if isinstance(lag, bool) or not isinstance(lag, int) or not 0 < lag < length:
            raise ValueError(f"lags must be integers in 1 .. length-1 = {length - 1}, got {lags!r}")
    if a == b:
        raise ValueError(f"the two lags must differ, got {lags!r}")
    return a, b


def split_pair(targets: torch.Tensor, vocab: int):
    """``(x_{t-a}, x_{t-b})`` from pair classes ``x_{t-a} * vocab + x_{t-b}`` (IGNORE stays IGNORE)."""
    _validate.tensor(targets, "targets", float_=False)
    if targets.dtype.is_floating_point or targets.dtype == torch.bool:
        raise TypeError(f"targets must be an integer tensor, got dtype {targets.dtype}")
    _validate.positive_int(vocab, "vocab")
    ignored = targets == IGNORE
    first = torch.where(ignored, IGNORE, targets // vocab)
    second = torch.where(ignored, IGNORE, targets % vocab)
    return first, second
