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
    sentence says where and in which direction the answer is off, never the expected value.
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
            direction = "too large" if g[index] > e[index] else "too small"
            lines.append(f"  at index {index}: {g[index]:.6g} is {direction}")
    if e.ndim == 0 and not reveal:
        return f"{what} {g.item():.6g} is not right: it is {'too large' if g > e else 'too small'}"
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

    def _first_problem(self, answer) -> str | None:
        if not callable(answer):
            return f"expected a function, got {_describe(answer)}"
        for n, args in enumerate(self.cases(), start=1):
            expected = self.reference(*_clone(args))
            try:
                got = answer(*_clone(args))
            except NotImplementedError:
                return "the function is not written yet (it raises NotImplementedError)."
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
    if exercise.id in REGISTRY:
        raise ValueError(f"exercise {exercise.id!r} is registered twice")
    REGISTRY[exercise.id] = exercise
    return exercise


def check(exercise_id: str, answer) -> Feedback:
    """Check ``answer`` against exercise ``exercise_id``; returns a :class:`Feedback`."""
    if exercise_id not in REGISTRY:
        known = ", ".join(sorted(REGISTRY))
        return Feedback(str(exercise_id), False, f"there is no exercise {exercise_id!r}; known: {known}")
    try:
        return REGISTRY[exercise_id].check(answer)
    except Exception as error:  # a bug in the checker must not show the reader a traceback
        return Feedback(exercise_id, False, f"the checker could not run ({type(error).__name__}: {error}); please report this")


