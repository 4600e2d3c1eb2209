"""Local attention (Luong et al. 2015) on the digit-word translation tasks.

``local-m`` and ``local-p`` train a :class:`companion.local_seq2seq.LocalSeq2Seq` (window
half-width ``D = 2``) on chapter 3's reversal task, whose alignment is the anti-diagonal;
``local-m-monotonic`` and ``local-p-monotonic`` on the same sentences translated in order
(:mod:`companion.tasks.monotonic_translation`), whose alignment is the diagonal that local-m
assumes. Training is chapter 3's (teacher forcing, Adam, rate held then decayed). Metrics, on
the held-out split with greedy decoding:

- ``exact_match``, ``token_accuracy``: as in chapter 3;
- ``positions_per_step``: the mean number of source positions the window holds at a step
  (global attention scores all ``S``; ``mean_source_length`` says how many that is);
- ``window_hits``: the share of digit outputs whose correct source word lay inside the window.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .. import _validate
from ..local import window_mask
from ..local_seq2seq import LOCAL_KINDS, LocalSeq2Seq, LocalSeq2SeqConfig, check_config, decode
from ..tasks import monotonic_translation, toy_translation
from ..tasks.toy_translation import SOURCE_VOCAB, TARGET_VOCAB, Split, TaskConfig
from .registry import register
from .reversal import train_and_evaluate

TASKS = ("reversal", "monotonic")


@dataclass(frozen=True)
class LocalConfig:
    seed: int = 0
    kind: str = "local-p"
    task: str = "reversal"
    half_width: int = 2
    embed_dim: int = 32
    hidden: int = 32
    center_hidden: int = 32
    min_length: int = 3
    max_length: int = 12
    train_size: int = 20_000
    test_per_length: int = 50
    steps: int = 600
    batch_size: int = 64
    lr: float = 3e-3


def model_config(config: LocalConfig) -> LocalSeq2SeqConfig:
    return LocalSeq2SeqConfig(kind=config.kind, half_width=config.half_width, src_vocab=len(SOURCE_VOCAB),
                              tgt_vocab=len(TARGET_VOCAB), embed_dim=config.embed_dim, hidden=config.hidden,
                              center_hidden=config.center_hidden)


def _check(config: LocalConfig) -> None:
    if not isinstance(config, LocalConfig):
        raise TypeError(f"config must be a LocalConfig, got {type(config).__name__}")
    if config.kind not in LOCAL_KINDS:
        raise ValueError(f"kind must be one of {LOCAL_KINDS}, got {config.kind!r}")
    if config.task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {config.task!r}")
    check_config(model_config(config))
    for name in ("batch_size", "min_length", "max_length", "train_size", "test_per_length"):
        _validate.positive_int(getattr(config, name), name)
    _validate.non_negative_int(config.steps, "steps")
    _validate.positive_number(config.lr, "lr")


def splits(config: LocalConfig) -> tuple[Split, Split]:
    """The task's ``(train, test)`` splits (the data seed is fixed, as in chapter 3)."""
    task = TaskConfig(config.min_length, config.max_length, config.train_size, config.test_per_length, seed=0)
    module = toy_translation if config.task == "reversal" else monotonic_translation
    return module.make_splits(task)


def build(config: LocalConfig) -> LocalSeq2Seq:
    _check(config)
    return LocalSeq2Seq(model_config(config))


@torch.no_grad()
def window_statistics(model: LocalSeq2Seq, split: Split, task: str) -> dict:
    """``positions_per_step`` and ``window_hits`` over the digit outputs of ``split``."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    _, _, centres = decode(model, split.src, split.src_lengths)  # (N, T')
    S, D = split.src.shape[1], model.config.half_width
    inside = window_mask(centres, S, D) & (torch.arange(S) < split.src_lengths[:, None])[:, None, :]  # (N, T', S)
    L = split.src_lengths[:, None]  # (N, 1)
    t = torch.arange(centres.shape[1])[None, :]  # (1, T')
    digit = t < L  # (N, T') the outputs that translate a word
    correct = (L - 1 - t) if task == "reversal" else t.expand_as(digit)  # (N, T') its word
    hit = inside.gather(2, correct.clamp(0, S - 1).unsqueeze(-1)).squeeze(-1)  # (N, T')
    return {"positions_per_step": inside.sum(-1)[digit].double().mean().item(),
            "window_hits": hit[digit].double().mean().item(),
            "mean_source_length": split.src_lengths.double().mean().item()}


def fit(model: LocalSeq2Seq, config: LocalConfig, progress: bool = True):
    _check(config)
    train_split, test_split = splits(config)
    log, result = train_and_evaluate(model, config, train_split, test_split, progress,
                                     desc=f"{config.kind} ({config.task})")
    metrics = {"exact_match": result["exact_match"], "token_accuracy": result["token_accuracy"],
               **window_statistics(model, test_split, config.task),
               "steps": log.steps, "interrupted": log.interrupted}
    history = {"loss": log.losses, "lengths": list(result["by_length"]),
               "exact_match_by_length": list(result["by_length"].values())}
    return metrics, history


register("local-m", "digit-word reversal, Luong local-m attention (window centred at p_t = t)",
         LocalConfig(kind="local-m"), build, fit)
register("local-p", "digit-word reversal, Luong local-p attention (predicted centre, Gaussian window)",
         LocalConfig(kind="local-p"), build, fit)
register("local-m-monotonic", "digit words to numerals in order, Luong local-m attention",
         LocalConfig(kind="local-m", task="monotonic", steps=300), build, fit)
register("local-p-monotonic", "digit words to numerals in order, Luong local-p attention",
         LocalConfig(kind="local-p", task="monotonic", steps=300), build, fit)
