"""Scaled dot-product and multi-head attention against torch's reference implementations."""

import math

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from companion.attention import MultiHeadAttention, attend, causal_mask, padding_mask, scaled_dot_product_attention

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


def _end_aligned_causal(len_q, len_k):
    """Query i sees key j iff j <= i + (len_k - len_q), written out entry by entry."""
    return torch.tensor([[j <= i + len_k - len_q for j in range(len_k)] for i in range(len_q)])


@pytest.mark.parametrize("dtype", DTYPES)
@settings(max_examples=40, deadline=None)
@given(s=shapes, with_mask=st.booleans(), scale=st.sampled_from([None, 0.3, 1.0, 2.5]))
def test_is_causal_and_scale_equal_torch(dtype, s, with_mask, scale):
    q, k, v, g = _qkv(s, dtype)
    len_q, len_k = s["len_q"], s["len_k"]
    mask = torch.rand(*s["batch"], len_q, len_k, generator=g) > 0.3 if with_mask else None
    out, w = scaled_dot_product_attention(q, k, v, mask, is_causal=True, scale=scale)
    allowed = _end_aligned_causal(len_q, len_k)  # (Lq, Lk)
    if mask is not None:
        allowed = allowed & mask
    ref = F.scaled_dot_product_attention(q, k, v, attn_mask=allowed, scale=scale)
    if len_q == len_k and mask is None:  # the same as torch's own is_causal
        torch.testing.assert_close(ref, F.scaled_dot_product_attention(q, k, v, is_causal=True, scale=scale), **TOL[dtype])
    torch.testing.assert_close(out, ref, **TOL[dtype])
    assert (w[~allowed.expand_as(w)] == 0).all()
    live = allowed.expand_as(w).any(-1)
    assert (out[~live] == 0).all() and not torch.isnan(out).any()


@settings(max_examples=40, deadline=None)
@given(s=shapes, magnitude=st.sampled_from([1.0, 1e2, 1e4]), is_causal=st.booleans(), p_blocked=st.sampled_from([0.0, 0.5, 1.0]))
def test_finite_input_never_gives_nan(s, magnitude, is_causal, p_blocked):
    q, k, v, g = _qkv(s, torch.float32)
    q, k = q * magnitude, k * magnitude  # scores up to about 1e8 * d_k: exp would overflow without the shift
    mask = torch.rand(*s["batch"], s["len_q"], s["len_k"], generator=g) >= p_blocked
    q.requires_grad_(True)
    out, w = scaled_dot_product_attention(q, k, v, mask, is_causal=is_causal)
    assert torch.isfinite(out).all() and torch.isfinite(w).all()
    sums = w.sum(-1)
    assert torch.all(((sums - 1).abs() < 1e-5) | (sums == 0))
    out.sum().backward()
    assert torch.isfinite(q.grad).all()


def test_a_single_new_query_sees_every_cached_key():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 1, 4), torch.randn(2, 6, 4), torch.randn(2, 6, 3)
    out, w = scaled_dot_product_attention(q, k, v, is_causal=True)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    assert (w > 0).all()
    # decoding step by step with a cache gives the rows of the full causal attention
    x = torch.randn(2, 5, 4)
    full, _ = scaled_dot_product_attention(x, x, x, is_causal=True)
    for t in range(5):
        step, _ = scaled_dot_product_attention(x[:, t : t + 1], x[:, : t + 1], x[:, : t + 1], is_causal=True)
        torch.testing.assert_close(step[:, 0], full[:, t])


@pytest.mark.parametrize("dtype", DTYPES)
def test_scale_and_broadcast_batch_and_head_axes_equal_torch(dtype):
    torch.manual_seed(0)
    q = torch.randn(2, 1, 3, 4, dtype=dtype)  # one query set for every head
    k = torch.randn(1, 5, 6, 4, dtype=dtype)  # one key set for every sequence
    v = torch.randn(1, 5, 6, 7, dtype=dtype)
    mask = torch.rand(2, 1, 1, 6) > 0.3  # a padding-like mask, per sequence
    mask[..., 0] = True
    for scale in (None, 0.1, 3):
        out, w = scaled_dot_product_attention(q, k, v, mask, scale=scale)
        ref = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=scale)
        assert out.shape == (2, 5, 3, 7) and w.shape == (2, 5, 3, 6)
        torch.testing.assert_close(out, ref, **TOL[dtype])


