"""Exercises embedded in the chapters, and the checker that answers them.

In a chapter::

    from companion.exercises import check
    check("ch01-gaussian-kernel", my_gaussian_kernel)

Each chapter's exercises are defined (with their reference answers, hidden cases and typical
mistakes) in a module of their own below this package.
"""

from .checker import REGISTRY, ChoiceExercise, Feedback, FunctionExercise, Mistake, ValueExercise, check, compare, register


def _register_all() -> None:
    """Import every ``chapterNN`` module of this package; each registers its exercises."""
    import importlib
    import pkgutil

    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("chapter"):
            importlib.import_module(f"{__name__}.{info.name}")


_register_all()

__all__ = ["REGISTRY", "ChoiceExercise", "Feedback", "FunctionExercise", "Mistake", "ValueExercise", "check", "compare", "register"]
