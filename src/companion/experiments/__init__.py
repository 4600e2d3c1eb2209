"""Every model the book trains, as a named experiment.

From a notebook::

    from companion import experiments
    result = experiments.run("nadaraya-watson")     # trains once, then loads from the cache
    result.model, result.metrics

From the shell::

    python -m companion.experiments --list
    python -m companion.experiments nadaraya-watson

The experiments live in modules of this package named by topic (``nadaraya_watson``,
``associative_recall``, ``reversal``, ...); each registers its experiments on import, and
importing this package imports them all.
"""

from .registry import REGISTRY, RunResult, cache_dir, config_of, get, names, register, run


def _register_all() -> None:
    """Import every module of this package but the registry and the command line."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name not in ("registry", "__main__"):
            importlib.import_module(f"{__name__}.{info.name}")


_register_all()

__all__ = ["REGISTRY", "RunResult", "cache_dir", "config_of", "get", "names", "register", "run"]
