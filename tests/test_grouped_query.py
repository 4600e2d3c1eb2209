"""companion.grouped_query: grouped-query attention (eq-gqa) against multi-head attention and
against an explicit loop over heads with repeated keys and values; the parameter count
(eq-gqa-params) and the key/value cache size (eq-kv-cache) against real tensors."""

import math

import pytest
import torch
import torch.nn.functional as F

from companion.attention import MultiHeadAttention
from companion.grouped_query import GroupedQueryAttention, kv_cache_bytes


def _inputs(B=2, Lq=5, Lk=7, E=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(B, Lq, E, generator=g, dtype=torch.float64)
    kv = torch.randn(B, Lk, E, generator=g, dtype=torch.float64)
    return q, kv, kv.flip(1)  # value differs from key


def _gqa(E=24, h=6, g=2, bias=True, seed=0):
    torch.manual_seed(seed)
    return GroupedQueryAttention(E, h, g, bias=bias).double()


def _loop_reference(gqa, query, key, value, head_masks=None, is_causal=False):
    """Head by head, each with its own copy of its group's keys and values, through torch's
    fused attention: output and weights (B, h, Lq, Lk)."""
    B, Lq, E = query.shape
    h, g, d_k = gqa.num_heads, gqa.num_kv_heads, gqa.head_dim
    r = h // g
    q = gqa.W_q(query).view(B, Lq, h, d_k)  # (B, Lq, h, d_k)
    k = gqa.W_k(key).view(B, -1, g, d_k)  # (B, Lk, g, d_k)
    v = gqa.W_v(value).view(B, -1, g, d_k)
    k_rep = k.repeat_interleave(r, dim=2)  # (B, Lk, h, d_k): head i gets kv head i // r
    v_rep = v.repeat_interleave(r, dim=2)
    outs, weights = [], []
    for i in range(h):
        qi, ki, vi = q[:, :, i], k_rep[:, :, i], v_rep[:, :, i]  # (B, L, d_k)
        scores = qi @ ki.transpose(1, 2) / math.sqrt(d_k)  # (B, Lq, Lk)
        allowed = torch.ones_like(scores, dtype=torch.bool)
        if head_masks is not None:
            allowed = allowed & head_masks[:, i]
        if is_causal:
            Lk = key.shape[1]
            allowed = allowed & torch.ones(Lq, Lk, dtype=torch.bool).tril(Lk - Lq)
        weights.append(torch.softmax(scores.masked_fill(~allowed, float("-inf")), -1))
        outs.append(F.scaled_dot_product_attention(qi, ki, vi, attn_mask=allowed))
    concat = torch.cat(outs, dim=-1)  # (B, Lq, E)
    return gqa.W_o(concat), torch.stack(weights, 1)


@pytest.mark.parametrize("h, g", [(6, 6), (6, 3), (6, 2), (6, 1), (4, 2)])
def test_equals_a_loop_over_heads_with_repeated_keys_and_values(h, g):
    gqa = _gqa(E=24, h=h, g=g)
    query, key, value = _inputs()
    out, weights = gqa(query, key, value)
    ref_out, ref_weights = _loop_reference(gqa, query, key, value)
    assert out.shape == (2, 5, 24) and weights.shape == (2, h, 5, 7)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(weights, ref_weights)


def test_per_head_masks_and_causal_masks_reach_the_right_heads():
    gqa = _gqa(h=6, g=2)
    query, key, value = _inputs(Lq=4, Lk=6)
    g = torch.Generator().manual_seed(3)
    head_masks = torch.rand(2, 6, 4, 6, generator=g) > 0.4
    head_masks[..., 0] = True  # every query may attend somewhere
    out, weights = gqa(query, key, value, head_masks, is_causal=True)
    ref_out, ref_weights = _loop_reference(gqa, query, key, value, head_masks, is_causal=True)
    torch.testing.assert_close(out, ref_out)
    torch.testing.assert_close(weights, ref_weights)
    # a padding mask (B, 1, Lk) is read as 3-D: the same for every head
    pad = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])[:, None, :]  # (B, 1, Lk)
    _, w = gqa(query, key, value, pad)
    assert (w[1, :, :, 3:] == 0).all() and (w[0] > 0).all()
    # a 4-D mask with one head axis broadcasts over the heads
    _, w4 = gqa(query, key, value, pad[:, None])
    torch.testing.assert_close(w4, w)


