"""A synthetic translation task: read digits as words, write them back reversed.

A source sentence is a sequence of English number words, ``"seven two nine four"``; its
translation is the same digits written as numerals in the reverse order, ``"4 9 2 7"``. The
two languages have different vocabularies (a model must learn the word-to-digit lexicon) and
the correct alignment is the anti-diagonal: output ``t`` of a sentence of ``S`` words translates
source word ``S - 1 - t`` (both counted from 0). Because digits repeat, the alignment cannot be
found by content alone; the model has to know *where* it is in the source. Each output copies
one input position through the lexicon, which makes this a task for a pointer network (Vinyals
et al. 2015) as much as for a translator.

Everything is generated from seeds; the held-out test sentences never occur in training.

Shapes: a batch of sources is ``src (B, S)`` with ``src_lengths (B,)`` (0 pads the right);
targets are ``tgt_in (B, T)`` (``<bos>`` then the translation) and ``tgt_out (B, T)`` (the
translation then ``<eos>``), where ``T`` is one more than the longest translation.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import _validate

WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
PAD, BOS, EOS = 0, 1, 2
SOURCE_VOCAB = ("<pad>",) + WORDS  # word w has id 1 + digit
TARGET_VOCAB = ("<pad>", "<bos>", "<eos>") + tuple(str(d) for d in range(10))  # digit d has id 3 + d


def translate(sentence: str) -> str:
    """The correct translation of a source sentence: ``"seven two nine"`` -> ``"9 2 7"``."""
    if not isinstance(sentence, str):
        raise TypeError(f"sentence must be a string, got {type(sentence).__name__}")
    words = sentence.split()
    unknown = [w for w in words if w not in WORDS]
    if unknown or not words:
        raise ValueError(f"sentence must be number words from {WORDS}, got {sentence!r}")
    return " ".join(str(WORDS.index(w)) for w in reversed(words))


def source_ids(sentence: str) -> list[int]:
    """Token ids of a source sentence (no padding)."""
    translate(sentence)  # validates
    return [1 + WORDS.index(w) for w in sentence.split()]


def target_text(ids) -> str:
    """Readable text of target ids, stopping at ``<eos>`` and dropping ``<pad>``/``<bos>``."""
    out = []
    for i in ids:
        i = int(i)
        if i == EOS:
            break
        if i > EOS:
            out.append(TARGET_VOCAB[i])
    return " ".join(out)


@dataclass(frozen=True)
class TaskConfig:
    min_length: int = 3
    max_length: int = 16
    train_size: int = 20_000
    test_per_length: int = 50  # held-out sentences for each length
    seed: int = 0


def _check(config: TaskConfig) -> None:
    if not isinstance(config, TaskConfig):
        raise TypeError(f"config must be a TaskConfig, got {type(config).__name__}")
    for name in ("min_length", "max_length", "train_size", "test_per_length"):
        _validate.positive_int(getattr(config, name), name)
    if config.min_length > config.max_length:
        raise ValueError(f"min_length={config.min_length} exceeds max_length={config.max_length}")


@dataclass
class Split:
    """A set of sentence pairs as padded tensors."""

    src: torch.Tensor  # (N, S) source ids, 0-padded
    src_lengths: torch.Tensor  # (N,)
    tgt_in: torch.Tensor  # (N, T) <bos> + translation, 0-padded
    tgt_out: torch.Tensor  # (N, T) translation + <eos>, 0-padded

    def __len__(self) -> int:
        return len(self.src_lengths)

    def sentence(self, n: int) -> str:
        """The source sentence of example ``n``."""
        return " ".join(SOURCE_VOCAB[int(i)] for i in self.src[n, : int(self.src_lengths[n])])

    def reference(self, n: int) -> str:
        """The reference translation of example ``n``."""
        return target_text(self.tgt_out[n])

    def batch(self, index: torch.Tensor) -> "Split":
        """The examples at ``index``, trimmed to their longest source and target."""
        lengths = self.src_lengths[index]
        S = int(lengths.max())
        return Split(self.src[index, :S], lengths, self.tgt_in[index, : S + 1], self.tgt_out[index, : S + 1])


def encode(digit_rows: list[list[int]]) -> Split:
    """Tensors for a list of digit sequences (each a source sentence written as digits)."""
    if not digit_rows or any(len(r) == 0 for r in digit_rows):
        raise ValueError("digit_rows must be a non-empty list of non-empty digit lists")
    N, S = len(digit_rows), max(len(r) for r in digit_rows)
    lengths = torch.tensor([len(r) for r in digit_rows])  # (N,)
    digits = torch.zeros(N, S, dtype=torch.long)
    for n, row in enumerate(digit_rows):
        digits[n, : len(row)] = torch.as_tensor(row)
    real = torch.arange(S)[None, :] < lengths[:, None]  # (N, S)
    if ((digits < 0) | (digits > 9)).any():
        bad = int(((digits < 0) | (digits > 9)).any(1).nonzero()[0])
        raise ValueError(f"digits must lie in 0..9, got {digit_rows[bad]}")
    src = torch.where(real, digits + 1, PAD)  # (N, S)
    mirror = (lengths[:, None] - 1 - torch.arange(S)[None, :]).clamp_min(0)  # (N, S): L - 1 - i
    out = torch.where(real, digits.gather(1, mirror) + 3, PAD)  # (N, S) reversed numerals
    tgt_out = torch.cat([out, torch.zeros(N, 1, dtype=torch.long)], 1)  # (N, S + 1)
    tgt_out[torch.arange(N), lengths] = EOS
    tgt_in = torch.cat([torch.full((N, 1), BOS), out], 1)  # (N, S + 1)
    return Split(src, lengths, tgt_in, tgt_out)


def make_splits(config: TaskConfig = TaskConfig()) -> tuple[Split, Split]:
    """``(train, test)``: uniform lengths in ``[min_length, max_length]``, uniform digits.

    The test split holds ``test_per_length`` distinct sentences of each length; training
    sentences equal to a test sentence are dropped, so the test split is truly held out.
    """
    _check(config)
    for L in range(config.min_length, config.max_length + 1):
        if 10**L <= config.test_per_length:
            raise ValueError(f"only {10**L} sentences of length {L}; lower test_per_length")
    train_rows, test_rows = held_out_digit_rows(config.seed, range(config.min_length, config.max_length + 1),
                                                config.test_per_length, config.train_size,
                                                config.min_length, config.max_length)
    return encode(train_rows), encode(test_rows)


def held_out_digit_rows(seed: int, test_lengths, per_length: int, train_size: int, min_length: int,
                        max_length: int) -> tuple[list[list[int]], list[list[int]]]:
    """``(train_rows, test_rows)`` of uniform digits: ``per_length`` distinct test rows of each of
    ``test_lengths``, then ``train_size`` rows of uniform lengths in ``[min_length, max_length]``
    with every row equal to a test row dropped (so the test rows are truly held out)."""
    g = torch.Generator().manual_seed(seed)
    test_rows, seen = [], set()
    for L in test_lengths:
        count = 0
        while count < per_length:
            row = tuple(torch.randint(0, 10, (L,), generator=g).tolist())
            if row not in seen:
                seen.add(row)
                test_rows.append(list(row))
                count += 1
    lengths = torch.randint(min_length, max_length + 1, (train_size,), generator=g)
    digits = torch.randint(0, 10, (train_size, max_length), generator=g)
    train_rows = [row for row in (digits[n, :int(L)].tolist() for n, L in enumerate(lengths))
                  if tuple(row) not in seen]
    return train_rows, test_rows
