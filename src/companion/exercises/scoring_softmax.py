"""Exercises of the chapter on scoring functions and the softmax.

- ``scoring_softmax/masked-softmax``: a masked softmax, written out without ``torch.softmax``,
  that survives huge scores and fully masked rows (function; the checker forbids the softmax).
- ``scoring_softmax/masked-softmax-jacobian``: the Jacobian of the masked softmax at a
  temperature (derivation; function, autograd forbidden).
- ``scoring_softmax/entropy-gradient``: the gradient of the entropy of ``softmax(s / tau)``
  with respect to the scores (derivation; function, autograd forbidden).
- ``scoring_softmax/score-moments``: mean and variance of ``q . k`` for entries with any
  means and variances (derivation; a formula evaluated at hidden moments).
- ``scoring_softmax/recall-ablation``: the unscaled recall model started from small
  projections (an ablation the reader trains; the conclusion is checked).

Each exercise carries its worked solution (``solution``, ``solution_text``), shown in the book
only through ``companion.exercises.solution(...)`` inside a folded block.
"""

from __future__ import annotations

import torch

from ..softmax import masked_softmax
from .checker import ChoiceExercise, FunctionExercise, Mistake, register


# --- 1. A masked softmax written out -------------------------------------------------------

def _masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return masked_softmax(scores, mask)  # (..., m)


def _exp_normalise(s: torch.Tensor) -> torch.Tensor:
    e = torch.exp(s)
    return e / e.sum(-1, keepdim=True)


def _masked_no_shift(scores, mask):
    e = torch.exp(scores) * mask
    total = e.sum(-1, keepdim=True)
    return e / torch.where(total > 0, total, torch.ones_like(total))


def _masked_nan_rows(scores, mask):
    s = scores.masked_fill(~mask, float("-inf"))
    return _exp_normalise(s - s.amax(-1, keepdim=True))


def _masked_after_softmax(scores, mask):
    return _exp_normalise(scores - scores.amax(-1, keepdim=True)) * mask


def _masked_inverted(scores, mask):
    return _masked_softmax(scores, ~mask)


def _masked_cases():
    g = torch.Generator().manual_seed(4)
    causal = torch.ones(4, 4, dtype=torch.bool).tril()
    rows = torch.tensor([[True, False, True, False], [False, False, False, False],
                         [True, True, True, True]])
    big = torch.randn(2, 3, 6, generator=g) * 50  # exp overflows float32 past ~88.7
    big_mask = torch.rand(2, 3, 6, generator=g) > 0.4
    big_mask[0, 0] = True
    big_mask[1, 2] = False  # one fully masked row
    return [
        (torch.randn(4, 4, generator=g), causal),
        (torch.randn(3, 4, generator=g), rows),
        (torch.tensor([[1000.0, 999.0, -1000.0]]), torch.tensor([[True, True, True]])),
        (big, big_mask),
    ]


_MASKED_SOLUTION = '''\
def my_masked_softmax(scores, mask):
    s = scores.masked_fill(~mask, float("-inf"))  # exp(-inf) = 0
    row_max = s.amax(-1, keepdim=True)  # (..., 1); -inf if all masked
    row_max = torch.where(torch.isfinite(row_max), row_max,
                          torch.zeros_like(row_max))
    e = torch.exp(s - row_max)  # every exponent <= 0: no overflow
    total = e.sum(-1, keepdim=True)  # 0 only on a fully masked row
    return e / torch.where(total > 0, total, torch.ones_like(total))
'''

