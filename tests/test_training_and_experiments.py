"""The training loop and the experiment registry: seeding, the cache (keyed by the code each
experiment runs, shared safely between processes, never holding an interrupted or unreadable
run), safe loading, the caller's random state, and the command line."""

import dataclasses
import json
import os
import random
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from companion import _fingerprint, experiments
from companion.experiments import registry
from companion.experiments.__main__ import main
from companion.training import average_state_dicts, train, watch_interruptions

ROOT = Path(__file__).resolve().parent.parent


@dataclasses.dataclass(frozen=True)
class LineConfig:
    seed: int = 0
    steps: int = 200
    lr: float = 0.05


def line_data(seed: int, n: int = 64):
    x = torch.randn(n, 1, generator=torch.Generator().manual_seed(seed))
    return x, 3 * x - 1


def _build(config):
    return torch.nn.Linear(1, 1)


def _fit(model, config, progress):
    random.random(), np.random.rand()  # touches every global random state, as a careless fit might
    x, y = line_data(config.seed)
    log = train(model, lambda step: ((model(x) - y) ** 2).mean(), steps=config.steps, lr=config.lr, progress=progress)
    x_test, y_test = line_data(1000 + config.seed)
    with torch.no_grad():
        test_mse = ((model(x_test) - y_test) ** 2).mean().item()
    return {"test_mse": test_mse, "interrupted": log.interrupted}, {"loss": log.losses}


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("COMPANION_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def line_experiment(cache):
    registry.register("test-line", "fits a line (test only)", LineConfig(), _build, _fit)
    yield "test-line"
    registry.REGISTRY.pop("test-line")


def entries(cache: Path) -> list[str]:
    """The cache's entries (folders), without lock files."""
    return sorted(p.name for p in cache.iterdir() if p.is_dir()) if cache.exists() else []


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


def test_average_state_dicts():
    torch.manual_seed(0)
    models = [torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.BatchNorm1d(2)) for _ in range(3)]
    for n, m in enumerate(models):
        m[1].num_batches_tracked.fill_(n)
    states = [m.state_dict() for m in models]
    mean = average_state_dicts(states)
    torch.testing.assert_close(mean["0.weight"], sum(m[0].weight for m in models).detach() / 3)
    torch.testing.assert_close(mean["1.running_var"], torch.ones(2))
    assert mean["1.num_batches_tracked"] == 2  # an integer buffer: the last state's
    models[0].load_state_dict(mean)  # a valid state of the same model
    with pytest.raises(ValueError, match="non-empty"):
        average_state_dicts([])
    with pytest.raises(ValueError, match="shape"):
        average_state_dicts([states[0], torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4)).state_dict()])
    with pytest.raises(ValueError, match="keys"):
        average_state_dicts([torch.nn.Linear(3, 2).state_dict(), states[0]])


def test_watch_interruptions_sees_nested_trainings():
    model = torch.nn.Linear(1, 1)

    def interrupted(step):
        if step == 2:
            raise KeyboardInterrupt
        return model.weight.sum() ** 2

    with watch_interruptions() as outer:
        with watch_interruptions() as inner, pytest.warns(UserWarning, match="interrupted"):
            train(model, interrupted, steps=5, progress=False, desc="inner")
        train(model, lambda s: model.weight.sum() ** 2, steps=3, progress=False, desc="fine")
    assert inner == ["inner"] and outer == ["inner"]
    with watch_interruptions() as clean:
        train(model, lambda s: model.weight.sum() ** 2, steps=3, progress=False)
    assert clean == []


def test_run_is_seeded_cached_and_loaded_safely(line_experiment, cache, monkeypatch):
    first = experiments.run(line_experiment, progress=False)
    assert not first.cached and first.metrics["test_mse"] < 1e-3
    assert entries(cache) == [first.folder.name]
    assert {p.name for p in first.folder.iterdir()} == {"model.pt", "result.json"}
    loads = []
    real_load = torch.load
    monkeypatch.setattr(torch, "load", lambda *a, **k: loads.append(k) or real_load(*a, **k))
    second = experiments.run(line_experiment, progress=False)
    assert second.cached and loads and loads[0].get("weights_only") is True
    # the loaded model itself reproduces the stored metric on the held-out points
    x_test, y_test = line_data(1000)
    with torch.no_grad():
        assert ((second.model(x_test) - y_test) ** 2).mean().item() == pytest.approx(first.metrics["test_mse"], rel=1e-5)
    assert not second.model.training
    fresh = experiments.run(line_experiment, progress=False, use_cache=False)
    assert fresh.folder is None
    torch.testing.assert_close(fresh.model.weight, first.model.weight)  # deterministic
    other = experiments.run(line_experiment, progress=False, seed=1)
    assert not other.cached and len(entries(cache)) == 2


