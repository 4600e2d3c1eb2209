"""Chapter 3's trained models: the digit-reversal translation task with and without attention.

``seq2seq-plain``, ``seq2seq-bahdanau``, ``seq2seq-luong`` (general score) and
``seq2seq-luong-location`` (Luong's location score, which never looks at the annotations) train
one encoder-decoder each (teacher forcing, cross-entropy, Adam) on
:mod:`companion.tasks.toy_translation` and report, on the held-out split, with greedy decoding:

- ``exact_match``: the fraction of sentences translated without a single error;
- ``token_accuracy``: the fraction of reference tokens (``<eos>`` included) predicted
  correctly at their position.

``bottleneck`` takes the plain and the Bahdanau models (from the cache of the two experiments
above, training them if needed) and reports exact match by source-length bucket.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import _validate
from ..seq2seq import Seq2Seq, Seq2SeqConfig, check_config, evaluate, predict
from ..tasks.toy_translation import EOS, PAD, SOURCE_VOCAB, TARGET_VOCAB, Split, TaskConfig, make_splits
from ..training import train
from .registry import register


@dataclass(frozen=True)
class TranslationConfig:
    seed: int = 0
    kind: str = "bahdanau"
    luong_score: str = "general"
    input_feeding: bool = True
    embed_dim: int = 32
    hidden: int = 32
    attn_dim: int = 32
    min_length: int = 3
    max_length: int = 12
    train_size: int = 20_000
    test_per_length: int = 50
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3


def task_config(config: TranslationConfig) -> TaskConfig:
    """The data settings of an experiment (the data seed is fixed: every model sees the same split)."""
    return TaskConfig(config.min_length, config.max_length, config.train_size, config.test_per_length, seed=0)


def model_config(config: TranslationConfig) -> Seq2SeqConfig:
    return Seq2SeqConfig(kind=config.kind, src_vocab=len(SOURCE_VOCAB), tgt_vocab=len(TARGET_VOCAB),
                         embed_dim=config.embed_dim, hidden=config.hidden, attn_dim=config.attn_dim,
                         luong_score=config.luong_score, input_feeding=config.input_feeding,
                         max_source=config.max_length)


def _check(config: TranslationConfig) -> None:
    if not isinstance(config, TranslationConfig):
        raise TypeError(f"config must be a TranslationConfig, got {type(config).__name__}")
    check_config(model_config(config))
    for name in ("batch_size", "min_length", "max_length", "train_size", "test_per_length"):
        _validate.positive_int(getattr(config, name), name)
    _validate.non_negative_int(config.steps, "steps")
    _validate.positive_number(config.lr, "lr")


def build(config: TranslationConfig) -> Seq2Seq:
    _check(config)
    return Seq2Seq(model_config(config))


def loss_on(model: Seq2Seq, batch: Split) -> torch.Tensor:
    """Mean cross-entropy per target token under teacher forcing (padding ignored)."""
    logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)  # (B, T, V)
    return F.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=PAD)


def train_and_evaluate(model, config, train_split: Split, test_split: Split, progress: bool, desc: str):
    """Teacher-forced training (Adam, the learning rate constant for the first half of the steps,
    then falling linearly to zero), then greedy evaluation on ``test_split``.

    ``config`` needs ``seed``, ``lr``, ``steps`` and ``batch_size``; the local-attention
    experiments train the same way. Returns the training log and :func:`evaluate`'s result.
    """
    order = torch.Generator().manual_seed(config.seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def loss_fn(step: int) -> torch.Tensor:
        for group in optimizer.param_groups:  # constant for the first half, then linearly to zero
            group["lr"] = config.lr * min(1.0, 2.0 * (1.0 - step / config.steps))
        index = torch.randint(0, len(train_split), (config.batch_size,), generator=order)
        return loss_on(model, train_split.batch(index))

    log = train(model, loss_fn, steps=config.steps, optimizer=optimizer, progress=progress, desc=desc)
    return log, evaluate(model, test_split)


def fit(model: Seq2Seq, config: TranslationConfig, progress: bool = True):
    _check(config)
    train_split, test_split = make_splits(task_config(config))
    log, result = train_and_evaluate(model, config, train_split, test_split, progress,
                                     desc=f"seq2seq ({config.kind})")
    metrics = {
        "exact_match": result["exact_match"],
        "token_accuracy": result["token_accuracy"],
        "steps": log.steps,
        "interrupted": log.interrupted,
    }
    history = {"loss": log.losses, "lengths": list(result["by_length"]),
               "exact_match_by_length": list(result["by_length"].values())}
    return metrics, history


register("seq2seq-plain", "digit-word reversal, encoder-decoder without attention",
         TranslationConfig(kind="plain"), build, fit)
register("seq2seq-bahdanau", "digit-word reversal with Bahdanau (additive) attention",
         TranslationConfig(kind="bahdanau"), build, fit)
register("seq2seq-luong", "digit-word reversal with Luong (general, input feeding) attention",
         TranslationConfig(kind="luong"), build, fit)
register("seq2seq-luong-location", "digit-word reversal with Luong's location score",
         TranslationConfig(kind="luong", luong_score="location"), build, fit)


# --- the bottleneck: exact match against source length ---------------------------------------

@dataclass(frozen=True)
class BottleneckConfig:
    seed: int = 0
    buckets: tuple = ((3, 5), (6, 8), (9, 10), (11, 12))  # inclusive source-length ranges
    attention: str = "seq2seq-bahdanau"


def build_bottleneck(config: BottleneckConfig) -> nn.Module:
    if not isinstance(config, BottleneckConfig):
        raise TypeError(f"config must be a BottleneckConfig, got {type(config).__name__}")
    if config.attention not in ("seq2seq-bahdanau", "seq2seq-luong"):
        raise ValueError(f"attention must be 'seq2seq-bahdanau' or 'seq2seq-luong', got {config.attention!r}")
    default = TranslationConfig()
    for bucket in config.buckets:
        if (len(bucket) != 2 or not all(isinstance(x, int) for x in bucket)
                or not default.min_length <= bucket[0] <= bucket[1] <= default.max_length):
            raise ValueError(f"each bucket must be (low, high) with {default.min_length} <= low <= high <= "
                             f"{default.max_length}, got {bucket!r}")
    kind = config.attention.split("-")[1]
    return nn.ModuleDict({"plain": build(TranslationConfig(kind="plain", seed=config.seed)),
                          "attention": build(TranslationConfig(kind=kind, seed=config.seed))})


def bucket_name(bucket) -> str:
    return f"len_{bucket[0]}_{bucket[1]}"


def fit_bottleneck(model: nn.ModuleDict, config: BottleneckConfig, progress: bool = True):
    from . import run  # the registry's run, for the two cached experiments

    metrics, history = {}, {"buckets": [list(b) for b in config.buckets]}
    _, test_split = make_splits(task_config(TranslationConfig()))
    for role, name in (("plain", "seq2seq-plain"), ("attention", config.attention)):
        trained = run(name, progress=progress, seed=config.seed)
        model[role].load_state_dict(trained.model.state_dict())
        exact = ((predict(model[role].eval(), test_split) == test_split.tgt_out) | (test_split.tgt_out == PAD)).all(1)
        for bucket in config.buckets:
            inside = (test_split.src_lengths >= bucket[0]) & (test_split.src_lengths <= bucket[1])
            metrics[f"{role}_{bucket_name(bucket)}"] = exact[inside].double().mean().item()
        metrics[f"{role}_exact_match"] = exact.double().mean().item()
        history[f"{role}_lengths"] = trained.history["lengths"]
        history[f"{role}_exact_match_by_length"] = trained.history["exact_match_by_length"]
    return metrics, history


register("bottleneck", "exact match by source length, plain vs attention encoder-decoder",
         BottleneckConfig(), build_bottleneck, fit_bottleneck)
