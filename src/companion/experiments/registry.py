"""Named experiments: every model the book trains, runnable from a notebook or the shell.

An experiment is a configuration dataclass plus two functions:

- ``build(config) -> nn.Module``: the untrained model (seeded);
- ``fit(model, config, progress) -> (metrics, history)``: trains it in place and returns
  its metrics, measured on held-out data (a flat dict of numbers, printed by the command
  line), and its history (lists such as the loss curve, for the chapter's plots).

:func:`run` seeds everything, trains, and caches the weights (``torch.save`` of the
``state_dict``, loaded back with ``weights_only=True``: no pickle is ever executed) under a
key derived from the experiment's name, its full configuration and the companion's source
code. A second call with the same configuration and the same code loads the weights instead
of training; editing any of the package's Python files retrains, so weights trained by older
code are never shown as if they came from the current one; a fresh clone trains once.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

CACHE_FORMAT = 1  # bump to invalidate every cached model


@dataclass(frozen=True)
class Experiment:
    name: str
    description: str
    config: Any  # a dataclass instance with the default settings
    build: Callable[[Any], torch.nn.Module]
    fit: Callable[[torch.nn.Module, Any, bool], tuple[dict, dict]]


@dataclass
class RunResult:
    experiment: str
    config: Any
    model: torch.nn.Module
    metrics: dict
    history: dict
    seconds: float  # training time (of the run that produced the weights, when cached)
    cached: bool

    def summary(self) -> dict:
        """The JSON object the command line prints as its last line."""
        return {
            "experiment": self.experiment,
            "metrics": self.metrics,
            "seconds": round(self.seconds, 2),
            "cached": self.cached,
            "config": dataclasses.asdict(self.config),
        }


REGISTRY: dict[str, Experiment] = {}


def register(name: str, description: str, config: Any, build, fit) -> Experiment:
    if name in REGISTRY:
        raise ValueError(f"experiment {name!r} is registered twice")
    if not dataclasses.is_dataclass(config) or isinstance(config, type):
        raise TypeError(f"config of {name!r} must be a dataclass instance, got {config!r}")
    REGISTRY[name] = Experiment(name, description, config, build, fit)
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
    """``$COMPANION_CACHE_DIR``, else ``.cache/companion`` in the book's root (the folder
    with ``_toc.yml`` above the working directory), else ``~/.cache/attention-book``."""
    if os.environ.get("COMPANION_CACHE_DIR"):
        return Path(os.environ["COMPANION_CACHE_DIR"])
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_toc.yml").exists():
            return folder / ".cache" / "companion"
    return Path.home() / ".cache" / "attention-book"


@functools.lru_cache(maxsize=1)
def source_fingerprint() -> str:
    """A hash of the companion package's Python sources (their paths and contents)."""
    package = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package.rglob("*.py")):
        digest.update(path.relative_to(package).as_posix().encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def cache_key(name: str, config) -> str:
    blob = json.dumps(
        {"experiment": name, "config": dataclasses.asdict(config), "format": CACHE_FORMAT,
         "torch": torch.__version__.split("+")[0], "code": source_fingerprint()},
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


def run(name: str, *, use_cache: bool = True, progress: bool = True, threads: int | None = 1, **overrides) -> RunResult:
    """Train experiment ``name`` (or load its cached weights) and return a :class:`RunResult`.

    ``overrides`` change settings of its configuration (``steps=200``, ``seed=1``, ...).
    Training runs on ``threads`` CPU threads (1 by default: the toy models are too small to
    gain from more, and one thread keeps runs reproducible and leaves a core free).
    """
    exp = get(name)
    config = config_of(name, **overrides)
    key = cache_key(name, config)
    folder = cache_dir() / f"{name}-{key}"
    with _threads(threads):
        torch.manual_seed(getattr(config, "seed", 0))
        model = exp.build(config)
        if use_cache and (folder / "model.pt").exists() and (folder / "result.json").exists():
            state = torch.load(folder / "model.pt", weights_only=True, map_location="cpu")
            model.load_state_dict(state)
            model.eval()
            saved = json.loads((folder / "result.json").read_text())
            return RunResult(name, config, model, saved["metrics"], saved["history"], saved["seconds"], cached=True)
        start = time.perf_counter()
        metrics, history = exp.fit(model, config, progress)
        seconds = time.perf_counter() - start
    model.eval()
    if use_cache and not metrics.get("interrupted", False):
        _save(folder, model, metrics, history, seconds)
    return RunResult(name, config, model, metrics, history, seconds, cached=False)


def _save(folder: Path, model: torch.nn.Module, metrics: dict, history: dict, seconds: float) -> None:
    """Write atomically, so that two processes training the same model cannot corrupt it."""
    folder.mkdir(parents=True, exist_ok=True)
    tmp = folder / f".tmp-{os.getpid()}"
    torch.save(model.state_dict(), tmp.with_suffix(".pt"))
    tmp.with_suffix(".json").write_text(json.dumps({"metrics": metrics, "history": history, "seconds": seconds}))
    os.replace(tmp.with_suffix(".pt"), folder / "model.pt")
    os.replace(tmp.with_suffix(".json"), folder / "result.json")
