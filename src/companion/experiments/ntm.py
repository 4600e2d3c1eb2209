"""The neural Turing machine on the copy task (Graves et al., 2014), as named experiments.

``ntm-copy`` trains :class:`companion.ntm.NTM` on copy sequences (:mod:`companion.tasks.copy`)
of random lengths ``min_length..max_length``, one length a batch, with binary cross-entropy on
the output steps, Adam and global gradient clipping. Every ``check_every`` steps it counts the
bit errors on a validation set and stops once they have been at ``target_bit_errors`` per
sequence or below on ``patience`` checks in a row (or after ``max_steps``): one good check can
be a fluke of a model that is still unstable. It then reports, on sequences drawn from
generators that neither training nor validation use:

- ``bit_errors_per_sequence``: mean wrong bits per sequence over the training lengths;
- ``bit_errors_per_sequence_2x``: the same on sequences of twice the longest training length;
- ``sequences_per_second``: training sequences processed per second of training;
- ``train_seconds``, ``steps`` and ``converged`` (``bit_errors_per_sequence < 0.1``).

``ntm-copy-seeds`` runs ``ntm-copy`` for several seeds (each cached as its own ``ntm-copy``
run) and reports ``seeds``, ``seeds_converged`` and every seed's figures.
"""

from __future__ import annotations

import math
import time
import warnings
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from .. import _validate
from ..ntm import NTM, NTMConfig
from ..tasks.copy import CopyBatch, bit_errors, copy_batch
from .registry import register

CONVERGED = 0.1  # bit errors per sequence on the training lengths


@dataclass(frozen=True)
class CopyConfig:
    seed: int = 0
    bits: int = 8
    min_length: int = 1
    max_length: int = 10
    controller_size: int = 100
    rows: int = 32
    width: int = 20
    shift_width: int = 3
    memory_init: float = 1e-6
    clamp: float = 20.0
    batch_size: int = 16
    lr: float = 1e-3
    clip: float = 10.0
    max_steps: int = 6000
    check_every: int = 100
    target_bit_errors: float = 0.01  # stop when the validation errors per sequence reach this
    patience: int = 2  # ... on this many checks in a row
    validation_per_length: int = 32
    test_per_length: int = 100


def model_config(config: CopyConfig) -> NTMConfig:
    return NTMConfig(input_size=config.bits + 1, output_size=config.bits, controller_size=config.controller_size,
                     rows=config.rows, width=config.width, shift_width=config.shift_width,
                     memory_init=config.memory_init, clamp=config.clamp)


def _check(config: CopyConfig) -> None:
    if not isinstance(config, CopyConfig):
        raise TypeError(f"config must be a CopyConfig, got {type(config).__name__}")
    for name in ("bits", "min_length", "max_length", "batch_size", "check_every", "patience",
                 "validation_per_length", "test_per_length"):
        _validate.positive_int(getattr(config, name), name)
    if config.min_length > config.max_length:
        raise ValueError(f"min_length {config.min_length} must not exceed max_length {config.max_length}")
    if isinstance(config.max_steps, bool) or not isinstance(config.max_steps, int) or config.max_steps < 0:
        raise ValueError(f"max_steps must be a non-negative integer, got {config.max_steps!r}")
    for name in ("lr", "clip"):
        value = getattr(config, name)
        if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
            raise ValueError(f"{name} must be a positive number, got {value!r}")
    if not (isinstance(config.target_bit_errors, (int, float)) and config.target_bit_errors >= 0):
        raise ValueError(f"target_bit_errors must be a non-negative number, got {config.target_bit_errors!r}")


def build(config: CopyConfig) -> NTM:
    _check(config)
    return NTM(model_config(config))


def loss_on(model: NTM, batch: CopyBatch) -> torch.Tensor:
    """Binary cross-entropy per output bit, on the steps where the copy is written."""
    logits = model(batch.inputs)  # (B, T, bits)
    return F.binary_cross_entropy_with_logits(logits[batch.mask], batch.targets[batch.mask])


def held_out(config: CopyConfig, lengths, per_length: int, stream: int) -> list[CopyBatch]:
    """One batch per length from a generator of its own (``stream`` 1: validation, 2: test),
    never the training generator."""
    return [copy_batch(per_length, L, config.bits,
                       generator=torch.Generator().manual_seed(1_000_003 * stream + 1_009 * L + config.seed))
            for L in lengths]


@torch.no_grad()
def errors_by_length(model: NTM, batches: list[CopyBatch]) -> dict[int, float]:
    """Mean bit errors per sequence for each batch's length."""
    model.eval()
    return {b.length: bit_errors(model(b.inputs), b).mean().item() for b in batches}


