"""The Transformer chapter's experiments reach their bars with the chapter's settings (the
defaults: the cached models of the book build are reused, nothing trains twice).

Bars (issue 12): exact match >= 0.99 at the training lengths on reversal and sorting; the
two-layer attention-only model below 0.3 nats per repeated token (the one-layer model far above
it); the language model's validation loss within 5% of the automaton's own cross-entropy.
Measured figures, seeds and times: see the module docstring of
``companion.experiments.transformer``. With the final weights alone the sorting bar held for
seeds 0 and 2 (0.997, 0.993) but not seed 1 (0.983); with the last five checkpoints averaged (the
default now) seeds 0, 1 and 2 reach 1.000, 0.997 and 1.000, and seeds 1 and 2 are tested too.
"""

import math

import pytest
import torch

from companion import experiments
from companion.experiments.transformer import (
    DigitsConfig,
    build_digits,
    fit_digits,
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


@pytest.mark.parametrize("seed", [1, 2])
def test_sorting_reaches_its_bar_with_other_seeds(seed):
    m = experiments.run("transformer-sort", seed=seed, beam_size=0, progress=False).metrics
    assert m["exact_match"] >= 0.99, m


def test_the_kept_model_is_the_mean_of_the_last_checkpoints():
    tiny = dict(task="sort", dim=8, num_heads=2, num_layers=1, ffn_dim=8, max_length=4, test_max_length=4,
                train_size=50, test_per_length=2, batch_size=4, warmup=2, beam_size=0, average_every=1)

    def trained(steps, average_last):
        config = DigitsConfig(steps=steps, average_last=average_last, **tiny)
        torch.manual_seed(0)
        model = build_digits(config)
        fit_digits(model, config, progress=False)
        return model.state_dict()

    after_2, after_3 = trained(2, 1), trained(3, 1)  # the final weights after 2 and 3 steps
    averaged = trained(3, 2)  # the mean of the weights after steps 2 and 3
    for key, value in averaged.items():
        if value.is_floating_point():
            torch.testing.assert_close(value, (after_2[key] + after_3[key]) / 2)
    with pytest.raises(ValueError, match="average_last"):
        build_digits(DigitsConfig(steps=100, average_last=3, average_every=50))
    with pytest.raises(ValueError, match="average_every"):
        build_digits(DigitsConfig(average_every=0))


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