def test_gradcheck_with_is_causal_scale_and_uneven_lengths():
    leaves = _leaves64(2)
    mask = torch.tensor([True, False, True, True, True])

    def f(q, k, v):
        return scaled_dot_product_attention(q, k, v, mask, is_causal=True, scale=0.7)

    assert torch.autograd.gradcheck(lambda q, k, v: f(q, k, v)[0], leaves)
    assert torch.autograd.gradcheck(lambda q, k, v: f(q, k, v)[1], leaves)
    # more queries than keys: the first Lq - Lk queries see no key, and their gradient is zero
    q_long = torch.randn(1, 4, 2, dtype=torch.float64, requires_grad=True)
    k_short = torch.randn(1, 2, 2, dtype=torch.float64, requires_grad=True)
    out, _ = scaled_dot_product_attention(q_long, k_short, k_short, is_causal=True)
    assert (out[0, :2] == 0).all()
    out.sum().backward()
    assert torch.isfinite(q_long.grad).all() and (q_long.grad[0, :2] == 0).all()


@pytest.mark.parametrize("scale", [0, -1.0, float("nan"), float("inf"), "0.5", True, torch.tensor(0.5)])
def test_bad_scale_is_rejected(scale):
    q = torch.randn(2, 3, 4)
    with pytest.raises(ValueError, match="scale must be positive and finite"):
        scaled_dot_product_attention(q, q, q, scale=scale)


def test_is_causal_must_be_a_bool_and_nan_scores_raise():
    q = torch.randn(2, 3, 4)
    with pytest.raises(TypeError, match="is_causal must be True or False, got 1"):
        scaled_dot_product_attention(q, q, q, is_causal=1)
    bad = q.clone()
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="scores contains NaN at an allowed entry"):
        scaled_dot_product_attention(bad, q, q)
    # a NaN query that may attend to nothing is ignored, as its row is
    mask = torch.ones(2, 3, 3, dtype=torch.bool)
    mask[0, 1] = False
    out, _ = scaled_dot_product_attention(bad, q, q, mask)
    assert torch.isfinite(out).all() and (out[0, 1] == 0).all()


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


