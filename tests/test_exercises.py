"""The exercise checker, and every exercise the chapters register.

For each registered exercise: its reference answer passes, each typical mistake it lists is
rejected (with that mistake's hint), and answers that crash, return nothing or are not written
yet get a clear message instead of a traceback.
"""

import numpy as np
import pytest
import torch

from companion.exercises import ChoiceExercise, FunctionExercise, Mistake, ValueExercise, check, load_all

REGISTRY = load_all()
EXERCISES = sorted(REGISTRY)


def _square_cases():
    g = torch.Generator().manual_seed(0)
    return [(torch.randn(3, 4, generator=g),), (torch.randn(2, 5, generator=g),)]


SQUARE = FunctionExercise(
    id="test-square", title="Square", reference=lambda x: x**2, cases=_square_cases,
    mistakes=(Mistake(lambda x: 2 * x, "square, don't double"),),
)


def test_checker_messages():
    assert SQUARE.check(lambda x: x * x)
    fb = SQUARE.check(lambda x: x.T**2)
    assert not fb and "wrong shape: expected (3, 4), got (4, 3)" in fb.message
    fb = SQUARE.check(lambda x: torch.where(x > 1, 0 * x, x**2))
    assert not fb and "differs from the reference at" in fb.message and "at index (" in fb.message
    fb = SQUARE.check(lambda x: None)
    assert "forget to `return`" in fb.message
    fb = SQUARE.check(lambda x: x / 0 * 0)
    assert "NaN" in fb.message
    fb = SQUARE.check(lambda x: 1 / 0)
    assert "raised ZeroDivisionError" in fb.message
    fb = SQUARE.check(lambda x: 2 * x)
    assert "Hint: square, don't double" in fb.message
    fb = SQUARE.check(3)
    assert "expected a function" in fb.message
    assert "not written yet" in SQUARE.check(lambda x: (_ for _ in ()).throw(NotImplementedError)).message
    assert SQUARE.check(lambda x: (x**2).numpy())  # numpy answers are accepted
    assert "&#10004;" in SQUARE.check(lambda x: x**2)._repr_html_()


def test_value_and_choice_checkers():
    value = ValueExercise(id="t-v", title="V", expected=lambda: np.array([0.25, 0.75]),
                          mistakes=(Mistake(np.array([0.75, 0.25]), "order"),))
    assert value.check([0.25, 0.75])
    assert "Hint: order" in value.check([0.75, 0.25]).message
    assert "wrong shape" in value.check(0.5).message
    assert "0.25" not in value.check([0.3, 0.75]).message  # never reveals the answer
    message = value.check([0.3, 0.75]).message
    assert "at index (0,)" in message and "too large" not in message and "too small" not in message
    scalar = ValueExercise(id="t-s", title="S", expected=lambda: 64.0)
    for wrong in (8.0, "sixty-four", None):
        message = scalar.check(wrong).message
        assert "64" not in message, message
    assert "not right" in scalar.check(8.0).message and "small" not in scalar.check(8.0).message
    assert "replace it with your answer" in scalar.check(None).message
    choice = ChoiceExercise(id="t-c", title="C", options={"a": "x", "b": "y"}, answer="b", explanation="because",
                            mistakes=(Mistake("a", "think again"),))
    assert choice.check(" B ")
    assert "think again" in choice.check("a").message
    assert "choose one of a, b" in choice.check("z").message


def test_unknown_exercise():
    fb = check("kernel_regression/no-such-exercise", 1)
    assert not fb and "there is no exercise 'kernel_regression/no-such-exercise'" in fb.message
    assert "kernel_regression/three-points" in fb.message  # lists the module's exercises
    fb = check("no-such-exercise", 1)
    assert not fb and "module/slug" in fb.message


def test_chapters_register_exercises():
    assert len(EXERCISES) >= 6, f"the chapters should register at least three exercises each, found {EXERCISES}"


@pytest.mark.parametrize("exercise_id", EXERCISES)
def test_reference_passes_and_mistakes_fail(exercise_id):
    ex = REGISTRY[exercise_id]
    if isinstance(ex, FunctionExercise):
        reference = ex.reference
    elif isinstance(ex, ValueExercise):
        reference = ex.expected()
    else:
        reference = ex.answer
    fb = check(exercise_id, reference)
    assert fb, fb.message
    assert ex.mistakes, f"{exercise_id} lists no typical mistakes"
    for mistake in ex.mistakes:
        fb = check(exercise_id, mistake.answer)
        assert not fb, f"{exercise_id}: the mistake {mistake.hint!r} passed the checker"
        assert mistake.hint in fb.message, fb.message


@pytest.mark.parametrize("exercise_id", [e for e in EXERCISES if isinstance(REGISTRY[e], FunctionExercise)])
def test_function_exercises_survive_broken_answers(exercise_id):
    def crashes(*args):
        raise RuntimeError("boom")

    fb = check(exercise_id, crashes)
    assert not fb and "RuntimeError: boom" in fb.message
    assert not check(exercise_id, lambda *args: None)
    assert not check(exercise_id, lambda *args: "nonsense")


def test_forbidden_calls_are_refused_and_restored():
    softmax_exercise = FunctionExercise(
        id="t-f", title="Softmax by hand", reference=lambda x: torch.softmax(x, -1),
        cases=_square_cases, forbid=("softmax", "autograd"),
    )
    by_hand = lambda x: torch.exp(x - x.amax(-1, keepdim=True)) / torch.exp(x - x.amax(-1, keepdim=True)).sum(-1, keepdim=True)
    assert softmax_exercise.check(by_hand)
    for cheat in (lambda x: torch.softmax(x, -1), lambda x: x.softmax(-1),
                  lambda x: torch.nn.functional.softmax(x, dim=-1), lambda x: torch.log_softmax(x, -1).exp()):
        feedback = softmax_exercise.check(cheat)
        assert not feedback and "asks you not to use" in feedback.message, feedback.message
    x = torch.randn(3, requires_grad=True)
    torch.softmax(x, -1).sum().backward()  # restored after the check
    assert x.grad is not None
    with pytest.raises(ValueError, match="unknown groups"):
        FunctionExercise(id="t-g", title="G", reference=abs, cases=_square_cases, forbid=("numpy",))


def test_worked_solutions_run_pass_and_stay_out_of_the_notebook():
    from companion.exercises import solution
    from companion.exercises.checker import REGISTRY as LIVE, register

    good = ValueExercise(id="zz_test/good", title="G", expected=lambda: 64.0,
                         solution="answer = 8.0 ** 2", solution_text="Square $8$.")
    bad = ValueExercise(id="zz_test/bad", title="B", expected=lambda: 64.0, solution="answer = 8.0")
    for exercise in (good, bad):
        register(exercise)
    try:
        namespace = {}
        shown = solution("zz_test/good", namespace)
        assert namespace["answer"] == 64.0
        markdown = shown._repr_markdown_()
        assert "Square $8$." in markdown and "```python\nanswer = 8.0 ** 2\n```" in markdown
        with pytest.raises(AssertionError, match="fails its own checker"):
            solution("zz_test/bad")
    finally:
        LIVE.pop("zz_test/good"), LIVE.pop("zz_test/bad")
    with pytest.raises(ValueError, match="no exercise"):
        solution("kernel_regression/nope")


@pytest.mark.parametrize("exercise_id", [e for e in EXERCISES if REGISTRY[e].solution])
def test_every_worked_solution_passes(exercise_id):
    from companion.exercises import solution

    assert solution(exercise_id)._repr_markdown_()
