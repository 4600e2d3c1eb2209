"""The Transformer chapter's trained models.

- ``transformer-reverse``, ``transformer-sort``: an encoder-decoder :class:`Transformer` (post-norm,
  as in the paper) on :mod:`companion.tasks.digit_sequences`, trained with teacher forcing, label
  smoothing 0.1 (eq-label-smoothing), the warm-up schedule (eq-warmup) times ``lr_factor`` and
  Adam with the paper's betas; the model kept is the mean of the last ``average_last``
  checkpoints, ``average_every`` steps apart (as the paper averaged its last five). Metrics on
  held-out sequences, greedy decoding: ``exact_match``
  (the fraction of sequences right to the last token, ``<eos>`` included) and ``token_accuracy``
  (the fraction of target tokens, ``<eos>`` included, right at their position), averaged over the
  training lengths; the same with ``_longer`` over the lengths never seen in training; and
  ``beam_exact_match_longer`` / ``beam_token_accuracy_longer``, beam search (``beam_size``
  hypotheses) on those longer lengths, beside greedy's. History: the loss curve and the figures
  by length.
- ``induction-heads``: attention-only decoders (:class:`companion.induction.AttentionOnlyTransformer`)
  of one and two layers on :mod:`companion.tasks.repeated_segments`. ``loss_repeated_1layer`` and
  ``loss_repeated_2layer`` are the mean losses in nats per token on the repeated tokens of held-out
  sequences: the copy without its first token (which nothing announces), whose best loss is 0.
  By default (``train_on="repeated"``) the models are also *trained* on those tokens only: every
  other token is a fresh draw that no rule predicts, and training on all of them (``"all"``) left
  both models near chance within the budget (4.17 nats, log 64 = 4.16, seed 0, lr 0.01).
- ``grammar-lm``: a pre-norm :class:`DecoderOnlyTransformer` on text from a probabilistic
  automaton (:mod:`companion.tasks.probabilistic_automaton`); ``val_loss`` against
  ``optimal_loss``, the automaton's own cross-entropy (the forward algorithm) on the same tokens.
- ``norm-placement``: post-norm against pre-norm decoder-only models of six layers on the same
  text, trained at a normal and a higher learning rate (``lrs``) with Adam and no warm-up; the
  gradient norm of every block's parameters at initialisation.

Measured with the default settings (seed 0, then model seeds 1 and 2; the data are fixed), on
one thread of a 2-core machine shared by about eight processes (load average 16-22), so the
wall-clock times were 14-16 minutes; the CPU times of the process, which the load inflates far
less, are given instead:

- ``transformer-reverse`` (width 32), with the final weights: exact match 1.000 / 1.000 / 0.997 at lengths 3-8,
  token accuracy 1.000 / 1.000 / 1.000; on the unseen lengths 9-12 exact match 0.000 / 0.015 /
  0.000 (token accuracy 0.30 / 0.35 / 0.18: absolute positions beyond training are not
  reversed); beam search (4) on 9-12: 0.000, token accuracy 0.305 (seed 0). 38-41 s CPU
  without beam search, 47 s with it.
- ``transformer-sort`` (width 64), with the final weights (``average_last=1``): exact match
  0.997 / 0.983 / 0.993 at lengths 3-8 (seed 1 misses the 0.99 bar), token accuracy 0.999 /
  0.996 / 0.999; on 9-12 exact match 0.29 / 0.11 / 0.19 greedy, 0.28 with beam search (4, seed
  0). 37 s CPU without beam search, 57 s with it. The final iterate's exact match moves by a few
  points from seed to seed. Tried and not better across seeds 0-2: 1600 steps (0.967 / 0.983 /
  1.000), lr_factor 0.15 (0.960 / 0.993 / 0.990); for seed 0, lr_factor 0.5 (0.980), no label
  smoothing (0.987), and width 32 (0.90-0.95).
- Checkpoint averaging, the default since (``average_last=5`` checkpoints 50 steps apart, the
  last one the final weights; measured on an idle machine, two runs at a time): sort exact match
  1.000 / 0.997 / 1.000 (token accuracy 1.000 / 0.999 / 1.000; 9-12: 0.27 / 0.22 / 0.18),
  reverse 1.000 / 1.000 / 1.000 (9-12: 0.000 / 0.005 / 0.000), 38-56 s each without beam search.
- ``induction-heads``: loss on the repeated tokens, two layers 0.117 / 0.103 / 0.073 nats,
  one layer 3.69 / 3.72 / 3.70 (log 64 = 4.16); the two-layer model's layer-1 heads put 0.50 and
  0.54 of their weight on the previous token and its layer-2 heads 0.96 and 0.94 on the token
  after the earlier occurrence (seed 0). 43-48 s CPU for both models.
- ``grammar-lm``: val_loss 1.310 / 1.322 / 1.321 against optimal_loss 1.289 (ratios 1.016 /
  1.025 / 1.025; a bigram model on 64-token texts of the same automaton is 8.6% above the
  optimum). 41-46 s CPU.
- ``norm-placement`` (seed 0): validation loss after 250 steps at lr 1e-3, post-norm 1.393,
  pre-norm 1.396; at lr 1e-2, post-norm 1.801 (stuck at the unigram entropy), pre-norm 1.381;
  optimum 1.283. Gradient norm per block at initialisation, first block first: post-norm 3.05,
  2.50, 2.66, 2.37, 2.19, 1.99; pre-norm 1.62, 1.48, 1.57, 1.42, 1.36, 1.25 (both fall with
  depth here; post-norm's are larger at every block). 57-58 s CPU for the four runs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import _validate
from ..induction import AttentionOnlyTransformer, induction_score, previous_token_score
from ..tasks.digit_sequences import BOS, EOS, PAD, VOCAB_SIZE, DigitTaskConfig, Split, make_splits
from ..tasks.probabilistic_automaton import AutomatonConfig, ProbabilisticAutomaton
from ..tasks.repeated_segments import RepeatedSegmentsConfig, generate
from ..training import average_state_dicts, train
from ..transformer import (
    DecoderOnlyTransformer,
    Transformer,
    beam_search,
    greedy_decode,
    label_smoothing_loss,
    warmup_schedule,
)
from .registry import register


def _adam(model: nn.Module) -> torch.optim.Optimizer:
    """Adam with the betas and epsilon of Vaswani et al. (2017), section 5.3; the learning rate
    is set at every step."""
    return torch.optim.Adam(model.parameters(), lr=0.0, betas=(0.9, 0.98), eps=1e-9)


def _set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr


# ---- reverse and sort --------------------------------------------------------------------------


@dataclass(frozen=True)
class DigitsConfig:
    seed: int = 0
    task: str = "reverse"
    dim: int = 32
    num_heads: int = 4
    num_layers: int = 2
    ffn_dim: int = 64
    norm_first: bool = False
    min_length: int = 3
    max_length: int = 8
    test_max_length: int = 12
    train_size: int = 20_000
    test_per_length: int = 50
    steps: int = 1200
    batch_size: int = 64
    lr_factor: float = 0.3  # multiplies the warm-up schedule (its peak is 0.3 (dim * warmup)^-1/2)
    warmup: int = 200
    label_smoothing: float = 0.1
    beam_size: int = 4  # measured beside greedy decoding on the longer lengths (0: not measured)
    average_last: int = 5  # the model is the mean of the last checkpoints (1: the final weights)
    average_every: int = 50  # steps between the averaged checkpoints


def _digit_task(config: DigitsConfig) -> DigitTaskConfig:
    """The data (seed fixed: every model of a task sees the same split)."""
    return DigitTaskConfig(config.task, config.min_length, config.max_length, config.test_max_length,
                           config.train_size, config.test_per_length, seed=0)


def build_digits(config: DigitsConfig) -> Transformer:
    _digit_task(config)  # validates the data settings
    for name in ("steps", "batch_size", "warmup"):
        _validate.positive_int(getattr(config, name), name)
    _validate.positive_number(config.lr_factor, "lr_factor")
    _validate.non_negative_int(config.beam_size, "beam_size")
    _validate.positive_int(config.average_last, "average_last")
    _validate.positive_int(config.average_every, "average_every")
    if (config.average_last - 1) * config.average_every >= config.steps:
        raise ValueError(f"average_last={config.average_last} checkpoints every {config.average_every} steps "
                         f"do not fit in steps={config.steps}")
    return Transformer(VOCAB_SIZE, VOCAB_SIZE, config.dim, config.num_heads, config.num_layers,
                       config.ffn_dim, max_len=config.test_max_length + 2, norm_first=config.norm_first)


def digits_loss(model: Transformer, batch: Split, smoothing: float = 0.0) -> torch.Tensor:
    """Teacher forcing: the decoder reads ``tgt_in`` and predicts ``tgt_out`` (padding ignored)."""
    logits = model(batch.src, batch.tgt_in, batch.src_lengths)  # (B, T, V)
    return label_smoothing_loss(logits, batch.tgt_out, smoothing, ignore_index=PAD)


def score(predicted: torch.Tensor, split: Split) -> tuple[float, float]:
    """``(exact_match, token_accuracy)`` of predictions ``(N, >= T)`` against ``split.tgt_out``:
    every reference token up to and including ``<eos>`` must match (what follows is ignored)."""
    target = split.tgt_out  # (N, T)
    predicted = predicted[:, :target.shape[1]]
    real = target != PAD  # (N, T)
    right = (predicted == target) & real
    exact = (right.sum(1) == real.sum(1)).float().mean().item()
    return exact, (right.sum() / real.sum()).item()


def decode_split(model: Transformer, split: Split, beam_size: int = 0) -> torch.Tensor:
    """Greedy (``beam_size=0``) or beam-search translations of a split, ``(N, S + 1)``."""
    steps = split.tgt_out.shape[1]
    if beam_size:
        return beam_search(model, split.src, beam_size, steps, BOS, EOS, split.src_lengths)
    return greedy_decode(model, split.src, steps, BOS, split.src_lengths, end=EOS)


def fit_digits(model: Transformer, config: DigitsConfig, progress: bool = True):
    train_split, test = make_splits(_digit_task(config))
    g = torch.Generator().manual_seed(config.seed)
    optimizer = _adam(model)

    # checkpoints after these numbers of updates are averaged (the last one is the final model)
    saved_at = {config.steps - k * config.average_every for k in range(1, config.average_last)}
    checkpoints = []

    def loss_fn(step: int) -> torch.Tensor:
        if step in saved_at:  # the weights after `step` updates
            checkpoints.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        _set_lr(optimizer, config.lr_factor * warmup_schedule(step + 1, config.dim, config.warmup))
        index = torch.randint(len(train_split), (config.batch_size,), generator=g)
        return digits_loss(model, train_split.batch(index), config.label_smoothing)

    log = train(model, loss_fn, steps=config.steps, optimizer=optimizer, clip=1.0, progress=progress,
                desc=f"transformer-{config.task}")
    if checkpoints and not log.interrupted:  # interrupted: keep the weights reached
        model.load_state_dict(average_state_dicts(checkpoints + [model.state_dict()]))
    by_length = {}
    for L in range(config.min_length, config.test_max_length + 1):
        part = test.with_length(L)
        by_length[L] = score(decode_split(model, part), part)
    seen = [L for L in by_length if L <= config.max_length]
    longer = [L for L in by_length if L > config.max_length]
    metrics = {
        "exact_match": sum(by_length[L][0] for L in seen) / len(seen),
        "token_accuracy": sum(by_length[L][1] for L in seen) / len(seen),
        "final_loss": sum(log.losses[-50:]) / len(log.losses[-50:]),
        "interrupted": log.interrupted,
    }
    if longer:
        metrics["exact_match_longer"] = sum(by_length[L][0] for L in longer) / len(longer)
        metrics["token_accuracy_longer"] = sum(by_length[L][1] for L in longer) / len(longer)
    history = {"loss": log.losses, "lengths": list(by_length),
               "exact_match_by_length": [by_length[L][0] for L in by_length],
               "token_accuracy_by_length": [by_length[L][1] for L in by_length]}
    if config.beam_size and longer:
        beam = {}
        for L in longer:
            part = test.with_length(L)
            beam[L] = score(decode_split(model, part, config.beam_size), part)
        metrics["beam_exact_match_longer"] = sum(beam[L][0] for L in longer) / len(longer)
        metrics["beam_token_accuracy_longer"] = sum(beam[L][1] for L in longer) / len(longer)
        history["beam_exact_match_by_length"] = [beam.get(L, (math.nan,))[0] for L in by_length]
    return metrics, history


register("transformer-reverse",
         "encoder-decoder Transformer reversing digit sequences (exact match, token accuracy, longer lengths)",
         DigitsConfig(task="reverse"), build_digits, fit_digits)
register("transformer-sort",
         "encoder-decoder Transformer sorting digit sequences (exact match, token accuracy, beam search)",
         DigitsConfig(task="sort", dim=64, ffn_dim=128), build_digits, fit_digits)


# ---- induction heads ---------------------------------------------------------------------------


@dataclass(frozen=True)
class InductionConfig:
    seed: int = 0
    vocab_size: int = 64
    length: int = 32
    min_segment: int = 4
    max_segment: int = 10
    dim: int = 64
    num_heads: int = 2
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3
    test_size: int = 1000
    train_on: str = "repeated"  # "repeated": the loss on the repeated tokens only; "all": every token


def _segments(config: InductionConfig) -> RepeatedSegmentsConfig:
    return RepeatedSegmentsConfig(config.vocab_size, config.length, config.min_segment, config.max_segment)


def build_induction(config: InductionConfig) -> nn.ModuleDict:
    """Two attention-only decoders, ``"1"`` and ``"2"`` layers, of the same width."""
    _segments(config)
    for name in ("steps", "batch_size", "test_size"):
        _validate.positive_int(getattr(config, name), name)
    _validate.positive_number(config.lr, "lr")
    if config.train_on not in ("repeated", "all"):
        raise ValueError(f"train_on must be 'repeated' or 'all', got {config.train_on!r}")
    return nn.ModuleDict({
        str(n): AttentionOnlyTransformer(config.vocab_size, config.dim, config.num_heads, n, config.length)
        for n in (1, 2)
    })


def repeated_loss(model: nn.Module, tokens: torch.Tensor, repeated: torch.Tensor) -> torch.Tensor:
    """Mean ``-log p(x_t | x_<t)`` over the positions ``t`` marked in ``repeated (B, T)``
    (position 0, which nothing precedes, is never scored)."""
    logits = model(tokens[:, :-1])  # (B, T-1, V): position t-1 predicts token t
    nll = F.cross_entropy(logits.transpose(1, 2), tokens[:, 1:], reduction="none")  # (B, T-1)
    return nll[repeated[:, 1:]].mean()


def fit_induction(models: nn.ModuleDict, config: InductionConfig, progress: bool = True):
    segments = _segments(config)
    test = generate(config.test_size, segments, seed=10_000 + config.seed)
    metrics, history = {}, {}
    for name, model in models.items():
        def loss_fn(step: int, model=model) -> torch.Tensor:
            batch = generate(config.batch_size, segments, seed=config.seed * 1_000_003 + step)
            scored = batch.repeated if config.train_on == "repeated" else torch.ones_like(batch.repeated)
            return repeated_loss(model, batch.tokens, scored)

        log = train(model, loss_fn, steps=config.steps, lr=config.lr, progress=progress,
                    desc=f"induction-heads {name} layer(s)")
        with torch.no_grad():
            loss = repeated_loss(model, test.tokens, test.repeated).item()
            _, weights = model(test.tokens[:200], return_weights=True)
        metrics[f"loss_repeated_{name}layer"] = loss
        metrics["interrupted"] = metrics.get("interrupted", False) or log.interrupted
        history[f"loss_{name}layer"] = log.losses
        history[f"induction_score_{name}layer"] = induction_score(weights["decoder"], test.tokens[:200]).tolist()
        history[f"previous_token_score_{name}layer"] = previous_token_score(weights["decoder"]).tolist()
    return metrics, history


register("induction-heads",
         "attention-only decoders of 1 and 2 layers on repeated random segments (loss on repeated tokens)",
         InductionConfig(), build_induction, fit_induction)


# ---- a language from a probabilistic automaton -------------------------------------------------


@dataclass(frozen=True)
class GrammarConfig:
    seed: int = 0
    automaton_seed: int = 0
    num_states: int = 6
    num_symbols: int = 8
    length: int = 32
    train_size: int = 10_000
    val_size: int = 1000
    dim: int = 64
    num_heads: int = 4
    num_layers: int = 2
    ffn_dim: int = 128
    norm_first: bool = True
    steps: int = 1500
    batch_size: int = 32
    lr: float = 3e-3


def automaton_of(config) -> ProbabilisticAutomaton:
    return ProbabilisticAutomaton.random(AutomatonConfig(config.num_states, config.num_symbols,
                                                         seed=config.automaton_seed))


def grammar_data(config) -> tuple[ProbabilisticAutomaton, torch.Tensor, torch.Tensor]:
    """``(automaton, train texts, validation texts)``; the texts do not depend on the model seed."""
    automaton = automaton_of(config)
    return automaton, automaton.sample(config.train_size, config.length, seed=1), \
        automaton.sample(config.val_size, config.length, seed=2)


def build_grammar(config: GrammarConfig) -> DecoderOnlyTransformer:
    for name in ("steps", "batch_size", "train_size", "val_size", "length"):
        _validate.positive_int(getattr(config, name), name)
    _validate.positive_number(config.lr, "lr")
    return DecoderOnlyTransformer(config.num_symbols + 1, config.dim, config.num_heads, config.num_layers,
                                  config.ffn_dim, config.length, norm_first=config.norm_first)


def lm_loss(model: nn.Module, automaton: ProbabilisticAutomaton, texts: torch.Tensor) -> torch.Tensor:
    """Mean next-token cross-entropy in nats over every symbol of ``texts (N, L)``."""
    inputs, targets = automaton.lm_batch(texts)  # (N, L), (N, L)
    logits = model(inputs)  # (N, L, V + 1)
    return F.cross_entropy(logits.flatten(0, 1), targets.flatten())


def fit_grammar(model: DecoderOnlyTransformer, config: GrammarConfig, progress: bool = True):
    automaton, train_texts, val_texts = grammar_data(config)
    g = torch.Generator().manual_seed(config.seed)

    def loss_fn(step: int) -> torch.Tensor:
        index = torch.randint(len(train_texts), (config.batch_size,), generator=g)
        return lm_loss(model, automaton, train_texts[index])

    log = train(model, loss_fn, steps=config.steps, lr=config.lr, progress=progress, desc="grammar-lm")
    with torch.no_grad():
        val_loss = lm_loss(model, automaton, val_texts).item()
    metrics = {"val_loss": val_loss, "optimal_loss": automaton.cross_entropy(val_texts),
               "interrupted": log.interrupted}
    metrics["ratio"] = metrics["val_loss"] / metrics["optimal_loss"]
    return metrics, {"loss": log.losses}


register("grammar-lm",
         "decoder-only Transformer on text from a probabilistic automaton (val_loss against optimal_loss)",
         GrammarConfig(), build_grammar, fit_grammar)


# ---- post-norm against pre-norm ----------------------------------------------------------------


@dataclass(frozen=True)
class NormConfig:
    seed: int = 0
    automaton_seed: int = 0
    num_states: int = 6
    num_symbols: int = 8
    length: int = 32
    train_size: int = 10_000
    val_size: int = 500
    dim: int = 32
    num_heads: int = 4
    num_layers: int = 6
    ffn_dim: int = 64
    steps: int = 250
    batch_size: int = 32
    lrs: tuple = (1e-3, 1e-2)  # a normal and a higher learning rate, Adam, no warm-up


def _norm_runs(config: NormConfig) -> list[tuple[str, bool, float]]:
    """``(name, pre-norm?, learning rate)``; names read ``post_lr0`` (the first rate), ``pre_lr1``..."""
    return [(f"{'pre' if pre else 'post'}_lr{i}", pre, lr) for pre in (False, True) for i, lr in enumerate(config.lrs)]


def build_norm(config: NormConfig) -> nn.ModuleDict:
    """One decoder-only model a run (post/pre-norm x learning rate), all from the same seed."""
    models = {}
    for name, pre, _ in _norm_runs(config):
        torch.manual_seed(config.seed)
        models[name] = DecoderOnlyTransformer(config.num_symbols + 1, config.dim, config.num_heads,
                                              config.num_layers, config.ffn_dim, config.length,
                                              norm_first=pre)
    return nn.ModuleDict(models)


def layer_gradient_norms(model: DecoderOnlyTransformer, automaton, texts) -> list[float]:
    """The gradient norm of each block's parameters for the loss on ``texts``, first block first."""
    model.zero_grad(set_to_none=True)
    lm_loss(model, automaton, texts).backward()
    norms = [torch.cat([p.grad.flatten() for p in block.parameters()]).norm().item() for block in model.blocks]
    model.zero_grad(set_to_none=True)
    return norms


