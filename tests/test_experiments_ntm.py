"""The ntm-copy experiment reaches its bar (under 0.1 bit errors per sequence on the training
lengths) with its real configuration, in one training run; its metrics and history are complete;
bad settings are rejected.

Measured (default config, one thread, a heavily loaded 2-core machine): seed 0 stops after 1,000
steps (162 s) with 0.0 bit errors per sequence on lengths 1-10 and 0.0 at length 20; seeds 0-5
(ntm-copy-seeds) all converge, in 1,000-2,900 steps, with 0.000-0.065 bit errors per sequence on
lengths 1-10 and 0.0-1.7 at length 20.
"""

import math

import pytest
import torch

import companion.experiments.ntm  # noqa: F401  (registers the experiments; harmless once auto-imported)
from companion import experiments
from companion.experiments.ntm import CopyConfig, build, errors_by_length, held_out


@pytest.fixture(scope="module")
def run(private_cache):
    return experiments.run("ntm-copy", progress=False)


def test_ntm_copy_reaches_the_bar(run):
    m = run.metrics
    assert not run.cached and run.config == CopyConfig()
    assert m["bit_errors_per_sequence"] < 0.1, m
    assert m["converged"] and not m["interrupted"]
    assert math.isfinite(m["bit_errors_per_sequence_2x"]) and m["bit_errors_per_sequence_2x"] >= 0
    assert m["sequences_per_second"] > 0 and m["steps"] <= run.config.max_steps
    assert len(run.history["loss"]) == m["steps"]
    assert run.history["lengths"] == list(range(1, 11))
    patience = run.config.patience  # stopped after that many checks at the target
    assert max(run.history["validation_bit_errors"][-patience:]) <= run.config.target_bit_errors
    assert len(run.history["check_steps"]) == len(run.history["validation_bit_errors"])


def test_metrics_are_what_the_model_does(run):
    """Recount the held-out bit errors with the returned model."""
    test = held_out(run.config, range(1, 11), run.config.test_per_length, stream=2)
    by_length = errors_by_length(run.model, test)
    assert list(by_length.values()) == pytest.approx(run.history["bit_errors_by_length"])
    assert sum(by_length.values()) / 10 == pytest.approx(run.metrics["bit_errors_per_sequence"])


def test_held_out_sequences_differ_from_validation_and_training():
    config = CopyConfig()
    test = held_out(config, [10], 16, stream=2)[0]
    validation = held_out(config, [10], 16, stream=1)[0]
    assert not torch.equal(test.inputs, validation.inputs)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="min_length"):
        build(CopyConfig(min_length=5, max_length=3))
    with pytest.raises(ValueError, match="lr"):
        build(CopyConfig(lr=0.0))
    with pytest.raises(ValueError, match="shift_width"):
        build(CopyConfig(shift_width=4))
    with pytest.raises(ValueError, match="patience"):
        build(CopyConfig(patience=0))
    with pytest.raises(ValueError, match="max_steps"):
        build(CopyConfig(max_steps=-1))
    with pytest.raises(ValueError, match="seeds"):
        experiments.get("ntm-copy-seeds").build(experiments.config_of("ntm-copy-seeds", seeds=(1, 1)))
    with pytest.raises(ValueError, match="unknown setting"):
        experiments.config_of("ntm-copy", heads=2)
