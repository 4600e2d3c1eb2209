"""Named experiments: every model the book trains, runnable from a notebook or the shell.

An experiment is a configuration dataclass plus two functions:

- ``build(config) -> nn.Module``: the untrained model (seeded);
- ``fit(model, config, progress) -> (metrics, history)``: trains it in place and returns
  its metrics, measured on held-out data (a flat dict of numbers, printed by the command
  line), and its history (lists such as the loss curve, for the chapter's plots).

:func:`run` seeds everything, trains, and caches the weights (``torch.save`` of the
``state_dict``, loaded back with ``weights_only=True``: no pickle is ever executed) in
:func:`cache_dir`, under a key derived from the experiment's name, its full configuration,
its ``version`` and the code it runs: the files of the companion that its module imports,
transitively (:mod:`companion._fingerprint`; docstrings and comments do not count). Editing
one of those retrains it; editing an unrelated module (a figure helper) does not. An experiment
whose fit runs others (``bottleneck``) records their keys and retrains when one of them changes.
A fresh clone trains once.

The cache is safe to share: an entry (model, metrics, history) appears whole or not at all
(written into a temporary folder renamed into place); a process that finds another one
training the same entry waits for it and loads its result (a file lock); an unreadable entry is
retrained with a warning; a run in which any training was interrupted is never cached.
"""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import fcntl
import hashlib
import json
import os
import random
import shutil
import sys
import time
import uuid
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from .. import _fingerprint
from ..training import watch_interruptions

CACHE_FORMAT = 2  # bump to invalidate every cached model (the registry's own code is not fingerprinted)


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config: Any  # a dataclass instance with the default settings
    build: Callable[[Any], torch.nn.Module]
    fit: Callable[[torch.nn.Module, Any, bool], tuple[dict, dict]]
    version: int = 1  # bump to retrain after a change the code fingerprint cannot see


@dataclass
class RunResult:
    experiment: str
    config: Any
    model: torch.nn.Module
    metrics: dict
    history: dict
    seconds: float  # training time (of the run that produced the weights, when cached)
    cached: bool
    folder: Path | None = None  # its cache entry (None when run with use_cache=False)

    def summary(self) -> dict:
        """The JSON object the command line prints as its last line."""
        return {
            "experiment": self.experiment,
            "metrics": self.metrics,
            "seconds": round(self.seconds, 2),
            "cached": self.cached,
            "cache": str(self.folder) if self.folder else None,
            "config": dataclasses.asdict(self.config),
        }


REGISTRY: dict[str, Experiment] = {}


def register(name: str, description: str, config: Any, build, fit, *, version: int = 1) -> Experiment:
    """Add an experiment. Bump ``version`` to retrain it after a change its code fingerprint
    cannot see (data files, or code outside the companion package)."""
    if name in REGISTRY:
        raise ValueError(f"experiment {name!r} is registered twice")
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config of {name!r} must be a dataclass instance, got {config!r}")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError(f"version of {name!r} must be a positive integer, got {version!r}")
    REGISTRY[name] = Experiment(name, description, config, build, fit, version)
    return REGISTRY[name]


def names() -> list[str]:
    return sorted(REGISTRY)


def get(name: str) -> Experiment:
    if name not in REGISTRY:
        raise ValueError(f"unknown experiment {name!r}; known: {', '.join(names())}")
    return REGISTRY[name]


