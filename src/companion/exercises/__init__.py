"""Exercises embedded in the chapters, and the checker that answers them.

In a chapter::

    from companion.exercises import check
    check("kernel_regression/nadaraya-watson", my_nadaraya_watson)

An exercise id is ``"<module>/<slug>"``: the exercise is defined (with its reference answer,
hidden cases and typical mistakes) in ``companion/exercises/<module>.py``, a module named by
topic. :func:`check` imports only that module, on first use, so a broken module cannot break
the exercises of another chapter.
"""

from .checker import (
    REGISTRY,
    ChoiceExercise,
    Feedback,
    FunctionExercise,
    Mistake,
    ValueExercise,
    check,
    compare,
    load_all,
    register,
    solution,
)

__all__ = ["REGISTRY", "ChoiceExercise", "Feedback", "FunctionExercise", "Mistake", "ValueExercise", "check", "compare", "load_all", "register", "solution"]
