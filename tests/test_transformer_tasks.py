"""The generated tasks of the Transformer chapter (digit sequences, repeated segments, the
probabilistic automaton) and the induction-circuit scores, against direct computations."""

import itertools
import math

import pytest
import torch

from companion.induction import AttentionOnlyTransformer, induction_score, previous_token_score
from companion.tasks import digit_sequences as ds
from companion.tasks.probabilistic_automaton import AutomatonConfig, ProbabilisticAutomaton
from companion.tasks.repeated_segments import RepeatedSegmentsConfig, generate


# ---- digit sequences -------------------------------------------------------------------------


@pytest.mark.parametrize("task", ds.TASKS)
def test_digit_splits_are_right_padded_and_held_out(task):
    config = ds.DigitTaskConfig(task=task, min_length=3, max_length=6, test_max_length=8, train_size=2000,
                                test_per_length=20, seed=1)
    train, test = ds.make_splits(config)
    assert set(test.src_lengths.tolist()) == set(range(3, 9))
    assert set(train.src_lengths.tolist()) <= set(range(3, 7))
    rows = lambda split: {tuple(split.src[n, :int(split.src_lengths[n])].tolist()) for n in range(len(split))}  # noqa: E731
    assert not rows(train) & rows(test)
    for split in (train, test):
        for n in range(0, len(split), 37):
            L = int(split.src_lengths[n])
            digits = (split.src[n, :L] - 3).tolist()
            assert torch.all(split.src[n, L:] == ds.PAD)
            expected = digits[::-1] if task == "reverse" else sorted(digits)
            assert (split.tgt_out[n, :L] - 3).tolist() == expected and split.tgt_out[n, L] == ds.EOS
            assert split.tgt_in[n, 0] == ds.BOS and torch.equal(split.tgt_in[n, 1:L + 1], split.tgt_out[n, :L])
            assert torch.all(split.tgt_out[n, L + 1:] == ds.PAD) and torch.all(split.tgt_in[n, L + 1:] == ds.PAD)
            assert ds.text(split.tgt_out[n]) == " ".join(map(str, expected))
    again = ds.make_splits(config)[1]
    assert torch.equal(again.src, test.src)


def test_digit_task_errors():
    with pytest.raises(ValueError, match="task must be one of"):
        ds.DigitTaskConfig(task="shuffle")
    with pytest.raises(ValueError, match="min_length <= max_length <= test_max_length"):
        ds.DigitTaskConfig(max_length=12, test_max_length=10)
    with pytest.raises(ValueError, match="only 10 sequences of length 1"):
        ds.make_splits(ds.DigitTaskConfig(min_length=1))
    with pytest.raises(ValueError, match="digits 0..9"):
        ds.answer([3, 10], "sort")


# ---- repeated segments -----------------------------------------------------------------------


def test_repeated_segments_layout():
    config = RepeatedSegmentsConfig(vocab_size=40, length=24, min_segment=3, max_segment=8)
    batch = generate(500, config, seed=3)
    assert batch.tokens.shape == (500, 24) and batch.tokens.max() < 40
    offsets = set()
    for n in range(500):
        x = batch.tokens[n].tolist()
        a, r, m = int(batch.source_start[n]), int(batch.copy_start[n]), int(batch.segment_length[n])
        assert 3 <= m <= 8 and r == 24 - m and a + m < r  # a gap of at least one token
        assert x[r:] == x[a:a + m]
        assert len(set(x[:r])) == r  # everything before the copy is distinct
        assert batch.repeated[n].nonzero().squeeze(1).tolist() == list(range(r + 1, 24))
        offsets.add(r - a)
    assert len(offsets) > 10  # no fixed offset
    assert len(set(batch.source_start.tolist())) > 5
    assert torch.equal(generate(500, config, seed=3).tokens, batch.tokens)
    with pytest.raises(ValueError, match="cannot hold two segments"):
        RepeatedSegmentsConfig(length=20, max_segment=10)


# ---- the probabilistic automaton -------------------------------------------------------------


