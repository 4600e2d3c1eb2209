"""The exercise checker: runs a reader's answer on hidden cases and says what is wrong.

Three kinds of exercise:

- :class:`FunctionExercise`: the reader writes a function; it is called on hidden cases and
  its outputs are compared with a reference implementation's.
- :class:`ValueExercise`: the reader computes a number or an array.
- :class:`ChoiceExercise`: the reader picks one option of a question.

Each may list typical :class:`Mistake`\\ s; when an answer fails in the same way as a known
mistake, the feedback adds that mistake's hint. The checker never lets an exception escape:
whatever the reader's code does, the answer is a :class:`Feedback` that prints as a clear
pass or a description of the first problem found.
"""

from __future__ import annotations

import contextlib
import html
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch


@dataclass
class Feedback:
    """The checker's verdict; truthy when the answer passed."""

    exercise: str
    passed: bool
    message: str

    def __bool__(self) -> bool:
        return self.passed

    def __str__(self) -> str:
        mark = "Correct" if self.passed else "Not yet"
        return f"[{self.exercise}] {mark}: {self.message}"

    __repr__ = __str__

    def _repr_html_(self) -> str:
        colour, mark = ("#2a9d8f", "&#10004; Correct") if self.passed else ("#d1495b", "&#10008; Not yet")
        body = html.escape(self.message).replace("\n", "<br>")
        return (
            f'<div class="companion-feedback" style="border-left:4px solid {colour};padding:4px 10px;margin:4px 0">'
            f"<strong style=\"color:{colour}\">{mark}</strong> "
            f"<span style=\"opacity:.7\">({html.escape(self.exercise)})</span><br>{body}</div>"
        )


@dataclass(frozen=True)
class Mistake:
    """A typical wrong answer and the hint to give when an answer behaves like it."""

    answer: Any  # a function for FunctionExercise, a value for ValueExercise, an option for ChoiceExercise
    hint: str


def _to_array(x) -> np.ndarray | None:
    if isinstance(x, torch.Tensor):
        return x.detach().cpu().to(torch.float64).numpy()
    if isinstance(x, (bool, np.bool_)):
        return None
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError):
        return None
    return arr


def _describe(x) -> str:
    if isinstance(x, torch.Tensor):
        return f"a tensor of shape {tuple(x.shape)}"
    if isinstance(x, np.ndarray):
        return f"an array of shape {x.shape}"
    return f"{type(x).__name__} {x!r}"[:120]


def compare(got, expected, *, rtol: float, atol: float, what: str = "the result", reveal: bool = True) -> str | None:
    """None when ``got`` matches ``expected``; otherwise a sentence saying how it differs.

    With ``reveal=False`` (value exercises, where the expected value *is* the answer) the
    sentence says which entries are off, but neither the expected value nor the direction in
    which an answer is off: "too large" / "too small" would let a reader find the answer by
    bisection instead of deriving it.
    """
    if isinstance(expected, tuple):
        if not isinstance(got, (tuple, list)) or len(got) != len(expected):
            return f"{what} should be a tuple of {len(expected)} items, got {_describe(got)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            problem = compare(g, e, rtol=rtol, atol=atol, what=f"{what}[{i}]", reveal=reveal)
            if problem:
                return problem
        return None
    if got is None:
        if not reveal:
            return f"{what} is None: replace it with your answer"
        return f"{what} is None: did the function forget to `return`?"
    g, e = _to_array(got), _to_array(expected)
    if g is None:
        kind = _describe(expected) if reveal else ("a number" if np.ndim(e) == 0 else f"an array of shape {e.shape}")
        return f"{what} should be {kind}, got {_describe(got)}"
    if g.shape != e.shape:
        return f"{what} has the wrong shape: expected {e.shape}, got {g.shape}"
    bad_nan = np.isnan(g) & ~np.isnan(e)
    if bad_nan.any():
        where = tuple(int(i) for i in np.argwhere(bad_nan)[0])
        return f"{what} contains NaN (first at index {where}) where the reference has a number"
    close = np.isclose(g, e, rtol=rtol, atol=atol, equal_nan=True)
    if close.all():
        return None
    wrong = np.argwhere(~close)
    lines = [f"{what} differs from the reference at {len(wrong)} of {e.size} entries"]
    for index in wrong[:3]:
        index = tuple(int(i) for i in index)
        if reveal:
            lines.append(f"  at index {index}: expected {e[index]:.6g}, got {g[index]:.6g}")
        else:
            lines.append(f"  at index {index}: {g[index]:.6g} is not right")
    if e.ndim == 0 and not reveal:
        return f"{what} {g.item():.6g} is not right"
    return "\n".join(lines)


