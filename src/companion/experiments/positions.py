"""Which positions extrapolate: train short, test long.

``positions-extrapolate`` trains one :class:`companion.position_models.PositionModel` for each
way of giving the positions (none, learned, sinusoidal, RoPE, ALiBi), all with the same
settings and seed, on :mod:`companion.tasks.most_recent` at length ``train_length``, and
measures each on held-out sequences at every length of ``test_lengths`` (the training length,
then longer ones the models never saw). Metrics, for each scheme ``s`` and test length ``L``:

- ``accuracy_{s}_L{L}``: the fraction of positions (with a target) whose marker is named right;
- ``accuracy_new_{s}_L{L}`` for ``L > train_length``: the same over the positions
  ``t >= train_length`` only, where the models never were during training.

The model is an ``nn.ModuleDict`` of the five models, keyed by scheme.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import _validate
from ..position_models import SCHEMES, PositionModel, PositionModelConfig
from ..tasks.most_recent import IGNORE, make_batch
from ..training import train
from .registry import register


@dataclass(frozen=True)
class PositionsConfig:
    seed: int = 0
    schemes: tuple = SCHEMES
    vocab: int = 16
    markers: int = 4
    marker_rate: float = 0.25
    train_length: int = 16
    test_lengths: tuple = (16, 32, 64)
    max_length: int = 64  # of the learned table: its rows past train_length stay untrained
    dim: int = 32
    layers: int = 1
    alibi_slope: float = 0.5
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3
    test_size: int = 500


def _check(config: PositionsConfig) -> None:
    if not isinstance(config, PositionsConfig):
        raise TypeError(f"config must be a PositionsConfig, got {type(config).__name__}")
    if not config.schemes or any(s not in SCHEMES for s in config.schemes):
        raise ValueError(f"schemes must be a non-empty tuple of {SCHEMES}, got {config.schemes!r}")
    for name in ("vocab", "markers", "train_length", "max_length", "dim", "layers", "batch_size",
                 "test_size"):
        _validate.positive_int(getattr(config, name), name)
    if not config.test_lengths:
        raise ValueError("test_lengths must name at least one length")
    for length in config.test_lengths:
        _validate.positive_int(length, "test_lengths")
        if length > config.max_length:
            raise ValueError(f"test length {length} exceeds max_length={config.max_length}")
    _validate.non_negative_int(config.steps, "steps")
    _validate.positive_number(config.lr, "lr")


def model_config(config: PositionsConfig, scheme: str) -> PositionModelConfig:
    return PositionModelConfig(vocab=config.vocab, num_classes=config.markers, positions=scheme,
                               dim=config.dim, layers=config.layers, max_length=config.max_length,
                               alibi_slope=config.alibi_slope)


def build(config: PositionsConfig) -> nn.ModuleDict:
    _check(config)
    return nn.ModuleDict({s: PositionModel(model_config(config, s)) for s in config.schemes})


def held_out(config: PositionsConfig, length: int):
    """Test sequences of ``length``: a seed the training stream never uses."""
    return make_batch(config.test_size, length, config.vocab, config.markers, config.marker_rate,
                      rng=10_000 + 97 * length + config.seed)


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


@torch.no_grad()
def evaluate(models: nn.ModuleDict, config: PositionsConfig) -> dict:
    """The accuracies of every scheme at every test length (see the module doc)."""
    result = {}
    for length in config.test_lengths:
        tokens, targets = held_out(config, length)
        scored = targets != IGNORE  # (N, L)
        new = scored.clone()
        new[:, : config.train_length] = False  # (N, L): positions never seen in training
        for scheme, model in models.items():
            model.eval()
            logits, _ = model(tokens)  # (N, L, C)
            right = logits.argmax(-1) == targets  # (N, L)
            result[f"accuracy_{scheme}_L{length}"] = right[scored].double().mean().item()
            if length > config.train_length:
                result[f"accuracy_new_{scheme}_L{length}"] = right[new].double().mean().item()
    return result


def fit(models: nn.ModuleDict, config: PositionsConfig, progress: bool = True):
    _check(config)
    history = {}
    for scheme, model in models.items():
        stream = torch.Generator().manual_seed(config.seed)  # the same batches for every scheme

        def loss_fn(step: int, model=model, stream=stream) -> torch.Tensor:
            tokens, targets = make_batch(config.batch_size, config.train_length, config.vocab,
                                         config.markers, config.marker_rate, rng=stream)
            logits, _ = model(tokens)  # (B, L, C)
            return _loss(logits, targets)

        log = train(model, loss_fn, steps=config.steps, lr=config.lr, progress=progress,
                    desc=f"positions {scheme}")
        history[f"loss_{scheme}"] = log.losses
    metrics = {**evaluate(models, config), "steps": config.steps}
    return metrics, history


register(
    "positions-extrapolate",
    "one-head causal self-attention with no / learned / sinusoidal / RoPE / ALiBi positions, "
    "trained on length 16 to name the most recent marker, tested at lengths 16, 32 and 64",
    PositionsConfig(),
    build,
    fit,
)
