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


def _cos(a, b):
    return torch.dot(a, b) / (a.norm() * b.norm())


def test_cosine_scale_per_batch_row(qk):
    q, k = qk  # (2, 3, 5), (2, 4, 5): scores (2, 3, 4)
    beta = torch.tensor([0.5, 4.0], dtype=torch.float64)
    ref = _loop(_cos, q, k) * beta[:, None, None]
    torch.testing.assert_close(cosine_score(q, k, scale=beta), ref)
    torch.testing.assert_close(cosine_score(q, k, scale=beta[:, None]), ref)  # (B, 1)
    torch.testing.assert_close(cosine_score(q, k, scale=beta[:, None, None]), ref)  # (B, 1, 1)
    torch.testing.assert_close(cosine_score(q, k, scale=torch.tensor(3.0, dtype=torch.float64)), 3 * _loop(_cos, q, k))
    torch.testing.assert_close(cosine_score(q, k, scale=3.0), 3 * _loop(_cos, q, k))
    torch.testing.assert_close(cosine_score(q, k, temperature=0.5, scale=beta), 2 * ref)
    per_query = torch.rand(2, 3, dtype=torch.float64)  # (B, Lq): one scale per query
    torch.testing.assert_close(cosine_score(q, k, scale=per_query), _loop(_cos, q, k) * per_query[..., None])
    # the neural Turing machine's content addressing: key (B, M) against memory (B, N, M)
    memory, key = k, q[:, 0]
    w = torch.softmax(cosine_score(key[:, None], memory, scale=beta)[:, 0], -1)  # (B, N)
    for b in range(2):
        sims = torch.stack([_cos(key[b], memory[b, i]) for i in range(4)])
        torch.testing.assert_close(w[b], torch.softmax(beta[b] * sims, 0))
    # scores (B, Lk) from a (B, d) query against (Lk, d) keys: beta (B,) scales row b
    flat = cosine_score(q[:, 0], k[0], scale=beta)  # (2, 4)
    torch.testing.assert_close(flat, torch.stack([torch.stack([_cos(q[b, 0], k[0, j]) for j in range(4)]) for b in range(2)]) * beta[:, None])
    # a float32 scale does not change the scores' dtype; zero gives uniform weights
    assert cosine_score(q, k, scale=beta.float()).dtype == torch.float64
    assert torch.equal(cosine_score(q, k, scale=torch.zeros(2, dtype=torch.float64)), torch.zeros(2, 3, 4, dtype=torch.float64))


def test_cosine_scale_gradient_and_zero_vectors():
    torch.manual_seed(0)
    q = torch.randn(2, 1, 3, dtype=torch.float64)
    q[1] = 0.0  # a zero query: score 0, not NaN
    q.requires_grad_(True)
    k = torch.randn(2, 4, 3, dtype=torch.float64)
    k[0, 2] = 0.0  # a zero key
    k.requires_grad_(True)
    beta = torch.tensor([1.5, 2.0], dtype=torch.float64, requires_grad=True)
    scores = cosine_score(q, k, scale=beta)
    assert (scores[1] == 0).all() and scores[0, 0, 2] == 0
    scores.sum().backward()
    for t in (q, k, beta):
        assert torch.isfinite(t.grad).all()
    assert beta.grad[1] == 0  # a zero query has score 0 whatever beta
    torch.testing.assert_close(beta.grad[0], cosine_score(q, k).detach()[0].sum())
    q2 = torch.randn(2, 1, 3, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda beta, k: cosine_score(q2, k, scale=beta), (beta, torch.randn(2, 4, 3, dtype=torch.float64, requires_grad=True)))


@pytest.mark.parametrize(
    "scale, error, match",
    [
        (-1.0, ValueError, "scale must be a non-negative finite number or tensor, got -1.0"),
        (float("nan"), ValueError, "scale must be a non-negative finite number or tensor, got nan"),
        (float("inf"), ValueError, "scale must be a non-negative finite number or tensor, got inf"),
        ("2", ValueError, "scale must be a non-negative finite number or tensor, got '2'"),
        (torch.tensor([1.0, -0.5]), ValueError, r"scale must be non-negative and finite, got tensor\(\[ 1.0000, -0.5000\]\)"),
        (torch.tensor([1.0, float("inf")]), ValueError, "scale must be non-negative and finite"),
        (torch.tensor([1.0, float("nan")]), ValueError, "scale must be non-negative and finite"),
        (torch.tensor([1, 2]), TypeError, "scale must have a floating dtype, got torch.int64"),
        (torch.ones(3), ValueError, r"scale of shape \(3,\) must match the leading axes of the scores \(2, 3, 4\)"),
        (torch.ones(2, 3, 4, 1), ValueError, r"scale of shape \(2, 3, 4, 1\) must match the leading axes"),
        (torch.ones(2, 3, 5), ValueError, r"scale of shape \(2, 3, 5\) must match the leading axes"),
    ],
)
def test_cosine_scale_errors(qk, scale, error, match):
    q, k = qk
    with pytest.raises(error, match=match):
        cosine_score(q.float(), k.float(), scale=scale)


def test_cosine_other_errors(qk):
    q, k = qk
    with pytest.raises(ValueError, match="temperature must be positive and finite"):
        cosine_score(q, k, temperature=float("inf"))
    with pytest.raises(ValueError, match="eps must be positive and finite"):
        cosine_score(q, k, eps=0.0)


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
