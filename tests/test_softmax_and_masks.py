"""The masked softmax and the mask helpers."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.masks import causal_mask, padding_mask
from companion.softmax import masked_softmax


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
    for i in range(rows if dim in (1, -1) else cols):
        keep = mask[i] if dim in (1, -1) else mask[:, i]
        vals = s[i] if dim in (1, -1) else s[:, i]
        got = w[i] if dim in (1, -1) else w[:, i]
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
    with pytest.raises(ValueError, match="NaN"):
        masked_softmax(torch.tensor([1.0, float("nan")]))
    with pytest.raises(ValueError, match=r"\+inf"):
        masked_softmax(torch.tensor([1.0, float("inf")]))
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
    with pytest.raises(ValueError, match="length must be a positive integer"):
        causal_mask(0)


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