def test_cache_key_depends_on_name_config_and_version(line_experiment):
    config = experiments.config_of(line_experiment)
    key = registry.cache_key(line_experiment, config)
    assert key == registry.cache_key(line_experiment, config)  # stable
    assert key != registry.cache_key(line_experiment, experiments.config_of(line_experiment, seed=1))
    registry.register("test-line-2", "the same, version 2", LineConfig(), _build, _fit, version=2)
    try:
        assert registry.cache_key("test-line-2", config) != key
    finally:
        registry.REGISTRY.pop("test-line-2")
    with pytest.raises(ValueError, match="version"):
        registry.register("test-line-0", "", LineConfig(), _build, _fit, version=0)


def fake_package(root: Path) -> Path:
    """A small ``companion`` package: an experiment module importing a model module, which
    imports a helper (relatively); a figure module nobody imports; the experiments package."""
    files = {
        "__init__.py": '"""The package."""\n',
        "helper.py": "def double(x):\n    return 2 * x\n",
        "model.py": "from . import helper\n\ndef make():\n    return helper.double(1)\n",
        "viz.py": '"""Figures."""\n\ndef plot():\n    return 1\n',
        "experiments/__init__.py": (
            "from .registry import register\n\ndef _all():\n    import importlib, pkgutil\n"
            "    for info in pkgutil.iter_modules(__path__):\n        importlib.import_module(__name__ + '.' + info.name)\n"),
        "experiments/registry.py": "def register(*args):\n    pass\n",
        "experiments/lines.py": (
            "import torch\nfrom ..model import make\nfrom .registry import register\n\n"
            "def build(config):\n    from companion.helper import double  # inside a function\n    return make()\n"),
        "experiments/other.py": "from .. import viz\n",
    }
    package = root / "companion"
    for name, text in files.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(text)
    return package


def test_fingerprint_follows_the_imports_of_the_experiment_only(tmp_path):
    package = fake_package(tmp_path)

    def build_or_fit():
        pass

    build_or_fit.__module__ = "companion.experiments.lines"  # as if defined in the fake package
    exp = registry.Experiment("lines", "", LineConfig(), build_or_fit, build_or_fit)
    files = registry.code_files(exp, package)
    assert set(files) == {"companion", "companion.experiments.lines", "companion.model", "companion.helper"}
    key = registry.code_fingerprint(exp, package)

    (package / "viz.py").write_text('"""Figures."""\n\ndef plot():\n    return 2\n')  # unrelated code
    (package / "experiments" / "other.py").write_text("from .. import viz\nX = 1\n")  # another experiment
    (package / "experiments" / "registry.py").write_text("def register(*args):\n    return None\n")
    assert registry.code_fingerprint(exp, package) == key
    (package / "helper.py").write_text('"""Doubling."""\n\n# a comment\ndef double(x):\n    return 2 * x\n')
    assert registry.code_fingerprint(exp, package) == key  # a docstring and a comment: same code

    (package / "helper.py").write_text("def double(x):\n    return x + x + 0\n")  # imported by model.py
    changed = registry.code_fingerprint(exp, package)
    assert changed != key
    (package / "model.py").write_text("from . import helper\n\ndef make():\n    return helper.double(2)\n")
    assert registry.code_fingerprint(exp, package) != changed
    assert registry.code_fingerprint(dataclasses.replace(exp, version=2), package) != registry.code_fingerprint(exp, package)


def test_a_package_importing_all_its_modules_depends_on_each(tmp_path):
    package = fake_package(tmp_path)
    notebook = tmp_path / "chapter.ipynb"
    cells = [{"cell_type": "code", "source": ["%pip install nothing\n", "from companion import experiments\n"]},
             {"cell_type": "markdown", "source": "import companion.viz"},
             {"cell_type": "code", "source": "!ls\nimport numpy"}]
    notebook.write_text(json.dumps({"cells": cells}))
    found = _fingerprint.notebook_dependencies(notebook, package)
    assert set(found) == {"companion", "companion.experiments", "companion.experiments.registry",
                          "companion.experiments.lines", "companion.experiments.other", "companion.model",
                          "companion.helper", "companion.viz"}


def test_the_real_experiments_fingerprint_their_own_code():
    files = registry.code_files(experiments.get("nadaraya-watson"))
    module = experiments.get("nadaraya-watson").fit.__module__
    assert {module, "companion.kernel_regression", "companion.training"} <= set(files)
    assert not {"companion.viz", "companion.style", "companion.experiments.registry"} & set(files)
    assert all(path.is_file() and path.suffix == ".py" for path in files.values())


