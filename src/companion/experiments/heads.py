"""The trained model of the chapter on multi-head attention: heads that specialise.

``heads-specialise`` trains :class:`companion.attention_only.AttentionOnly` (one causal
multi-head attention layer, no MLP) on :mod:`companion.tasks.two_lookbacks`: at each position,
name the ordered pair of tokens found ``lags[0]`` and ``lags[1]`` positions back. The sinusoidal
encoding has ``base = 100``: with the usual 10000, most of its 16 frequency pairs barely turn
over 16 positions, and one seed in five stalled below 0.95 (seeds 0-4, 1500 steps); with 100,
seeds 0-7 all reached 1.0 in 1000 steps. ``num_kv_heads`` makes the layer grouped-query
attention (1: multi-query), for the chapter's question whether shared keys and values still
solve the task. It reports,
on held-out sequences (positions with a target only):

- ``accuracy``: the fraction of pairs predicted exactly, and ``loss`` (cross-entropy);
- ``ablation_loss_head{h}``: the loss with head ``h`` zeroed (:func:`ablate_heads`), the
  others intact: how much the model needs that head;
- ``offset_head{h}`` and ``offset_weight_head{h}``: the distance back that head ``h`` gives
  the most weight, and that weight (:func:`attention_by_offset`).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import _validate
from ..attention_only import AttentionOnly, AttentionOnlyConfig, attention_by_offset
from ..tasks.two_lookbacks import IGNORE, check_lags, make_batch
from ..training import train
from .registry import register


@dataclass(frozen=True)
class HeadsConfig:
    seed: int = 0
    vocab: int = 8
    length: int = 16
    lags: tuple = (1, 4)
    embed_dim: int = 32
    num_heads: int = 2
    base: float = 100.0  # of the sinusoidal encoding: 10000 leaves most pairs still over 16 positions
    num_kv_heads: int | None = None  # None: multi-head; 1: the heads share one key/value head
    steps: int = 1000
    batch_size: int = 64
    lr: float = 3e-3
    test_size: int = 1000


def _check(config: HeadsConfig) -> None:
    if not isinstance(config, HeadsConfig):
        raise TypeError(f"config must be a HeadsConfig, got {type(config).__name__}")
    for name in ("vocab", "length", "embed_dim", "num_heads", "batch_size", "test_size"):
        _validate.positive_int(getattr(config, name), name)
    check_lags(config.lags, config.length)
    _validate.non_negative_int(config.steps, "steps")
    _validate.positive_number(config.lr, "lr")


def build(config: HeadsConfig) -> AttentionOnly:
    _check(config)
    return AttentionOnly(AttentionOnlyConfig(vocab=config.vocab, num_classes=config.vocab ** 2,
                                             max_length=config.length, embed_dim=config.embed_dim,
                                             num_heads=config.num_heads, base=config.base,
                                             num_kv_heads=config.num_kv_heads))


def held_out(config: HeadsConfig):
    """The test sequences: a seed the training stream never uses."""
    return make_batch(config.test_size, config.length, config.vocab, config.lags, rng=10_000 + config.seed)


def _loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=IGNORE)


@torch.no_grad()
def evaluate(model: AttentionOnly, tokens: torch.Tensor, targets: torch.Tensor, lags) -> dict:
    """Accuracy and loss, each head's ablation loss and favourite offset (see the module doc)."""
    model.eval()
    logits, weights = model(tokens)  # (N, L, C), (N, heads, L, L)
    scored = targets != IGNORE  # (N, L)
    result = {
        "accuracy": (logits.argmax(-1) == targets)[scored].double().mean().item(),
        "loss": _loss(logits, targets).item(),
    }
    profile = attention_by_offset(weights, start=max(lags))  # (heads, L)
    for head in range(model.config.num_heads):
        ablated, _ = model(tokens, ablate=[head])
        result[f"ablation_loss_head{head}"] = _loss(ablated, targets).item()
        result[f"offset_head{head}"] = int(profile[head].argmax())
        result[f"offset_weight_head{head}"] = profile[head].max().item()
    return result


def fit(model: AttentionOnly, config: HeadsConfig, progress: bool = True):
    _check(config)
    stream = torch.Generator().manual_seed(config.seed)

    def loss_fn(step: int) -> torch.Tensor:
        tokens, targets = make_batch(config.batch_size, config.length, config.vocab, config.lags, rng=stream)
        logits, _ = model(tokens)  # (B, L, C)
        return _loss(logits, targets)

    log = train(model, loss_fn, steps=config.steps, lr=config.lr, progress=progress, desc="heads")
    metrics = {**evaluate(model, *held_out(config), config.lags), "steps": log.steps,
               "interrupted": log.interrupted}
    return metrics, {"loss": log.losses}


register(
    "heads-specialise",
    "one causal attention layer with two heads names the tokens 1 and 4 back; "
    "each head takes one lag (multi-head attention)",
    HeadsConfig(),
    build,
    fit,
)
