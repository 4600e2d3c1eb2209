"""Every model the book trains, as a named experiment.

From a notebook::

    from companion import experiments
    result = experiments.run("nadaraya-watson")     # trains once, then loads from the cache
    result.model, result.metrics

From the shell::

    python -m companion.experiments --list
    python -m companion.experiments nadaraya-watson

Each chapter's experiments live in a module of their own below this package and register
themselves on import.
"""

from .registry import REGISTRY, RunResult, cache_dir, config_of, get, names, register, run


def _register_all() -> None:
    """Import every ``chapterNN`` module of this package; each registers its experiments."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("chapter"):
            importlib.import_module(f"{__name__}.{info.name}")


_register_all()

__all__ = ["REGISTRY", "RunResult", "cache_dir", "config_of", "get", "names", "register", "run"]