def fit_norm(models: nn.ModuleDict, config: NormConfig, progress: bool = True):
    automaton, train_texts, val_texts = grammar_data(config)
    history = {"grad_norm_post": layer_gradient_norms(models[_norm_runs(config)[0][0]], automaton, val_texts[:64]),
               "grad_norm_pre": layer_gradient_norms(models[_norm_runs(config)[-1][0]], automaton, val_texts[:64])}
    metrics = {"optimal_loss": automaton.cross_entropy(val_texts), "interrupted": False}
    for name, _, lr in _norm_runs(config):
        model = models[name]
        g = torch.Generator().manual_seed(config.seed)

        def loss_fn(step: int, model=model, g=g) -> torch.Tensor:
            index = torch.randint(len(train_texts), (config.batch_size,), generator=g)
            return lm_loss(model, automaton, train_texts[index])

        log = train(model, loss_fn, steps=config.steps, lr=lr, progress=progress, desc=f"norm-placement {name}")
        with torch.no_grad():
            metrics[f"val_loss_{name}"] = lm_loss(model, automaton, val_texts).item()
        metrics["interrupted"] |= log.interrupted
        history[f"loss_{name}"] = log.losses
    return metrics, history


register("norm-placement",
         "post-norm against pre-norm decoder-only Transformers: learning curves at two learning rates, "
         "gradient norms per layer at initialisation",
         NormConfig(), build_norm, fit_norm)