register(FunctionExercise(
    id="scoring_softmax/masked-softmax",
    title="A masked softmax that survives huge scores and fully masked rows",
    reference=_masked_softmax,
    cases=_masked_cases,
    rtol=1e-5,
    atol=1e-7,
    forbid=("softmax",),
    mistakes=(
        Mistake(_masked_no_shift, "exp(1000) overflows to inf in float32 (its largest value is about "
                                  "3.4e38, so exp overflows past s = 88.7) and inf/inf is NaN. Subtract "
                                  "each row's largest allowed score first: the softmax does not change "
                                  "when the same number is added to every score of a row."),
        Mistake(_masked_nan_rows, "A row whose mask is all False becomes all -inf; its maximum is -inf, "
                                  "and -inf - (-inf) is NaN. Shift such rows by 0 instead of their "
                                  "maximum and divide by 1 where the sum is 0, so that the row comes "
                                  "out as zeros."),
        Mistake(_masked_after_softmax, "Multiplying the weights by the mask after the softmax zeroes the "
                                       "blocked entries, but the rest no longer sum to one. Block the "
                                       "scores *before* the softmax (set them to -inf)."),
        Mistake(_masked_inverted, "The mask's convention is True = may attend: keep the scores where the "
                                  "mask is True, block them where it is False."),
    ),
    solution=_MASKED_SOLUTION,
    solution_answer="my_masked_softmax",
    solution_text="""\
Set the blocked scores to $-\\infty$, so that $\\exp(-\\infty) = 0$ removes them from numerator and
denominator alike ({eq}`eq-masked-softmax`), and subtract each row's largest *allowed* score
({eq}`eq-softmax-stable`), so that no exponent is positive. A fully masked row needs two guards:
its maximum is $-\\infty$, which we replace by $0$ (then every exponential is exactly $0$, not
NaN), and its sum is $0$, which we replace by $1$ (then the row is $0/1 = 0$).
""",
))


# --- 2. The Jacobian of the masked softmax at a temperature --------------------------------

def _p(s, mask, tau):
    return masked_softmax(s / tau, mask)  # (m,)


def _jacobian_formula(p, tau):
    return (torch.diag(p) - torch.outer(p, p)) / tau  # (m, m)


def _masked_jacobian(s: torch.Tensor, mask: torch.Tensor, tau: float) -> torch.Tensor:
    """d p_i / d s_j for p = masked_softmax(s / tau, mask); tests/test_scoring_softmax_exercises.py
    checks it against autograd (which the reader may not use)."""
    return _jacobian_formula(_p(s, mask, tau), tau)  # (m, m)


def _jac_no_tau(s, mask, tau):
    return _jacobian_formula(_p(s, mask, tau), 1.0)


def _jac_times_tau(s, mask, tau):
    return _jacobian_formula(_p(s, mask, tau), 1.0 / tau)


def _jac_ignores_mask(s, mask, tau):
    return _jacobian_formula(_p(s, None, tau), tau)


def _jac_nan_when_all_masked(s, mask, tau):
    e = torch.exp((s / tau).masked_fill(~mask, float("-inf")))
    return _jacobian_formula(e / e.sum(), tau)


def _jac_cases():
    g = torch.Generator().manual_seed(5)
    cases = []
    for m, tau, blocked in ((4, 1.0, [1]), (6, 0.5, [0, 5]), (5, 3.0, [])):
        mask = torch.ones(m, dtype=torch.bool)
        mask[blocked] = False
        cases.append((torch.randn(m, generator=g, dtype=torch.float64), mask, tau))
    cases.append((torch.randn(3, generator=g, dtype=torch.float64),
                  torch.zeros(3, dtype=torch.bool), 2.0))  # nothing may be attended to
    cases.append((torch.tensor([2.0], dtype=torch.float64), torch.tensor([True]), 0.7))
    return cases


