"""The monotonic twin of :mod:`companion.tasks.toy_translation`: number words to numerals,
in the *same* order (``"seven two nine"`` -> ``"7 2 9"``).

The sentences, vocabularies and splits are those of the reversal task; only the targets are
flipped back, so the correct alignment is the diagonal (output ``t`` translates word ``t``),
the alignment that Luong's local-m assumes.
"""

from __future__ import annotations

import torch

from .toy_translation import EOS, PAD, Split, TaskConfig
from .toy_translation import make_splits as reversal_splits


def monotonic(split: Split) -> Split:
    """The same sentences with the translation in source order."""
    if not isinstance(split, Split):
        raise TypeError(f"split must be a toy_translation.Split, got {type(split).__name__}")
    N, T = split.tgt_out.shape
    lengths = split.src_lengths  # (N,)
    steps = torch.arange(T)[None, :]  # (1, T)
    mirror = (lengths[:, None] - 1 - steps).clamp_min(0)  # (N, T): output t <- reversed L-1-t
    real = steps < lengths[:, None]  # (N, T)
    out = torch.where(real, split.tgt_out.gather(1, mirror), PAD)  # (N, T)
    out[torch.arange(N), lengths] = EOS
    tgt_in = torch.cat([split.tgt_in[:, :1], out[:, :-1]], 1)  # <bos> + the translation
    tgt_in = torch.where(tgt_in == EOS, PAD, tgt_in)
    return Split(split.src, lengths, tgt_in, out)


def make_splits(config: TaskConfig = TaskConfig()) -> tuple[Split, Split]:
    """``(train, test)``: the reversal task's splits with monotonic targets."""
    train, test = reversal_splits(config)
    return monotonic(train), monotonic(test)
