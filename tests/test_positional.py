"""Rotary position embedding, ALiBi and the sinusoidal encoding's offset rotation, each against
a direct computation (complex numbers, loops, the papers' slopes)."""

import math

import pytest
import torch

from companion.positional import (alibi_bias, alibi_slopes, frequencies, rotary_embedding,
                                  sinusoidal_encoding)


def _rope_complex(x: torch.Tensor, positions: torch.Tensor, base: float = 10000.0) -> torch.Tensor:
    """RoPE as complex multiplication: z_i = x[2i] + 1j x[2i+1] times exp(1j pos base^(-2i/d)).

    ``x (..., L, d)`` float64, ``positions`` broadcastable to ``x.shape[:-1]``."""
    d = x.shape[-1]
    z = torch.complex(x[..., 0::2], x[..., 1::2])  # (..., L, d/2)
    freq = torch.tensor([base ** (-2 * i / d) for i in range(d // 2)], dtype=torch.float64)
    angle = positions.to(torch.float64)[..., None] * freq  # (..., L, d/2)
    turned = z * torch.polar(torch.ones_like(angle), angle)
    return torch.stack([turned.real, turned.imag], dim=-1).flatten(-2)  # (..., L, d)


def test_frequencies():
    w = frequencies(8, base=100.0)
    torch.testing.assert_close(w, torch.tensor([1.0, 100 ** -0.25, 100 ** -0.5, 100 ** -0.75], dtype=torch.float64))
    with pytest.raises(ValueError, match="dim must be even"):
        frequencies(5)


def test_rotary_equals_complex_multiplication():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 3, 7, 8, generator=g, dtype=torch.float64)  # (B, h, L, d)
    torch.testing.assert_close(rotary_embedding(x), _rope_complex(x, torch.arange(7)))
    # another base, and float32 against the float64 reference
    torch.testing.assert_close(rotary_embedding(x, base=50.0), _rope_complex(x, torch.arange(7), 50.0))
    out32 = rotary_embedding(x.float())
    assert out32.dtype == torch.float32
    torch.testing.assert_close(out32, _rope_complex(x, torch.arange(7)).float(), atol=1e-5, rtol=1e-5)


def test_rotary_by_hand_for_one_pair():
    x = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)  # (L=3, d=2)
    out = rotary_embedding(x)  # w_0 = 1: position p turns by p radians
    expected = torch.tensor([[1.0, 0.0], [math.cos(1), math.sin(1)], [-2 * math.sin(2), 2 * math.cos(2)]],
                            dtype=torch.float64)
    torch.testing.assert_close(out, expected)


def test_rotary_keeps_float64_and_half_dtypes():
    x = torch.randn(1, 5, 4, dtype=torch.float64)
    assert rotary_embedding(x).dtype == torch.float64
    # float64 keeps float64 accuracy at large positions (float32 angles would be off by ~1e-3)
    far = torch.tensor([100_000, 123_457, 999_999, 3, 0])
    torch.testing.assert_close(rotary_embedding(x, far), _rope_complex(x, far), atol=1e-12, rtol=1e-12)
    for dtype in (torch.float16, torch.bfloat16):
        assert rotary_embedding(x.to(dtype)).dtype == dtype


def test_rotary_positions_explicit_and_per_sequence():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)  # (B, h, L, d)
    # (L,) positions: a decoder's new queries at the end of a cache of 10
    pos = torch.arange(5, 10)
    torch.testing.assert_close(rotary_embedding(x, pos), _rope_complex(x, pos))
    # (B, L) positions: each sequence its own, the same for every head
    per_seq = torch.tensor([[0, 1, 2, 3, 4], [7, 3, 11, 0, 2]])
    out = rotary_embedding(x, per_seq)
    for b in range(2):
        for h in range(3):
            torch.testing.assert_close(out[b, h], _rope_complex(x[b, h], per_seq[b]))
    # batch-first (B, L, d) and the default (L,) positions with an int32 tensor
    y = x[:, 0]  # (B, L, d)
    torch.testing.assert_close(rotary_embedding(y, per_seq), _rope_complex(y, per_seq))
    torch.testing.assert_close(rotary_embedding(y, torch.arange(5, dtype=torch.int32)), rotary_embedding(y))
    # negative positions rotate backwards: undoing a rotation
    torch.testing.assert_close(rotary_embedding(rotary_embedding(y, pos), -pos), y)