register(FunctionExercise(
    id="scoring_softmax/masked-softmax-jacobian",
    title="The Jacobian of the masked softmax at a temperature",
    reference=_masked_jacobian,
    cases=_jac_cases,
    rtol=1e-6,
    atol=1e-9,
    forbid=("autograd",),
    mistakes=(
        Mistake(_jac_no_tau, "The scores enter as s / tau, so the chain rule contributes a factor "
                             "d(s_j / tau) / d s_j = 1 / tau."),
        Mistake(_jac_times_tau, "The chain rule's factor is 1 / tau (the derivative of s / tau), "
                                "not tau."),
        Mistake(_jac_ignores_mask, "Compute p with the mask: blocked keys have weight exactly 0 and the "
                                   "others are renormalised over the allowed keys only."),
        Mistake(_jac_nan_when_all_masked, "When the mask is all False the weights are all zero (the "
                                          "book's convention), so nothing depends on the scores: the "
                                          "Jacobian is the zero matrix, not NaN."),
    ),
    solution='''\
def masked_softmax_jacobian(s, mask, tau):
    u = (s / tau).masked_fill(~mask, float("-inf"))  # blocked: -inf
    top = u.max() if mask.any() else torch.zeros((), dtype=s.dtype)
    e = torch.exp(u - top)  # (m,); all zeros when nothing is allowed
    total = e.sum()
    p = e / total if total > 0 else e  # the masked weights
    return (torch.diag(p) - torch.outer(p, p)) / tau  # (m, m)
''',
    solution_answer="masked_softmax_jacobian",
    solution_text="""\
Write $u_j = s_j/\\tau$ and $A$ for the set of allowed keys. For $i \\in A$,
$p_i = e^{u_i} / Z$ with $Z = \\sum_{k \\in A} e^{u_k}$; for $i \\notin A$, $p_i = 0$ whatever the
scores. The quotient rule gives, for $i, j \\in A$,
$\\partial p_i / \\partial u_j = p_i(\\delta_{ij} - p_j)$, as in {eq}`eq-softmax-jacobian`. A blocked
score $s_j$ appears nowhere (it was replaced by $-\\infty$), so column $j$ is zero, and a blocked
$p_i$ is the constant $0$, so row $i$ is zero. Both are what $\\operatorname{diag}(\\mathbf{p}) -
\\mathbf{p}\\mathbf{p}^\\top$ gives anyway, because $p_j = 0$ there: the formula needs no special
case, only the masked $\\mathbf{p}$. Finally $\\partial u_j / \\partial s_j = 1/\\tau$:

$$
\\frac{\\partial p_i}{\\partial s_j} = \\frac{1}{\\tau}\\, p_i(\\delta_{ij} - p_j),
\\qquad \\mathbf{J} = \\frac{1}{\\tau}\\big(\\operatorname{diag}(\\mathbf{p}) - \\mathbf{p}\\mathbf{p}^\\top\\big).
$$

A fully masked row has $\\mathbf{p} = \\mathbf{0}$ and therefore $\\mathbf{J} = \\mathbf{0}$. A cold
softmax (small $\\tau$) has a large factor $1/\\tau$ but, once it saturates, a $\\mathbf{p}$ so close to
one-hot that the bracket vanishes faster: that is the saturation of the chapter.
""",
))


# --- 3. The gradient of the temperature-scaled entropy ---------------------------------------

def _entropy_of_scores(s, tau):
    log_p = torch.log_softmax(s / tau, -1)  # (..., m)
    return -(log_p.exp() * log_p).sum(-1)  # (...,)


def _grad_parts(s, tau):
    log_p = torch.log_softmax(s / tau, -1)  # (..., m)
    p = log_p.exp()
    H = -(p * log_p).sum(-1, keepdim=True)  # (..., 1)
    return p, log_p, H


def _entropy_gradient(s: torch.Tensor, tau: float) -> torch.Tensor:
    """dH/ds for H the entropy of softmax(s / tau); tests/test_scoring_softmax_exercises.py checks
    it against autograd (which the reader may not use)."""
    p, log_p, H = _grad_parts(s, tau)
    return -p * (log_p + H) / tau  # (..., m)


def _grad_no_tau(s, tau):
    p, log_p, H = _grad_parts(s, tau)
    return -p * (log_p + H)


def _grad_sign(s, tau):
    p, log_p, H = _grad_parts(s, tau)
    return p * (log_p + H) / tau


def _grad_p_fixed_normaliser(s, tau):
    p, log_p, H = _grad_parts(s, tau)
    return -p * (log_p + 1) / tau