def _leaves64(seed):
    """query (2, 3, 4), key (2, 5, 4), value (2, 5, 3) in float64, requiring gradients."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_(True)
                 for shape in ((2, 3, 4), (2, 5, 4), (2, 5, 3)))


def test_gradcheck_float64():
    mask = torch.tensor([True, True, False, True, False])
    assert torch.autograd.gradcheck(lambda q, k, v: scaled_dot_product_attention(q, k, v, mask)[0], _leaves64(1))


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
       len_k=st.integers(1, 6), batch=st.integers(1, 3), kdim=st.sampled_from([None, 3, 7]),
       vdim=st.sampled_from([None, 2, 5]), seed=st.integers(0, 1000))
def test_mha_equals_torch(dtype, bias, heads, head_dim, len_q, len_k, batch, kdim, vdim, seed):
    torch.manual_seed(seed)
    E = heads * head_dim
    ref = torch.nn.MultiheadAttention(E, heads, bias=bias, batch_first=True, kdim=kdim, vdim=vdim).to(dtype)
    ours = MultiHeadAttention.from_torch(ref)
    assert (ours.kdim, ours.vdim) == (kdim or E, vdim or E)
    q = torch.randn(batch, len_q, E, dtype=dtype)
    k = torch.randn(batch, len_k, kdim or E, dtype=dtype)
    v = torch.randn(batch, len_k, vdim or E, dtype=dtype)
    out, w = ours(q, k, v)
    ref_out, ref_w = ref(q, k, v, need_weights=True, average_attn_weights=False)
    torch.testing.assert_close(out, ref_out, **TOL[dtype])
    torch.testing.assert_close(w, ref_w, **TOL[dtype])
    assert w.shape == (batch, heads, len_q, len_k)
    _, ref_mean = ref(q, k, v, need_weights=True, average_attn_weights=True)
    torch.testing.assert_close(w.mean(1), ref_mean, **TOL[dtype])


def _state(module):
    return {name: t.detach().clone() for name, t in module.state_dict().items()}


def _assert_same_state(a, b):
    sa, sb = _state(a), _state(b)
    assert sa.keys() == sb.keys()
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("kdim, vdim", [(None, None), (6, None), (None, 3), (5, 7), (8, 8)])
@pytest.mark.parametrize("dtype", DTYPES)
def test_mha_round_trips_through_torch(bias, kdim, vdim, dtype):
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(8, 2, bias=bias, batch_first=True, kdim=kdim, vdim=vdim).to(dtype)
    ours = MultiHeadAttention.from_torch(ref)
    assert ours.W_q.weight.dtype == dtype
    back = ours.to_torch()
    assert isinstance(back, torch.nn.MultiheadAttention) and back.batch_first
    assert (back.kdim, back.vdim, back._qkv_same_embed_dim) == (ref.kdim, ref.vdim, ref._qkv_same_embed_dim)
    _assert_same_state(back, ref)
    # and the other way round: ours -> torch -> ours
    mine = MultiHeadAttention(8, 2, bias=bias, kdim=kdim, vdim=vdim).to(dtype)
    _assert_same_state(MultiHeadAttention.from_torch(mine.to_torch()), mine)
    x = torch.randn(2, 3, 8, dtype=dtype)
    kv = torch.randn(2, 4, kdim or 8, dtype=dtype), torch.randn(2, 4, vdim or 8, dtype=dtype)
    torch.testing.assert_close(mine.to_torch()(x, *kv)[0], mine(x, *kv)[0], **TOL[dtype])


def test_mha_masks_match_torch():
    torch.manual_seed(3)
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    ours = MultiHeadAttention.from_torch(ref)
    x = torch.randn(3, 5, 8)
    # causal: torch's attn_mask uses True = blocked, ours True = may attend
    out, w = ours(x, x, x, causal_mask(5))
    ref_out, ref_w = ref(x, x, x, attn_mask=~causal_mask(5), average_attn_weights=False)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)
    out_c, w_c = ours(x, x, x, is_causal=True)
    torch.testing.assert_close(out_c, ref_out)
    torch.testing.assert_close(w_c, ref_w)
    # padding: torch's key_padding_mask uses True = padding; ours is padding_mask's (B, 1, Lk)
    lengths = torch.tensor([5, 3, 1])
    keep = padding_mask(lengths, 5)  # (B, 1, Lk)
    out, w = ours(x, x, x, keep)
    ref_out, ref_w = ref(x, x, x, key_padding_mask=~keep[:, 0], average_attn_weights=False)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)
    assert (w[2, :, :, 1:] == 0).all()
    # the 4-D form of the same mask gives the same, and padding plus causal as torch has them both
    torch.testing.assert_close(ours(x, x, x, keep.unsqueeze(1))[0], out)
    out, w = ours(x, x, x, keep, is_causal=True)
    ref_out, ref_w = ref(x, x, x, key_padding_mask=~keep[:, 0], attn_mask=~causal_mask(5), average_attn_weights=False)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


def test_mha_three_d_mask_is_per_sequence_and_equals_torch():
    torch.manual_seed(4)
    heads = 2
    ref = torch.nn.MultiheadAttention(8, heads, batch_first=True, kdim=6, vdim=6)
    ours = MultiHeadAttention.from_torch(ref)
    q, kv = torch.randn(2, 3, 8), torch.randn(2, 4, 6)  # batch 2 = heads 2: the axes must not be confused
    mask = torch.rand(2, 3, 4) > 0.4
    mask[..., 0] = True
    out, w = ours(q, kv, kv, mask)
    # torch's 3-D attn_mask is (B * heads, Lq, Lk), True = blocked
    ref_out, ref_w = ref(q, kv, kv, attn_mask=(~mask).repeat_interleave(heads, 0), average_attn_weights=False)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(w, ref_w)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(batch_first=False), "batch_first=False"),
        (dict(batch_first=True, dropout=0.1), r"dropout=0.1 \(ours has no attention dropout"),
        (dict(batch_first=True, add_bias_kv=True), r"bias_k/bias_v \(add_bias_kv=True\)"),
        (dict(batch_first=True, add_zero_attn=True), "add_zero_attn=True"),
        (dict(batch_first=False, dropout=0.5, add_zero_attn=True), "batch_first=False .*; dropout=0.5 .*; add_zero_attn=True"),
    ],
)
def test_from_torch_rejects_what_it_cannot_copy(kwargs, match):
    with pytest.raises(ValueError, match="cannot copy this torch.nn.MultiheadAttention: " + match):
        MultiHeadAttention.from_torch(torch.nn.MultiheadAttention(8, 2, **kwargs))


def test_mha_errors():
    with pytest.raises(ValueError, match="not divisible"):
        MultiHeadAttention(10, 3)
    with pytest.raises(ValueError, match="positive integer"):
        MultiHeadAttention(0, 1)
    with pytest.raises(ValueError, match="kdim must be a positive integer, got 0"):
        MultiHeadAttention(8, 2, kdim=0)
    with pytest.raises(ValueError, match="vdim must be a positive integer, got 2.5"):
        MultiHeadAttention(8, 2, vdim=2.5)
    mha = MultiHeadAttention(8, 2)
    with pytest.raises(ValueError, match=r"query must have shape \(batch, length, 8\), got \(2, 5, 6\)"):
        mha(torch.randn(2, 5, 6), torch.randn(2, 5, 8), torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match="key and value must share"):
        mha(torch.randn(2, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 4, 8))
    with pytest.raises(ValueError, match="query and key must share the batch size"):
        mha(torch.randn(3, 5, 8), torch.randn(2, 5, 8), torch.randn(2, 5, 8))
    with pytest.raises(ValueError, match=r"mask of shape \(5, 5\) does not broadcast to \(batch, heads, len_q, len_k\) \(2, 2, 5, 4\)"):
        mha(torch.randn(2, 5, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.ones(5, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask of shape \(2, 1, 5\) does not broadcast to \(batch, len_q, len_k\), as a 3-D mask is read, \(2, 5, 4\)"):
        mha(torch.randn(2, 5, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.ones(2, 1, 5, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"mask must have at most 4 dimensions, got shape \(1, 2, 2, 5, 4\)"):
        mha(torch.randn(2, 5, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.ones(1, 2, 2, 5, 4, dtype=torch.bool))
    with pytest.raises(TypeError, match="mask must be a boolean tensor"):
        mha(torch.randn(2, 5, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 8), torch.ones(2, 1, 4))
    cross = MultiHeadAttention(8, 2, kdim=3, vdim=5)
    with pytest.raises(ValueError, match=r"key must have shape \(batch, length, 3\), got \(2, 4, 8\)"):
        cross(torch.randn(2, 5, 8), torch.randn(2, 4, 8), torch.randn(2, 4, 5))
    with pytest.raises(ValueError, match=r"value must have shape \(batch, length, 5\), got \(2, 4, 3\)"):
        cross(torch.randn(2, 5, 8), torch.randn(2, 4, 3), torch.randn(2, 4, 3))
    with pytest.raises(TypeError, match="MultiheadAttention"):
        MultiHeadAttention.from_torch(torch.nn.Linear(2, 2))


def test_mha_gradcheck():
    torch.manual_seed(0)
    mha = MultiHeadAttention(4, 2).double()
    x = torch.randn(1, 3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: mha(x, x, x, causal_mask(3))[0], (x,))