def _shapes(args: tuple) -> str:
    parts = []
    for a in args:
        if isinstance(a, torch.Tensor):
            parts.append(f"tensor{tuple(a.shape)}")
        elif isinstance(a, np.ndarray):
            parts.append(f"array{a.shape}")
        else:
            parts.append(repr(a)[:40])
    return ", ".join(parts)


# What an exercise may forbid ("without calling torch.softmax"), as (owner, attribute) pairs that
# are replaced, while the reader's function runs, by a stub that raises ForbiddenCall.
FORBIDDEN = {
    "softmax": [(torch, "softmax"), (torch.nn.functional, "softmax"), (torch.Tensor, "softmax"),
                (torch, "log_softmax"), (torch.nn.functional, "log_softmax"),
                (torch.Tensor, "log_softmax"), (torch.special, "softmax")],
    "autograd": [(torch.autograd, "grad"), (torch.Tensor, "backward"),
                 (torch.autograd.functional, "jacobian"), (torch.func, "jacrev"),
                 (torch.func, "jacfwd"), (torch.func, "grad"), (torch.func, "vjp")],
}


class ForbiddenCall(RuntimeError):
    """Raised when an answer calls what its exercise asks it not to use."""


@contextlib.contextmanager
def _forbidding(groups: Sequence[str]):
    saved = []

    def stub(name):
        def refuse(*args, **kwargs):
            raise ForbiddenCall(f"this exercise asks you not to use {name}")
        return refuse

    try:
        for group in groups:
            for owner, attr in FORBIDDEN[group]:
                saved.append((owner, attr, owner.__dict__[attr] if attr in owner.__dict__ else getattr(owner, attr)))
                setattr(owner, attr, stub(f"{getattr(owner, '__name__', owner)}.{attr}"))
        yield
    finally:
        for owner, attr, original in reversed(saved):
            setattr(owner, attr, original)


def _clone(args: tuple) -> tuple:
    return tuple(a.clone() if isinstance(a, torch.Tensor) else (a.copy() if isinstance(a, np.ndarray) else a) for a in args)


@dataclass(frozen=True)
class FunctionExercise:
    """The reader writes a function; ``cases()`` gives argument tuples to call it with."""

    id: str
    title: str
    reference: Callable
    cases: Callable[[], Sequence[tuple]]
    rtol: float = 1e-5
    atol: float = 1e-7
    mistakes: tuple[Mistake, ...] = field(default_factory=tuple)
    forbid: tuple[str, ...] = ()  # groups of FORBIDDEN the answer may not call: "softmax", "autograd"
    solution: str = ""  # the solution's code; defines the function named by solution_answer
    solution_answer: str = "answer"
    solution_text: str = ""  # the derivation, in MyST markdown, shown above the code

    def __post_init__(self):
        unknown = set(self.forbid) - set(FORBIDDEN)
        if unknown:
            raise ValueError(f"{self.id}: forbid names unknown groups {sorted(unknown)}; known: {sorted(FORBIDDEN)}")

    def _first_problem(self, answer) -> str | None:
        if not callable(answer):
            return f"expected a function, got {_describe(answer)}"
        for n, args in enumerate(self.cases(), start=1):
            expected = self.reference(*_clone(args))
            try:
                with _forbidding(self.forbid):
                    got = answer(*_clone(args))
            except NotImplementedError:
                return "the function is not written yet (it raises NotImplementedError)."
            except ForbiddenCall as error:
                return f"{error}: write it out yourself."
            except Exception as error:  # the reader's code may raise anything
                return (f"on hidden case {n} (arguments {_shapes(args)}) the function raised "
                        f"{type(error).__name__}: {error}")
            problem = compare(got, expected, rtol=self.rtol, atol=self.atol, what="the output")
            if problem:
                return f"on hidden case {n} (arguments {_shapes(args)}): {problem}"
        return None

    def check(self, answer) -> Feedback:
        problem = self._first_problem(answer)
        if problem is None:
            count = len(self.cases())
            return Feedback(self.id, True, f"{self.title}: your function matches the reference on all {count} hidden cases.")
        for mistake in self.mistakes:
            if callable(answer) and _same_behaviour(answer, mistake.answer, self):
                problem += f"\nHint: {mistake.hint}"
                break
        return Feedback(self.id, False, problem)