def test_rotary_scores_depend_only_on_the_offset():
    """q_rot(m) . k_rot(n) is a function of m - n (Su et al. 2021, section 3.2)."""
    g = torch.Generator().manual_seed(2)
    d = 16
    q, k = torch.randn(d, generator=g, dtype=torch.float64), torch.randn(d, generator=g, dtype=torch.float64)

    def score(m: int, n: int) -> torch.Tensor:
        qm = rotary_embedding(q[None], torch.tensor([m]))[0]
        kn = rotary_embedding(k[None], torch.tensor([n]))[0]
        return qm @ kn

    for offset in (-7, -1, 0, 1, 3, 12, 250):
        values = torch.stack([score(n + offset, n) for n in (0, 5, 31, 400, 4096)])
        torch.testing.assert_close(values, values[0].expand(5), atol=1e-10, rtol=1e-10)
    # and it does depend on the offset (the check above could not pass with a constant score)
    assert abs(score(3, 0) - score(0, 0)) > 1e-3
    # the same through a batch of queries and keys: the score matrix is a function of i - j
    Q = rotary_embedding(q.expand(6, d).clone())  # (L, d): the same vector at positions 0..5
    K = rotary_embedding(k.expand(6, d).clone())
    S = Q @ K.T  # (L, L)
    for offset in range(-5, 6):
        diagonal = torch.diagonal(S, offset=-offset)
        torch.testing.assert_close(diagonal, diagonal[0].expand_as(diagonal), atol=1e-12, rtol=1e-12)


def test_rotary_preserves_norms():
    g = torch.Generator().manual_seed(3)
    x = torch.randn(4, 2, 9, 10, generator=g, dtype=torch.float64)
    out = rotary_embedding(x, torch.randint(-50, 5000, (4, 9), generator=g))
    torch.testing.assert_close(out.norm(dim=-1), x.norm(dim=-1))
    pairs_in = x.unflatten(-1, (5, 2)).norm(dim=-1)  # every pair keeps its own norm
    torch.testing.assert_close(out.unflatten(-1, (5, 2)).norm(dim=-1), pairs_in)


def test_rotary_gradcheck():
    g = torch.Generator().manual_seed(4)
    x = torch.randn(2, 2, 4, 6, generator=g, dtype=torch.float64, requires_grad=True)
    pos = torch.tensor([[0, 3, 9, 1], [2, 2, 5, 100]])
    assert torch.autograd.gradcheck(lambda t: rotary_embedding(t, pos, base=30.0), (x,))


@pytest.mark.parametrize(
    "x, positions, base, error, match",
    [
        ([[1.0, 2.0]], None, 10000.0, TypeError, "x must be a torch.Tensor, got list"),
        (torch.ones(4, 6, dtype=torch.long), None, 10000.0, TypeError, "x must have a floating dtype"),
        (torch.ones(6), None, 10000.0, ValueError, r"x must have at least 2 dimensions, got shape \(6,\)"),
        (torch.ones(2, 4, 5), None, 10000.0, ValueError, r"last axis of x must be even .* x \(2, 4, 5\)"),
        (torch.ones(2, 4, 6), [0, 1, 2, 3], 10000.0, TypeError, "positions must be an integer torch.Tensor or None, got list"),
        (torch.ones(2, 4, 6), torch.arange(4.0), 10000.0, TypeError, "positions must be an integer tensor .* torch.float32"),
        (torch.ones(2, 4, 6), torch.ones(4, dtype=torch.bool), 10000.0, TypeError, "positions must be an integer tensor .* torch.bool"),
        (torch.ones(2, 4, 6), torch.arange(5), 10000.0, ValueError,
         r"positions must have shape \(4,\) or \(2, 4\) .* got positions \(5,\) for x \(2, 4, 6\)"),
        (torch.ones(2, 3, 4, 6), torch.zeros(3, 4, dtype=torch.long), 10000.0, ValueError,
         r"positions must have shape \(4,\) or \(2, 4\) .* got positions \(3, 4\) for x \(2, 3, 4, 6\)"),
        (torch.ones(4, 6), torch.zeros(1, 4, dtype=torch.long), 10000.0, ValueError,
         r"positions must have shape \(4,\) .* got positions \(1, 4\) for x \(4, 6\)"),
        (torch.ones(2, 4, 6), torch.zeros(2, 4, 1, dtype=torch.long), 10000.0, ValueError, r"got positions \(2, 4, 1\)"),
        (torch.ones(2, 4, 6), None, 0.0, ValueError, "base must be positive and finite"),
        (torch.ones(2, 4, 6), None, -2.0, ValueError, "base must be positive and finite"),
        (torch.ones(2, 4, 6), None, float("inf"), ValueError, "base must be positive and finite"),
        (torch.ones(2, 4, 6), None, "10000", ValueError, "base must be positive and finite"),
    ],
)
def test_rotary_errors(x, positions, base, error, match):
    with pytest.raises(error, match=match):
        rotary_embedding(x, positions, base)


# ---- the sinusoidal encoding: a fixed offset is a linear map --------------------------------

