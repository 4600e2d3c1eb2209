"""Scaled dot-product and multi-head attention against torch's reference implementations."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.attention import MultiHeadAttention, attend, causal_mask, scaled_dot_product_attention

DTYPES = [torch.float32, torch.float64]
TOL = {torch.float32: dict(rtol=1e-5, atol=1e-5), torch.float64: dict(rtol=1e-10, atol=1e-10)}

shapes = st.fixed_dictionaries(
    {
        "batch": st.lists(st.integers(1, 3), min_size=0, max_size=2),
        "len_q": st.integers(1, 7),
        "len_k": st.integers(1, 7),
        "d_k": st.integers(1, 9),
        "d_v": st.integers(1, 9),
        "seed": st.integers(0, 2**16),
    }
)


def _qkv(s, dtype):
    g = torch.Generator().manual_seed(s["seed"])
    b = tuple(s["batch"])
    q = torch.randn(*b, s["len_q"], s["d_k"], generator=g, dtype=dtype)
    k = torch.randn(*b, s["len_k"], s["d_k"], generator=g, dtype=dtype)
    v = torch.randn(*b, s["len_k"], s["d_v"], generator=g, dtype=dtype)
    return q, k, v, g


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(s=shapes)
def test_equals_torch_without_mask(dtype, s):
    q, k, v, _ = _qkv(s, dtype)
    out, w = scaled_dot_product_attention(q, k, v)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v), **TOL[dtype])
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=dtype), **TOL[dtype])
    assert w.shape == (*s["batch"], s["len_q"], s["len_k"])


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(s=shapes)
def test_equals_torch_with_mask_on_rows_that_can_attend(dtype, s):
    q, k, v, g = _qkv(s, dtype)
    mask = torch.rand(*s["batch"], s["len_q"], s["len_k"], generator=g) > 0.4
    out, w = scaled_dot_product_attention(q, k, v, mask)
    live = mask.any(-1)
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
    torch.testing.assert_close(out[live], ref[live], **TOL[dtype])
    # masked entries get exactly zero weight; fully masked rows give zeros, never NaN
    assert (w[~mask.expand_as(w)] == 0).all()
    assert not torch.isnan(out).any() and not torch.isnan(w).any()
    assert (out[~live] == 0).all()
    torch.testing.assert_close(w.sum(-1)[live], torch.ones_like(w.sum(-1)[live]), **TOL[dtype])


def test_broadcast_mask_and_causal():
    q, k, v = (torch.randn(2, 3, 5, 4) for _ in range(3))
    out, w = scaled_dot_product_attention(q, k, v, causal_mask(5))
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, ref)
    assert (w.triu(1) == 0).all()


def test_hand_computed_example():
    q = torch.tensor([[1.0, 0.0]])
    k = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    v = torch.tensor([[10.0], [20.0]])
    out, w = scaled_dot_product_attention(q, k, v)
    a = math.exp(1 / math.sqrt(2))
    expected_w = torch.tensor([[a / (a + 1), 1 / (a + 1)]])
    torch.testing.assert_close(w, expected_w)
    torch.testing.assert_close(out, expected_w @ v)


def test_self_attention_is_permutation_equivariant():
    torch.manual_seed(0)
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    perm = torch.randperm(6)
    out, w = scaled_dot_product_attention(x, x, x)
    out_p, w_p = scaled_dot_product_attention(x[:, perm], x[:, perm], x[:, perm])
    torch.testing.assert_close(out_p, out[:, perm])
    torch.testing.assert_close(w_p, w[:, perm][:, :, perm])
    mha = MultiHeadAttention(8, 2).double()
    y, _ = mha(x, x, x)
    y_p, _ = mha(x[:, perm], x[:, perm], x[:, perm])
    torch.testing.assert_close(y_p, y[:, perm])


def test_gradcheck_float64():
    torch.manual_seed(1)
    q = torch.randn(2, 3, 4, dtype=torch.float64, requires_grad=True)
    k = torch.randn(2, 5, 4, dtype=torch.float64, requires_grad=True)
    v = torch.randn(2, 5, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([True, True, False, True, False])
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask)[0], (q, k, v))


def test_gradient_is_finite_for_fully_masked_rows():
    q = torch.randn(1, 2, 4, requires_grad=True)
    k = torch.randn(1, 3, 4, requires_grad=True)
    v = torch.randn(1, 3, 4, requires_grad=True)
    mask = torch.tensor([[[True, False, True], [False, False, False]]])
    out, _ = scaled_dot_product_attention(q, k, v, mask)
    out.sum().backward()
    for t in (q, k, v):
        assert torch.isfinite(t.grad).all()
    assert (q.grad[0, 1] == 0).all()


@pytest.mark.parametrize(
    "q_shape, k_shape, v_shape, match",
    [
        ((2, 3, 4), (2, 5, 6), (2, 5, 6), "same feature size"),
        ((2, 3, 4), (2, 5, 4), (2, 6, 4), "same length"),
        ((2, 3, 4), (3, 5, 4), (3, 5, 4), "do not broadcast"),
        ((4,), (5, 4), (5, 4), "at least 2 dimensions"),
    ],
)
def test_shape_errors_name_the_arguments(q_shape, k_shape, v_shape, match):
    with pytest.raises(ValueError, match=match):
        scaled_dot_product_attention(torch.randn(q_shape), torch.randn(k_shape), torch.randn(v_shape))


def test_dtype_and_mask_errors():
    q = k = v = torch.randn(2, 3, 4)
    with pytest.raises(TypeError, match="floating dtype"):
        scaled_dot_product_attention(q.long(), k.long(), v.long())
    with pytest.raises(TypeError, match="dtypes must match"):
        scaled_dot_product_attention(q, k.double(), v)
    with pytest.raises(TypeError, match="boolean"):
        scaled_dot_product_attention(q, k, v, torch.ones(3, 3))
    with pytest.raises(ValueError, match=r"mask of shape \(4, 3\) does not broadcast"):
        scaled_dot_product_attention(q, k, v, torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(TypeError, match="torch.Tensor"):
        scaled_dot_product_attention(q.numpy(), k, v)
    with pytest.raises(ValueError, match="value has 2 positions"):
        attend(torch.randn(3, 4), torch.randn(2, 5))


# ---- multi-head attention ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("bias", [True, False])
@settings(max_examples=15, deadline=None)
@given(heads=st.sampled_from([1, 2, 4]), head_dim=st.integers(1, 5), len_q=st.integers(1, 6),
       len_k=st.integers(1, 6), batch=st.integers(1, 3), seed=st.integers(0, 1000))
def test_mha_equals_torch(dtype, bias, heads, head_dim, len_q, len_k, batch, seed):
    torch.manual_seed(seed)
    E = heads * head_dim
    ref = torch.nn.MultiheadAttention(E, heads, bias=bias, batch_first=True).to(dtype)
    ours = MultiHeadAttention.from_torch(ref)
    q = torch.randn(batch, len_q, E, dtype=dtype)
    kv = torch.randn(batch, len_k, E, dtype=dtype)
    v = torch.randn(batch, len_k, E, dtype=dtype)
    out, w = ours(q, kv, v)
    ref_out, ref_w = ref(q, kv, v, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, **TOL[dtype])
    torch.testing.assert_close(w, ref_w, **TOL[dtype])
    assert w.shape == (batch, heads, len_q, len_k)


def test_mha_masks_match_torch():
    torch.manual_seed(3)
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    ours = MultiHeadAttention.from_torch(ref)
    x = torch.randn(3, 5, 8)
    # causal: torch's attn_mask uses True = blocked, ours True = may attend
    out, _ = ours(x, x, x, causal_mask(5))
    ref_out, _ = ref(x, x, x, attn_mask=~causal_mask(5))
    torch.testing.assert_close(out, ref_out)
    # padding: torch's key_padding_mask uses True = padding
    lengths = torch.tensor([5, 3, 1])
    keep = torch.arange(5)[None] < lengths[:, None]  # (B, Lk)
    out, w = ours(x, x, x, keep[:, None, None, :])
    ref_out, _ = ref(x, x, x, key_padding_mask=~keep)
    torch.testing.assert_close(out, ref_out)
    assert (w[2, :, :, 1:] == 0).all()


def test_mha_errors():
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="positive integer"):
        MultiHeadAttention(0, 1)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"query must have shape \(batch, length, 8\), got \(2, 5, 6\)"):
        mha(torch.randn(2, 5, 6), torch.randn(2, 5, 8), torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="key and value must share"):
        mha(torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match="does not broadcast"):
        mha(torch.randn(2, 5, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match="batch_first"):
        MultiHeadAttention.from_torch(torch.nn.MultiheadAttention(8, 2))
    with pytest.raises(TypeError, match="MultiheadAttention"):
        MultiHeadAttention.from_torch(torch.nn.Linear(2, 2))


def test_mha_gradcheck():
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: mha(x, x, x, causal_mask(3))[0], (x,))