def _entropy_cases():
    g = torch.Generator().manual_seed(6)
    return [
        (torch.randn(5, generator=g, dtype=torch.float64), 1.0),
        (torch.randn(3, 7, generator=g, dtype=torch.float64) * 2, 0.5),
        (torch.randn(2, 4, generator=g, dtype=torch.float64), 4.0),
        (torch.tensor([30.0, 0.0, -30.0], dtype=torch.float64), 2.0),  # nearly one-hot
    ]


register(FunctionExercise(
    id="scoring_softmax/entropy-gradient",
    title="The gradient of the entropy with respect to the scores",
    reference=_entropy_gradient,
    cases=_entropy_cases,
    rtol=1e-6,
    atol=1e-10,
    forbid=("autograd",),
    mistakes=(
        Mistake(_grad_no_tau, "The entropy depends on s through u = s / tau: the chain rule adds a "
                              "factor 1 / tau."),
        Mistake(_grad_sign, "Check the sign on an example: raising the largest score makes the weights "
                            "more peaked, so the entropy must fall."),
        Mistake(_grad_p_fixed_normaliser, "-p_j (log p_j + 1) would be right if each p_j depended only "
                                          "on its own score. Through the normaliser every p_i depends on "
                                          "s_j: use dp_i/du_j = p_i (delta_ij - p_j); the sum over i "
                                          "turns the +1 into +H."),
    ),
    solution='''\
def entropy_gradient(s, tau):
    log_p = torch.log_softmax(s / tau, -1)  # (..., m), stable
    p = log_p.exp()
    H = -(p * log_p).sum(-1, keepdim=True)  # (..., 1)
    return -p * (log_p + H) / tau  # (..., m)


# the link with eq-entropy-temperature: dH/dtau = -(1/tau) s . dH/ds
s_ex, tau_ex = torch.tensor([2.0, 1.0, 0.5, 0.0, -1.0]).double(), 0.7
p_ex = torch.softmax(s_ex / tau_ex, -1)
var_p = (p_ex * s_ex**2).sum() - (p_ex * s_ex).sum() ** 2
dH_dtau = -(s_ex * entropy_gradient(s_ex, tau_ex)).sum() / tau_ex
torch.testing.assert_close(dH_dtau, var_p / tau_ex**3)
''',
    solution_answer="entropy_gradient",
    solution_text="""\
Let $u_j = s_j/\\tau$, so $\\log p_j = u_j - \\log Z$ and $H = -\\sum_i p_i \\log p_i$. Differentiating
through both factors of each term, with $\\partial p_i/\\partial u_j = p_i(\\delta_{ij} - p_j)$
({eq}`eq-softmax-jacobian`) and $\\partial \\log p_i / \\partial u_j = \\delta_{ij} - p_j$:

$$
\\frac{\\partial H}{\\partial u_j}
= -\\sum_i p_i(\\delta_{ij} - p_j)(\\log p_i + 1)
= -p_j(\\log p_j + 1) + p_j \\sum_i p_i(\\log p_i + 1)
= -p_j\\big(\\log p_j + H\\big),
$$

because $\\sum_i p_i \\log p_i = -H$ and $\\sum_i p_i = 1$. With $\\partial u_j/\\partial s_j = 1/\\tau$,

$$
\\frac{\\partial H}{\\partial s_j} = -\\frac{p_j}{\\tau}\\big(\\log p_j + H\\big).
$$

Raising a score whose weight is above the "typical" level $\\log p_j > -H$ sharpens the weights
(the entropy falls); raising one below it spreads them. The components sum to zero
($\\sum_j p_j \\log p_j + H = 0$), as shift invariance demands. Since $H$ depends on $\\mathbf{s}$
and $\\tau$ only through $\\mathbf{s}/\\tau$, $dH/d\\tau = -\\tfrac{1}{\\tau}\\,\\mathbf{s}^\\top\\nabla_{\\mathbf{s}} H$,
and the code checks that this gives back {eq}`eq-entropy-temperature`.
""",
))


# --- 4. Mean and variance of a dot product with any moments ---------------------------------