def _brute_force_probs(a: ProbabilisticAutomaton, x: list[int]) -> list[list[float]]:
    """p(x_t = v | x_<t) by summing over every hidden path: p(x_<=t) / p(x_<t)."""
    K = a.num_states

    def prob(seq):
        if not seq:
            return 1.0
        total = 0.0
        for path in itertools.product(range(K), repeat=len(seq)):
            p = float(a.initial[path[0]])
            for t, (s, v) in enumerate(zip(path, seq)):
                p *= float(a.emission[s, v])
                if t + 1 < len(seq):
                    p *= float(a.transition[s, path[t + 1]])
            total += p
        return total

    return [[prob(x[:t] + [v]) / prob(x[:t]) for v in range(a.num_symbols)] for t in range(len(x))]


def test_forward_algorithm_equals_enumeration():
    a = ProbabilisticAutomaton.random(AutomatonConfig(num_states=3, num_symbols=4, symbols_per_state=2,
                                                      successors=2, seed=5))
    x = a.sample(3, 5, seed=0)
    probs = a.next_token_probs(x)
    for n in range(3):
        expected = torch.tensor(_brute_force_probs(a, x[n].tolist()), dtype=torch.float64)
        torch.testing.assert_close(probs[n], expected)
    assert math.isclose(a.cross_entropy(x), float(-probs.gather(2, x[..., None]).log().mean()))


def test_samples_follow_the_automaton():
    a = ProbabilisticAutomaton.random(AutomatonConfig(seed=0))
    x = a.sample(20_000, 3, seed=1)
    first = torch.bincount(x[:, 0], minlength=a.num_symbols).double() / 20_000
    torch.testing.assert_close(first, a.initial @ a.emission, atol=0.015, rtol=0)
    # the cross-entropy of the generator on its own text is its entropy rate: below the unigram's
    unigram = torch.bincount(x.flatten(), minlength=a.num_symbols).double() / x.numel()
    assert a.cross_entropy(x[:2000]) < float(-unigram[x[:2000]].log().mean())
    inputs, targets = a.lm_batch(x[:4])
    assert torch.all(inputs[:, 0] == a.num_symbols) and torch.equal(inputs[:, 1:], targets[:, :-1])


# ---- induction scores ------------------------------------------------------------------------


def test_scores_of_hand_made_patterns():
    tokens = torch.tensor([[5, 6, 7, 8, 6, 7, 8]])  # 6 7 8 repeats at 4: its earlier copy starts at 1
    T = 7
    prev = torch.zeros(T, T)
    prev[0, 0] = 1
    prev[torch.arange(1, T), torch.arange(T - 1)] = 1  # attends to t-1
    induct = torch.eye(T)
    for t, key in ((4, 2), (5, 3), (6, 4)):  # token at t occurred at key-1: look at key
        induct[t] = 0
        induct[t, key] = 1
    induct[6, 4] = induct[6, 5] = 0.5  # half induction, half previous token
    weights = torch.stack([prev, induct])[:, None, None]  # (layers=2, B=1, h=1, T, T)
    torch.testing.assert_close(previous_token_score(weights), torch.tensor([[1.0], [0.5 / 6]]))
    torch.testing.assert_close(induction_score(weights, tokens), torch.tensor([[0.0], [2.5 / 3]]))


def test_attention_only_model_is_causal_and_checks_input():
    torch.manual_seed(0)
    model = AttentionOnlyTransformer(10, 16, 2, 2, 12).double()
    x = torch.randint(0, 10, (2, 8))
    logits, weights = model(x, return_weights=True)
    assert logits.shape == (2, 8, 10) and weights["decoder"].shape == (2, 2, 2, 8, 8)
    changed = x.clone()
    changed[:, 5] = (changed[:, 5] + 1) % 10
    assert torch.equal(model(changed)[:, :5], logits[:, :5])
    with pytest.raises(ValueError, match="ids in 0 .. 9"):
        model(x + 10)
    with pytest.raises(ValueError, match="max_len=12"):
        model(torch.zeros(1, 13, dtype=torch.long))
