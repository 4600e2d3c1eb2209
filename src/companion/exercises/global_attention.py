"""Exercises of the chapter "Global attention in encoder-decoders".

Derivations whose results the checker evaluates at hidden points (the gradient of the context
with respect to the scores, the gradient of the additive score with respect to the query, the
gradient through a gated recurrent unit), computations (a context by hand, a masked context for
a padded batch), a question about the alignment a trained model shows, and an ablation the
reader trains (Luong's decoder without input feeding).

Notation of the book: decoder state ``z``, annotations ``h_j`` (the rows of ``H``), scores
``s_j``, weights ``alpha_j``, context ``c``.
"""

from __future__ import annotations

import math

import torch

from .checker import ChoiceExercise, FunctionExercise, Mistake, ValueExercise, register


# --- A context vector by hand ---------------------------------------------------------------

register(ValueExercise(
    id="global_attention/context-by-hand",
    title="A context vector by hand",
    expected=lambda: torch.tensor([-4.0, 6.0]),
    rtol=1e-4,
    atol=1e-4,
    mistakes=(
        Mistake(torch.tensor([0.0, 4.0]), "That is the plain average (each weight 1/3). The weights are the softmax "
                                          "of the scores: exp(0), exp(log 2), exp(log 5) are 1, 2, 5, so the "
                                          "weights are 1/8, 2/8 and 5/8."),
        Mistake(torch.tensor([-8 * math.log(5), 4 * math.log(2) + 8 * math.log(5)]),
                "You weighted the annotations by the scores themselves; pass them through the softmax first."),
        Mistake(torch.tensor([0.0, 12.0]), "That is the sum of the annotations; weight each by its alpha_j."),
    ),
    solution="answer = torch.tensor([-4.0, 6.0])\n",
    solution_text=r"""
The weights are the softmax of the scores: $e^{0} = 1$, $e^{\log 2} = 2$, $e^{\log 5} = 5$, whose
sum is $8$, so $\boldsymbol{\alpha} = (1, 2, 5)/8$. The context is the weighted average of the
annotations,

$$
\mathbf{c} = \tfrac18 (8, 0) + \tfrac28 (0, 4) + \tfrac58 (-8, 8) = (1 - 5,\ 1 + 5) = (-4, 6).
$$
""",
))


# --- A masked context for a padded batch ------------------------------------------------------

def _masked_context(scores, annotations, lengths):
    """(context (B, d), weights (B, S)); weights exactly zero at positions j >= lengths[b]."""
    S = scores.shape[-1]
    real = torch.arange(S)[None, :] < lengths[:, None]  # (B, S)
    weights = torch.softmax(scores.masked_fill(~real, float("-inf")), -1)  # (B, S)
    return (weights.unsqueeze(1) @ annotations).squeeze(1), weights  # (B, d), (B, S)


def _unmasked_context(scores, annotations, lengths):
    weights = torch.softmax(scores, -1)
    return (weights.unsqueeze(1) @ annotations).squeeze(1), weights


def _zero_score_mask(scores, annotations, lengths):
    real = torch.arange(scores.shape[-1])[None, :] < lengths[:, None]
    weights = torch.softmax(scores.masked_fill(~real, 0.0), -1)
    return (weights.unsqueeze(1) @ annotations).squeeze(1), weights


def _mask_after_softmax(scores, annotations, lengths):
    real = torch.arange(scores.shape[-1])[None, :] < lengths[:, None]
    weights = torch.softmax(scores, -1) * real
    return (weights.unsqueeze(1) @ annotations).squeeze(1), weights


def _off_by_one(scores, annotations, lengths):
    return _masked_context(scores, annotations, lengths - 1 + (lengths == 1).long())


