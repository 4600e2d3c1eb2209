"""The trained models of the chapter on attention at scale: what linear attention loses.

Associative recall (``companion.tasks.associative_recall``): ``num_pairs`` random keys with
random values, and a query that is a noisy copy of one key; the model must output that key's
value. Two models with the same learned projections (``W_q``, ``W_k``: ``input_dim -> key_dim``)
differ only in the kernel: ``recall-softmax`` weighs the values by the softmax of the scaled
dot products (eq-sdpa), ``recall-linear`` by ``phi(q).phi(k)``, ``phi(x) = elu(x) + 1``
(eq-linear-attention). Both train with the same data, steps and learning rate.

Metrics on a held-out batch: squared error of the output (``test_loss``), the same error for
uniform weights, which retrieve nothing (``uniform_loss``, about ``value_dim (1 - 1/m)``), their
ratio (``relative_loss``: 0 is perfect recall, 1 no recall at all), how often the largest weight
is on the right key (``test_accuracy``), and the weights' mean entropy (``test_entropy``, against
``log m`` for uniform weights).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import _validate
from ..efficient import LinearRetrieval
from ..retrieval import RetrievalAttention
from ..softmax_calculus import entropy
from ..tasks.associative_recall import make_batch
from ..training import train
from .registry import register

KINDS = ("softmax", "linear")


@dataclass(frozen=True)
class RecallKernelConfig:
    seed: int = 0
    attention: str = "softmax"  # "softmax" or "linear"
    num_pairs: int = 8  # m, keys (and values) per example
    key_dim: int = 64  # d_k, the size of the projected queries and keys (phi keeps it)
    input_dim: int = 64
    value_dim: int = 16
    noise: float = 1.0  # standard deviation of the noise added to the query
    steps: int = 400
    batch_size: int = 64
    lr: float = 3e-3
    test_size: int = 1000


def _check(config: RecallKernelConfig) -> None:
    if not isinstance(config, RecallKernelConfig):
        raise TypeError(f"config must be a RecallKernelConfig, got {type(config).__name__}")
    if config.attention not in KINDS:
        raise ValueError(f"attention must be one of {KINDS}, got {config.attention!r}")
    for name in ("key_dim", "input_dim", "value_dim", "batch_size", "test_size"):
        _validate.positive_int(getattr(config, name), name)
    if isinstance(config.num_pairs, bool) or not isinstance(config.num_pairs, int) or config.num_pairs < 2:
        raise ValueError(f"num_pairs must be an integer of at least 2, got {config.num_pairs!r}")
    _validate.non_negative_int(config.steps, "steps")
    if isinstance(config.noise, bool) or not isinstance(config.noise, (int, float)) \
            or not (math.isfinite(config.noise) and config.noise >= 0):
        raise ValueError(f"noise must be a non-negative number, got {config.noise!r}")
    _validate.positive_number(config.lr, "lr")


def build(config: RecallKernelConfig) -> RetrievalAttention:
    _check(config)
    if config.attention == "linear":
        return LinearRetrieval(config.input_dim, config.key_dim)
    return RetrievalAttention(config.input_dim, config.key_dim, scaled=True)


@torch.no_grad()
def evaluate(model: RetrievalAttention, batch) -> dict:
    """Loss, uniform-weights loss, their ratio, accuracy of the largest weight, mean entropy."""
    query, keys, values, target = batch
    output, weights = model(query, keys, values)  # (N, 1, d_v), (N, 1, m)
    rows = torch.arange(len(target))
    wanted = values[rows, target]  # (N, d_v)
    loss = ((output[:, 0] - wanted) ** 2).sum(-1).mean().item()
    uniform = ((values.mean(1) - wanted) ** 2).sum(-1).mean().item()
    return {
        "loss": loss,
        "uniform_loss": uniform,
        "relative_loss": loss / uniform,
        "accuracy": (weights[:, 0].argmax(-1) == target).double().mean().item(),
        "entropy": entropy(weights[:, 0]).mean().item(),
    }


def fit(model: RetrievalAttention, config: RecallKernelConfig, progress: bool = True):
    _check(config)
    data = torch.Generator().manual_seed(config.seed)
    test = make_batch(config, config.test_size, torch.Generator().manual_seed(10_000 + config.seed))
    rows = torch.arange(config.batch_size)

    def loss_fn(step: int) -> torch.Tensor:
        query, keys, values, target = make_batch(config, config.batch_size, data)
        output, _ = model(query, keys, values)  # (N, 1, d_v)
        return ((output[:, 0] - values[rows, target]) ** 2).sum(-1).mean()

    log = train(model, loss_fn, steps=config.steps, lr=config.lr, progress=progress,
                desc=f"recall ({config.attention}, m={config.num_pairs})")
    final = evaluate(model, test)
    metrics = {
        "test_loss": final["loss"],
        "uniform_loss": final["uniform_loss"],
        "relative_loss": final["relative_loss"],
        "test_accuracy": final["accuracy"],
        "test_entropy": final["entropy"],
        "uniform_entropy": math.log(config.num_pairs),
        "steps": log.steps,
        "interrupted": log.interrupted,
    }
    return metrics, {"loss": log.losses}


register(
    "recall-softmax",
    "associative recall with softmax attention, the reference for linear attention (attention at scale)",
    RecallKernelConfig(attention="softmax"),
    build,
    fit,
)
register(
    "recall-linear",
    "associative recall with linear attention, phi(x) = elu(x) + 1 (attention at scale)",
    RecallKernelConfig(attention="linear"),
    build,
    fit,
)
