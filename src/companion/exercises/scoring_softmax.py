"""Chapter 2's exercises: a stable softmax, the softmax Jacobian, a masked softmax, and two
questions about scale (the variance of an unscaled score, the zero-temperature limit)."""

from __future__ import annotations

import torch

from .checker import ChoiceExercise, FunctionExercise, Mistake, ValueExercise, register


# --- 1. A numerically stable softmax -------------------------------------------------------

def _stable_softmax(s: torch.Tensor) -> torch.Tensor:
    shifted = s - s.amax(-1, keepdim=True)
    e = torch.exp(shifted)
    return e / e.sum(-1, keepdim=True)


def _naive_softmax(s):
    e = torch.exp(s)
    return e / e.sum(-1, keepdim=True)


def _softmax_over_wrong_axis(s):
    return _stable_softmax(s.transpose(-2, -1)).transpose(-2, -1) if s.dim() > 1 else _stable_softmax(s)


def _shift_by_min(s):
    e = torch.exp(s - s.amin(-1, keepdim=True))
    return e / e.sum(-1, keepdim=True)


def _stable_cases():
    g = torch.Generator().manual_seed(2)
    return [
        (torch.randn(4, 6, generator=g),),
        (torch.tensor([[100.0, 99.0, 98.0], [1000.0, 1000.0, -1000.0]]),),  # float32 exp overflows past ~88.7
        (torch.randn(2, 3, 5, generator=g) * 300,),
        (torch.tensor([-1000.0, -1001.0, -999.0]),),  # everything underflows without the shift
    ]


register(FunctionExercise(
    id="scoring_softmax/stable-softmax",
    title="A numerically stable softmax",
    reference=_stable_softmax,
    cases=_stable_cases,
    rtol=1e-5,
    atol=1e-6,
    mistakes=(
        Mistake(_naive_softmax, "exp(100) is about 2.7e43, more than float32 can hold (its largest value is "
                                "about 3.4e38), so exp overflows to inf and inf/inf is NaN. Subtract each row's "
                                "maximum before exp: softmax(s) = softmax(s - c) for any constant c."),
        Mistake(_shift_by_min, "Shifting by the row *minimum* makes every exponent non-negative, so the largest "
                               "exponent can still overflow. Shift by the maximum: then every exponent is <= 0 "
                               "and the largest term is exactly exp(0) = 1."),
        Mistake(_softmax_over_wrong_axis, "Normalise over the last axis (the keys), not the first: each row "
                                          "should sum to one."),
    ),
))


# --- 2. The softmax Jacobian --------------------------------------------------------------

def _jacobian(s: torch.Tensor) -> torch.Tensor:
    p = torch.softmax(s, -1)
    return torch.diag(p) - torch.outer(p, p)


def _jacobian_diag_only(s):
    return torch.diag(torch.softmax(s, -1))


def _jacobian_outer_only(s):
    p = torch.softmax(s, -1)
    return -torch.outer(p, p)


def _jacobian_diagonal_entries_only(s):
    p = torch.softmax(s, -1)
    return torch.diag(p * (1 - p))


def _jacobian_of_exp(s):
    return torch.diag(torch.exp(s))


def _jacobian_cases():
    g = torch.Generator().manual_seed(3)
    return [(torch.randn(4, generator=g),), (torch.randn(7, generator=g) * 3,), (torch.tensor([2.0, 0.0, -1.0]),),
            (torch.tensor([5.0]),)]


register(FunctionExercise(
    id="scoring_softmax/softmax-jacobian",
    title="The softmax Jacobian",
    reference=_jacobian,
    cases=_jacobian_cases,
    rtol=1e-5,
    atol=1e-7,
    mistakes=(
        Mistake(_jacobian_diag_only, "diag(p) is only the part from the numerator. Every p_i also depends on "
                                     "s_j through the denominator, which adds -p_i p_j to every entry (the "
                                     "quotient rule): J = diag(p) - p p^T."),
        Mistake(_jacobian_outer_only, "-p p^T is only the part from the denominator. On the diagonal, the "
                                      "numerator exp(s_i) also depends on s_i: add diag(p)."),
        Mistake(_jacobian_diagonal_entries_only, "The diagonal entries p_i (1 - p_i) are right, but the "
                                                 "off-diagonal ones are not zero: raising s_j takes probability "
                                                 "from every other entry, d p_i / d s_j = -p_i p_j for i != j."),
        Mistake(_jacobian_of_exp, "That is the Jacobian of exp(s). Differentiate the normalised p_i = exp(s_i) / "
                                  "sum_k exp(s_k) with the quotient rule."),
    ),
))


