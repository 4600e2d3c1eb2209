"""The chapter's exercises on neural Turing machines: each reference passes, each typical mistake
is rejected with its hint, broken answers get a clear message (the same checks that
tests/test_exercises.py runs on every registered exercise, run here on ours explicitly, so that
they run whether or not the package imports every exercise module by itself), and the
references agree with the companion and with autograd."""

import pytest
import torch

import companion.exercises.ntm as ex  # noqa: F401  (registers the exercises)
from companion import ntm
from companion.exercises import REGISTRY, ChoiceExercise, FunctionExercise, ValueExercise, check, solution

IDS = sorted(i for i in REGISTRY if i.startswith("ntm/"))


def test_the_chapter_registers_its_exercises():
    assert IDS == ["ntm/beta-gradient", "ntm/circular-shift", "ntm/erase-add", "ntm/focus-strength", "ntm/sharpen",
                   "ntm/symmetry"]


@pytest.mark.parametrize("exercise_id", IDS)
def test_reference_passes_and_mistakes_fail_with_their_hint(exercise_id):
    exercise = REGISTRY[exercise_id]
    if isinstance(exercise, ValueExercise):
        reference = exercise.expected()
    elif isinstance(exercise, ChoiceExercise):
        reference = exercise.answer
    else:
        reference = exercise.reference
    assert check(exercise_id, reference)
    assert exercise.mistakes
    for mistake in exercise.mistakes:
        fb = check(exercise_id, mistake.answer)
        assert not fb and mistake.hint in fb.message, (mistake.hint, fb.message)


@pytest.mark.parametrize("exercise_id", [i for i in IDS if isinstance(REGISTRY[i], FunctionExercise)])
def test_broken_answers_get_a_message(exercise_id):
    def crashes(*args):
        raise RuntimeError("boom")

    assert "RuntimeError: boom" in check(exercise_id, crashes).message
    assert not check(exercise_id, lambda *args: None)
    assert "not written yet" in check(exercise_id, lambda *a: (_ for _ in ()).throw(NotImplementedError)).message


def test_references_agree_with_the_companion():
    for p, gap, N in ex._strength_cases():  # the worst case reaches p exactly at the minimal beta
        beta = ex._min_key_strength(p, gap, N)
        best = 1.0  # the key is e_1; row i is (cos_i, sin_i), so its cosine with the key is cos_i
        cosines = torch.tensor([best] + [best - gap] * (N - 1), dtype=torch.float64)
        memory = torch.stack([cosines, (1 - cosines**2).clamp_min(0).sqrt()], -1)  # (N, 2)
        key = torch.tensor([1.0, 0.0], dtype=torch.float64)
        w = ntm.content_addressing(memory[None], key[None], torch.tensor([beta], dtype=torch.float64))[0]
        if beta > 0:
            assert w[0].item() == pytest.approx(p, rel=1e-6)
            lower = ntm.content_addressing(memory[None], key[None], torch.tensor([0.99 * beta], dtype=torch.float64))
            assert lower[0, 0] < p
        else:
            assert w[0].item() >= p
        better = memory.clone()
        better[1:, 0] -= 0.05  # a larger gap needs no more strength: the bound is the worst case
        better = better / better.norm(dim=-1, keepdim=True)
        w_better = ntm.content_addressing(better[None], key[None], torch.tensor([beta], dtype=torch.float64))[0]
        assert w_better[0] >= w[0] - 1e-12
    g = torch.Generator().manual_seed(0)
    for s, N in ex._shift_cases():
        w = torch.softmax(torch.randn(3, N, generator=g), -1)  # (3, N), three weightings
        by_matrix = w @ ex._shift_matrix(s, N).T  # (3, N): each row is C w
        torch.testing.assert_close(by_matrix, ntm.shift(w, s.expand(3, -1)))
    for w, gamma in ex._sharpen_cases():
        gamma_t = torch.tensor([gamma], dtype=w.dtype)
        torch.testing.assert_close(ex._sharpen(w, gamma), ntm.sharpen(w[None], gamma_t)[0])
    memory = torch.tensor(ex.WRITE_MEMORY)[None]
    new = ntm.write(memory, torch.tensor([ex.WRITE_WEIGHTS]), torch.tensor([ex.WRITE_ERASE]),
                    torch.tensor([ex.WRITE_ADD]))
    assert check("ntm/erase-add", new[0])


def test_beta_gradient_reference_is_the_autograd_gradient():
    for memory, key, beta in ex._beta_cases():
        b = torch.tensor(beta, dtype=torch.float64, requires_grad=True)
        m, k = memory.double(), key.double()
        jac = torch.autograd.functional.jacobian(lambda b_: torch.softmax(b_ * ex._cosine(m, k), 0) @ m, b)
        torch.testing.assert_close(ex._read_beta_gradient(m, k, beta), jac)


@pytest.mark.parametrize("exercise_id", IDS)
def test_worked_solutions_pass_their_checker(exercise_id):
    assert solution(exercise_id)._repr_markdown_().startswith(f"**Solution** ({exercise_id})")


def test_the_beta_gradient_may_not_use_autograd():
    def with_autograd(memory, key, beta):
        b = torch.tensor(beta, requires_grad=True)
        return torch.autograd.functional.jacobian(lambda b_: ex._content(memory, key, b_) @ memory, b)

    fb = check("ntm/beta-gradient", with_autograd)
    assert not fb and "asks you not to use" in fb.message