def _masked_cases():
    g = torch.Generator().manual_seed(4)
    cases = []
    for B, S, D, lengths in ((3, 5, 4, [5, 2, 3]), (2, 6, 3, [1, 4]), (4, 3, 2, [3, 3, 1, 2])):
        annotations = torch.randn(B, S, D, generator=g)
        scores = torch.randn(B, S, generator=g) * 2
        lengths = torch.tensor(lengths)
        pad = torch.arange(S)[None, :] >= lengths[:, None]
        annotations[pad] = 100.0  # what sits in a padded slot is garbage and must not leak
        cases.append((scores, annotations, lengths))
    return cases


register(FunctionExercise(
    id="global_attention/masked-context",
    title="A masked context for a padded batch",
    reference=_masked_context,
    cases=_masked_cases,
    rtol=1e-5,
    atol=1e-6,
    mistakes=(
        Mistake(_unmasked_context, "The softmax also spreads weight over the padded positions j >= length, whose "
                                   "annotations are meaningless. Block them before the softmax."),
        Mistake(_zero_score_mask, "A score of 0 is not 'blocked': exp(0) = 1 still gives the padding weight. Fill "
                                  "the padded scores with -inf, so that exp gives exactly 0."),
        Mistake(_mask_after_softmax, "Zeroing the weights after the softmax leaves rows that no longer sum to one. "
                                     "Mask the scores first (with -inf) and normalise over the real words only."),
        Mistake(_off_by_one, "Position j is real when j < length (positions count from 0): a sentence of length "
                             "3 has words at 0, 1, 2."),
    ),
    solution='''\
def masked_context(scores, annotations, lengths):
    S = scores.shape[-1]
    real = torch.arange(S)[None, :] < lengths[:, None]  # (B, S)
    blocked = scores.masked_fill(~real, float("-inf"))  # exp(-inf) = 0
    weights = torch.softmax(blocked, dim=-1)  # (B, S)
    context = torch.einsum("bs,bsd->bd", weights, annotations)  # (B, d)
    return context, weights
''',
    solution_answer="masked_context",
    solution_text=r"""
A position is real when $j < L_b$. Setting the other scores to $-\infty$ *before* the softmax gives
them $e^{-\infty} = 0$ exactly and normalises over the real words only; the garbage in the padded
annotations is then multiplied by an exact zero. The companion's `attend` with
`companion.masks.padding_mask` computes the same thing.
""",
))


# --- Derivation: the gradient of the context with respect to the scores --------------------------

def _context_score_jacobian(scores, H):
    """d c / d s_j for c = softmax(s) H: (d, S), column j = alpha_j (h_j - c).
    (tests/test_exercises_global_attention.py checks it against autograd.)"""
    e = torch.exp(scores - scores.max())
    alpha = e / e.sum()  # (S,)
    return (alpha[:, None] * (H - alpha @ H)).T  # (d, S)


def _weights(scores):
    e = torch.exp(scores - scores.max())
    return e / e.sum()


def _unnormalised(scores, H):
    return (_weights(scores)[:, None] * H).T  # alpha_j h_j


def _no_alpha(scores, H):
    return (H - _weights(scores) @ H).T  # h_j - c


def _diagonal_only(scores, H):
    a = _weights(scores)
    return ((a * (1 - a))[:, None] * H).T  # alpha_j (1 - alpha_j) h_j


def _score_jacobian_transposed(scores, H):
    return _context_score_jacobian(scores, H).T


def _score_cases():
    g = torch.Generator().manual_seed(31)
    cases = []
    for S, d, scale in ((4, 3, 1.0), (6, 5, 3.0), (1, 2, 1.0), (5, 4, 0.1)):
        cases.append((torch.randn(S, generator=g, dtype=torch.float64) * scale,
                      torch.randn(S, d, generator=g, dtype=torch.float64)))
    return cases