def _score_moments(mu_q, var_q, mu_k, var_k):
    mean = (mu_q * mu_k).sum()
    variance = (var_q * var_k + var_q * mu_k**2 + mu_q**2 * var_k).sum()
    return mean, variance


def _moments_ignore_means(mu_q, var_q, mu_k, var_k):
    return (mu_q * mu_k).sum(), (var_q * var_k).sum()


def _moments_no_subtraction(mu_q, var_q, mu_k, var_k):
    return (mu_q * mu_k).sum(), ((var_q + mu_q**2) * (var_k + mu_k**2)).sum()


def _moments_zero_mean(mu_q, var_q, mu_k, var_k):
    return torch.zeros((), dtype=mu_q.dtype), _score_moments(mu_q, var_q, mu_k, var_k)[1]


def _moments_cases():
    g = torch.Generator().manual_seed(7)
    cases = []
    for d in (1, 4, 16):
        mu_q, mu_k = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)
        var_q = torch.rand(d, generator=g, dtype=torch.float64) * 2 + 0.1
        var_k = torch.rand(d, generator=g, dtype=torch.float64) * 2 + 0.1
        cases.append((mu_q, var_q, mu_k, var_k))
    return cases


register(FunctionExercise(
    id="scoring_softmax/score-moments",
    title="Mean and variance of q . k for any means and variances",
    reference=_score_moments,
    cases=_moments_cases,
    rtol=1e-8,
    atol=1e-10,
    mistakes=(
        Mistake(_moments_ignore_means, "sum_l var_q var_k is the variance only when every mean is zero. "
                                       "Compute E[(q_l k_l)^2] = E[q_l^2] E[k_l^2] with "
                                       "E[q_l^2] = var_q + mu_q^2, then subtract the squared mean."),
        Mistake(_moments_no_subtraction, "E[q_l^2] E[k_l^2] is the second moment of q_l k_l, not its "
                                         "variance: subtract (E[q_l k_l])^2 = mu_q^2 mu_k^2."),
        Mistake(_moments_zero_mean, "With non-zero means E[q_l k_l] = E[q_l] E[k_l] = mu_q mu_k, which "
                                    "need not vanish; the mean of the score is their sum."),
    ),
    solution='''\
def score_moments(mu_q, var_q, mu_k, var_k):
    mean = (mu_q * mu_k).sum()
    second = (var_q + mu_q**2) * (var_k + mu_k**2)  # E[(q_l k_l)^2]
    variance = (second - (mu_q * mu_k) ** 2).sum()  # variances add
    return mean, variance


# a sampling check at one point: 200,000 pairs with these moments
g = torch.Generator().manual_seed(0)
mu_q = torch.tensor([0.5, -1.0, 2.0])
var_q = torch.tensor([1.0, 0.5, 2.0])
mu_k = torch.tensor([1.0, 0.3, -0.5])
var_k = torch.tensor([0.2, 1.5, 1.0])
q = mu_q + var_q.sqrt() * torch.randn(200_000, 3, generator=g)
k = mu_k + var_k.sqrt() * torch.randn(200_000, 3, generator=g)
mean, variance = score_moments(mu_q, var_q, mu_k, var_k)
scores = (q * k).sum(-1)  # (200000,)
assert abs(scores.mean() - mean) < 0.02
assert abs(scores.var() / variance - 1) < 0.02
''',
    solution_answer="score_moments",
    solution_text="""\
Each term $q_l k_l$ has independent factors, so its mean factors,
$\\mathbb{E}[q_l k_l] = \\mu_{q,l}\\,\\mu_{k,l}$, and so does its second moment,
$\\mathbb{E}[q_l^2 k_l^2] = \\mathbb{E}[q_l^2]\\,\\mathbb{E}[k_l^2] = (\\sigma_{q,l}^2 + \\mu_{q,l}^2)(\\sigma_{k,l}^2 + \\mu_{k,l}^2)$.
Subtracting the squared mean,

$$
\\operatorname{Var}(q_l k_l) = \\sigma_{q,l}^2\\sigma_{k,l}^2 + \\sigma_{q,l}^2\\mu_{k,l}^2 + \\mu_{q,l}^2\\sigma_{k,l}^2 ,
$$

and since the $d_k$ terms are independent, means and variances add:

$$
\\mathbb{E}[\\mathbf{q}^\\top\\mathbf{k}] = \\sum_l \\mu_{q,l}\\mu_{k,l}, \\qquad
\\operatorname{Var}(\\mathbf{q}^\\top\\mathbf{k}) = \\sum_l \\big(\\sigma_{q,l}^2\\sigma_{k,l}^2 + \\sigma_{q,l}^2\\mu_{k,l}^2 + \\mu_{q,l}^2\\sigma_{k,l}^2\\big).
$$

With zero means and unit variances this is {eq}`eq-dot-variance`. With means, dividing by
$\\sqrt{d_k}$ no longer gives unit variance: the variance grows with the squared means, and the
mean itself grows like $d_k$, so the scaled score's mean still grows like $\\sqrt{d_k}$ (it is the
same for every key of a query only if the keys share their mean).
""",
))


