"""The masked softmax, its logarithm and the mask helpers."""

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.masks import causal_mask, padding_mask
from companion.softmax import masked_log_softmax, masked_softmax


def _lines(dim, *tensors):
    """The 1-D lines along ``dim`` of 2-D tensors, one tuple (one line of each) at a time."""
    return zip(*(t.movedim(dim, -1) for t in tensors))


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 5), cols=st.integers(1, 8), scale=st.sampled_from([1.0, 1e2, 1e4, 1e30]),
       seed=st.integers(0, 10_000))
def test_equals_torch_softmax_and_is_stable(rows, cols, scale, seed):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(rows, cols, generator=g, dtype=torch.float64) * scale
    w = masked_softmax(s)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w, torch.softmax(s, -1))
    torch.testing.assert_close(w.sum(-1), torch.ones(rows, dtype=torch.float64))


def test_huge_float32_logits_do_not_overflow():
    s = torch.tensor([1000.0, 999.0, -1000.0])
    w = masked_softmax(s)
    expected = torch.tensor([1 / (1 + torch.e**-1), torch.e**-1 / (1 + torch.e**-1), 0.0])
    torch.testing.assert_close(w, expected)


@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 5), cols=st.integers(1, 8), seed=st.integers(0, 10_000), dim=st.sampled_from([0, 1, -1, -2]))
def test_masked_entries_are_exactly_zero_and_rows_renormalise(rows, cols, seed, dim):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(rows, cols, generator=g)
    mask = torch.rand(rows, cols, generator=g) > 0.5
    w = masked_softmax(s, mask, dim=dim)
    assert (w[~mask] == 0).all()
    live = mask.any(dim)
    sums = w.sum(dim)
    torch.testing.assert_close(sums[live], torch.ones_like(sums[live]))
    assert (sums[~live] == 0).all()
    # same as the softmax of the kept entries alone
    for vals, keep, got in _lines(dim, s, mask, w):
        if keep.any():
            torch.testing.assert_close(got[keep], torch.softmax(vals[keep], 0))


def test_fully_masked_row_gives_zeros_not_nan():
    s = torch.randn(2, 3)
    mask = torch.tensor([[True, True, False], [False, False, False]])
    w = masked_softmax(s, mask)
    assert not torch.isnan(w).any()
    assert (w[1] == 0).all()


def test_gradcheck():
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([True, False, True, True])
    assert torch.autograd.gradcheck(lambda s: masked_softmax(s, mask), (s,))