register(FunctionExercise(
    id="global_attention/score-gradient",
    title="The gradient of the context with respect to a score",
    reference=_context_score_jacobian,
    cases=_score_cases,
    rtol=1e-6,
    atol=1e-9,
    forbid=("autograd",),
    mistakes=(
        Mistake(_unnormalised, "alpha_j h_j is the derivative of exp(s_j) h_j alone; raising s_j also lowers "
                               "every other weight through the softmax's denominator. Differentiate "
                               "c = sum_k alpha_k h_k using d alpha_k / d s_j = alpha_k (delta_kj - alpha_j)."),
        Mistake(_no_alpha, "The direction h_j - c is right, but a score whose weight is small moves the "
                           "context little: the derivative is scaled by alpha_j."),
        Mistake(_diagonal_only, "That keeps only the k = j term of d alpha_k / d s_j. The other weights change "
                                "too (by -alpha_k alpha_j each), and their annotations enter the context."),
        Mistake(_score_jacobian_transposed, "Return a (d, S) matrix: column j is d c / d s_j."),
    ),
    solution='''\
def context_score_jacobian(scores, H):
    e = torch.exp(scores - scores.max())
    alpha = e / e.sum()  # (S,)
    c = alpha @ H  # (d,)
    return (alpha[:, None] * (H - c)).T  # (d, S): alpha_j (h_j - c)
''',
    solution_answer="context_score_jacobian",
    solution_text=r"""
With $\mathbf{c} = \sum_k \alpha_k \mathbf{h}_k$ and the softmax Jacobian (eq-softmax-jacobian)
$\partial \alpha_k / \partial s_j = \alpha_k (\delta_{kj} - \alpha_j)$,

$$
\frac{\partial \mathbf{c}}{\partial s_j}
= \sum_k \mathbf{h}_k\, \alpha_k (\delta_{kj} - \alpha_j)
= \alpha_j \mathbf{h}_j - \alpha_j \sum_k \alpha_k \mathbf{h}_k
= \alpha_j (\mathbf{h}_j - \mathbf{c}).
$$

Raising one score pulls the context towards that word's annotation, by an amount proportional to
the word's weight: a word with weight near $0$ or a context already equal to $\mathbf{h}_j$
(weight near $1$) receives almost no gradient through its score. The checker forbids autograd;
the softmax is written out.
""",
))


# --- Derivation: the additive score's gradient with respect to the query ---------------------------

def _additive_query_jacobian(z, H, W_a, U_a, v_a):
    """d s_j / d z for every j: (S, d), row j = W_a^T (v_a * tanh'(W_a z + U_a h_j)).
    (tests/test_exercises_global_attention.py checks it against autograd.)"""
    t = torch.tanh(H @ U_a.T + W_a @ z)  # (S, d_a)
    return ((1 - t**2) * v_a) @ W_a  # (S, d)


def _no_tanh_derivative(z, H, W_a, U_a, v_a):
    return (W_a.T @ v_a).expand(H.shape[0], -1).clone()


def _one_minus_tanh(z, H, W_a, U_a, v_a):
    t = torch.tanh(H @ U_a.T + W_a @ z)  # (S, d_a)
    return ((1 - t) * v_a) @ W_a


def _key_jacobian(z, H, W_a, U_a, v_a):
    t = torch.tanh(H @ U_a.T + W_a @ z)
    return ((1 - t**2) * v_a) @ U_a  # d s_j / d h_j, not d s_j / d z


def _additive_cases():
    g = torch.Generator().manual_seed(3)
    cases = []
    for S, d, d_h, d_a in ((4, 3, 5, 2), (7, 6, 6, 4), (1, 2, 3, 3), (3, 4, 4, 6)):
        cases.append((torch.randn(d, generator=g, dtype=torch.float64),
                      torch.randn(S, d_h, generator=g, dtype=torch.float64),
                      torch.randn(d_a, d, generator=g, dtype=torch.float64),
                      torch.randn(d_a, d_h, generator=g, dtype=torch.float64),
                      torch.randn(d_a, generator=g, dtype=torch.float64)))
    return cases


