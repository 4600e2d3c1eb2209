"""Chapter 3's exercises: the additive score, a context vector by hand, a masked context for
padded batches, and what the alignment of a reversal must look like."""

from __future__ import annotations

import math

import torch

from .checker import ChoiceExercise, FunctionExercise, Mistake, ValueExercise, register


# --- 1. Bahdanau's additive score ---------------------------------------------------------

def _additive(s, H, W_a, U_a, v_a):
    """e_j = v_a^T tanh(W_a s + U_a h_j) for every row h_j of H: (S,)."""
    return torch.tanh(H @ U_a.T + W_a @ s) @ v_a  # (S, A) @ (A,) -> (S,)


def _additive_no_tanh(s, H, W_a, U_a, v_a):
    return (H @ U_a.T + W_a @ s) @ v_a


def _additive_tanh_outside(s, H, W_a, U_a, v_a):
    return torch.tanh((H @ U_a.T + W_a @ s) @ v_a)


def _additive_softmaxed(s, H, W_a, U_a, v_a):
    return torch.softmax(_additive(s, H, W_a, U_a, v_a), -1)


def _additive_cases():
    g = torch.Generator().manual_seed(3)
    cases = []
    for S, D, Dh, A in ((4, 3, 5, 2), (7, 6, 6, 4), (1, 2, 3, 3)):
        cases.append((torch.randn(D, generator=g), torch.randn(S, Dh, generator=g),
                      torch.randn(A, D, generator=g), torch.randn(A, Dh, generator=g), torch.randn(A, generator=g)))
    return cases


register(FunctionExercise(
    id="global_attention/additive-score",
    title="Bahdanau's additive score",
    reference=_additive,
    cases=_additive_cases,
    rtol=1e-5,
    atol=1e-6,
    mistakes=(
        Mistake(_additive_no_tanh, "Without the tanh the score is linear: v^T W s + v^T U h_j. The query term is "
                                   "then the same for every j and cancels in the softmax, so the query could not "
                                   "change the weights at all. Apply tanh to W_a s + U_a h_j, then take v_a^T."),
        Mistake(_additive_tanh_outside, "The tanh goes inside, on the A-dimensional hidden layer W_a s + U_a h_j; "
                                        "v_a^T is the output layer of the little network and comes after it."),
        Mistake(_additive_softmaxed, "Return the energies e_j themselves; the softmax that turns them into "
                                     "weights alpha_j is a separate step."),
    ),
))


# --- 2. A context vector by hand ----------------------------------------------------------

register(ValueExercise(
    id="global_attention/context-by-hand",
    title="A context vector by hand",
    expected=lambda: torch.tensor([-4.0, 6.0]),
    rtol=1e-4,
    atol=1e-4,
    mistakes=(
        Mistake(torch.tensor([0.0, 4.0]), "That is the plain average (each weight 1/3). The weights are the softmax "
                                          "of the energies: exp(0), exp(log 2), exp(log 5) are 1, 2, 5, so the "
                                          "weights are 1/8, 2/8 and 5/8."),
        Mistake(torch.tensor([-8 * math.log(5), 4 * math.log(2) + 8 * math.log(5)]),
                "You weighted the annotations by the energies themselves; pass them through the softmax first."),
        Mistake(torch.tensor([0.0, 12.0]), "That is the sum of the annotations; weight each by its alpha_j."),
    ),
))


# --- 3. A masked context for a padded batch -----------------------------------------------

def _masked_context(scores, annotations, lengths):
    """(context (B, D), weights (B, S)); weights exactly zero at positions j >= lengths[b]."""
    S = scores.shape[-1]
    real = torch.arange(S)[None, :] < lengths[:, None]  # (B, S)
    weights = torch.softmax(scores.masked_fill(~real, float("-inf")), -1)  # (B, S)
    return (weights.unsqueeze(1) @ annotations).squeeze(1), weights  # (B, D), (B, S)


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
))


# --- 4. What the alignment must look like -------------------------------------------------

register(ChoiceExercise(
    id="global_attention/alignment-shape",
    title="The alignment of a reversal",
    options={
        "a": "a diagonal from top-left to bottom-right: output i attends to word i",
        "b": "an anti-diagonal: output i attends to word L - 1 - i, so '4' attends to 'four'",
        "c": "every output attends mostly to the last word, which the decoder read most recently",
        "d": "uniform rows: every output must look at every word equally, since all are needed",
    },
    answer="b",
    explanation=("Output i of the reversal is the translation of source word L - 1 - i, and the digits repeat, so "
                 "only that word holds the information output i needs; a model that translates every sentence "
                 "correctly and reads the source through attention puts (nearly) all of output i's weight there."),
    mistakes=(
        Mistake("a", "That is the alignment of a word-by-word translation that keeps the order; here the order is "
                     "reversed. Which source word does the first output, '4', translate?"),
        Mistake("c", "Attention reads every annotation equally easily: recency plays no role. Which word holds "
                     "the digit that output i must write?"),
        Mistake("d", "Averaging all words would blur the digits together; each output needs one word only."),
    ),
))