@pytest.mark.parametrize("bias", [True, False])
def test_with_as_many_kv_heads_as_heads_it_is_multi_head_attention(bias):
    torch.manual_seed(1)
    mha = MultiHeadAttention(24, 4, bias=bias).double()
    gqa = GroupedQueryAttention.from_multi_head(mha, num_kv_heads=4)
    query, key, value = _inputs()
    causal = torch.ones(5, 7, dtype=torch.bool).tril(2)
    for mask in (None, causal):
        out, weights = gqa(query, key, value, mask)
        ref_out, ref_weights = mha(query, key, value, mask)
        torch.testing.assert_close(out, ref_out)
        torch.testing.assert_close(weights, ref_weights)
    # the same through a state dict: the two modules name their parameters alike
    fresh = GroupedQueryAttention(24, 4, 4, bias=bias).double()
    fresh.load_state_dict(mha.state_dict())
    torch.testing.assert_close(fresh(query, key, value)[0], mha(query, key, value)[0])


def test_mean_pooling_is_exact_when_the_heads_of_a_group_share_keys_and_values():
    torch.manual_seed(2)
    mha = MultiHeadAttention(24, 6).double()
    d_k = 4
    with torch.no_grad():  # make heads 2m and 2m + 1 share their key and value projections
        for lin in (mha.W_k, mha.W_v):
            w = lin.weight.view(3, 2, d_k, 24)
            w[:, 1] = w[:, 0]
            b = lin.bias.view(3, 2, d_k)
            b[:, 1] = b[:, 0]
    gqa = GroupedQueryAttention.from_multi_head(mha, num_kv_heads=3)
    query, key, value = _inputs()
    torch.testing.assert_close(gqa(query, key, value)[0], mha(query, key, value)[0])
    # and, with distinct heads, pooling changes the keys: the conversion is then approximate
    torch.manual_seed(3)
    other = MultiHeadAttention(24, 6).double()
    pooled = GroupedQueryAttention.from_multi_head(other, num_kv_heads=3)
    expected = other.W_k.weight.view(3, 2, d_k, 24).mean(1).reshape(12, 24)
    torch.testing.assert_close(pooled.W_k.weight, expected)


@pytest.mark.parametrize("E, h, g, bias", [(24, 6, 6, True), (24, 6, 2, True), (32, 8, 1, False),
                                           (64, 8, 4, True)])