register(FunctionExercise(
    id="global_attention/additive-query-gradient",
    title="How the query steers the additive score",
    reference=_additive_query_jacobian,
    cases=_additive_cases,
    rtol=1e-6,
    atol=1e-9,
    forbid=("autograd",),
    mistakes=(
        Mistake(_no_tanh_derivative, "Without the derivative of tanh every word gets the same gradient "
                                     "W_a^T v_a, and the query could not favour one word over another. The "
                                     "chain rule passes through tanh'(u) = 1 - tanh(u)^2, evaluated at each "
                                     "word's own pre-activation W_a z + U_a h_j."),
        Mistake(_one_minus_tanh, "tanh'(u) is 1 - tanh(u)^2, not 1 - tanh(u)."),
        Mistake(_key_jacobian, "That is the gradient with respect to the annotation h_j (through U_a); the "
                               "query enters through W_a."),
    ),
    solution='''\
def additive_query_jacobian(z, H, W_a, U_a, v_a):
    u = H @ U_a.T + W_a @ z  # (S, d_a): one pre-activation per word
    slope = 1 - torch.tanh(u) ** 2  # (S, d_a): tanh'(u)
    return (slope * v_a) @ W_a  # (S, d): W_a^T (v_a * tanh'(u_j))
''',
    solution_answer="additive_query_jacobian",
    solution_text=r"""
Write $\mathbf{u}_j = \mathbf{W}_a \mathbf{z} + \mathbf{U}_a \mathbf{h}_j \in \mathbb{R}^{d_a}$, so
$s_j = \mathbf{v}_a^\top \tanh(\mathbf{u}_j)$. The chain rule through the element-wise tanh,
whose derivative is $1 - \tanh^2$, gives

$$
\frac{\partial s_j}{\partial \mathbf{z}}
= \mathbf{W}_a^\top \Big(\mathbf{v}_a \odot \big(\mathbf{1} - \tanh^2(\mathbf{u}_j)\big)\Big)
\in \mathbb{R}^{d}.
$$

The direction in which the query must move to raise word $j$'s score depends on $j$ only through
the slopes $1 - \tanh^2(\mathbf{u}_j)$: each hidden unit of the little network passes gradient
where it is not saturated. Without the tanh, the gradient would be $\mathbf{W}_a^\top \mathbf{v}_a$
for every word, the query would shift all scores by the same amount, and the softmax would not
change at all.
""",
))


# --- Derivation: the gradient through a gated unit -------------------------------------------

def _gated_states(u, w, v, x):
    h, states, pre = torch.zeros((), dtype=x.dtype), [], []
    for x_k in x:
        n = torch.tanh(w * h + v * x_k)
        h = u * h + (1 - u) * n
        states.append(h)
        pre.append(n)
    return torch.stack(states), torch.stack(pre)


def _gated_from(u, w, v, x, j, step, first):
    _, n = _gated_states(u, w, v, x)
    result = first(n[j])
    for k in range(j + 1, len(x)):
        result = result * step(n[k])
    return result


def _gated_gradient(u, w, v, x, j):
    """d h_S / d x_j of h_k = u h_{k-1} + (1 - u) tanh(w h_{k-1} + v x_k), h_0 = 0.
    (tests/test_exercises_global_attention.py checks it against autograd.)"""
    return _gated_from(u, w, v, x, j, lambda n: u + (1 - u) * w * (1 - n**2), lambda n: (1 - u) * v * (1 - n**2))


def _ungated(u, w, v, x, j):  # the plain tanh RNN's factors, forgetting the gate
    return _gated_from(u, w, v, x, j, lambda n: w * (1 - n**2), lambda n: v * (1 - n**2))


def _no_copy_path(u, w, v, x, j):  # forgets the u h_{k-1} term of the step derivative
    return _gated_from(u, w, v, x, j, lambda n: (1 - u) * w * (1 - n**2), lambda n: (1 - u) * v * (1 - n**2))


def _no_tanh_slope(u, w, v, x, j):
    return _gated_from(u, w, v, x, j, lambda n: u + (1 - u) * w, lambda n: (1 - u) * v)


