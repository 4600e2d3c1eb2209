"""Exercises of the chapter on neural Turing machines: the key strength that content addressing
needs to focus on one row (a derivation), the circular shift as a matrix, sharpening that survives
underflow (a derivation), one erase-add write by hand, the gradient of a read vector with respect
to the key strength beta (a derivation), and an ablation: a constant memory addressed with a
uniform first weighting never breaks the symmetry of its rows.

The reader's functions work on one head, unbatched: memory ``(N, W)``, key ``(W,)``,
weightings ``(N,)``, shift distributions ``(2R+1,)`` over the offsets ``-R, ..., R``, scalars as
Python floats.
"""

from __future__ import annotations

import math

import torch

from .checker import ChoiceExercise, FunctionExercise, Mistake, ValueExercise, register


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- 1. How strong a key must be (a derivation) ------------------------------------------

def _cosine(memory: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    norms = memory.norm(dim=-1) * key.norm()  # (N,)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    return torch.where(norms > 0, memory @ key / safe, torch.zeros_like(norms))  # (N,), 0 for a zero row


def _min_key_strength(p: float, gap: float, N: int) -> float:
    """The smallest beta >= 0 with w^c(best) >= p for every memory of N rows in which the best
    row's similarity exceeds every other's by at least ``gap``."""
    return max(0.0, math.log((N - 1) * p / (1 - p)) / gap)


def _strength_one_rival(p, gap, N):
    return max(0.0, math.log(p / (1 - p)) / gap)


def _strength_n_rivals(p, gap, N):
    return max(0.0, math.log(N * p / (1 - p)) / gap)


def _strength_negative(p, gap, N):
    return math.log((N - 1) * p / (1 - p)) / gap


def _strength_no_complement(p, gap, N):
    return max(0.0, math.log((N - 1) * p) / gap)


def _strength_cases():
    return [(0.9, 0.5, 8), (0.99, 0.1, 128), (0.5, 1.0, 2), (0.6, 2.0, 20), (0.3, 0.2, 10),
            (0.05, 0.3, 4), (0.999, 0.05, 1000)]


register(FunctionExercise(
    id="ntm/focus-strength",
    title="How strong must the key be?",
    reference=_min_key_strength,
    cases=_strength_cases,
    rtol=1e-6,
    atol=1e-9,
    mistakes=(
        Mistake(_strength_one_rival, "You compared the best row with one other row. All N - 1 others take "
                                     "weight from it: w(best) = 1 / (1 + sum over the others of "
                                     "exp(-beta (K_best - K_j)))."),
        Mistake(_strength_n_rivals, "Count the rivals again: the sum in the denominator runs over the N - 1 rows "
                                    "other than the best one (its own term is the 1)."),
        Mistake(_strength_negative, "When p is small enough, even beta = 0 (the uniform weighting, 1/N each) "
                                    "already gives the best row at least p, and your formula turns negative. "
                                    "The key strength cannot be negative: the answer is then 0."),
        Mistake(_strength_no_complement, "Solve w(best) >= p for exp(beta gap) again: the inequality "
                                         "1 / (1 + (N - 1) x) >= p gives x <= (1 - p) / ((N - 1) p), so "
                                         "1 - p belongs in it."),
    ),
    solution_answer="min_key_strength",
    solution_text=r"""
Write $K^\ast$ for the best row's similarity. Dividing the numerator and the denominator of
{eq}`eq-ntm-content` by $e^{\beta K^\ast}$,

$$
w^c(\text{best}) = \frac{1}{1 + \sum_{j \ne \text{best}} e^{-\beta (K^\ast - K_j)}}
\;\ge\; \frac{1}{1 + (N - 1)\, e^{-\beta \Delta}},
$$

since every gap $K^\ast - K_j$ is at least $\Delta$ and $\beta \ge 0$; the bound is reached when all
$N - 1$ other rows sit exactly $\Delta$ below, so it is the worst case. It is at least $p$ when
$e^{\beta\Delta} \ge (N-1)\,p/(1-p)$, that is

$$
\beta \;\ge\; \frac{1}{\Delta} \ln \frac{(N - 1)\, p}{1 - p},
$$

and $\beta = 0$ suffices when the right-hand side is negative ($p \le 1/N$: the uniform weighting already
gives $1/N$). The required strength grows only logarithmically with the number of rows and with the odds
$p/(1-p)$, but inversely with the gap. Cosines lie in $[-1, 1]$, so $\Delta \le 2$, reached when the
best row points along the key and every other row against it; even then $\beta$ must reach
$\tfrac12 \ln((N-1)p/(1-p))$, and rows whose similarities differ little need a very strong key. This is why the key strength is emitted per step: a head
that must single out one of many similar rows has to say so with a large $\beta_t$.
""",
    solution="""
import math


def min_key_strength(p, gap, N):
    # worst case: N - 1 rows exactly `gap` below the best one
    return max(0.0, math.log((N - 1) * p / (1 - p)) / gap)
""",
))


# --- 2. The circular shift as a matrix ------------------------------------------------------

def _shift_matrix(s: torch.Tensor, N: int) -> torch.Tensor:
    """The N x N matrix C with shift(w, s) = C w (eq-ntm-shift); s[j + R] is offset j's probability."""
    R = (s.shape[0] - 1) // 2
    C = torch.zeros(N, N, dtype=s.dtype)
    for i in range(N):
        for j in range(-R, R + 1):
            C[i, (i - j) % N] += s[j + R]  # row i receives w(i - j) with probability s(j)
    return C  # (N, N)


def _shift_matrix_transposed(s, N):
    return _shift_matrix(s, N).T


def _shift_matrix_no_wrap(s, N):
    R = (s.shape[0] - 1) // 2
    C = torch.zeros(N, N, dtype=s.dtype)
    for i in range(N):
        for j in range(-R, R + 1):
            if 0 <= i - j < N:
                C[i, i - j] += s[j + R]
    return C


def _shift_matrix_uncentred(s, N):
    C = torch.zeros(N, N, dtype=s.dtype)
    for i in range(N):
        for j in range(s.shape[0]):  # offsets 0..2R instead of -R..R
            C[i, (i - j) % N] += s[j]
    return C


def _shift_cases():
    g = _gen(41)
    return [
        (torch.tensor([0.0, 0.0, 1.0]), 5),  # offset +1 for sure
        (torch.tensor([0.1, 0.2, 0.7]), 6),
        (torch.softmax(torch.randn(5, generator=g), 0), 8),  # R = 2
        (torch.softmax(torch.randn(5, generator=g), 0), 5),  # 2R + 1 = N: every offset hits every row
        (torch.tensor([0.6, 0.3, 0.1]), 4),
        (torch.tensor([1.0]), 3),  # R = 0: the identity
    ]


register(FunctionExercise(
    id="ntm/circular-shift",
    title="The circular shift as a matrix",
    reference=_shift_matrix,
    cases=_shift_cases,
    rtol=1e-5,
    atol=1e-7,
    mistakes=(
        Mistake(_shift_matrix_transposed, "Your matrix shifts the wrong way (it is the transpose of the right "
                                          "one): offset +1 must move the weight of row i' to row i' + 1, so "
                                          "entry (i, i') collects the probability of the offset i - i', and "
                                          "C @ w of a focus on row 0 must be a focus on row 1."),
        Mistake(_shift_matrix_no_wrap, "The shift is circular: weight pushed past the last row reappears at "
                                       "row 0 (indices mod N). Without the wrap-around some columns of your "
                                       "matrix sum to less than one, and weight is lost."),
        Mistake(_shift_matrix_uncentred, "The offsets are centred on zero: s[j + R] is the probability of "
                                         "offset j in -R..R, so the middle entry of s is 'stay where you are'."),
    ),
    solution_answer="shift_matrix",
    solution_text=r"""
In {eq}`eq-ntm-shift` row $i$ receives $s(j)\, w^g\big((i - j) \bmod N\big)$ from each offset $j$:
$\tilde w(i) = \sum_{i'} C_{i i'}\, w^g(i')$ with $C_{i i'} = \sum_{j=-R}^{R} s(j)\,
\mathbb{1}\big[i' \equiv i - j \pmod N\big]$: entry $(i, i')$ is the probability of the offset $j$
with $i - i' \equiv j \pmod N$ (there is at most one, since $2R + 1 \le N$), and $0$ if there is
none. Each row of $\mathbf{C}$ is the one above it rotated one place to the right: $\mathbf{C}$ is
a *circulant* matrix, and the shift is a circular convolution. Column $i'$ holds every entry of
$\mathbf{s}$ once (the rows that the weight of row $i'$ can move to), so every column sums to one:
$\mathbf{1}^\top \mathbf{C} = \mathbf{1}^\top$, and $\mathbf{1}^\top \tilde{\mathbf{w}} =
\mathbf{1}^\top \mathbf{w}^g = 1$. The shift preserves the total weight because $\mathbf{s}$ sums to one.
""",
    solution="""
def shift_matrix(s, N):
    R = (s.shape[0] - 1) // 2
    C = torch.zeros(N, N, dtype=s.dtype)
    for i in range(N):
        for j in range(-R, R + 1):  # s[j + R] is the probability of offset j
            C[i, (i - j) % N] += s[j + R]  # row i receives w(i - j)
    return C
""",
))


# --- 3. Sharpening that survives underflow (a derivation) -----------------------------------

def _sharpen(w: torch.Tensor, gamma: float) -> torch.Tensor:
    positive = w > 0
    logits = torch.where(positive, gamma * torch.log(torch.where(positive, w, torch.ones_like(w))),
                         torch.full_like(w, -math.inf))
    return torch.softmax(logits, dim=0)


def _sharpen_naive(w, gamma):
    p = w**gamma
    return p / p.sum()


def _sharpen_exp(w, gamma):
    return torch.softmax(gamma * w, dim=0)


def _sharpen_unnormalised(w, gamma):
    return w**gamma


def _sharpen_cases():
    g = _gen(42)
    with_zeros = torch.tensor([0.0, 0.2, 0.0, 0.5, 0.3])
    return [
        (torch.softmax(torch.randn(6, generator=g), 0), 2.0),
        (with_zeros, 3.0),
        (torch.softmax(0.1 * torch.randn(128, generator=g), 0), 40.0),  # w^40 underflows in float32
        (torch.softmax(torch.randn(10, generator=g), 0), 1.0),
        # float64 does not save the naive power: (1/4096)^200 is about 1e-722
        (torch.softmax(0.1 * torch.randn(4096, generator=g, dtype=torch.float64), 0), 200.0),
    ]


register(FunctionExercise(
    id="ntm/sharpen",
    title="Sharpening that survives underflow",
    reference=_sharpen,
    cases=_sharpen_cases,
    rtol=1e-4,
    atol=1e-7,
    mistakes=(
        Mistake(_sharpen_naive, "With 128 rows each weight is about 1/128, and (1/128)^40 is about 1e-84, far "
                                "below the smallest float32 (about 1e-45): every power underflows to 0 and 0/0 "
                                "is NaN. Write w^gamma = exp(gamma log w) and normalise with a softmax, which "
                                "subtracts the largest exponent first."),
        Mistake(_sharpen_exp, "That is softmax(gamma * w), an exponential of the weights, not a power. "
                              "w^gamma / sum w^gamma equals softmax(gamma * log w)."),
        Mistake(_sharpen_unnormalised, "Divide by the sum of the powers: after raising to gamma the weights no "
                                       "longer sum to one."),
    ),
    solution_answer="sharpen_weights",
    solution_text=r"""
For $w_i > 0$, $w_i^\gamma = e^{\gamma \log w_i}$, so
$w_i^\gamma / \sum_j w_j^\gamma = e^{\gamma \log w_i} / \sum_j e^{\gamma \log w_j}
= \operatorname{softmax}(\gamma \log \mathbf{w})_i$, and the softmax may subtract the largest exponent
first without changing the value: the largest term becomes $e^0 = 1$ and nothing underflows to a
zero denominator. A zero weight has $\log 0 = -\infty$ and $e^{-\infty} = 0$: it stays zero, as
$0^\gamma = 0$ says. Mask it instead of computing $\gamma \cdot (-\infty)$, whose gradient with respect to
$\gamma$ would be NaN.
""",
    solution="""
def sharpen_weights(w, gamma):
    positive = w > 0
    log_w = torch.log(torch.where(positive, w, torch.ones_like(w)))
    logits = torch.where(positive, gamma * log_w, torch.full_like(w, -math.inf))
    return torch.softmax(logits, dim=0)
""",
))


# --- 4. One erase-add write by hand -------------------------------------------------------

WRITE_MEMORY = [[4.0, 2.0], [2.0, 6.0], [0.0, 8.0]]
WRITE_WEIGHTS = [0.0, 0.5, 0.5]
WRITE_ERASE = [1.0, 0.0]
WRITE_ADD = [2.0, 2.0]

register(ValueExercise(
    id="ntm/erase-add",
    title="One erase-add write",
    expected=lambda: torch.tensor([[4.0, 2.0], [2.0, 7.0], [1.0, 9.0]]),
    rtol=1e-4,
    atol=1e-4,
    mistakes=(
        Mistake(torch.tensor([[4.0, 2.0], [1.5, 7.0], [0.5, 9.0]]),
                "You added first and erased afterwards, which erases part of what was just written. The NTM "
                "erases the old content, then adds the new."),
        Mistake(torch.tensor([[0.0, 2.0], [1.0, 7.0], [1.0, 9.0]]),
                "The erase is weighted too: row i keeps M(i) (1 - w(i) e), so a row with weight 0 (the first) "
                "is not touched at all."),
        Mistake(torch.tensor([[6.0, 4.0], [3.0, 8.0], [2.0, 10.0]]),
                "The add is weighted too: row i receives w(i) a, not the whole add vector."),
    ),
    solution_answer="new_memory",
    solution_text=r"""
Row 1 has weight 0: nothing changes, $(4, 2)$. Rows 2 and 3 have weight $\tfrac12$, so the erase
multiplies them by $\mathbf{1} - \tfrac12 (1, 0) = (\tfrac12, 1)$ and the add puts
$\tfrac12 (2, 2) = (1, 1)$ on top: row 2 becomes $(1, 6) + (1, 1) = (2, 7)$, row 3
$(0, 8) + (1, 1) = (1, 9)$.
""",
    solution="""
new_memory = torch.tensor([[4.0, 2.0], [2.0, 7.0], [1.0, 9.0]])
""",
))


# --- 5. The gradient of a read vector with respect to beta (a derivation) ------------------

def _read_beta_gradient(memory: torch.Tensor, key: torch.Tensor, beta: float) -> torch.Tensor:
    sims = _cosine(memory, key)  # (N,)
    w = torch.softmax(beta * sims, dim=0)  # (N,)
    centred = sims - (w * sims).sum()  # (N,)
    return (w * centred) @ memory  # (W,)


def _beta_gradient_uncentred(memory, key, beta):
    sims = _cosine(memory, key)
    w = torch.softmax(beta * sims, dim=0)
    return (w * sims) @ memory


def _beta_gradient_no_weights(memory, key, beta):
    sims = _cosine(memory, key)
    w = torch.softmax(beta * sims, dim=0)
    return (sims - (w * sims).sum()) @ memory


def _beta_gradient_times_beta(memory, key, beta):
    return beta * _read_beta_gradient(memory, key, beta)


def _beta_cases():
    g = _gen(43)
    memory = torch.randn(6, 3, generator=g)
    memory[4] = 0.0
    return [
        (torch.randn(5, 4, generator=g), torch.randn(4, generator=g), 2.0),
        (memory, torch.randn(3, generator=g), 0.5),
        (torch.randn(8, 2, generator=g), torch.randn(2, generator=g), 7.0),
    ]


register(FunctionExercise(
    id="ntm/beta-gradient",
    title="How the read vector moves with the key strength",
    reference=_read_beta_gradient,
    cases=_beta_cases,
    rtol=1e-4,
    atol=1e-6,
    mistakes=(
        Mistake(_beta_gradient_uncentred, "You dropped the softmax's normalisation term: dw_i/dbeta = "
                                          "w_i (K_i - sum_j w_j K_j), with the weighted mean similarity "
                                          "subtracted. Raising beta moves weight towards rows *more similar "
                                          "than average*, away from the others."),
        Mistake(_beta_gradient_no_weights, "Each row's contribution is weighted by w_i: dr/dbeta = "
                                           "sum_i w_i (K_i - K_bar) M(i)."),
        Mistake(_beta_gradient_times_beta, "beta multiplies the similarities inside the softmax, so d(beta K_i)/dbeta "
                                           "= K_i: no factor beta appears in the gradient."),
    ),
    forbid=("autograd",),
    solution_answer="read_beta_gradient",
    solution_text=r"""
With $w_i = e^{\beta K_i} / Z$, $Z = \sum_j e^{\beta K_j}$: $\partial w_i / \partial \beta
= K_i w_i - w_i \sum_j K_j w_j = w_i (K_i - \bar K)$, where $\bar K = \sum_j w_j K_j$ is the mean
similarity under the weighting. The memory does not depend on $\beta$, so
$\partial \mathbf{r} / \partial \beta = \sum_i w_i (K_i - \bar K)\, \mathbf{M}(i)$: the covariance,
under $\mathbf{w}$, between a row's similarity and its content. Raising $\beta$ pulls the read vector
towards the rows that match better than average; when every row matches equally the gradient is zero.
""",
    solution="""
def read_beta_gradient(memory, key, beta):
    norms = memory.norm(dim=-1) * key.norm()
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    sims = torch.where(norms > 0, memory @ key / safe, torch.zeros_like(norms))  # K_i
    w = torch.softmax(beta * sims, dim=0)  # (N,)
    centred = sims - (w * sims).sum()  # K_i - K_bar
    return (w * centred) @ memory  # (W,)
""",
))


# --- 6. Why the first weighting must break the symmetry (an ablation) -----------------------

register(ChoiceExercise(
    id="ntm/symmetry",
    title="A constant memory with a uniform first weighting",
    options={
        "a": "the rows differ after the first write, because the add vector is random",
        "b": "the rows stay identical at every step, whatever the input and the weights",
        "c": "the rows stay identical until the shift moves the focus, then they differ",
        "d": "the rows differ after a few steps, because the sharpening amplifies round-off",
    },
    answer="b",
    explanation="Identical rows give identical similarities, hence a uniform content weighting; "
                "interpolating, shifting or sharpening a uniform weighting leaves it uniform; and a "
                "write with a uniform weighting changes every row in the same way. By induction the "
                "rows never differ, so no row can ever be told apart from another.",
    mistakes=(
        Mistake("a", "The add vector is the same for every row; what differs between rows is only the "
                     "weight w(i) they receive. What is w(i) when every row looks the same?"),
        Mistake("c", "Shift a uniform weighting by any offset distribution: what comes out?"),
        Mistake("d", "Sharpening a uniform weighting gives w^gamma / sum w^gamma with every w equal: "
                     "uniform again, exactly, in floating point too."),
    ),
    solution_answer="choice",
    solution_text=r"""
Run the ablation: start an untrained NTM from its constant memory but with a *uniform* first
weighting for both heads, feed it copy sequences, and measure how far apart the rows of the memory
are at the end. They stay exactly equal (b), although the memory has been written to.

Why, by induction over the steps. Suppose that before step $t$ every row of $\mathbf{M}_{t-1}$ is
the same vector and both heads' previous weightings are uniform. Then every row has the same cosine
with any key, so the content weighting {eq}`eq-ntm-content` is uniform; interpolating two uniform
weightings gives a uniform one; shifting a uniform weighting only moves equal weights between rows
({eq}`eq-ntm-shift`), and sharpening equal weights leaves them equal. So both heads' weightings at
step $t$ are uniform, and the write {eq}`eq-ntm-erase`, {eq}`eq-ntm-add` erases and adds the same
amounts in every row: the rows of $\mathbf{M}_t$ are again all equal. Nothing the controller emits
can tell one row from another, so the memory holds one vector $N$ times. The same holds in floating
point, since every row goes through exactly the same operations. A one-hot first weighting on row 0
breaks this symmetry from the first write on.
""",
    solution="""
from companion.ntm import NTM, NTMConfig
from companion.tasks.copy import copy_batch

torch.manual_seed(0)
probe = NTM(NTMConfig(rows=8, width=6, controller_size=16))
probe_batch = copy_batch(4, 5, generator=torch.Generator().manual_seed(0))
probe_state = probe.initial_state(4)
probe_state["w_write"] = torch.full((4, 8), 1 / 8)  # uniform, not one-hot
probe_state["w_read"] = torch.full((4, 8), 1 / 8)
with torch.no_grad():
    for t in range(probe_batch.inputs.shape[1]):
        _, probe_state, _, _ = probe.step(probe_batch.inputs[:, t], probe_state)
probe_memory = probe_state["memory"]  # (B, N, W)
row_spread = (probe_memory - probe_memory[:, :1]).abs().max().item()
print(f"largest difference between two rows: {row_spread}")
assert row_spread == 0.0 and probe_memory.abs().max() > 1e-3  # written, all equal
choice = "b"
""",
))
