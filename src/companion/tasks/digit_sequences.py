"""Digit sequences to reverse or to sort, of variable length, padded: toy translation tasks
for an encoder-decoder whose right answer is known.

A source is a sequence of digits ``3 1 4 1 5``; its target is the same digits reversed
(``5 1 4 1 3``) or sorted (``1 1 3 4 5``). Source and target share one vocabulary::

    0 <pad>   1 <bos>   2 <eos>   3 + d  the digit d

Shapes: ``src (N, S)`` with ``src_lengths (N,)`` (``<pad>`` on the right), ``tgt_in (N, S + 1)``
(``<bos>`` then the answer, the decoder's input under teacher forcing) and ``tgt_out (N, S + 1)``
(the answer then ``<eos>``, what the decoder must predict), padded with ``<pad>``.

The test split holds ``test_per_length`` distinct sequences of every length from ``min_length``
to ``test_max_length``; lengths above ``max_length`` never occur in training, and no training
sequence equals a test sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import _validate
# The numerals and markers of the toy translation task's target side, and its reader of them.
from .toy_translation import BOS, EOS, PAD, held_out_digit_rows
from .toy_translation import TARGET_VOCAB as VOCAB
from .toy_translation import target_text as text  # readable digits of a row of ids, to <eos>

VOCAB_SIZE = len(VOCAB)  # 13
TASKS = ("reverse", "sort")


def answer(digits, task: str) -> list[int]:
    """The right target for a list of digits: reversed or sorted."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    digits = [int(d) for d in digits]
    if not digits or any(not 0 <= d <= 9 for d in digits):
        raise ValueError(f"digits must be a non-empty list of digits 0..9, got {digits}")
    return digits[::-1] if task == "reverse" else sorted(digits)


@dataclass(frozen=True)
class DigitTaskConfig:
    task: str = "reverse"
    min_length: int = 3
    max_length: int = 10  # longest training sequence
    test_max_length: int = 14  # longest test sequence (>= max_length)
    train_size: int = 20_000
    test_per_length: int = 50
    seed: int = 0

    def __post_init__(self):
        if self.task not in TASKS:
            raise ValueError(f"task must be one of {TASKS}, got {self.task!r}")
        for name in ("min_length", "max_length", "test_max_length", "train_size", "test_per_length"):
            _validate.positive_int(getattr(self, name), name)
        if not self.min_length <= self.max_length <= self.test_max_length:
            raise ValueError(f"need min_length <= max_length <= test_max_length, got {self.min_length}, "
                             f"{self.max_length}, {self.test_max_length}")
        _validate.non_negative_int(self.seed, "seed")


@dataclass
class Split:
    """Padded tensors of a set of examples (see the module docstring for the shapes)."""

    src: torch.Tensor  # (N, S)
    src_lengths: torch.Tensor  # (N,)
    tgt_in: torch.Tensor  # (N, S + 1)
    tgt_out: torch.Tensor  # (N, S + 1)

    def __len__(self) -> int:
        return len(self.src_lengths)

    def batch(self, index) -> "Split":
        """The examples at ``index``, trimmed to their longest sequence."""
        lengths = self.src_lengths[index]
        S = int(lengths.max())
        return Split(self.src[index, :S], lengths, self.tgt_in[index, :S + 1], self.tgt_out[index, :S + 1])

    def with_length(self, length: int) -> "Split":
        """The examples of one source length."""
        return self.batch((self.src_lengths == length).nonzero().squeeze(1))


def encode(rows: list[list[int]], task: str) -> Split:
    """Tensors for a list of digit lists."""
    if not rows:
        raise ValueError("rows must be a non-empty list of digit lists")
    answers = [answer(r, task) for r in rows]  # validates
    N, S = len(rows), max(len(r) for r in rows)
    src = torch.full((N, S), PAD)
    tgt_in = torch.full((N, S + 1), PAD)
    tgt_out = torch.full((N, S + 1), PAD)
    for n, (row, ans) in enumerate(zip(rows, answers)):
        L = len(row)
        src[n, :L] = torch.tensor(row) + 3
        tgt_in[n, 0] = BOS
        tgt_in[n, 1:L + 1] = torch.tensor(ans) + 3
        tgt_out[n, :L] = torch.tensor(ans) + 3
        tgt_out[n, L] = EOS
    return Split(src, torch.tensor([len(r) for r in rows]), tgt_in, tgt_out)


def make_splits(config: DigitTaskConfig = DigitTaskConfig()) -> tuple[Split, Split]:
    """``(train, test)``: uniform lengths and uniform digits, generated from ``config.seed``."""
    if not isinstance(config, DigitTaskConfig):
        raise TypeError(f"config must be a DigitTaskConfig, got {type(config).__name__}")
    test_lengths = range(config.min_length, config.test_max_length + 1)
    for L in test_lengths:
        if 10 ** L < 2 * config.test_per_length:
            raise ValueError(f"only {10 ** L} sequences of length {L}: lower test_per_length or raise min_length")
    train_rows, test_rows = held_out_digit_rows(config.seed, test_lengths, config.test_per_length,
                                                config.train_size, config.min_length, config.max_length)
    return encode(train_rows, config.task), encode(test_rows, config.task)
