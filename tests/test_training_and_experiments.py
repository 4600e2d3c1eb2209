"""The training loop and the experiment registry (seeding, caching, safe loading, command line)."""

import dataclasses
import json
import warnings

import pytest
import torch

from companion import experiments
from companion.experiments import registry
from companion.experiments.__main__ import main
from companion.training import train


@dataclasses.dataclass(frozen=True)
class LineConfig:
    seed: int = 0
    steps: int = 200
    lr: float = 0.05


def _build(config):
    return torch.nn.Linear(1, 1)


def _fit(model, config, progress):
    g = torch.Generator().manual_seed(config.seed)
    x = torch.randn(64, 1, generator=g)
    y = 3 * x - 1
    log = train(model, lambda step: ((model(x) - y) ** 2).mean(), steps=config.steps, lr=config.lr, progress=progress)
    return {"mse": log.losses[-1], "interrupted": log.interrupted}, {"loss": log.losses}


@pytest.fixture
def line_experiment(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE_DIR", str(tmp_path))
    registry.register("test-line", "fits a line (test only)", LineConfig(), _build, _fit)
    yield "test-line"
    registry.REGISTRY.pop("test-line")


def test_train_fits_and_logs():
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    x = torch.linspace(-1, 1, 32)[:, None]
    log = train(model, lambda s: ((model(x) - (2 * x + 1)) ** 2).mean(), steps=300, lr=0.1, progress=False)
    assert log.steps == 300 and not log.interrupted
    assert log.losses[-1] < 1e-4 < log.losses[0]
    assert not model.training


def test_train_stops_on_nan_naming_the_step():
    model = torch.nn.Linear(1, 1)
    with pytest.raises(FloatingPointError, match="at step 3"):
        train(model, lambda s: model.weight.sum() * (float("nan") if s == 3 else 1.0), steps=10, progress=False)


def test_interrupted_training_keeps_what_was_learned():
    torch.manual_seed(0)
    model = torch.nn.Linear(1, 1)
    x = torch.linspace(-1, 1, 32)[:, None]
    before = model.weight.detach().clone()

    def loss(step):
        if step == 50:
            raise KeyboardInterrupt
        return ((model(x) - 2 * x) ** 2).mean()

    with pytest.warns(UserWarning, match="interrupted after 50 of 100 steps"):
        log = train(model, loss, steps=100, lr=0.05, progress=False)
    assert log.interrupted and log.steps == 50
    assert not torch.equal(model.weight, before)


def test_run_is_seeded_cached_and_loaded_safely(line_experiment, tmp_path, monkeypatch):
    first = experiments.run(line_experiment, progress=False)
    assert not first.cached and first.metrics["mse"] < 1e-3
    folder = next(tmp_path.iterdir())
    assert {p.name for p in folder.iterdir()} == {"model.pt", "result.json"}
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k) or real_load(*a, **k))
    second = experiments.run(line_experiment, progress=False)
    assert second.cached and loads and loads[0].get("weights_only") is True
    assert second.metrics == first.metrics
    torch.testing.assert_close(second.model.weight, first.model.weight)
    fresh = experiments.run(line_experiment, progress=False, use_cache=False)
    torch.testing.assert_close(fresh.model.weight, first.model.weight)  # deterministic
    other = experiments.run(line_experiment, progress=False, seed=1)
    assert not other.cached and len(list(tmp_path.iterdir())) == 2


def test_cache_key_depends_on_name_config_and_code(line_experiment, monkeypatch):
    config = experiments.config_of(line_experiment)
    key = registry.cache_key(line_experiment, config)
    assert key == registry.cache_key(line_experiment, config)  # stable
    assert key != registry.cache_key(line_experiment, experiments.config_of(line_experiment, seed=1))
    assert key != registry.cache_key("other-name", config)
    fingerprint = registry.source_fingerprint()
    assert len(fingerprint) == 16 and fingerprint == registry.source_fingerprint()
    experiments.run(line_experiment, progress=False)
    assert experiments.run(line_experiment, progress=False).cached
    # edited code: the weights trained by the old code are not reused
    monkeypatch.setattr(registry, "source_fingerprint", lambda: "0" * 16)
    assert registry.cache_key(line_experiment, config) != key
    assert not experiments.run(line_experiment, progress=False).cached


def test_source_fingerprint_reads_the_package_sources(monkeypatch, tmp_path):
    package = tmp_path / "companion"
    (package / "experiments").mkdir(parents=True)
    (package / "experiments" / "registry.py").write_text("# stand-in")
    (package / "attention.py").write_text("x = 1\n")
    monkeypatch.setattr(registry, "__file__", str(package / "experiments" / "registry.py"))
    registry.source_fingerprint.cache_clear()
    try:
        before = registry.source_fingerprint()
        registry.source_fingerprint.cache_clear()
        (package / "attention.py").write_text("x = 2\n")
        assert registry.source_fingerprint() != before
    finally:
        registry.source_fingerprint.cache_clear()


def test_unknown_names_and_settings_are_rejected(line_experiment):
    with pytest.raises(ValueError, match="unknown experiment 'nope'"):
        experiments.run("nope")
    with pytest.raises(ValueError, match=r"unknown setting\(s\) \['stepz'\]"):
        experiments.run(line_experiment, stepz=3)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register(line_experiment, "", LineConfig(), _build, _fit)


def test_command_line_prints_json_last(line_experiment, capsys):
    assert main([line_experiment, "--set", "steps=50", "--no-progress"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    summary = json.loads(last)
    assert summary["experiment"] == line_experiment
    assert set(summary) >= {"experiment", "metrics", "seconds"}
    assert summary["config"]["steps"] == 50 and summary["cached"] is False
    assert main(["--list"]) == 0
    assert line_experiment in capsys.readouterr().out
    assert main(["nope"]) == 2
    with pytest.raises(SystemExit, match="unknown setting"):
        main([line_experiment, "--set", "bogus=1"])


def test_every_registered_experiment_is_well_formed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in experiments.names():
            exp = experiments.get(name)
            assert exp.description, name
            assert hasattr(exp.config, "seed"), f"{name} has no seed"
            assert isinstance(exp.build(exp.config), torch.nn.Module)
