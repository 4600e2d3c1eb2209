"""Chapter 1's experiment ``nadaraya-watson``: it reaches its stated test error, and bad settings fail.

Measured with the default configuration (seed 0, 50 training and 50 test points, noise
variance 0.25, 200 Adam steps): test MSE 0.315 (learned width 0.252), best grid width chosen by
leave-one-out 0.250 with test MSE 0.315, plain averaging 1.31. Without leave-one-out the width
collapses to 0.011 and the test MSE rises to 0.57. The bars below leave a margin around these.
"""

import json

import pytest
import torch

from companion import experiments
from companion.experiments.__main__ import main
from companion.experiments.nadaraya_watson import NadarayaWatsonConfig, make_data, true_function


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE_DIR", str(tmp_path))
    return tmp_path


@pytest.fixture(scope="module")
def default_run(private_cache):
    return experiments.run("nadaraya-watson", progress=False)


def test_reaches_its_stated_test_error(default_run):
    m = default_run.metrics
    assert m["test_mse"] < 0.36
    assert m["test_mse"] < 0.35 * m["mean_test_mse"]  # far better than plain averaging
    assert m["test_mse"] < 1.10 * m["grid_test_mse"]  # as good as the best fixed width on the grid
    assert m["test_mse"] < 1.20 * m["oracle_test_mse"]  # and close to the width chosen on the test set
    assert m["test_mse_vs_truth"] < 0.08
    # gradient descent and the grid minimise the same leave-one-out error: they agree on the width
    assert 0.8 < m["learned_width"] / m["grid_width"] < 1.25
    assert not m["interrupted"]


def test_history_records_the_descent(default_run):
    h = default_run.history
    assert len(h["loss"]) == len(h["width"]) == NadarayaWatsonConfig().steps
    assert h["loss"][-1] < h["loss"][0]
    assert h["width"][0] == pytest.approx(NadarayaWatsonConfig().init_width)
    assert h["width"][-1] == pytest.approx(default_run.metrics["learned_width"], rel=0.05)


def test_without_leave_one_out_the_width_collapses(cache):
    result = experiments.run("nadaraya-watson", progress=False, leave_one_out=False)
    loo = experiments.run("nadaraya-watson", progress=False, steps=0)  # for the baselines
    assert result.metrics["learned_width"] < 0.05
    assert result.metrics["test_mse"] > 1.3 * loo.metrics["grid_test_mse"]


def test_data_are_seeded_and_follow_the_function():
    config = NadarayaWatsonConfig()
    a, b = make_data(config), make_data(config)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)
    x_train, y_train, x_test, y_test = a
    assert x_train.shape == y_train.shape == (50,) and x_test.shape == (50,)
    assert (x_train.diff() >= 0).all() and 0 <= x_train.min() and x_train.max() <= 5
    assert not torch.equal(x_train, make_data(NadarayaWatsonConfig(seed=1))[0])
    residual = y_train - true_function(x_train)
    assert 0.3 < residual.std() < 0.7  # noise of standard deviation 0.5
    noiseless = make_data(NadarayaWatsonConfig(noise=0.0))
    torch.testing.assert_close(noiseless[1], true_function(noiseless[0]))


@pytest.mark.parametrize("setting", [
    {"n_train": 1}, {"n_train": 0}, {"kernel": "cauchy"}, {"init_width": 0.0}, {"lr": -1.0},
    {"noise": -0.1}, {"steps": -5}, {"x_max": 0.0},
])
def test_bad_settings_are_rejected(cache, setting):
    with pytest.raises(ValueError):
        experiments.run("nadaraya-watson", progress=False, **setting)


def test_command_line_prints_final_json(cache, capsys):
    assert main(["nadaraya-watson", "--no-progress", "--set", "steps=50"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["experiment"] == "nadaraya-watson" and summary["config"]["steps"] == 50
    assert {"test_mse", "learned_width", "grid_test_mse", "mean_test_mse"} <= set(summary["metrics"])
    assert summary["metrics"]["test_mse"] < summary["metrics"]["mean_test_mse"]
