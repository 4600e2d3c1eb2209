"""The most-recent-marker task against a direct loop, its seeding and its validation."""

import pytest
import torch

from companion.tasks.most_recent import IGNORE, distance_back, make_batch, targets_of


@pytest.mark.parametrize("vocab, markers, rate", [(16, 4, 0.25), (5, 2, 0.6)])
def test_targets_against_a_loop(vocab, markers, rate):
    tokens, targets = make_batch(6, 20, vocab, markers, rate, rng=1)
    assert tokens.shape == targets.shape == (6, 20)
    assert tokens.dtype == targets.dtype == torch.long
    assert tokens.min() >= 0 and tokens.max() < vocab
    distance = distance_back(tokens, markers)
    for n in range(6):
        last = None
        for t in range(20):
            if tokens[n, t] < markers:
                last = t
            if last is None:
                assert targets[n, t] == IGNORE and distance[n, t] == -1
            else:
                assert targets[n, t] == tokens[n, last]
                assert distance[n, t] == t - last


def test_marker_rate_and_both_kinds_of_token():
    tokens, _ = make_batch(200, 50, 16, 4, 0.25, rng=0)
    share = (tokens < 4).double().mean().item()
    assert 0.22 < share < 0.28, share
    assert set(tokens.unique().tolist()) == set(range(16))


def test_order_matters():
    """Two orderings of the same tokens, different answers: a bag of tokens cannot solve it."""
    a = torch.tensor([[0, 5, 1, 6]])
    b = torch.tensor([[1, 5, 0, 6]])
    assert targets_of(a, 4)[0, -1] == 1 and targets_of(b, 4)[0, -1] == 0


def test_seeding():
    x0, y0 = make_batch(4, 8, rng=3)
    x1, y1 = make_batch(4, 8, rng=3)
    assert torch.equal(x0, x1) and torch.equal(y0, y1)
    assert not torch.equal(x0, make_batch(4, 8, rng=4)[0])
    stream = torch.Generator().manual_seed(3)
    assert torch.equal(make_batch(4, 8, rng=stream)[0], x0)
    assert not torch.equal(make_batch(4, 8, rng=stream)[0], x0)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(size=0), ValueError, "size"),
        (dict(length=-1), ValueError, "length"),
        (dict(markers=1), ValueError, "markers"),
        (dict(markers=16), ValueError, "markers"),
        (dict(marker_rate=0.0), ValueError, "marker_rate"),
        (dict(marker_rate=1.5), ValueError, "marker_rate"),
        (dict(rng=1.5), TypeError, "rng"),
    ],
)
def test_bad_settings(kwargs, error, match):
    settings = dict(size=2, length=5, vocab=16, markers=4, marker_rate=0.25, rng=0) | kwargs
    with pytest.raises(error, match=match):
        make_batch(**settings)


def test_targets_of_rejects_bad_tokens():
    with pytest.raises(ValueError, match="tokens"):
        targets_of(torch.zeros(5, dtype=torch.long), 2)
    with pytest.raises(TypeError, match="dtype"):
        targets_of(torch.zeros(2, 5), 2)