# --- 5. Ablation: the unscaled model started from small projections --------------------------

register(ChoiceExercise(
    id="scoring_softmax/recall-ablation",
    title="The unscaled recall model, started small",
    options={
        "a": "it starts saturated like the unscaled model and reaches 90% no sooner than it",
        "b": "it starts with exactly the scaled model's weights, and reaches 90% test accuracy no "
             "later than the scaled model",
        "c": "it starts with the scaled model's weights, but its gradients are too small to learn: "
             "it never reaches 90%",
        "d": "it starts with uniform weights over the keys (entropy log 32) and stays there",
    },
    answer="b",
    explanation=("At initialisation its scores are exactly the scaled model's (same seed, each "
                 "projection 256^(1/4) = 4 times smaller, so q.k is 16 = sqrt(256) times smaller). "
                 "The factor 1/sqrt(d_k) only sets where learning starts; what can be learned is the "
                 "same. (It even learns faster: Adam moves every parameter by about the learning rate "
                 "whatever its size, so smaller projections change faster relative to their size.)"),
    mistakes=(
        Mistake("a", "Run it and print run.metrics['initial_entropy']: with projections 4 times smaller "
                     "the unscaled scores are 16 times smaller, the spread of the scaled scores."),
        Mistake("c", "Compare run.metrics['steps_to_90'] with the scaled model's: the factor 1/sqrt(d_k) "
                     "only decides where learning starts, and here both start at the same place."),
        Mistake("d", "Print run.metrics['initial_entropy']: the weights are as spread as the scaled "
                     "model's at the start, not uniform, and the run's accuracy rises."),
    ),
    solution='''\
from companion import experiments

scaled = experiments.run("scaling-retrieval", progress=False)
started_small = experiments.run("scaling-retrieval-unscaled",
                                init_scale=256 ** -0.25, progress=False)
for name, run in (("scaled", scaled), ("started small", started_small)):
    mt = run.metrics
    print(f"{name}: initial entropy {mt['initial_entropy']:.3f},"
          f" 90% at step {mt['steps_to_90']},"
          f" final accuracy {mt['test_accuracy']:.3f}")
s_m, u_m = scaled.metrics, started_small.metrics
assert abs(s_m["initial_entropy"] - u_m["initial_entropy"]) < 1e-4
assert 0 < u_m["steps_to_90"] <= s_m["steps_to_90"]
answer = "b"
''',
    solution_text="""\
Each projection is $256^{1/4} = 4$ times smaller at the start, so every unscaled score
$\\mathbf{q}^\\top\\mathbf{k}$ is $16 = \\sqrt{256}$ times smaller: exactly the scaled model's
score, with the same seed and hence the same initial weights and initial entropy. From there it
learns at least as fast as the scaled model: the factor $1/\\sqrt{d_k}$ changes where training
starts, not what the model can represent. (Here it is even faster. Adam moves each parameter by
about the learning rate whatever the parameter's size, so projections that start four times
smaller change four times faster relative to their size: a larger effective learning rate.)
""",
))