def test_a_corrupt_cached_model_is_retrained_with_a_warning(line_experiment, cache):
    first = experiments.run(line_experiment, progress=False)
    model_file = first.folder / "model.pt"
    model_file.write_bytes(model_file.read_bytes()[:100])  # truncated
    with pytest.warns(UserWarning, match=f"{first.folder.name}.*cannot be read"):
        again = experiments.run(line_experiment, progress=False)
    assert not again.cached and again.folder == first.folder
    torch.testing.assert_close(again.model.weight, first.model.weight)
    (first.folder / "result.json").write_text("{not json")
    with pytest.warns(UserWarning, match="cannot be read"):
        assert not experiments.run(line_experiment, progress=False).cached
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert experiments.run(line_experiment, progress=False).cached  # repaired
    assert entries(cache) == [first.folder.name]  # no debris


def test_a_failed_save_leaves_nothing_behind(line_experiment, cache, monkeypatch):
    def broken_save(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        experiments.run(line_experiment, progress=False)
    assert entries(cache) == []
    monkeypatch.undo()
    monkeypatch.setenv("COMPANION_CACHE_DIR", str(cache))
    assert not experiments.run(line_experiment, progress=False).cached


@dataclasses.dataclass(frozen=True)
class CutConfig:
    seed: int = 0


def _fit_with_an_interrupted_inner_training(model, config, progress):
    def loss(step):
        if step == 3:
            raise KeyboardInterrupt  # Ctrl-C during a sub-model's training
        return (model.weight ** 2).sum()

    train(model, loss, steps=10, progress=False, desc="inner model")
    return {"done": 1.0}, {}  # a fit that forgets to report the interruption


def _fit_calling_an_interrupted_experiment(model, config, progress):
    inner = experiments.run("test-cut-inner", progress=False)
    return {"inner": float(inner.metrics["done"])}, {}


def test_an_interrupted_run_is_never_cached_at_any_depth(cache):
    registry.register("test-cut-inner", "", CutConfig(), _build, _fit_with_an_interrupted_inner_training)
    registry.register("test-cut-outer", "", CutConfig(), _build, _fit_calling_an_interrupted_experiment)
    try:
        with pytest.warns(UserWarning) as caught:
            inner = experiments.run("test-cut-inner", progress=False)
        assert inner.metrics["interrupted"] is True and inner.folder is None
        assert any("not cached" in str(w.message) for w in caught)
        with pytest.warns(UserWarning) as caught:
            outer = experiments.run("test-cut-outer", progress=False)
        assert outer.metrics["interrupted"] is True and outer.folder is None
        assert sum("not cached" in str(w.message) for w in caught) == 2  # the inner run and the outer
        assert entries(cache) == []
        with pytest.warns(UserWarning, match="interrupted"):
            assert not experiments.run("test-cut-outer", progress=False).cached
    finally:
        registry.REGISTRY.pop("test-cut-inner")
        registry.REGISTRY.pop("test-cut-outer")


def _fit_using_the_line(model, config, progress):
    line = experiments.run("test-line", progress=False)
    return {"slope": line.model.weight.item()}, {}


def test_an_experiment_running_another_retrains_when_that_one_changes(line_experiment):
    registry.register("test-uses-line", "", CutConfig(), _build, _fit_using_the_line)
    try:
        first = experiments.run("test-uses-line", progress=False)
        assert not first.cached and experiments.run("test-uses-line", progress=False).cached
        registry.REGISTRY.pop(line_experiment)  # the line experiment changes (a new version)
        registry.register(line_experiment, "fits a line (test only)", LineConfig(), _build, _fit, version=2)
        again = experiments.run("test-uses-line", progress=False)
        assert not again.cached and again.folder == first.folder  # same key, stale content
        assert experiments.run("test-uses-line", progress=False).cached
    finally:
        registry.REGISTRY.pop("test-uses-line")


COUNTED = '''
import dataclasses, os, time, torch
from companion.experiments import register

@dataclasses.dataclass(frozen=True)
class CountedConfig:
    seed: int = 0

def build(config):
    return torch.nn.Linear(2, 1)

def fit(model, config, progress):
    with open(os.environ["COUNTER"], "a") as counter:
        counter.write("trained\\n")
    time.sleep(2)  # long enough for the other process to arrive while this one trains
    with torch.no_grad():
        model.weight.fill_(0.25)
    return {"weight": 0.25}, {}

register("test-counted", "counts its trainings in $COUNTER (test only)", CountedConfig(), build, fit)
'''

RACER = '''
import json, os, sys, time
from pathlib import Path
import counted
from companion import experiments
barrier = Path(os.environ["BARRIER"])
(barrier / str(os.getpid())).touch()
while len(list(barrier.iterdir())) < 2:  # start both runs together
    time.sleep(0.02)
result = experiments.run("test-counted", progress=False)
print(json.dumps({"cached": result.cached, "weight": result.model.weight.tolist()}))
'''


def test_two_processes_running_one_experiment_train_it_once(tmp_path, cache):
    (tmp_path / "counted.py").write_text(COUNTED)
    (tmp_path / "racer.py").write_text(RACER)
    (tmp_path / "barrier").mkdir()
    env = {**os.environ, "COUNTER": str(tmp_path / "count"), "BARRIER": str(tmp_path / "barrier"),
           "PYTHONPATH": str(tmp_path), "COMPANION_CACHE_DIR": str(cache)}
    racers = [subprocess.Popen([sys.executable, str(tmp_path / "racer.py")], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [racer.communicate(timeout=300) for racer in racers]
    for racer, (out, err) in zip(racers, outputs):
        assert racer.returncode == 0, err
    results = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    assert (tmp_path / "count").read_text() == "trained\n"  # trained once
    assert sorted(r["cached"] for r in results) == [False, True]  # the other waited, then loaded
    assert results[0]["weight"] == results[1]["weight"] == [[0.25, 0.25]]
    assert len(entries(cache)) == 1


def draws():
    return torch.rand(3).tolist(), random.random(), np.random.rand()


def seed_everything(seed):
    torch.manual_seed(seed), random.seed(seed), np.random.seed(seed)


def test_run_leaves_the_callers_random_state_alone(line_experiment):
    seed_everything(123)
    expected = draws()
    for attempt in ("trains", "loads"):
        seed_everything(123)
        result = experiments.run(line_experiment, progress=False)
        assert result.cached == (attempt == "loads")
        assert draws() == expected, attempt


def test_the_cache_folder_does_not_depend_on_the_working_directory(tmp_path, monkeypatch):
    monkeypatch.delenv("COMPANION_CACHE_DIR", raising=False)
    folders = set()
    for where in (ROOT, ROOT / "chapters", tmp_path):
        monkeypatch.chdir(where)
        folders.add(experiments.cache_dir())
    assert folders == {ROOT / ".cache" / "companion"}  # this checkout's, from anywhere
    monkeypatch.setenv("COMPANION_CACHE_DIR", str(tmp_path / "elsewhere"))
    assert experiments.cache_dir() == tmp_path / "elsewhere"  # the environment wins
    monkeypatch.delenv("COMPANION_CACHE_DIR")
    installed = tmp_path / "site-packages" / "companion"  # a companion installed outside a checkout
    installed.mkdir(parents=True)
    (tmp_path / "_toc.yml").write_text("root: x\n")  # even below a folder that looks like a book
    monkeypatch.setattr(_fingerprint, "PACKAGE_DIR", installed)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert experiments.cache_dir() == tmp_path / "home" / ".cache" / "attention-book"


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
    assert set(summary) >= {"experiment", "metrics", "seconds", "cache"}
    assert summary["config"]["steps"] == 50 and summary["cached"] is False
    assert main(["--list"]) == 0
    assert line_experiment in capsys.readouterr().out
    assert main(["nope"]) == 2
    with pytest.raises(SystemExit, match="unknown setting"):
        main([line_experiment, "--set", "bogus=1"])


def test_command_line_warms_the_cache_the_chapters_read(line_experiment, cache, capsys):
    assert main([line_experiment, "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    folder = Path(json.loads(out[-1])["cache"])
    assert folder.parent == cache and f"saved to {folder}" in out[-2]
    from_notebook = experiments.run(line_experiment, progress=False)  # what a chapter calls
    assert from_notebook.cached and from_notebook.folder == folder
    assert main([line_experiment, "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert json.loads(out[-1])["cached"] is True and f"loaded from {folder}" in out[-2]
    stamp = (folder / "model.pt").stat().st_mtime_ns
    assert main([line_experiment, "--no-progress", "--retrain"]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1])["cached"] is False
    assert (folder / "model.pt").stat().st_mtime_ns != stamp and entries(cache) == [folder.name]


def test_every_registered_experiment_is_well_formed():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for name in experiments.names():
            exp = experiments.get(name)
            assert exp.description, name
            assert hasattr(exp.config, "seed"), f"{name} has no seed"
            assert isinstance(exp.build(exp.config), torch.nn.Module)
