"""Chapter 2's trained model: associative recall with large keys, scaled or not.

Each example holds ``num_pairs`` random key vectors ``x_j`` (size ``input_dim``) with random
values ``v_j`` (size ``value_dim``), and a query that is a noisy copy of one of the keys,
``x_t + noise``. The model projects query and keys to ``key_dim`` features with learned
matrices, scores them with the dot product -- divided by ``sqrt(key_dim)`` or not -- and
returns the attention average of the values. It is trained to output ``v_t`` (squared error),
so it must learn projections under which the matching key scores highest.

The projections are initialised so that each projected feature has unit variance, the
setting of the chapter's variance argument: the unscaled scores then start with a standard
deviation of about ``sqrt(key_dim)`` (16 for 256 features) and the softmax is saturated.

Two named experiments: ``scaling-retrieval`` (scaled) and ``scaling-retrieval-unscaled``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import _validate
from ..retrieval import RetrievalAttention
from ..softmax_calculus import entropy
from ..tasks.associative_recall import make_batch
from ..training import train
from .registry import register


@dataclass(frozen=True)
class RetrievalConfig:
    seed: int = 0
    scaled: bool = True
    key_dim: int = 256  # d_k, the size of the projected queries and keys
    input_dim: int = 64  # size of the raw keys and queries
    value_dim: int = 16
    num_pairs: int = 32  # keys (and values) per example
    noise: float = 1.0  # standard deviation of the noise added to the query
    steps: int = 400
    batch_size: int = 64
    lr: float = 1e-3
    eval_every: int = 25
    test_size: int = 1000


def _check(config: RetrievalConfig) -> None:
    if not isinstance(config, RetrievalConfig):
        raise TypeError(f"config must be a RetrievalConfig, got {type(config).__name__}")
    if not isinstance(config.scaled, bool):
        raise TypeError(f"scaled must be True or False, got {config.scaled!r}")
    for name in ("key_dim", "input_dim", "value_dim", "batch_size", "eval_every", "test_size"):
        _validate.positive_int(getattr(config, name), name)
    if isinstance(config.num_pairs, bool) or not isinstance(config.num_pairs, int) or config.num_pairs < 2:
        raise ValueError(f"num_pairs must be an integer of at least 2, got {config.num_pairs!r}")
    if isinstance(config.steps, bool) or not isinstance(config.steps, int) or config.steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {config.steps!r}")
    if not (isinstance(config.noise, (int, float)) and math.isfinite(config.noise) and config.noise >= 0):
        raise ValueError(f"noise must be a non-negative number, got {config.noise!r}")
    if not (isinstance(config.lr, (int, float)) and math.isfinite(config.lr) and config.lr > 0):
        raise ValueError(f"lr must be a positive number, got {config.lr!r}")


def build(config: RetrievalConfig) -> RetrievalAttention:
    _check(config)
    return RetrievalAttention(config.input_dim, config.key_dim, scaled=config.scaled)


@torch.no_grad()
def evaluate(model: RetrievalAttention, batch) -> dict:
    """Accuracy (the largest weight is on the matching key), mean weight entropy, loss."""
    query, keys, values, target = batch
    output, weights = model(query, keys, values)  # (N, 1, d_v), (N, 1, m)
    rows = torch.arange(len(target))
    return {
        "accuracy": (weights[:, 0].argmax(-1) == target).double().mean().item(),
        "entropy": entropy(weights[:, 0]).mean().item(),
        "loss": ((output[:, 0] - values[rows, target]) ** 2).sum(-1).mean().item(),
    }


def fit(model: RetrievalAttention, config: RetrievalConfig, progress: bool = True):
    _check(config)
    data = torch.Generator().manual_seed(config.seed)
    test = make_batch(config, config.test_size, torch.Generator().manual_seed(10_000 + config.seed))
    history = {"loss": [], "eval_step": [], "test_accuracy": [], "test_entropy": []}

    def record(step: int) -> None:
        result = evaluate(model, test)
        history["eval_step"].append(step)
        history["test_accuracy"].append(result["accuracy"])
        history["test_entropy"].append(result["entropy"])

    record(0)
    rows = torch.arange(config.batch_size)

    def loss_fn(step: int) -> torch.Tensor:
        if step > 0 and step % config.eval_every == 0:
            record(step)  # the model after `step` updates
            model.train()
        query, keys, values, target = make_batch(config, config.batch_size, data)
        output, _ = model(query, keys, values)  # (N, 1, d_v)
        return ((output[:, 0] - values[rows, target]) ** 2).sum(-1).mean()

    name = "scaled" if config.scaled else "unscaled"
    log = train(model, loss_fn, steps=config.steps, lr=config.lr, progress=progress, desc=f"retrieval ({name})")
    if not log.interrupted and history["eval_step"][-1] != log.steps:
        record(log.steps)
    history["loss"] = log.losses
    final = evaluate(model, test)
    reached = [s for s, a in zip(history["eval_step"], history["test_accuracy"]) if a >= 0.9]
    metrics = {
        "test_accuracy": final["accuracy"],
        "test_loss": final["loss"],
        "test_entropy": final["entropy"],
        "initial_entropy": history["test_entropy"][0],
        # first evaluated step with at least 90% test accuracy; -1 if never reached
        "steps_to_90": reached[0] if reached else -1,
        # mean test accuracy over the evaluations: the area under the learning curve
        "mean_accuracy": sum(history["test_accuracy"]) / len(history["test_accuracy"]),
        "steps": log.steps,
        "interrupted": log.interrupted,
    }
    return metrics, history


register(
    "scaling-retrieval",
    "associative recall with 256-d learned queries/keys and the scaled dot product (chapter 2)",
    RetrievalConfig(scaled=True),
    build,
    fit,
)
register(
    "scaling-retrieval-unscaled",
    "the same recall task with the unscaled dot product, whose softmax starts saturated (chapter 2)",
    RetrievalConfig(scaled=False),
    build,
    fit,
)