def test_sinusoidal_offset_is_one_linear_map_for_every_position():
    """PE[pos + k] = PE[pos] M_k for all pos, with M_k block-diagonal: in frequency pair i the
    2 x 2 rotation by k w_i (Vaswani et al. 2017, section 3.5). M_k is found by least squares
    from the table alone, then compared with the rotation: the map exists and is that one."""
    L, d = 60, 12
    pe = sinusoidal_encoding(L, d, dtype=torch.float64)
    w = frequencies(d)
    for k in (1, 2, 5, 17):
        fitted = torch.linalg.lstsq(pe[:-k], pe[k:]).solution  # (d, d): PE[pos] @ M = PE[pos + k]
        expected = torch.zeros(d, d, dtype=torch.float64)
        for i in range(d // 2):
            c, s = math.cos(k * w[i].item()), math.sin(k * w[i].item())
            # row vector [sin a, cos a] @ [[c, -s], [s, c]] = [sin(a + kw), cos(a + kw)]
            expected[2 * i : 2 * i + 2, 2 * i : 2 * i + 2] = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
        torch.testing.assert_close(pe[:-k] @ expected, pe[k:], atol=1e-12, rtol=0)
        # on the well-conditioned high-frequency pairs the fit recovers the rotation itself
        torch.testing.assert_close(fitted[:4, :4], expected[:4, :4], atol=1e-6, rtol=0)
        # M_k is orthogonal: a rotation in each pair, so the norm of PE[pos] never changes
        torch.testing.assert_close(expected @ expected.T, torch.eye(d, dtype=torch.float64))


def test_sinusoidal_validation():
    with pytest.raises(ValueError, match="base must be greater than 1, got 1.0"):
        sinusoidal_encoding(4, 4, base=1.0)
    with pytest.raises(ValueError, match="base must be positive and finite"):
        sinusoidal_encoding(4, 4, base="10000")
    with pytest.raises(ValueError, match="base must be positive and finite"):
        sinusoidal_encoding(4, 4, base=float("nan"))
    with pytest.raises(ValueError, match="dim must be a positive integer, got 4.0"):
        sinusoidal_encoding(4, 4.0)
    with pytest.raises(TypeError, match="dtype must be a floating dtype"):
        sinusoidal_encoding(4, 4, dtype="float32")
    torch.testing.assert_close(sinusoidal_encoding(5, 4, base=100.0, dtype=torch.float64)[3],
                               torch.tensor([math.sin(3), math.cos(3), math.sin(0.3), math.cos(0.3)], dtype=torch.float64))


def test_sinusoidal_is_rope_of_a_constant_vector():
    """Each pair of the table is the unit vector (0, 1) turned back by pos w_i: the two views of
    positions share their frequencies."""
    L, d = 9, 8
    start = torch.tensor([0.0, 1.0] * (d // 2), dtype=torch.float64).expand(L, d)
    turned = rotary_embedding(start.clone(), -torch.arange(L))  # (L, d)
    torch.testing.assert_close(turned, sinusoidal_encoding(L, d, dtype=torch.float64))


# ---- ALiBi ---------------------------------------------------------------------------------

def test_alibi_slopes_of_the_paper():
    torch.testing.assert_close(alibi_slopes(8, dtype=torch.float64),
                               torch.tensor([1 / 2 ** k for k in range(1, 9)], dtype=torch.float64))
    torch.testing.assert_close(alibi_slopes(16, dtype=torch.float64),
                               torch.tensor([2 ** (-k / 2) for k in range(1, 17)], dtype=torch.float64))
    torch.testing.assert_close(alibi_slopes(1, dtype=torch.float64), torch.tensor([2.0 ** -8], dtype=torch.float64))
    # 6 heads: the 4-head slopes 2^-2, 2^-4, 2^-6, 2^-8, then every other 8-head slope: 2^-1, 2^-3
    torch.testing.assert_close(alibi_slopes(6, dtype=torch.float64),
                               torch.tensor([2 ** -2, 2 ** -4, 2 ** -6, 2 ** -8, 2 ** -1, 2 ** -3], dtype=torch.float64))
    # 12 heads: the 8-head slopes, then 2^-0.5, 2^-1.5, 2^-2.5, 2^-3.5
    twelve = alibi_slopes(12, dtype=torch.float64)
    torch.testing.assert_close(twelve[8:], torch.tensor([2 ** -0.5, 2 ** -1.5, 2 ** -2.5, 2 ** -3.5], dtype=torch.float64))
    assert alibi_slopes(5).dtype == torch.float32 and alibi_slopes(5).shape == (5,)


def _alibi_loop(slopes, len_q, len_k):
    out = torch.zeros(len(slopes), len_q, len_k, dtype=torch.float64)
    for h, m in enumerate(slopes):
        for i in range(len_q):
            position = i + len_k - len_q  # queries at the end of the keys
            for j in range(len_k):
                if j <= position:
                    out[h, i, j] = -m * (position - j)
    return out


@pytest.mark.parametrize("heads, len_q, len_k", [(8, 5, None), (3, 4, 7), (2, 1, 6), (4, 6, 3)])
def test_alibi_bias_against_a_loop(heads, len_q, len_k):
    bias = alibi_bias(heads, len_q, len_k, dtype=torch.float64)
    slopes = alibi_slopes(heads, dtype=torch.float64).tolist()
    torch.testing.assert_close(bias, _alibi_loop(slopes, len_q, len_k or len_q))
    assert bias.shape == (heads, len_q, len_k or len_q)


def test_alibi_bias_given_slopes_and_dtypes():
    bias = alibi_bias(2, 3, slopes=[1.0, 0.5])
    assert bias.dtype == torch.float32
    torch.testing.assert_close(bias, _alibi_loop([1.0, 0.5], 3, 3).float())
    m = torch.tensor([0.3, 2.0], dtype=torch.float64, requires_grad=True)
    learned = alibi_bias(2, 4, 6, slopes=m)
    assert learned.dtype == torch.float64
    learned.sum().backward()  # the slopes may be learned: d bias / d m_h = -(i - j) summed
    torch.testing.assert_close(m.grad, _alibi_loop([1.0, 1.0], 4, 6).sum(dim=(1, 2)))


def test_alibi_bias_in_attention_matches_torch_float_mask():
    """Scores + bias with the causal mask equal torch's attention with the bias as a float mask
    plus -inf above the diagonal, and the bias favours nearby keys."""
    from companion.attention import causal_mask, masked_softmax

    g = torch.Generator().manual_seed(5)
    q = torch.randn(2, 4, 5, 8, generator=g, dtype=torch.float64)
    k = torch.randn(2, 4, 7, 8, generator=g, dtype=torch.float64)
    v = torch.randn(2, 4, 7, 3, generator=g, dtype=torch.float64)
    bias = alibi_bias(4, 5, 7, dtype=torch.float64)  # (h, Lq, Lk)
    mask = causal_mask(5, 7, offset=2)  # (Lq, Lk)
    ours = masked_softmax(q @ k.transpose(-2, -1) / math.sqrt(8) + bias, mask) @ v
    float_mask = bias.masked_fill(~mask, float("-inf"))
    theirs = torch.nn.functional.scaled_dot_product_attention(q, k, v, attn_mask=float_mask)
    torch.testing.assert_close(ours, theirs)
    # with equal content scores, the weight falls off geometrically with the distance
    weights = masked_softmax(torch.zeros(4, 5, 7, dtype=torch.float64) + bias, mask)  # (h, Lq, Lk)
    ratio = weights[:, -1, 1:] / weights[:, -1, :-1]  # (h, Lk-1): exp(m_h) for each step closer
    torch.testing.assert_close(ratio, alibi_slopes(4, dtype=torch.float64).exp()[:, None].expand_as(ratio))


@pytest.mark.parametrize(
    "args, kwargs, error, match",
    [
        ((0, 4), {}, ValueError, "num_heads must be a positive integer, got 0"),
        ((2, 0), {}, ValueError, "len_q must be a positive integer, got 0"),
        ((2, 3, 2.5), {}, ValueError, "len_k must be a positive integer, got 2.5"),
        ((2, 3), {"slopes": [1.0]}, ValueError, r"slopes must have shape \(2,\), one a head, got \(1,\)"),
        ((2, 3), {"slopes": torch.ones(2, 1)}, ValueError, r"slopes must have shape \(2,\), one a head, got \(2, 1\)"),
        ((2, 3), {"slopes": [1.0, 0.0]}, ValueError, r"slopes must be positive and finite, got \[1.0, 0.0\]"),
        ((2, 3), {"slopes": [1.0, float("nan")]}, ValueError, "slopes must be positive and finite"),
        ((2, 3), {"slopes": [1.0, float("inf")]}, ValueError, "slopes must be positive and finite"),
        ((2, 3), {"slopes": ["a", 1.0]}, TypeError, "slopes must be a sequence or tensor of numbers"),
        ((2, 3), {"slopes": 0.5}, TypeError, "slopes must be a sequence or tensor of numbers, got 0.5"),
        ((2, 3), {"slopes": torch.ones(2, dtype=torch.bool)}, TypeError, "slopes must be real numbers"),
        ((2, 3), {"dtype": torch.int64}, TypeError, "dtype must be a floating dtype, got torch.int64"),
    ],
)
def test_alibi_errors(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        alibi_bias(*args, **kwargs)


def test_alibi_slopes_errors():
    with pytest.raises(ValueError, match="num_heads must be a positive integer, got -1"):
        alibi_slopes(-1)
    with pytest.raises(TypeError, match="dtype must be a floating dtype"):
        alibi_slopes(4, dtype=torch.int32)