def fit(model: NTM, config: CopyConfig, progress: bool = True):
    _check(config)
    lengths = range(config.min_length, config.max_length + 1)
    validation = held_out(config, lengths, config.validation_per_length, stream=1)
    data = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    history = {"loss": [], "check_steps": [], "validation_bit_errors": []}
    interrupted, sequences = False, 0
    bar = tqdm(range(config.max_steps), desc=f"NTM copy (seed {config.seed})", disable=not progress, leave=False,
               mininterval=0.5)
    start = time.perf_counter()
    try:
        for step in bar:
            model.train()
            length = int(torch.randint(config.min_length, config.max_length + 1, (1,), generator=data))
            loss = loss_on(model, copy_batch(config.batch_size, length, config.bits, generator=data))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"NTM copy: the loss became {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.clip)
            optimizer.step()
            history["loss"].append(loss.item())
            sequences += config.batch_size
            if (step + 1) % config.check_every == 0:
                errors = sum(errors_by_length(model, validation).values()) / len(validation)
                history["check_steps"].append(step + 1)
                history["validation_bit_errors"].append(errors)
                bar.set_postfix(loss=f"{loss.item():.4f}", bit_errors=f"{errors:.3f}")
                recent = history["validation_bit_errors"][-config.patience:]
                if len(recent) == config.patience and max(recent) <= config.target_bit_errors:
                    break
    except KeyboardInterrupt:
        interrupted = True
        warnings.warn(f"NTM copy: interrupted after {len(history['loss'])} steps; the model keeps what it learned",
                      stacklevel=2)
    finally:
        bar.close()
    seconds = time.perf_counter() - start
    model.eval()
    test = held_out(config, lengths, config.test_per_length, stream=2)
    by_length = errors_by_length(model, test)
    long_length = 2 * config.max_length
    long = errors_by_length(model, held_out(config, [long_length], config.test_per_length, stream=2))
    train_errors = sum(by_length.values()) / len(by_length)
    metrics = {
        "bit_errors_per_sequence": train_errors,
        "bit_errors_per_sequence_2x": long[long_length],
        "sequences_per_second": sequences / seconds if seconds > 0 else 0.0,
        "train_seconds": seconds,
        "steps": len(history["loss"]),
        "converged": bool(train_errors < CONVERGED),
        "interrupted": interrupted,
    }
    history["lengths"] = list(by_length)
    history["bit_errors_by_length"] = list(by_length.values())
    return metrics, history


register("ntm-copy", "neural Turing machine on the copy task, 8-bit vectors, lengths 1-10",
         CopyConfig(), build, fit)


# --- the same over several seeds ----------------------------------------------------------

@dataclass(frozen=True)
class SeedsConfig:
    seed: int = 0  # unused; every run has its own seed
    seeds: tuple = (0, 1, 2, 3, 4, 5)


def build_seeds(config: SeedsConfig) -> nn.Module:
    if not isinstance(config, SeedsConfig):
        raise TypeError(f"config must be a SeedsConfig, got {type(config).__name__}")
    if not config.seeds or not all(isinstance(s, int) and not isinstance(s, bool) for s in config.seeds):
        raise ValueError(f"seeds must be a non-empty tuple of integers, got {config.seeds!r}")
    if len(set(config.seeds)) != len(config.seeds):
        raise ValueError(f"seeds must be distinct, got {config.seeds!r}")
    return nn.ModuleDict({f"seed_{s}": build(CopyConfig(seed=s)) for s in config.seeds})


def fit_seeds(model: nn.ModuleDict, config: SeedsConfig, progress: bool = True):
    from . import run  # the registry's run: each seed is cached as its own ntm-copy run

    metrics = {"seeds": len(config.seeds), "seeds_converged": 0}
    history = {"seeds": list(config.seeds)}
    for s in config.seeds:
        result = run("ntm-copy", progress=progress, seed=s)
        model[f"seed_{s}"].load_state_dict(result.model.state_dict())
        metrics["seeds_converged"] += int(result.metrics["converged"])
        for key in ("bit_errors_per_sequence", "bit_errors_per_sequence_2x", "train_seconds", "steps",
                    "sequences_per_second"):
            metrics[f"seed_{s}_{key}"] = result.metrics[key]
        history[f"seed_{s}_check_steps"] = result.history["check_steps"]
        history[f"seed_{s}_validation_bit_errors"] = result.history["validation_bit_errors"]
    return metrics, history


register("ntm-copy-seeds", "ntm-copy over six seeds: how many converge, and the spread",
         SeedsConfig(), build_seeds, fit_seeds)
