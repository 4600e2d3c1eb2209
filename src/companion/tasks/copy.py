"""The copy task of Graves et al. (2014): read a sequence of random bit vectors, then write it back.

A sequence of ``L`` vectors of ``bits`` random bits is presented one vector a step, followed by
one step on which only an extra *delimiter* channel is on; during the next ``L`` steps the input
is all zeros and the model must output the ``L`` vectors in their original order. Batch-first::

    inputs   (B, 2L + 1, bits + 1)    the bits on steps 0..L-1, the delimiter on step L
    targets  (B, 2L + 1, bits)        the bits again on steps L+1..2L, zeros elsewhere
    mask     (B, 2L + 1)              True on the L steps where the output is scored

Every sequence of a batch has the same length, so a batch is one dense tensor and the model
runs over it without padding.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import _validate

__all__ = ["CopyBatch", "bit_errors", "copy_batch"]


@dataclass
class CopyBatch:
    inputs: torch.Tensor  # (B, 2L + 1, bits + 1)
    targets: torch.Tensor  # (B, 2L + 1, bits)
    mask: torch.Tensor  # (B, 2L + 1), True on the output steps
    length: int  # L

    def __len__(self) -> int:
        return self.inputs.shape[0]


def copy_batch(batch_size: int, length: int, bits: int = 8, *, generator: torch.Generator | None = None) -> CopyBatch:
    """A batch of ``batch_size`` copy sequences of ``length`` vectors of ``bits`` random bits."""
    _validate.positive_int(batch_size, "batch_size")
    _validate.positive_int(length, "length")
    _validate.positive_int(bits, "bits")
    if generator is not None and not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator or None, got {type(generator).__name__}")
    T = 2 * length + 1
    seq = torch.randint(0, 2, (batch_size, length, bits), generator=generator).float()  # (B, L, bits)
    inputs = torch.zeros(batch_size, T, bits + 1)
    inputs[:, :length, :bits] = seq
    inputs[:, length, bits] = 1.0  # the delimiter
    targets = torch.zeros(batch_size, T, bits)
    targets[:, length + 1:] = seq
    mask = torch.zeros(batch_size, T, dtype=torch.bool)
    mask[:, length + 1:] = True
    return CopyBatch(inputs, targets, mask, length)


def bit_errors(logits: torch.Tensor, batch: CopyBatch) -> torch.Tensor:
    """The number of wrong bits of each sequence ``(B,)`` on the scored steps (a logit > 0 means 1)."""
    _validate.tensor(logits, "logits", min_dim=3)
    if logits.shape != batch.targets.shape:
        raise ValueError(f"logits of shape {tuple(logits.shape)} must match the targets {tuple(batch.targets.shape)}")
    wrong = ((logits > 0).float() != batch.targets) & batch.mask[..., None]  # (B, T, bits)
    return wrong.sum(dim=(1, 2)).float()  # (B,)
