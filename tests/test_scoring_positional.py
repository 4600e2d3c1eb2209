"""Scoring functions against direct loops, and the sinusoidal encoding against its formula."""

import math

import pytest
import torch

from companion.positional import sinusoidal_encoding
from companion.scoring import AdditiveScore, GeneralScore, cosine_score, dot_score, scaled_dot_score


def _loop(score, q, k):
    """scores[b, i, j] = score(q[b, i], k[b, j]), one pair at a time."""
    B, Lq, _ = q.shape
    Lk = k.shape[1]
    out = torch.empty(B, Lq, Lk, dtype=q.dtype)
    for b in range(B):
        for i in range(Lq):
            for j in range(Lk):
                out[b, i, j] = score(q[b, i], k[b, j])
    return out


@pytest.fixture
def qk():
    g = torch.Generator().manual_seed(0)
    return torch.randn(2, 3, 5, generator=g, dtype=torch.float64), torch.randn(2, 4, 5, generator=g, dtype=torch.float64)


def test_dot_and_scaled(qk):
    q, k = qk
    torch.testing.assert_close(dot_score(q, k), _loop(torch.dot, q, k))
    torch.testing.assert_close(scaled_dot_score(q, k), _loop(lambda a, b: torch.dot(a, b) / math.sqrt(5), q, k))


def test_cosine(qk):
    q, k = qk
    ref = _loop(lambda a, b: torch.dot(a, b) / (a.norm() * b.norm()) / 0.5, q, k)
    torch.testing.assert_close(cosine_score(q, k, temperature=0.5), ref)
    zero = torch.zeros(1, 1, 5, dtype=torch.float64)
    assert torch.equal(cosine_score(zero, k[:1]), torch.zeros(1, 1, 4, dtype=torch.float64))
    with pytest.raises(ValueError, match="temperature must be positive"):
        cosine_score(q, k, temperature=0.0)


def test_general_allows_different_sizes():
    torch.manual_seed(0)
    score = GeneralScore(3, 5).double()
    q = torch.randn(2, 4, 3, dtype=torch.float64)
    k = torch.randn(2, 6, 5, dtype=torch.float64)
    torch.testing.assert_close(score(q, k), _loop(lambda a, b: a @ score.W @ b, q, k))
    with pytest.raises(ValueError, match=r"GeneralScore expects query \(\.\.\., 3\)"):
        score(k, k)


def test_additive_and_its_concat_form():
    torch.manual_seed(0)
    score = AdditiveScore(3, 5, 7).double()
    q = torch.randn(2, 4, 3, dtype=torch.float64)
    k = torch.randn(2, 6, 5, dtype=torch.float64)
    W = torch.cat([score.W_q.weight, score.W_k.weight], dim=1)  # Luong's concat: W [q; k]
    ref = _loop(lambda a, b: score.w_v.weight[0] @ torch.tanh(W @ torch.cat([a, b])), q, k)
    torch.testing.assert_close(score(q, k), ref)
    with pytest.raises(ValueError, match="AdditiveScore expects"):
        score(k, q)


def test_scores_broadcast_batch_axes():
    q = torch.randn(2, 1, 3, 4)
    k = torch.randn(1, 5, 6, 4)
    assert dot_score(q, k).shape == (2, 5, 3, 6)


def test_scoring_errors(qk):
    q, k = qk
    with pytest.raises(ValueError, match="same feature size"):
        dot_score(q, k[..., :4])
    with pytest.raises(TypeError, match="dtypes must match"):
        scaled_dot_score(q, k.float())
    with pytest.raises(ValueError, match="do not broadcast"):
        dot_score(torch.randn(2, 3, 4), torch.randn(3, 3, 4))
    with pytest.raises(ValueError, match="positive integer"):
        AdditiveScore(3, 0, 2)


def test_sinusoidal_encoding_formula():
    pe = sinusoidal_encoding(7, 6, dtype=torch.float64)
    for pos in range(7):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-12)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-12)


def test_sinusoidal_relative_positions_are_rotations():
    """PE[pos + k] is a fixed rotation of PE[pos] in each (sin, cos) plane (Vaswani et al. 2017)."""
    pe = sinusoidal_encoding(20, 8, dtype=torch.float64)
    k = 3
    for i in range(4):
        w = 1 / 10000 ** (2 * i / 8)
        c, s = math.cos(k * w), math.sin(k * w)
        rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)  # [sin, cos] row times rot
        torch.testing.assert_close(pe[k:, 2 * i : 2 * i + 2], pe[:-k, 2 * i : 2 * i + 2] @ rot)


def test_sinusoidal_errors():
    with pytest.raises(ValueError, match="dim must be even"):
        sinusoidal_encoding(4, 5)
    with pytest.raises(ValueError, match="length must be a positive integer"):
        sinusoidal_encoding(0, 4)
    with pytest.raises(TypeError, match="floating dtype"):
        sinusoidal_encoding(4, 4, dtype=torch.int64)
