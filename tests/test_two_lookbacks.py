"""The two-lookbacks task against a direct loop, its seeding and its validation."""

import pytest
import torch

from companion.tasks.two_lookbacks import IGNORE, make_batch, split_pair


@pytest.mark.parametrize("lags", [(1, 4), (3, 2)])
def test_targets_against_a_loop(lags):
    tokens, targets = make_batch(5, 9, 6, lags, rng=0)
    assert tokens.shape == targets.shape == (5, 9)
    assert tokens.dtype == targets.dtype == torch.long
    assert tokens.min() >= 0 and tokens.max() < 6
    a, b = lags
    for n in range(5):
        for t in range(9):
            if t < max(a, b):
                assert targets[n, t] == IGNORE
            else:
                assert targets[n, t] == tokens[n, t - a] * 6 + tokens[n, t - b]
    first, second = split_pair(targets, 6)
    scored = targets != IGNORE
    assert torch.equal(first[:, max(lags):], tokens[:, max(lags) - a : 9 - a])
    assert torch.equal(second[:, max(lags):], tokens[:, max(lags) - b : 9 - b])
    assert (first[~scored] == IGNORE).all() and (second[~scored] == IGNORE).all()


def test_seeding():
    x0, y0 = make_batch(4, 8, 5, rng=3)
    x1, y1 = make_batch(4, 8, 5, rng=3)
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert not torch.equal(x0, make_batch(4, 8, 5, rng=4)[0])
    stream = torch.Generator().manual_seed(3)
    first = make_batch(4, 8, 5, rng=stream)[0]
    second = make_batch(4, 8, 5, rng=stream)[0]
    assert torch.equal(first, x0) and not torch.equal(first, second)  # a stream draws new batches


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"size": 0}, ValueError, "size must be a positive integer, got 0"),
        ({"length": 2.0}, ValueError, "length must be a positive integer, got 2.0"),
        ({"vocab": 1}, ValueError, "vocab must be at least 2, got 1"),
        ({"lags": (1, 1)}, ValueError, r"the two lags must differ, got \(1, 1\)"),
        ({"lags": (0, 2)}, ValueError, r"lags must be integers in 1 .. length-1 = 7, got \(0, 2\)"),
        ({"lags": (1, 8)}, ValueError, r"lags must be integers in 1 .. length-1 = 7, got \(1, 8\)"),
        ({"lags": 3}, ValueError, "lags must be a pair of integers"),
        ({"lags": (1, 2, 3)}, ValueError, "lags must be a pair of integers"),
        ({"lags": (1.0, 2)}, ValueError, "lags must be integers"),
        ({"rng": 1.5}, TypeError, "rng must be an integer seed or a torch.Generator, got float"),
    ],
)
def test_errors(kwargs, error, match):
    args = {"size": 2, "length": 8, "vocab": 4, "lags": (1, 3), "rng": 0, **kwargs}
    with pytest.raises(error, match=match):
        make_batch(**args)


def test_split_pair_errors():
    with pytest.raises(TypeError, match="targets must be an integer tensor"):
        split_pair(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="vocab must be a positive integer"):
        split_pair(torch.zeros(2, 3, dtype=torch.long), 0)