def _same_behaviour(answer, mistake, exercise: FunctionExercise) -> bool:
    try:
        for args in exercise.cases():
            if compare(answer(*_clone(args)), mistake(*_clone(args)), rtol=exercise.rtol, atol=exercise.atol):
                return False
    except Exception:
        return False
    return True


@dataclass(frozen=True)
class ValueExercise:
    """The reader computes a value; ``expected()`` computes the reference value."""

    id: str
    title: str
    expected: Callable[[], Any]
    rtol: float = 1e-4
    atol: float = 1e-6
    mistakes: tuple[Mistake, ...] = field(default_factory=tuple)
    solution: str = ""
    solution_answer: str = "answer"
    solution_text: str = ""

    def check(self, answer) -> Feedback:
        expected = self.expected()
        problem = compare(answer, expected, rtol=self.rtol, atol=self.atol, what="your value", reveal=False)
        if problem is None:
            return Feedback(self.id, True, f"{self.title}: that is the right value.")
        for mistake in self.mistakes:
            if compare(answer, mistake.answer, rtol=self.rtol, atol=self.atol) is None:
                problem += f"\nHint: {mistake.hint}"
                break
        return Feedback(self.id, False, problem)


@dataclass(frozen=True)
class ChoiceExercise:
    """The reader picks one of ``options`` (keys such as "a", "b", ...)."""

    id: str
    title: str
    options: dict[str, str]
    answer: str
    explanation: str
    mistakes: tuple[Mistake, ...] = field(default_factory=tuple)
    solution: str = ""
    solution_answer: str = "answer"
    solution_text: str = ""

    def check(self, answer) -> Feedback:
        key = str(answer).strip().lower() if answer is not None else ""
        if key not in self.options:
            return Feedback(self.id, False, f"choose one of {', '.join(sorted(self.options))}; got {answer!r}")
        if key == self.answer:
            return Feedback(self.id, True, f"{self.title}: ({key}) is right. {self.explanation}")
        message = f"({key}) is not it."
        for mistake in self.mistakes:
            if mistake.answer == key:
                message += f"\nHint: {mistake.hint}"
        return Feedback(self.id, False, message)


Exercise = FunctionExercise | ValueExercise | ChoiceExercise

REGISTRY: dict[str, Exercise] = {}


def register(exercise: Exercise) -> Exercise:
    module = exercise.id.split("/", 1)[0]
    if "/" not in exercise.id or not module.isidentifier():
        raise ValueError(
            f"exercise ids are '<module>/<slug>', where <module> is the exercise module's name, "
            f"got {exercise.id!r}"
        )
    if exercise.id in REGISTRY:
        raise ValueError(f"exercise {exercise.id!r} is registered twice")
    REGISTRY[exercise.id] = exercise
    return exercise


def _load(module: str) -> str | None:
    """Import ``companion.exercises.<module>`` (which registers its exercises); on failure,
    return the reason instead of raising, so that one broken module breaks no other chapter."""
    import importlib

    try:
        importlib.import_module(f"{__package__}.{module}")
    except ModuleNotFoundError as error:
        if error.name == f"{__package__}.{module}":
            return f"there is no exercise module {module!r}"
        return f"the exercise module {module!r} could not be loaded ({type(error).__name__}: {error})"
    except Exception as error:
        return f"the exercise module {module!r} could not be loaded ({type(error).__name__}: {error})"
    return None