# --- 3. A masked softmax whose fully masked rows are zeros ----------------------------------

def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    s = scores.masked_fill(~mask, float("-inf"))
    m = s.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, torch.zeros_like(m))
    e = torch.exp(s - m)
    total = e.sum(-1, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))


def _masked_nan_rows(scores, mask):
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), -1)


def _masked_after_softmax(scores, mask):
    return torch.softmax(scores, -1) * mask


def _masked_inverted(scores, mask):
    return _masked_softmax(scores, ~mask)


def _masked_cases():
    g = torch.Generator().manual_seed(4)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    rows = torch.tensor([[True, False, True, False], [False, False, False, False], [True, True, True, True]])
    big = torch.randn(2, 3, 6, generator=g) * 50
    big_mask = torch.rand(2, 3, 6, generator=g) > 0.4
    big_mask[1, 2] = False  # one fully masked row
    return [
        (torch.randn(4, 4, generator=g), causal),
        (torch.randn(3, 4, generator=g), rows),
        (big, big_mask),
    ]


register(FunctionExercise(
    id="scoring_softmax/masked-softmax",
    title="A masked softmax that survives fully masked rows",
    reference=_masked_softmax,
    cases=_masked_cases,
    rtol=1e-5,
    atol=1e-7,
    mistakes=(
        Mistake(_masked_nan_rows, "A row whose mask is all False becomes all -inf; its maximum is -inf, and "
                                  "exp(-inf - (-inf)) = exp(nan) is NaN (torch.softmax gives NaN there). Shift such "
                                  "rows by 0 instead of their maximum and divide by 1 where the sum is 0, so that "
                                  "the row comes out as zeros."),
        Mistake(_masked_after_softmax, "Multiplying the weights by the mask after the softmax zeroes the blocked "
                                       "entries, but the rest no longer sum to one. Block the scores *before* the "
                                       "softmax (set them to -inf)."),
        Mistake(_masked_inverted, "The mask's convention is True = may attend: keep the scores where the mask "
                                  "is True, block them where it is False."),
    ),
))


# --- 4. Two questions about scale ----------------------------------------------------------

register(ValueExercise(
    id="scoring_softmax/score-variance",
    title="Variance of an unscaled dot product",
    expected=lambda: 64.0,
    rtol=1e-6,
    mistakes=(
        Mistake(8.0, "8 = sqrt(64) is the standard deviation of q.k; the question asks for the variance."),
        Mistake(1.0, "1 is the variance of the *scaled* score q.k / sqrt(d_k). Without the scaling, each of "
                     "the d_k products q_i k_i contributes variance 1, and the variances of independent terms add."),
        Mistake(4096.0, "The variances of the d_k independent terms add up (d_k times 1); d_k squared would be "
                        "the variance if every term were the same random variable."),
        Mistake(0.0, "The *mean* of q.k is zero; its variance is not."),
    ),
))

register(ChoiceExercise(
    id="scoring_softmax/temperature-limit",
    title="The zero-temperature limit",
    options={
        "a": "the uniform distribution (1/n, ..., 1/n)",
        "b": "the one-hot vector of the largest score (unique maximum assumed)",
        "c": "the scores themselves, normalised by their sum",
        "d": "it has no limit: the weights oscillate",
    },
    answer="b",
    explanation=("softmax(s / T)_j = 1 / sum_k exp((s_k - s_j) / T). For the largest score every exponent is "
                 "<= 0 and all but the j = k term go to 0, so the weight goes to 1; for any other j one exponent "
                 "goes to +infinity and the weight goes to 0."),
    mistakes=(
        Mistake("a", "Uniform is the limit T -> infinity, where s / T -> 0 for every entry."),
        Mistake("c", "Dividing by a sum is not what the exponential does: as T shrinks the differences "
                     "(s_k - s_j) / T blow up."),
        Mistake("d", "Each weight is monotone in T and bounded between 0 and 1; write it as "
                     "1 / sum_k exp((s_k - s_j) / T) and follow each exponent."),
    ),
))
