"""Exercises of the chapter on neural Turing machines: cosine content addressing with a zero row,
the circular shift, sharpening in log space (a derivation), one erase-add write by hand, and the
gradient of a read vector with respect to the key strength beta (a derivation), and an ablation:
a constant memory addressed with a uniform first weighting never breaks the symmetry of its rows.

The reader's functions work on one head, unbatched: memory ``(N, W)``, key ``(W,)``,
weightings ``(N,)``, shift distributions ``(S,)``, scalars as Python floats.
"""

from __future__ import annotations

import math

import torch

from .checker import ChoiceExercise, FunctionExercise, Mistake, ValueExercise, register


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# --- 1. Cosine content addressing --------------------------------------------------------

def _cosine(memory: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    norms = memory.norm(dim=-1) * key.norm()  # (N,)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    return torch.where(norms > 0, memory @ key / safe, torch.zeros_like(norms))  # (N,), 0 for a zero row


def _content(memory, key, beta):
    return torch.softmax(beta * _cosine(memory, key), dim=-1)


def _content_no_guard(memory, key, beta):
    return torch.softmax(beta * (memory @ key) / (memory.norm(dim=-1) * key.norm()), dim=-1)


def _content_dot(memory, key, beta):
    return torch.softmax(beta * (memory @ key), dim=-1)


def _content_no_beta(memory, key, beta):
    return torch.softmax(_cosine(memory, key), dim=-1)


def _content_normalised_sum(memory, key, beta):
    sims = beta * _cosine(memory, key)
    return sims / sims.sum()


def _content_cases():
    g = _gen(40)
    memory = torch.randn(6, 4, generator=g)
    memory[2] = 0.0  # an empty row
    big = torch.randn(8, 5, generator=g)
    big[[0, 5]] = 0.0
    return [
        (torch.randn(5, 3, generator=g), torch.randn(3, generator=g), 2.0),
        (memory, torch.randn(4, generator=g), 3.0),
        (big, torch.randn(5, generator=g), 50.0),
        (torch.randn(4, 4, generator=g), torch.randn(4, generator=g), 0.0),
    ]


register(FunctionExercise(
    id="ntm/cosine-content",
    title="Cosine content addressing with an empty row",
    reference=_content,
    cases=_content_cases,
    rtol=1e-4,
    atol=1e-6,
    mistakes=(
        Mistake(_content_no_guard, "A row of zeros has norm 0, so its cosine is 0/0 = NaN and the softmax spreads "
                                   "the NaN over every row. Give an all-zero row similarity 0 (divide by the "
                                   "norms only where they are positive, or add a tiny epsilon to them)."),
        Mistake(_content_dot, "That is the dot product, not the cosine: divide k . M(i) by ||k|| ||M(i)||, so "
                              "that a row's length does not decide how well it matches."),
        Mistake(_content_no_beta, "Multiply the similarities by the key strength beta before the softmax: beta "
                                  "is the inverse temperature that makes the focus sharp or broad."),
        Mistake(_content_normalised_sum, "Normalise with a softmax (exponentiate, then divide by the sum): cosines "
                                         "can be negative, and dividing them by their sum does not give a "
                                         "distribution."),
    ),
    solution_answer="content_weights",
    solution_text=r"""
The cosine of the key with row $i$ is $K_i = \mathbf{k}^\top \mathbf{M}(i) / (\lVert\mathbf{k}\rVert
\lVert\mathbf{M}(i)\rVert)$. For an all-zero row both numerator and denominator vanish; the limit does not
exist, so we *define* $K_i = 0$: an empty row is neither similar nor dissimilar to any key. Dividing only
where the product of norms is positive (rather than adding an $\epsilon$, which also works) keeps every
other similarity exact. The weights are then the softmax of $\beta K_i$.
""",
    solution="""
def content_weights(memory, key, beta):
    norms = memory.norm(dim=-1) * key.norm()  # (N,)
    positive = norms > 0
    safe = torch.where(positive, norms, torch.ones_like(norms))
    sims = torch.where(positive, memory @ key / safe, torch.zeros_like(norms))
    return torch.softmax(beta * sims, dim=0)  # (N,)
""",
))


# --- 2. The circular shift ----------------------------------------------------------------

def _shift(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    half = (s.shape[0] - 1) // 2
    return sum(s[j] * torch.roll(w, j - half, dims=0) for j in range(s.shape[0]))


def _shift_backwards(w, s):
    return _shift(w, s.flip(0))


def _shift_no_wrap(w, s):
    half = (s.shape[0] - 1) // 2
    padded = torch.cat([torch.zeros(half, dtype=w.dtype), w, torch.zeros(half, dtype=w.dtype)])
    N = w.shape[0]
    return sum(s[j] * padded[half - (j - half): half - (j - half) + N] for j in range(s.shape[0]))


def _shift_cases():
    g = _gen(41)
    onehot_last = torch.zeros(7)
    onehot_last[6] = 1.0
    return [
        (torch.softmax(torch.randn(6, generator=g), 0), torch.tensor([0.0, 0.0, 1.0])),
        (onehot_last, torch.tensor([0.1, 0.2, 0.7])),
        (torch.softmax(torch.randn(8, generator=g), 0), torch.softmax(torch.randn(5, generator=g), 0)),
        (torch.softmax(torch.randn(5, generator=g), 0), torch.tensor([0.6, 0.3, 0.1])),
    ]


register(FunctionExercise(
    id="ntm/circular-shift",
    title="The circular shift",
    reference=_shift,
    cases=_shift_cases,
    rtol=1e-5,
    atol=1e-7,
    mistakes=(
        Mistake(_shift_backwards, "Your shift goes the wrong way: s[j] is the probability of offset "
                                  "o = j - (S-1)/2, and offset +1 must move the weight of row i to row i + 1, "
                                  "so the new weight of row i comes from row i - o."),
        Mistake(_shift_no_wrap, "The shift is circular: weight pushed past the last row reappears at row 0 "
                                "(indices mod N). Without the wrap-around, weight falls off the end and the "
                                "result no longer sums to one."),
    ),
    solution_answer="circular_shift",
    solution_text=r"""
Offset $o_j = j - (S-1)/2$ with probability $s_j$ moves the weight of row $i'$ to row $i' + o_j$.
Row $i$ therefore receives $s_j\, w(i - o_j)$ from each offset, indices taken mod $N$:
$\tilde w(i) = \sum_j s_j\, w\big((i - o_j) \bmod N\big)$. `torch.roll(w, o)` is exactly the vector
whose entry $i$ is $w(i - o)$, with the wrap-around.
""",
    solution="""
def circular_shift(w, s):
    half = (s.shape[0] - 1) // 2
    out = torch.zeros_like(w)
    for j in range(s.shape[0]):
        out = out + s[j] * torch.roll(w, j - half, dims=0)  # w(i - o_j)
    return out
""",
))


# --- 3. Sharpening in log space (a derivation) ----------------------------------------------

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
are at the end. They stay exactly equal (b).
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
