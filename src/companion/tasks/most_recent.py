"""Most recent marker: at every position, name the last marker token seen so far.

A sequence ``x_0 .. x_{L-1}`` of random tokens from a vocabulary of ``V``; the first
``markers`` tokens (ids ``0 .. markers-1``) are *markers*, the rest are fillers. The target at
position ``t`` is the most recent marker at or before ``t``::

    y_t = x_s,   s = max{ s <= t : x_s < markers }

and :data:`IGNORE` while no marker has appeared yet. The answer depends on the order of the
tokens, not only on which tokens are present: a model that sees the prefix as a bag of tokens
cannot tell the last marker from an earlier one. Each position is a marker with probability
``marker_rate``; the distance back to the last marker is geometric, short on average, with a
tail that grows with the length.
"""

from __future__ import annotations

import torch

from .. import _validate

IGNORE = -100  # the target of a position with no marker before it


def make_batch(size: int, length: int, vocab: int = 16, markers: int = 4, marker_rate: float = 0.25,
               rng=0):
    """``(tokens (N, L), targets (N, L))``, both ``torch.long``; targets are marker ids or IGNORE.

    Args:
        size: ``N``, the number of sequences; length: ``L``.
        vocab: ``V``, the number of tokens; markers: how many of them are markers (at least 2,
            fewer than ``V``).
        marker_rate: the probability that a position holds a marker, in (0, 1).
        rng: an integer seed (the same batch every time), or a ``torch.Generator``.
    """
    _validate.positive_int(size, "size")
    _validate.positive_int(length, "length")
    _validate.positive_int(vocab, "vocab")
    _validate.positive_int(markers, "markers")
    if not 2 <= markers < vocab:
        raise ValueError(f"markers must be in 2 .. vocab-1 = {vocab - 1}, got markers={markers}")
    if isinstance(marker_rate, bool) or not isinstance(marker_rate, (int, float)) or not 0 < marker_rate < 1:
        raise ValueError(f"marker_rate must be a number in (0, 1), got {marker_rate!r}")
    generator = _validate.generator(rng, "rng")
    is_marker = torch.rand(size, length, generator=generator) < marker_rate  # (N, L)
    marker_ids = torch.randint(0, markers, (size, length), generator=generator)  # (N, L)
    filler_ids = torch.randint(markers, vocab, (size, length), generator=generator)  # (N, L)
    tokens = torch.where(is_marker, marker_ids, filler_ids)  # (N, L)
    return tokens, targets_of(tokens, markers)


def targets_of(tokens: torch.Tensor, markers: int) -> torch.Tensor:
    """The most recent marker at or before each position of ``tokens (N, L)`` (IGNORE before the
    first marker)."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
        raise ValueError(f"tokens must be a (batch, length) tensor, got {getattr(tokens, 'shape', tokens)!r}")
    if tokens.dtype.is_floating_point or tokens.dtype == torch.bool:
        raise TypeError(f"tokens must be integer token ids, got dtype {tokens.dtype}")
    _validate.positive_int(markers, "markers")
    N, L = tokens.shape
    position = torch.arange(L).expand(N, L)  # (N, L)
    last = torch.where(tokens < markers, position, -1).cummax(dim=1).values  # (N, L): index or -1
    found = tokens.gather(1, last.clamp(min=0))  # (N, L)
    return torch.where(last >= 0, found, IGNORE)  # (N, L)


def distance_back(tokens: torch.Tensor, markers: int) -> torch.Tensor:
    """How far back the most recent marker is, ``t - s`` (``-1`` where there is none): ``(N, L)``."""
    if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
        raise ValueError(f"tokens must be a (batch, length) tensor, got {getattr(tokens, 'shape', tokens)!r}")
    N, L = tokens.shape
    position = torch.arange(L).expand(N, L)  # (N, L)
    last = torch.where(tokens < markers, position, -1).cummax(dim=1).values  # (N, L)
    return torch.where(last >= 0, position - last, -1)  # (N, L)