def check(exercise_id: str, answer) -> Feedback:
    """Check ``answer`` against exercise ``exercise_id`` (``"<module>/<slug>"``).

    Loads only the module the id names, on first use. Returns a :class:`Feedback`.
    """
    if not isinstance(exercise_id, str) or "/" not in exercise_id:
        return Feedback(str(exercise_id), False,
                        f"exercise ids look like 'module/slug', got {exercise_id!r}")
    if exercise_id not in REGISTRY:
        module = exercise_id.split("/", 1)[0]
        problem = _load(module)
        if problem:
            return Feedback(exercise_id, False, f"{problem}; please report this")
    if exercise_id not in REGISTRY:
        known = ", ".join(sorted(k for k in REGISTRY if k.startswith(exercise_id.split("/")[0] + "/")))
        return Feedback(exercise_id, False, f"there is no exercise {exercise_id!r}; known: {known}")
    try:
        return REGISTRY[exercise_id].check(answer)
    except Exception as error:  # a bug in the checker must not show the reader a traceback
        return Feedback(exercise_id, False, f"the checker could not run ({type(error).__name__}: {error}); please report this")


def load_all() -> dict[str, Exercise]:
    """Import every exercise module of the package (for the tests); returns the registry.
    Unlike :func:`check`, a module that fails to import raises here."""
    import importlib
    import pkgutil
    from pathlib import Path

    for info in pkgutil.iter_modules([str(Path(__file__).parent)]):
        if info.name not in ("checker", "__main__"):
            importlib.import_module(f"{__package__}.{info.name}")
    return REGISTRY


@dataclass(frozen=True)
class Solution:
    """A worked solution, shown only when the reader asks for it (see :func:`solution`)."""

    exercise: str
    text: str
    code: str

    def _repr_markdown_(self) -> str:
        parts = [f"**Solution** ({self.exercise})"]
        if self.text:
            parts.append(self.text.strip())
        if self.code:
            parts.append("```python\n" + self.code.strip() + "\n```")
        return "\n\n".join(parts)

    def __repr__(self) -> str:
        return f"Solution of {self.exercise}:\n{self.text.strip()}\n\n{self.code.strip()}".strip()


def solution(exercise_id: str, namespace: dict | None = None) -> Solution:
    """Run, check and show the worked solution of ``exercise_id``.

    The solution lives in the exercise's module, not in the notebook, so that it stays hidden in
    Jupyter, Colab and Binder until the reader runs ``solution("...")`` on purpose (the HTML book
    folds it into a dropdown). Its code is executed in a fresh namespace (with ``math``,
    ``numpy as np``, ``torch`` and ``torch.nn.functional as F``) and its answer, the object named
    by the exercise's ``solution_answer``, must pass the checker: a wrong solution raises
    ``AssertionError``, so it fails the book's build. The names the code defines are copied into
    ``namespace`` when one is given (pass ``globals()`` to use them in later cells).
    """
    exercise = REGISTRY.get(exercise_id)
    if exercise is None:
        problem = _load(exercise_id.split("/", 1)[0]) if isinstance(exercise_id, str) and "/" in exercise_id else None
        exercise = REGISTRY.get(exercise_id)
        if exercise is None:
            raise ValueError(problem or f"there is no exercise {exercise_id!r}")
    if not exercise.solution and not exercise.solution_text:
        raise ValueError(f"exercise {exercise_id!r} has no worked solution")
    if exercise.solution:
        import math

        scope = {"math": math, "np": np, "torch": torch, "F": torch.nn.functional}
        exec(compile(exercise.solution, f"<solution of {exercise_id}>", "exec"), scope)
        if exercise.solution_answer not in scope:
            raise AssertionError(f"the solution of {exercise_id} defines no {exercise.solution_answer!r}")
        verdict = exercise.check(scope[exercise.solution_answer])
        if not verdict:
            raise AssertionError(f"the worked solution of {exercise_id} fails its own checker: {verdict.message}")
        if namespace is not None:
            namespace.update({k: v for k, v in scope.items() if not k.startswith("__")})
    return Solution(exercise_id, exercise.solution_text, exercise.solution)