def _one_step_too_many(u, w, v, x, j):
    _, n = _gated_states(u, w, v, x)
    return _gated_from(u, w, v, x, j, lambda n: u + (1 - u) * w * (1 - n**2),
                       lambda n: (1 - u) * v * (1 - n**2)) * (u + (1 - u) * w * (1 - n[j] ** 2))


def _gated_cases():
    g = torch.Generator().manual_seed(5)
    cases = []
    for u, w, v, S, j in ((0.0, 0.9, 1.0, 6, 1), (0.5, 1.5, -0.7, 8, 2), (0.97, 0.3, 1.2, 12, 0),
                          (0.2, -1.1, 0.8, 5, 4), (0.8, 0.5, 2.0, 10, 5)):
        x = torch.randn(S, generator=g, dtype=torch.float64)
        cases.append((u, w, v, x, j))
    return cases


register(FunctionExercise(
    id="global_attention/gated-gradient",
    title="The gradient through a gated unit",
    reference=_gated_gradient,
    cases=_gated_cases,
    rtol=1e-6,
    atol=1e-10,
    forbid=("autograd",),
    mistakes=(
        Mistake(_ungated, "Those are the factors of a plain tanh RNN. Here h_k = u h_{k-1} + (1 - u) n_k: "
                          "differentiate both terms."),
        Mistake(_no_copy_path, "The term u h_{k-1} depends on h_{k-1} too and contributes u to each step's "
                               "derivative: d h_k / d h_{k-1} = u + (1 - u) w (1 - n_k^2)."),
        Mistake(_no_tanh_slope, "Differentiate tanh: d n_k / d(its argument) = 1 - n_k^2, where n_k is the "
                                "tanh's value at step k."),
        Mistake(_one_step_too_many, "The chain from x_j to h_S has one factor d h_k / d h_{k-1} for each "
                                    "k = j+1, ..., S (positions after j), and the factor d h_j / d x_j for j itself."),
    ),
    solution='''\
def gated_gradient(u, w, v, x, j):
    h, n = torch.zeros((), dtype=x.dtype), []
    for x_k in x:  # run the unit, keeping each step's tanh value n_k
        n_k = torch.tanh(w * h + v * x_k)
        h = u * h + (1 - u) * n_k
        n.append(n_k)
    grad = (1 - u) * v * (1 - n[j] ** 2)  # d h_j / d x_j
    for k in range(j + 1, len(x)):  # then one factor per later step
        step = u + (1 - u) * w * (1 - n[k] ** 2)  # d h_k / d h_{k-1}
        grad = grad * step
    return grad
''',
    solution_answer="gated_gradient",
    solution_text=r"""
Let $n_k = \tanh(w h_{k-1} + v x_k)$, so $h_k = u\, h_{k-1} + (1 - u)\, n_k$. Then

$$
\frac{\partial h_j}{\partial x_j} = (1 - u)\, v\, (1 - n_j^2), \qquad
\gamma_k = \frac{\partial h_k}{\partial h_{k-1}} = u + (1 - u)\, w\, (1 - n_k^2),
$$

and the chain rule multiplies them:
$\partial h_S / \partial x_j = (1 - u)\, v\, (1 - n_j^2) \prod_{k=j+1}^{S} \gamma_k$ (positions of the
code count from 0, so its last state is $h_{S-1}$). The bound of the chapter, $|\gamma_k| \le \gamma$,
holds here with $\gamma = u + (1 - u)|w|$, which is below one when $|w| < 1$ and tends to one as
the gate $u \to 1$, *whatever* $w$: a unit that mostly copies its state forgets slowly. Gates let a
recurrent network keep a signal, but nothing in training requires them to stay near one, so
$\gamma < 1$ is possible and not guaranteed.
""",
))


# --- What the alignment of the trained model shows ---------------------------------------------

