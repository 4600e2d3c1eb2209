"""The ``positions-extrapolate`` experiment: five one-head causal self-attention models, trained
on sequences of 16 to name the most recent marker, tested at 16, 32 and 64.

Measured (default settings, 600 steps; the five together 62-83 s on one thread of a loaded
2-core machine), accuracy at L = 16 / on the positions t >= 16 of sequences of 64:

    seed  none          learned       sinusoidal    rope          alibi
    0     0.804 / 0.57  1.000 / 0.54  0.988 / 0.53  1.000 / 0.92  0.996 / 0.99
    1     0.787 / -     1.000 / -     1.000 / -     0.999 / -     0.994 / -
    2     0.803 / -     1.000 / -     1.000 / -     1.000 / -     0.996 / -

(seeds 1 and 2: accuracy over all 64 positions was 0.57-0.63 for learned and sinusoidal,
0.94-0.97 for RoPE and 0.99 for ALiBi). The bars below are the robust part: every scheme but
none fits the training length, none does not, and on the long sequences the relative schemes
are far ahead of the absolute ones. The default run comes from the shared experiment cache.
"""

import pytest
import torch

from companion import experiments
from companion.experiments.positions import PositionsConfig, build, evaluate

RELATIVE, ABSOLUTE = ("rope", "alibi"), ("learned", "sinusoidal")


@pytest.fixture(scope="module")
def result():
    return experiments.run("positions-extrapolate", progress=False)


def test_every_scheme_but_none_fits_the_training_length(result):
    m, L = result.metrics, result.config.train_length
    for scheme in ("learned", "sinusoidal", "rope", "alibi"):
        assert m[f"accuracy_{scheme}_L{L}"] >= 0.95, (scheme, m)
    assert m[f"accuracy_none_L{L}"] < 0.9, m  # a bag of tokens cannot name the most recent
    assert len(result.history["loss_rope"]) == result.config.steps


def test_relative_positions_extrapolate_better_than_absolute_ones(result):
    m, L = result.metrics, max(result.config.test_lengths)
    for rel in RELATIVE:
        for ab in ABSOLUTE:
            assert m[f"accuracy_new_{rel}_L{L}"] > m[f"accuracy_new_{ab}_L{L}"] + 0.15, m
    assert m[f"accuracy_new_alibi_L{L}"] >= 0.9, m


def test_the_learned_rows_past_the_training_length_are_never_trained(result):
    """What the chapter says of the learned table: rows 16..63 keep their initial values."""
    config = result.config
    torch.manual_seed(config.seed)  # as experiments.run seeds before build
    fresh = build(config)["learned"].position_table.weight
    trained = result.model["learned"].position_table.weight
    L = config.train_length
    assert torch.equal(trained[L:], fresh[L:])
    assert not torch.allclose(trained[:L], fresh[:L])


def test_the_cached_models_reproduce_their_metrics(result):
    loaded = experiments.run("positions-extrapolate", progress=False)
    assert loaded.cached
    again = evaluate(loaded.model, loaded.config)
    for key, value in result.metrics.items():
        if key.startswith("accuracy"):
            assert again[key] == pytest.approx(value, abs=1e-12), key


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(schemes=("none", "absolute")), "schemes"),
        (dict(schemes=()), "schemes"),
        (dict(test_lengths=(16, 128)), "max_length"),
        (dict(test_lengths=()), "test_lengths"),
        (dict(steps=-1), "steps"),
        (dict(lr=0.0), "lr"),
    ],
)
def test_bad_settings(overrides, match):
    with pytest.raises(ValueError, match=match):
        build(PositionsConfig(**overrides))
