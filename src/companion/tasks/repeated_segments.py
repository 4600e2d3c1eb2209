"""Sequences in which a random segment occurs twice: the task of induction heads
(Olsson et al. 2022).

A sequence of ``length`` tokens is laid out as::

    [prefix, a tokens] [segment, m tokens] [gap, g tokens] [the segment again, m tokens]

with ``m`` drawn uniformly from ``min_segment .. max_segment``, the gap ``g >= 1`` and the prefix
``a >= 0`` drawn uniformly among the layouts that fill the length. The segment therefore starts
at a random position and its copy at a random distance ``m + g`` from it: no fixed positional
offset finds it. Every token outside the copy is distinct (drawn without replacement from the
vocabulary), so a token of the copy occurs exactly once before it, and "find the earlier
occurrence of the current token, predict the token that followed it" is the whole rule.

**Repeated tokens** (where the loss of the experiment is measured) are the copy's tokens from its
second on: positions ``r + 1 .. r + m - 1``, where ``r = a + m + g`` is where the copy starts. The
first token of the copy is excluded: nothing before it announces that the copy starts there, so
it is as unpredictable as any fresh token. Every repeated token is determined by what precedes
it, so the best possible loss on them is 0 nats.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import _validate


@dataclass(frozen=True)
class RepeatedSegmentsConfig:
    vocab_size: int = 64
    length: int = 32
    min_segment: int = 4
    max_segment: int = 10

    def __post_init__(self):
        for name in ("vocab_size", "length", "min_segment", "max_segment"):
            _validate.positive_int(getattr(self, name), name)
        if not 2 <= self.min_segment <= self.max_segment:
            raise ValueError(f"need 2 <= min_segment <= max_segment, got {self.min_segment}, {self.max_segment}")
        if 2 * self.max_segment + 1 > self.length:
            raise ValueError(f"length={self.length} cannot hold two segments of {self.max_segment} and a gap")
        if self.vocab_size < self.length - self.min_segment:
            raise ValueError(f"vocab_size={self.vocab_size} is too small for {self.length - self.min_segment} "
                             "distinct tokens a sequence")


@dataclass
class Batch:
    tokens: torch.Tensor  # (N, length) token ids
    repeated: torch.Tensor  # (N, length) bool: the repeated tokens (the copy without its first token)
    source_start: torch.Tensor  # (N,) where the segment starts (a)
    copy_start: torch.Tensor  # (N,) where the copy starts (r = a + m + g)
    segment_length: torch.Tensor  # (N,) m


def generate(n: int, config: RepeatedSegmentsConfig = RepeatedSegmentsConfig(), seed: int = 0) -> Batch:
    """``n`` sequences, generated from ``seed``."""
    _validate.positive_int(n, "n")
    if not isinstance(config, RepeatedSegmentsConfig):
        raise TypeError(f"config must be a RepeatedSegmentsConfig, got {type(config).__name__}")
    g = torch.Generator().manual_seed(seed)
    L = config.length
    m = torch.randint(config.min_segment, config.max_segment + 1, (n,), generator=g)  # (N,)
    free = L - 2 * m - 1  # (N,) tokens to share between prefix and extra gap
    a = (torch.rand(n, generator=g) * (free + 1)).floor().long()  # (N,) uniform in 0 .. free
    r = L - m  # (N,) the copy ends the sequence
    fresh = torch.rand(n, config.vocab_size, generator=g).argsort(dim=1)[:, :L]  # (N, L) distinct tokens
    pos = torch.arange(L)[None, :]  # (1, L)
    in_copy = pos >= r[:, None]  # (N, L)
    source = (pos - r[:, None] + a[:, None]).clamp(0, L - 1)  # (N, L) where each copied token comes from
    tokens = torch.where(in_copy, fresh.gather(1, source), fresh)  # (N, L)
    repeated = pos > r[:, None]  # (N, L)
    return Batch(tokens, repeated, a, r, m)
