"""The Transformer chapter's experiments reach their bars with the chapter's settings (the
defaults: the cached models of the book build are reused, nothing trains twice).

Bars (issue 12): exact match >= 0.99 at the training lengths on reversal and sorting; the
two-layer attention-only model below 0.3 nats per repeated token (the one-layer model far above
it); the language model's validation loss within 5% of the automaton's own cross-entropy.
Measured figures, seeds and times: see the module docstring of
``companion.experiments.transformer``. The sorting bar holds for the default seed (0.997) and
seed 2 (0.993) but not seed 1 (0.983): the test checks the default seed, which the chapter uses.
"""

import math

import pytest
import torch

from companion import experiments
from companion.experiments.transformer import (
    build_digits,
    decode_split,
    grammar_data,
    lm_loss,
    repeated_loss,
    score,
)
from companion.induction import induction_score, previous_token_score
from companion.tasks.digit_sequences import DigitTaskConfig, make_splits
from companion.tasks.repeated_segments import RepeatedSegmentsConfig, generate


@pytest.mark.parametrize("name", ["transformer-reverse", "transformer-sort"])
def test_digit_tasks_reach_their_bar(name):
    result = experiments.run(name, progress=False)
    m, config = result.metrics, result.config
    assert m["exact_match"] >= 0.99, m
    assert m["token_accuracy"] >= m["exact_match"] - 1e-9, m
    lengths = result.history["lengths"]
    assert lengths == list(range(config.min_length, config.test_max_length + 1))
    # the metrics are what the cached model does: decode one length again
    _, test = make_splits(DigitTaskConfig(config.task, config.min_length, config.max_length,
                                          config.test_max_length, config.train_size, config.test_per_length))
    part = test.with_length(config.max_length)
    exact, _ = score(decode_split(result.model, part), part)
    assert exact == pytest.approx(result.history["exact_match_by_length"][lengths.index(config.max_length)])
    if "beam_exact_match_longer" in m:  # measured, not asserted better: beam search may lose too
        assert 0.0 <= m["beam_exact_match_longer"] <= 1.0


def test_digit_scoring_counts_every_token_to_eos():
    _, test = make_splits(DigitTaskConfig(max_length=5, test_max_length=6, train_size=10, test_per_length=4))
    perfect = test.tgt_out.clone()
    assert score(perfect, test) == (1.0, 1.0)
    wrong_eos = perfect.clone()
    wrong_eos[0, int(test.src_lengths[0])] = 5  # the <eos> is a token to get right
    exact, tokens = score(wrong_eos, test)
    assert exact == pytest.approx(1 - 1 / len(test))
    assert tokens == pytest.approx(1 - 1 / int((test.tgt_out != 0).sum()))


def test_induction_heads_reach_their_bar_and_show_the_circuit():
    result = experiments.run("induction-heads", progress=False)
    m, config = result.metrics, result.config
    assert m["loss_repeated_2layer"] < 0.3, m
    assert m["loss_repeated_1layer"] > 1.0, m  # one layer cannot compose a previous-token head
    # the figures are the cached model's: recompute on fresh sequences
    segments = RepeatedSegmentsConfig(config.vocab_size, config.length, config.min_segment, config.max_segment)
    batch = generate(300, segments, seed=77)
    two = result.model["2"]
    with torch.no_grad():
        assert repeated_loss(two, batch.tokens, batch.repeated).item() < 0.3
        _, weights = two(batch.tokens, return_weights=True)
    prev, induct = previous_token_score(weights["decoder"]), induction_score(weights["decoder"], batch.tokens)
    # uniform causal attention would give about 0.1 to the previous token; seed 0 measured
    # 0.50 and 0.54 for the heads of layer 1, and induction scores 0.96 and 0.94 in layer 2
    assert prev[0].max() > 0.3, prev  # a previous-token head in layer 1
    assert induct[1].max() > 0.5, induct  # an induction head in layer 2
    with torch.no_grad():
        _, one = result.model["1"](batch.tokens, return_weights=True)
    assert induction_score(one["decoder"], batch.tokens).max() < 0.3  # none in the one-layer model


def test_grammar_lm_comes_within_five_percent_of_the_optimum():
    result = experiments.run("grammar-lm", progress=False)
    m = result.metrics
    assert m["val_loss"] <= 1.05 * m["optimal_loss"], m
    assert m["val_loss"] >= m["optimal_loss"] - 0.02, m  # nothing beats the generator (up to noise)
    automaton, _, val = grammar_data(result.config)
    assert m["optimal_loss"] == pytest.approx(automaton.cross_entropy(val))
    with torch.no_grad():
        assert lm_loss(result.model, automaton, val).item() == pytest.approx(m["val_loss"], rel=1e-5)


def test_norm_placement_records_curves_and_gradients():
    result = experiments.run("norm-placement", progress=False)
    h, config = result.history, result.config
    for norm in ("post", "pre"):
        assert len(h[f"grad_norm_{norm}"]) == config.num_layers
        assert all(math.isfinite(g) and g > 0 for g in h[f"grad_norm_{norm}"])
        for i in range(len(config.lrs)):
            assert len(h[f"loss_{norm}_lr{i}"]) == config.steps
    # at the normal rate both placements learn
    for norm in ("post", "pre"):
        assert result.metrics[f"val_loss_{norm}_lr0"] < 1.5 * result.metrics["optimal_loss"], result.metrics


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="task must be one of"):
        experiments.run("transformer-reverse", task="shuffle", use_cache=False)
    with pytest.raises(ValueError, match="train_on"):
        experiments.run("induction-heads", train_on="some", use_cache=False)
    with pytest.raises(ValueError, match="steps"):
        build_digits(experiments.config_of("transformer-sort", steps=0))