def test_parameter_count(E, h, g, bias):
    """eq-gqa-params: 2 E^2 for W_q, W_o; 2 E g d_k for W_k, W_v; biases 2 E + 2 g d_k."""
    gqa = GroupedQueryAttention(E, h, g, bias=bias)
    d_k = E // h
    expected = 2 * E * E + 2 * E * g * d_k + (2 * E + 2 * g * d_k if bias else 0)
    assert sum(p.numel() for p in gqa.parameters()) == expected
    if g == h:
        mha = MultiHeadAttention(E, h, bias=bias)
        assert expected == sum(p.numel() for p in mha.parameters())


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.float64])
def test_kv_cache_bytes_matches_the_cached_tensors(dtype):
    """The keys and values each layer of a decoder keeps: their bytes are eq-kv-cache."""
    B, L, E, h, g, layers = 3, 11, 32, 8, 2, 4
    torch.manual_seed(0)
    stack = [GroupedQueryAttention(E, h, g).to(dtype) for _ in range(layers)]
    x = torch.randn(B, L, E).to(dtype)
    cache = [layer.project_kv(x, x) for layer in stack]  # per layer: (B, g, L, d_k) twice
    assert cache[0][0].shape == (B, g, L, E // h)
    real = sum(t.numel() * t.element_size() for kv in cache for t in kv)
    itemsize = torch.empty((), dtype=dtype).element_size()
    assert kv_cache_bytes(B, L, layers, g, E // h, itemsize) == real
    # multi-head attention caches h / g times as much
    assert kv_cache_bytes(B, L, layers, h, E // h, itemsize) == real * h // g


def test_kv_cache_bytes_arithmetic_and_types():
    assert kv_cache_bytes(1, 1, 1, 1, 1, 1) == 2
    assert isinstance(kv_cache_bytes(2, 4, 3, 8, 64, 2), int)
    assert kv_cache_bytes(1, 3, 1, 1, 1, 0.5) == 3 and isinstance(kv_cache_bytes(1, 3, 1, 1, 1, 0.5), int)
    assert kv_cache_bytes(1, 1, 1, 1, 1, 0.25) == 0.5


@pytest.mark.parametrize("args, error, match", [
    ((0, 4, 2, 2, 8, 2), ValueError, "batch"),
    ((1, 4.0, 2, 2, 8, 2), ValueError, "length"),
    ((1, 4, 2, True, 8, 2), ValueError, "num_kv_heads"),
    ((1, 4, 2, 2, 8, 0), ValueError, "bytes_per_element"),
    ((1, 4, 2, 2, 8, float("inf")), ValueError, "bytes_per_element"),
    ((1, 4, 2, 2, 8, "2"), TypeError, "bytes_per_element"),
])
def test_kv_cache_bytes_rejects_bad_sizes(args, error, match):
    with pytest.raises(error, match=match):
        kv_cache_bytes(*args)


def test_bad_configurations_and_inputs_raise_clear_errors():
    with pytest.raises(ValueError, match="num_kv_heads=4 must divide num_heads=6"):
        GroupedQueryAttention(24, 6, 4)
    with pytest.raises(ValueError, match="embed_dim=25 is not divisible by num_heads=6"):
        GroupedQueryAttention(25, 6, 2)
    with pytest.raises(ValueError, match="num_kv_heads"):
        GroupedQueryAttention(24, 6, 0)
    gqa = _gqa()
    query, key, value = _inputs()
    with pytest.raises(ValueError, match=r"key must have shape \(batch, length, 24\)"):
        gqa(query, key[..., :10], value)
    with pytest.raises(ValueError, match="key and value must share batch and length"):
        gqa(query, key, value[:, :3])
    with pytest.raises(ValueError, match="query and key must share the batch size"):
        gqa(query[:1], key, value)
    with pytest.raises(ValueError, match=r"mask of shape \(3, 5, 7\) does not broadcast"):
        gqa(query, key, value, torch.ones(3, 5, 7, dtype=torch.bool))
    with pytest.raises(ValueError, match=r"does not broadcast to \(batch, heads, len_q, len_k\)"):
        gqa(query, key, value, torch.ones(2, 4, 5, 7, dtype=torch.bool))
    with pytest.raises(TypeError, match="boolean"):
        gqa(query, key, value, torch.ones(5, 7))
    with pytest.raises(TypeError, match="dtype"):
        gqa(query.float(), key, value)
    with pytest.raises(TypeError, match="MultiHeadAttention"):
        GroupedQueryAttention.from_multi_head(torch.nn.Linear(2, 2), 1)


def test_float64_stays_float64_and_gradients_reach_every_parameter():
    gqa = _gqa(h=6, g=3)
    query, key, value = _inputs()
    out, weights = gqa(query, key, value, is_causal=True)
    assert out.dtype == weights.dtype == torch.float64
    out.square().sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in gqa.parameters())