register(ChoiceExercise(
    id="global_attention/alignment-shape",
    title="Reading the right digit from a mixture",
    options={
        "a": "those outputs are wrong, and the accuracy hides it",
        "b": "the annotation of word S-t alone carries the digit of word S-1-t (bidirectional encoder)",
        "c": "word S-t was translated at the previous step; knowing its digit, the decoder can separate "
             "the other digit from the mixture",
        "d": "a softmax cannot produce a one-hot row, so the largest weight is always shared",
    },
    answer="c",
    explanation=("Output t-1 translated word S-t, and its digit is the decoder's input y_{t-1}. A context that "
                 "mixes h_{S-1-t} with h_{S-t} is then no ambiguity for the decoder: it knows one of the two "
                 "digits. The loss asks for the right word, not for the largest weight to sit on it."),
    mistakes=(
        Mistake("a", "The accuracy counts every digit output on its own, including those whose largest weight "
                     "is off the anti-diagonal: all are right."),
        Mistake("b", "With all of its weight on word S-t the decoder is at chance: that annotation alone does not "
                     "deliver the digit of word S-1-t to this decoder."),
        Mistake("d", "Luong's model on the same task has an average largest weight above 0.9: a softmax row "
                     "can be as sharp as the scores are far apart."),
    ),
    solution='answer = "c"\n',
    solution_text=r"""
(c). Output $t-1$ translated word $S-1-(t-1) = S-t$, so the decoder has just been fed that word's
digit as $y_{t-1}$, and its state knows it. A context mixing $\mathbf{h}_{S-1-t}$ with
$\mathbf{h}_{S-t}$ is then enough: the part of the mixture that comes from the known word can be
discounted, and the rest names the new digit. The cross-entropy asks only for the right output, so
nothing pushes the weight of the mixture onto one word.

(b) is the tempting answer: in a bidirectional encoder the forward half of $\mathbf{h}_{j+1}$ has
read $x_j$. But the measurement rules it out for this decoder: with all of its weight on word $S-t$
it writes the right digit no more often than chance. (a) fails because every digit output is
right, (d) because Luong's weights are nearly one-hot. What the measurements support is (c); they
do not prove it, and a sharper test would change the fed $y_{t-1}$ and watch those outputs.
""",
))


# --- Ablation: Luong's decoder without input feeding -------------------------------------------

_ABLATION_SOLUTION = '''\
from companion import experiments

fed = experiments.run("seq2seq-luong", progress=False)
unfed = experiments.run("seq2seq-luong", input_feeding=False,
                        progress=False)
with_ = fed.metrics["exact_match"]
without = unfed.metrics["exact_match"]
print(f"exact match with feeding {with_:.3f}, without {without:.3f}")
assert abs(without - with_) < 0.05  # the conclusion, checked
answer = "b"
'''

register(ChoiceExercise(
    id="global_attention/input-feeding-ablation",
    title="Luong without input feeding",
    options={
        "a": "exact match falls below 0.5: without the fed state the decoder loses track of where it is",
        "b": "exact match stays within 0.05 of the model with input feeding",
        "c": "training diverges: the loss becomes NaN",
        "d": "exact match rises by more than 0.05",
    },
    answer="b",
    explanation=("The decoder's own recurrence counts its steps, and its initial state comes from the "
                 "encoder's end states, which know the length: it can find position S-1-t without being told "
                 "where it looked before."),
    mistakes=(
        Mistake("a", "Run it: the decoder's state still knows the step t (it counts its own steps) and the length "
                     "S (from the encoder's end states)."),
        Mistake("c", "Run it: the loss goes down as for the model with input feeding."),
        Mistake("d", "Run it: the model with input feeding is already near 1, so there is no room for that."),
    ),
    solution=_ABLATION_SOLUTION,
    solution_text=r"""
(b). To attend to word $S-1-t$ at step $t$, the decoder's state must know $t$ and $S$. It knows $t$
because its recurrence runs once per output word, and $S$ because its initial state
$\mathbf{z}_0$ is computed from the encoder's two end states. Neither needs the fed attentional
state, so removing input feeding costs little here. Luong et al. found it useful on real
translation, where what was attended before (which words are already translated) helps decide
what to attend next; reversal has no such need. The code below trains the variant (it is cached
after the first run) and checks the conclusion.
""",
))