def config_of(name: str, **overrides):
    """The default configuration of ``name`` with ``overrides`` applied (unknown keys rejected)."""
    default = get(name).config
    fields = {f.name for f in dataclasses.fields(default)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise ValueError(f"{name}: unknown setting(s) {unknown}; settings are {sorted(fields)}")
    return dataclasses.replace(default, **overrides)


def cache_dir() -> Path:
    """Where trained models are kept, whatever the working directory:

    ``$COMPANION_CACHE_DIR`` if set; else, when the companion is the ``src/companion`` of a
    checkout of the book (a folder with ``_toc.yml``), that checkout's ``.cache/companion``;
    else ``~/.cache/attention-book`` (an installed companion, on Colab).
    """
    if os.environ.get("COMPANION_CACHE_DIR"):
        return Path(os.environ["COMPANION_CACHE_DIR"]).expanduser()
    package = _fingerprint.PACKAGE_DIR
    root = package.parent.parent
    if package.parent.name == "src" and (root / "_toc.yml").is_file():
        return root / ".cache" / "companion"
    return Path.home() / ".cache" / "attention-book"


# Modules every experiment imports that do not change what a model learns: the registry itself
# (versioned by CACHE_FORMAT), the command line, and the package that imports every experiment.
_NOT_FINGERPRINTED = {"companion.experiments", "companion.experiments.registry",
                      "companion.experiments.__main__", "companion._fingerprint"}


def code_files(exp: Experiment, package_dir: Path | None = None) -> dict[str, Path]:
    """The companion modules the experiment's ``build`` and ``fit`` run: their modules and what
    those import, transitively (``{module name: file}``)."""
    roots = {exp.build.__module__, exp.fit.__module__}
    return _fingerprint.dependencies(roots, package_dir=package_dir or _fingerprint.PACKAGE_DIR,
                                     ignore=_NOT_FINGERPRINTED)


def code_fingerprint(exp: Experiment, package_dir: Path | None = None) -> str:
    """A hash of the code the experiment runs (see :func:`code_files`) and of its version."""
    return _fingerprint.fingerprint(code_files(exp, package_dir), extra={"version": exp.version})


def cache_key(name: str, config) -> str:
    blob = json.dumps(
        {"experiment": name, "config": dataclasses.asdict(config), "format": CACHE_FORMAT,
         "torch": torch.__version__.split("+")[0], "code": code_fingerprint(get(name))},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


@contextlib.contextmanager
def _threads(n: int | None):
    old = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


@contextlib.contextmanager
def _random_state_kept():
    """Restore torch's, Python's and NumPy's global random states on exit."""
    numpy = sys.modules.get("numpy")
    torch_state, python_state = torch.get_rng_state(), random.getstate()
    numpy_state = numpy.random.get_state() if numpy else None
    try:
        yield
    finally:
        torch.set_rng_state(torch_state)
        random.setstate(python_state)
        if numpy_state is not None:
            numpy.random.set_state(numpy_state)


@contextlib.contextmanager
def _locked(path: Path):
    """An exclusive lock on ``path`` (created if missing), held by this process for the block."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# The runs of other experiments made by the fit being trained (bottleneck runs two seq2seq models):
# saved with its entry, which is stale once one of theirs changes.
_USES: contextvars.ContextVar[list | None] = contextvars.ContextVar("uses", default=None)


def run(name: str, *, use_cache: bool = True, retrain: bool = False, progress: bool = True,
        threads: int | None = 1, **overrides) -> RunResult:
    """Train experiment ``name`` (or load its cached weights) and return a :class:`RunResult`.

    ``overrides`` change settings of its configuration (``steps=200``, ``seed=1``, ...).
    ``retrain=True`` trains even when a cached entry exists and replaces it; ``use_cache=False``
    neither reads nor writes the cache. Training runs on ``threads`` CPU threads (1 by default:
    the toy models are too small to gain from more, and one thread keeps runs reproducible and
    leaves a core free). The caller's global random states (torch, ``random``, NumPy) are left
    as they were.
    """
    exp = get(name)
    config = config_of(name, **overrides)
    key = cache_key(name, config)
    if _USES.get() is not None:  # called by another experiment's fit: its entry depends on this one
        _USES.get().append({"experiment": name, "config": dataclasses.asdict(config), "key": key})
    with _threads(threads), _random_state_kept():
        if not use_cache:
            return _train(exp, config, progress, folder=None)
        folder = cache_dir() / f"{name}-{key}"
        with _locked(folder.with_name(folder.name + ".lock")):
            if not retrain and folder.exists():
                loaded = _load(exp, config, folder)
                if loaded is not None:
                    return loaded
            return _train(exp, config, progress, folder)


def _seeded_model(exp: Experiment, config) -> torch.nn.Module:
    torch.manual_seed(getattr(config, "seed", 0))
    return exp.build(config)


def _train(exp: Experiment, config, progress: bool, folder: Path | None) -> RunResult:
    model = _seeded_model(exp, config)
    start = time.perf_counter()
    uses = _USES.set([])
    try:
        with watch_interruptions() as interruptions:
            metrics, history = exp.fit(model, config, progress)
    finally:
        used = _USES.get()
        _USES.reset(uses)
    seconds = time.perf_counter() - start
    model.eval()
    if interruptions or metrics.get("interrupted", False):
        metrics = {**metrics, "interrupted": True}
        if folder is not None:
            warnings.warn(f"{exp.name}: training was interrupted ({', '.join(interruptions) or 'fit'}); "
                          "the result is not cached", stacklevel=3)
        folder = None
    if folder is not None:
        _save(folder, model, {"metrics": metrics, "history": history, "seconds": seconds, "uses": used})
    return RunResult(exp.name, config, model, metrics, history, seconds, cached=False, folder=folder)


def _load(exp: Experiment, config, folder: Path) -> RunResult | None:
    """The cached run in ``folder``; None if one of the experiments it ran has changed since, or
    (with a warning) if it cannot be read."""
    try:
        saved = json.loads((folder / "result.json").read_text())
        for use in saved.get("uses", []):
            with contextlib.suppress(ValueError, TypeError):  # an experiment or setting since removed
                if cache_key(use["experiment"], config_of(use["experiment"], **use["config"])) == use["key"]:
                    continue
            return None
        state = torch.load(folder / "model.pt", weights_only=True, map_location="cpu")
        model = _seeded_model(exp, config)
        model.load_state_dict(state)
        metrics, history, seconds = saved["metrics"], saved["history"], saved["seconds"]
    except Exception as error:  # truncated, corrupt, or from an incompatible model: retrain
        warnings.warn(f"{exp.name}: the cached entry {folder} cannot be read "
                      f"({type(error).__name__}: {error}); training again", stacklevel=3)
        return None
    model.eval()
    return RunResult(exp.name, config, model, metrics, history, seconds, cached=True, folder=folder)


def _save(folder: Path, model: torch.nn.Module, result: dict) -> None:
    """Write the entry as one unit: into a temporary sibling folder, renamed into place.

    Called with the entry's lock held. A failure leaves no temporary folder behind.
    """
    tmp = folder.with_name(f".tmp-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    old = folder.with_name(f".old-{folder.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
    try:
        tmp.mkdir(parents=True)
        torch.save(model.state_dict(), tmp / "model.pt")
        (tmp / "result.json").write_text(json.dumps(result))
        if folder.exists():  # an unreadable entry, or retrain=True: set it aside, then replace it
            os.rename(folder, old)
        os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