def test_softmax_errors():
    with pytest.raises(TypeError, match="floating dtype"):
        masked_softmax(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match=r"scores contains NaN at an allowed entry \(shape \(2,\)\)"):
        masked_softmax(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"scores contains \+inf at an allowed entry"):
        masked_softmax(torch.tensor([1.0, float("inf")]))
    with pytest.raises(ValueError, match="dim=True is out of range"):
        masked_softmax(torch.randn(2, 2), dim=True)
    with pytest.raises(ValueError, match="dim=2 is out of range"):
        masked_softmax(torch.randn(2, 2), dim=2)
    with pytest.raises(ValueError, match=r"mask of shape \(3,\) does not broadcast to the scores' shape \(2, 2\)"):
        masked_softmax(torch.randn(2, 2), torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        masked_softmax(torch.randn(2, 2), torch.ones(2, 2, dtype=torch.int64))


def test_minus_inf_scores_behave_like_a_mask():
    s = torch.tensor([[0.0, float("-inf"), 1.0], [float("-inf")] * 3])
    w = masked_softmax(s)
    torch.testing.assert_close(w[0], torch.softmax(torch.tensor([0.0, 1.0]), 0)[[0, 0, 1]] * torch.tensor([1.0, 0.0, 1.0]))
    assert (w[1] == 0).all()


def test_causal_mask():
    m = causal_mask(4)
    assert m.dtype == torch.bool and m.shape == (4, 4)
    for i in range(4):
        for j in range(4):
            assert bool(m[i, j]) == (j <= i)
    assert torch.equal(causal_mask(4), causal_mask(4, 4, offset=0))


@settings(max_examples=60, deadline=None)
@given(len_q=st.integers(1, 7), len_k=st.integers(1, 7), offset=st.integers(-8, 8))
def test_causal_mask_with_offset_matches_its_definition(len_q, len_k, offset):
    m = causal_mask(len_q, len_k, offset=offset)
    assert m.dtype == torch.bool and m.shape == (len_q, len_k)
    expected = [[j <= i + offset for j in range(len_k)] for i in range(len_q)]
    assert m.tolist() == expected


def test_causal_mask_end_aligned_for_a_cache():
    # one new query after 4 cached keys sees all 5; two new queries see 4 and 5 keys
    assert causal_mask(1, 5, offset=4).tolist() == [[True] * 5]
    assert causal_mask(2, 5, offset=3).tolist() == [[True] * 4 + [False], [True] * 5]


@pytest.mark.parametrize(
    "args, kwargs, match",
    [
        ((0,), {}, "len_q must be a positive integer, got 0"),
        ((2.0,), {}, "len_q must be a positive integer, got 2.0"),
        ((True,), {}, "len_q must be a positive integer, got True"),
        ((3, 0), {}, "len_k must be a positive integer, got 0"),
        ((3, -2), {}, "len_k must be a positive integer, got -2"),
        ((3, 4), {"offset": 1.5}, r"offset must be an integer, got 1.5 \(float\)"),
        ((3, 4), {"offset": True}, "offset must be an integer, got True"),
    ],
)
def test_causal_mask_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        causal_mask(*args, **kwargs)


def test_padding_mask():
    m = padding_mask(torch.tensor([3, 1, 0]), max_length=4)
    assert m.shape == (3, 1, 4)
    assert m[:, 0].tolist() == [[True, True, True, False], [True, False, False, False], [False] * 4]
    assert padding_mask([2, 5]).shape == (2, 1, 5)
    with pytest.raises(ValueError, match="shorter than the longest"):
        padding_mask(torch.tensor([5]), max_length=3)
    with pytest.raises(TypeError, match="integers"):
        padding_mask(torch.tensor([1.5]))
    with pytest.raises(ValueError, match="non-negative"):
        padding_mask(torch.tensor([-1, 2]))
    with pytest.raises(ValueError, match="one-dimensional"):
        padding_mask(torch.tensor([[1, 2]]))


def test_nan_or_inf_at_a_blocked_entry_is_ignored():
    s = torch.tensor([[1.0, float("nan"), 2.0], [float("inf"), 0.0, 1.0]])
    mask = torch.tensor([[True, False, True], [False, True, True]])
    w = masked_softmax(s, mask)
    torch.testing.assert_close(w[0, [0, 2]], torch.softmax(torch.tensor([1.0, 2.0]), 0))
    torch.testing.assert_close(w[1, [1, 2]], torch.softmax(torch.tensor([0.0, 1.0]), 0))
    assert w[0, 1] == 0 and w[1, 0] == 0
    logp = masked_log_softmax(s, mask)
    assert not torch.isnan(logp).any()
    assert logp[0, 1] == float("-inf") and logp[1, 0] == float("-inf")


# ---- masked_log_softmax -------------------------------------------------------------------

@settings(max_examples=50, deadline=None)
@given(rows=st.integers(1, 5), cols=st.integers(1, 8), scale=st.sampled_from([1.0, 1e2, 1e4, 1e30]),
       seed=st.integers(0, 10_000), dtype=st.sampled_from([torch.float32, torch.float64]))
def test_log_softmax_equals_torch_without_mask(rows, cols, scale, seed, dtype):
    g = torch.Generator().manual_seed(seed)
    s = (torch.randn(rows, cols, generator=g, dtype=torch.float64) * scale).to(dtype)
    logp = masked_log_softmax(s)
    assert torch.isfinite(logp).all()
    torch.testing.assert_close(logp, torch.log_softmax(s, -1))


@settings(max_examples=60, deadline=None)
@given(rows=st.integers(1, 5), cols=st.integers(1, 8), seed=st.integers(0, 10_000), dim=st.sampled_from([0, 1, -1, -2]),
       scale=st.sampled_from([1.0, 30.0, 1e4]))
def test_log_softmax_with_mask(rows, cols, seed, dim, scale):
    g = torch.Generator().manual_seed(seed)
    s = torch.randn(rows, cols, generator=g, dtype=torch.float64) * scale
    mask = torch.rand(rows, cols, generator=g) > 0.5
    logp = masked_log_softmax(s, mask, dim=dim)
    assert not torch.isnan(logp).any()
    assert (logp[~mask] == float("-inf")).all()
    assert torch.isfinite(logp[mask]).all()  # even where exp underflows to a zero weight
    # the log of masked_softmax wherever that is finite
    log_w = torch.log(masked_softmax(s, mask, dim=dim))
    finite = torch.isfinite(log_w)
    torch.testing.assert_close(logp[finite], log_w[finite])
    # and torch's log_softmax of the kept entries of each row
    for vals, keep, got in _lines(dim, s, mask, logp):
        if keep.any():
            torch.testing.assert_close(got[keep], torch.log_softmax(vals[keep], 0))
        else:
            assert (got == float("-inf")).all()


def test_log_softmax_of_huge_float32_scores_is_finite_where_softmax_underflows():
    s = torch.tensor([[1e4, 1e4 - 1, 0.0, -1e4]])
    logp = masked_log_softmax(s)
    assert torch.isfinite(logp).all()
    torch.testing.assert_close(logp, torch.log_softmax(s, -1))
    assert torch.log(masked_softmax(s))[0, 2] == float("-inf")  # the naive log loses it
    assert logp[0, 2].item() == pytest.approx(-1e4 - torch.log1p(torch.tensor(math.exp(-1))).item())


def test_log_softmax_gradient_is_finite_for_reinforce_with_fully_masked_rows():
    torch.manual_seed(0)
    s = (torch.randn(4, 5) * 1e4).requires_grad_(True)
    mask = torch.tensor([[True, False, True, True, False], [False] * 5, [True] * 5, [False, False, False, False, True]])
    logp = masked_log_softmax(s, mask)
    (logp.masked_fill(~mask, 0)).sum().backward()
    assert torch.isfinite(s.grad).all()
    assert (s.grad[1] == 0).all() and (s.grad[~mask] == 0).all()
    # the gradient of the kept entries is torch's log_softmax gradient of those entries alone
    for i in (0, 2, 3):
        row = s.detach()[i, mask[i]].clone().requires_grad_(True)
        torch.log_softmax(row, 0).sum().backward()
        torch.testing.assert_close(s.grad[i, mask[i]], row.grad)
    # REINFORCE: sample an index per live row, backpropagate reward * log p(sample)
    s.grad = None
    logp = masked_log_softmax(s, mask)
    live = mask.any(-1)
    sample = torch.multinomial(logp.detach().exp()[live], 1)  # (live rows, 1)
    reward = torch.randn(int(live.sum()), 1)
    (-(reward * logp[live].gather(-1, sample))).sum().backward()
    assert torch.isfinite(s.grad).all()
    assert (s.grad[1] == 0).all()


def test_log_softmax_gradcheck():
    s = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, False, True, True], [False] * 4, [True] * 4])
    assert torch.autograd.gradcheck(lambda s: masked_log_softmax(s, mask).masked_fill(~mask, 0), (s,))


def test_log_softmax_errors():
    with pytest.raises(TypeError, match="scores must have a floating dtype"):
        masked_log_softmax(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="scores contains NaN at an allowed entry"):
        masked_log_softmax(torch.tensor([[1.0, float("nan")]]))
    with pytest.raises(ValueError, match=r"scores contains \+inf at an allowed entry"):
        masked_log_softmax(torch.tensor([1.0, float("inf")]), torch.tensor([True, True]))
    with pytest.raises(ValueError, match=r"dim=-3 is out of range for scores of shape \(2, 2\)"):
        masked_log_softmax(torch.randn(2, 2), dim=-3)
    with pytest.raises(ValueError, match=r"mask of shape \(3,\) does not broadcast to the scores' shape \(2, 2\)"):
        masked_log_softmax(torch.randn(2, 2), torch.ones(3, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        masked_log_softmax(torch.randn(2, 2), torch.ones(2, 2))
