"""companion.efficient: the online softmax, tiled attention and linear attention, each against an
independent reference in float64 (torch's softmax, the book's written-out attention, torch's
fused attention, the quadratic form of linear attention), on the hard inputs: block sizes that
do not divide the length, -inf entries and whole masked blocks, scores of magnitude 1e4, fully
masked rows, the end-aligned causal mask; gradients by gradcheck; and the claim that tiled
attention never builds an (Lq, Lk) tensor, checked by recording every tensor it allocates."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from companion.attention import scaled_dot_product_attention
from companion.efficient import elu_feature_map, linear_attention, online_softmax, tiled_attention
from companion.memory import largest_tensor, peak_memory

NEG_INF = float("-inf")
BLOCKS = [1, 3, 7, 16, 64, 200]


def randn(*shape, seed=0, scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64) * scale


def reference_softmax(scores, dim=-1):
    """torch.softmax, with the all-(-inf) rows set to zero (where torch gives NaN)."""
    out = torch.softmax(scores, dim)
    return torch.nan_to_num(out, nan=0.0)


# --- online softmax -------------------------------------------------------------------------


@pytest.mark.parametrize("block_size", BLOCKS)
def test_online_softmax_equals_softmax(block_size):
    scores = randn(3, 4, 37, seed=1, scale=3.0)
    torch.testing.assert_close(online_softmax(scores, block_size), torch.softmax(scores, -1))


@pytest.mark.parametrize("dim", [0, 1, -2])
def test_online_softmax_other_axes(dim):
    scores = randn(9, 11, 5, seed=2)
    torch.testing.assert_close(online_softmax(scores, 4, dim=dim), torch.softmax(scores, dim))


@pytest.mark.parametrize("block_size", [1, 4, 5, 8])
def test_online_softmax_with_masked_entries_and_blocks(block_size):
    scores = randn(5, 24, seed=3)
    scores[0, :8] = NEG_INF  # whole leading blocks masked (for block sizes 1, 4, 8)
    scores[1, 8:16] = NEG_INF  # a masked block in the middle
    scores[2, ::3] = NEG_INF  # scattered
    scores[3] = NEG_INF  # a fully masked row -> zeros
    scores[4, :-1] = NEG_INF  # only the last entry allowed
    out = online_softmax(scores, block_size)
    torch.testing.assert_close(out, reference_softmax(scores))
    assert not torch.isnan(out).any()
    assert (out[3] == 0).all() and out[4, -1] == 1
    assert (out[scores == NEG_INF] == 0).all()


@pytest.mark.parametrize("block_size", [1, 5, 16])
def test_online_softmax_large_magnitudes(block_size):
    scores = randn(4, 30, seed=4, scale=1e4)
    scores[0] = torch.linspace(-1e4, 1e4, 30, dtype=torch.float64)  # the maximum comes last
    scores[1] = torch.linspace(1e4, -1e4, 30, dtype=torch.float64)  # the maximum comes first
    out = online_softmax(scores, block_size)
    torch.testing.assert_close(out, torch.softmax(scores, -1))
    single = online_softmax(scores.float(), block_size)  # no overflow in float32 either
    torch.testing.assert_close(single, torch.softmax(scores.float(), -1))


def test_online_softmax_gradient():
    scores = randn(3, 10, seed=5).requires_grad_(True)
    assert torch.autograd.gradcheck(lambda s: online_softmax(s, 3), (scores,))
    masked = randn(2, 9, seed=6)
    masked[0, :3] = NEG_INF
    masked.requires_grad_(True)
    out = online_softmax(masked, 3)
    (out * randn(2, 9, seed=7)).sum().backward()
    assert torch.isfinite(masked.grad).all() and (masked.grad[0, :3] == 0).all()


@pytest.mark.parametrize("bad, error, words", [
    (lambda s: online_softmax(s.tolist(), 2), TypeError, "scores"),
    (lambda s: online_softmax(s.long(), 2), TypeError, "scores"),
    (lambda s: online_softmax(s, 0), ValueError, "block_size"),
    (lambda s: online_softmax(s, 2.0), ValueError, "block_size"),
    (lambda s: online_softmax(s, True), ValueError, "block_size"),
    (lambda s: online_softmax(s, 2, dim=2), ValueError, "dim"),
    (lambda s: online_softmax(s.index_fill(1, torch.tensor([3]), math.nan), 2), ValueError, "NaN"),
    (lambda s: online_softmax(s.index_fill(1, torch.tensor([3]), math.inf), 2), ValueError, r"\+inf"),
])
def test_online_softmax_rejects_bad_input(bad, error, words):
    with pytest.raises(error, match=words):
        bad(randn(2, 6))


# --- tiled attention ------------------------------------------------------------------------


def qkv(batch=(2, 3), len_q=37, len_k=50, d_k=8, d_v=5, seed=10, scale=1.0):
    return (randn(*batch, len_q, d_k, seed=seed, scale=scale),
            randn(*batch, len_k, d_k, seed=seed + 1, scale=scale),
            randn(*batch, len_k, d_v, seed=seed + 2))


@pytest.mark.parametrize("block_size", BLOCKS)
@pytest.mark.parametrize("is_causal", [False, True])
def test_tiled_equals_written_out_attention(block_size, is_causal):
    q, k, v = qkv()
    expected, _ = scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    torch.testing.assert_close(tiled_attention(q, k, v, block_size=block_size, is_causal=is_causal),
                               expected)


@pytest.mark.parametrize("block_size", [4, 16, 64])
def test_tiled_equals_torch_fused_attention(block_size):
    q, k, v = qkv(len_q=40, len_k=40)
    torch.testing.assert_close(tiled_attention(q, k, v, block_size=block_size, is_causal=True),
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))


@pytest.mark.parametrize("len_q, len_k", [(1, 30), (7, 30), (30, 7), (33, 33)])
@pytest.mark.parametrize("block_size", [1, 4, 8, 50])
def test_tiled_causal_is_end_aligned(len_q, len_k, block_size):
    """Query i sees key j iff j <= i + Lk - Lq; with Lq > Lk the first queries see nothing."""
    q, k, v = qkv(batch=(2,), len_q=len_q, len_k=len_k, seed=20)
    expected, _ = scaled_dot_product_attention(q, k, v, is_causal=True)
    out = tiled_attention(q, k, v, block_size=block_size, is_causal=True)
    torch.testing.assert_close(out, expected)
    if len_q > len_k:
        assert (out[:, : len_q - len_k] == 0).all()


@pytest.mark.parametrize("block_size", [1, 5, 8, 16])
def test_tiled_with_mask_whole_blocks_and_empty_rows(block_size):
    q, k, v = qkv(batch=(2, 2), len_q=20, len_k=32, seed=30)
    mask = torch.rand(2, 1, 20, 32, generator=torch.Generator().manual_seed(3)) > 0.4
    mask[0, :, :, :16] = False  # whole key blocks masked for every query
    mask[1, :, 3] = False  # a query that may attend to nothing
    mask[0, :, 5, :] = False
    out = tiled_attention(q, k, v, block_size=block_size, mask=mask)
    expected, _ = scaled_dot_product_attention(q, k, v, mask)
    torch.testing.assert_close(out, expected)
    assert not torch.isnan(out).any()
    assert (out[1, :, 3] == 0).all() and (out[0, :, 5] == 0).all()
    both = tiled_attention(q, k, v, block_size=block_size, mask=mask, is_causal=True)
    torch.testing.assert_close(both, scaled_dot_product_attention(q, k, v, mask, is_causal=True)[0])


def test_tiled_broadcast_batch_and_mask_shapes():
    q = randn(2, 4, 9, 6, seed=40)
    k, v = randn(1, 4, 13, 6, seed=41), randn(4, 13, 3, seed=42)  # batch axes broadcast
    padding = torch.arange(13) < torch.tensor([13, 7])[:, None]  # (2, 13)
    mask = padding[:, None, None, :]  # (2, 1, 1, 13)
    out = tiled_attention(q, k, v, block_size=4, mask=mask)
    torch.testing.assert_close(out, scaled_dot_product_attention(q, k, v, mask)[0])
    assert out.shape == (2, 4, 9, 3)


def test_tiled_large_magnitudes():
    q, k, v = qkv(batch=(2,), len_q=24, len_k=40, seed=50)
    q = q * 1e2
    k = k * 1e2  # scores of magnitude ~1e4 / sqrt(8)
    out = tiled_attention(q, k, v, block_size=6)
    torch.testing.assert_close(out, scaled_dot_product_attention(q, k, v)[0])
    out32 = tiled_attention(q.float(), k.float(), v.float(), block_size=6)
    assert torch.isfinite(out32).all()
    torch.testing.assert_close(out32, out.float(), atol=1e-4, rtol=1e-4)


def test_tiled_gradcheck():
    q, k, v = (t.requires_grad_(True) for t in qkv(batch=(1,), len_q=6, len_k=9, d_k=3, d_v=2, seed=60))
    mask = torch.ones(6, 9, dtype=torch.bool)
    mask[2] = False  # an empty row: zero output, zero gradient
    assert torch.autograd.gradcheck(
        lambda q, k, v: tiled_attention(q, k, v, block_size=4, mask=mask, is_causal=True), (q, k, v))


class RecordShapes(TorchDispatchMode):
    """Records the shape of every tensor an operation returns, and the bytes of the storage it
    allocated (0 for a view of an input; a broadcast view of a small tensor has a large shape
    but allocates nothing)."""

    def __init__(self):
        super().__init__()
        self.shapes = []
        self.storage_bytes = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor):
                self.shapes.append(tuple(t.shape))
                new = t.untyped_storage().data_ptr() not in inputs  # not a view of an input
                self.storage_bytes.append(t.untyped_storage().nbytes() if new else 0)
        return out


@pytest.mark.parametrize("is_causal", [False, True])
def test_tiled_never_builds_the_score_matrix(is_causal):
    len_q, len_k, block = 96, 128, 16
    q, k, v = qkv(batch=(1,), len_q=len_q, len_k=len_k, d_k=4, d_v=4, seed=70)
    mask = torch.ones(len_k, dtype=torch.bool)  # a (Lk,) mask, broadcast inside
    with RecordShapes() as recorder:
        tiled_attention(q, k, v, block_size=block, is_causal=is_causal, mask=mask)
    # no storage holds more than a tile, or the (Lq, d_v) output and its blocks
    assert max(recorder.storage_bytes) <= 8 * max(block * block, len_q * 4)
    # the only (Lq, Lk)-shaped tensor is the broadcast view of the (Lk,) mask, which copies nothing
    assert all(n == 0 for s, n in zip(recorder.shapes, recorder.storage_bytes) if s[-2:] == (len_q, len_k))
    _, shape = largest_tensor(tiled_attention, q, k, v, block_size=block, is_causal=is_causal)
    assert shape == (1, len_q, 4)  # the output
    with RecordShapes() as written_out:  # the recorder does see the written-out version's
        scaled_dot_product_attention(q, k, v, is_causal=is_causal)
    assert max(written_out.storage_bytes) >= 8 * len_q * len_k


def test_tiled_peak_memory_is_a_fraction_of_the_written_out_version():
    q, k, v = qkv(batch=(1,), len_q=512, len_k=512, d_k=16, d_v=16, seed=80)
    _, tiled = peak_memory(tiled_attention, q, k, v, block_size=32)
    _, written = peak_memory(scaled_dot_product_attention, q, k, v)
    assert written >= 512 * 512 * 8  # at least the score matrix
    assert tiled < written / 8


def test_tiled_causal_skips_blocks():
    """The causal version does not compute the tiles above the diagonal: fewer matmuls."""
    q, k, v = qkv(batch=(1,), len_q=64, len_k=64, seed=90)

    class CountMatmuls(TorchDispatchMode):
        count = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket in (torch.ops.aten.bmm, torch.ops.aten.mm):
                CountMatmuls.count += 1
            return func(*args, **(kwargs or {}))

    counts = {}
    for causal in (False, True):
        CountMatmuls.count = 0
        with CountMatmuls():
            tiled_attention(q, k, v, block_size=16, is_causal=causal)
        counts[causal] = CountMatmuls.count
    # 4 query blocks x 4 key blocks = 16 tiles; causal keeps 1 + 2 + 3 + 4 = 10
    assert counts[True] * 16 == counts[False] * 10, counts


@pytest.mark.parametrize("bad, error, words", [
    (dict(query=randn(4, 8).tolist()), TypeError, "query"),
    (dict(key=randn(1, 9, 7)), ValueError, "d_k"),
    (dict(value=randn(1, 8, 5)), ValueError, "same length"),
    (dict(value=randn(1, 9, 5).float()), TypeError, "dtypes"),
    (dict(query=randn(3, 4, 8), key=randn(2, 9, 8), value=randn(2, 9, 5)), ValueError, "broadcast"),
    (dict(mask=torch.ones(4, 8, dtype=torch.bool)), ValueError, "mask"),
    (dict(mask=torch.ones(4, 9)), TypeError, "mask"),
    (dict(block_size=0), ValueError, "block_size"),
    (dict(query=randn(1, 0, 8)), ValueError, "at least one position"),
    (dict(key=randn(1, 0, 8), value=randn(1, 0, 5)), ValueError, "at least one position"),
    (dict(is_causal=1), TypeError, "is_causal"),
    (dict(query=randn(1, 4, 8).index_fill(1, torch.tensor([2]), math.nan)), ValueError, "NaN"),
])
def test_tiled_rejects_bad_input(bad, error, words):
    args = dict(query=randn(1, 4, 8), key=randn(1, 9, 8), value=randn(1, 9, 5))
    args.update(bad)
    options = {name: args.pop(name) for name in ("block_size", "mask", "is_causal") if name in args}
    with pytest.raises(error, match=words):
        tiled_attention(args["query"], args["key"], args["value"], **options)


# --- linear attention -----------------------------------------------------------------------


def quadratic_linear_attention(q, k, v, causal, phi=elu_feature_map):
    """The definition: weights phi(q_i).phi(k_j) over the visible keys, normalised."""
    w = phi(q) @ phi(k).transpose(-2, -1)  # (..., Lq, Lk)
    if causal:
        len_q, len_k = q.shape[-2], k.shape[-2]
        w = w * torch.ones(len_q, len_k, dtype=w.dtype).tril(len_k - len_q)
    total = w.sum(-1, keepdim=True)
    return (w @ v) / torch.where(total > 0, total, torch.ones_like(total))


def test_elu_feature_map():
    x = torch.tensor([-30.0, -1.0, 0.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(elu_feature_map(x), torch.tensor([math.exp(-30.0), math.exp(-1.0), 1.0, 3.0],
                                                                dtype=torch.float64))


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("len_q, len_k", [(1, 1), (17, 17), (5, 23), (23, 5)])
def test_linear_attention_equals_quadratic_form(causal, len_q, len_k):
    q, k, v = qkv(batch=(2, 3), len_q=len_q, len_k=len_k, seed=100)
    out = linear_attention(q, k, v, causal=causal)
    torch.testing.assert_close(out, quadratic_linear_attention(q, k, v, causal))
    if causal and len_q > len_k:
        assert (out[..., : len_q - len_k, :] == 0).all()


def test_linear_attention_custom_feature_map_and_broadcasting():
    def phi(x):  # more features than inputs, some exactly zero
        return torch.cat([F.relu(x), F.relu(-x), torch.ones_like(x[..., :1])], -1)

    q, k, v = randn(2, 4, 11, 6, seed=110), randn(1, 4, 11, 6, seed=111), randn(4, 11, 3, seed=112)
    for causal in (False, True):
        out = linear_attention(q, k, v, causal=causal, feature_map=phi)
        torch.testing.assert_close(out, quadratic_linear_attention(q, k, v, causal, phi))
        assert out.shape == (2, 4, 11, 3)


def test_linear_attention_all_zero_kernel_gives_zeros():
    q, k, v = qkv(batch=(1,), len_q=4, len_k=6, seed=120)
    out = linear_attention(q, k, v, feature_map=torch.zeros_like)
    assert (out == 0).all()


def test_linear_attention_gradcheck():
    q, k, v = (t.requires_grad_(True) for t in qkv(batch=(1,), len_q=5, len_k=7, d_k=3, d_v=2, seed=130))
    for causal in (False, True):
        assert torch.autograd.gradcheck(lambda q, k, v: linear_attention(q, k, v, causal=causal), (q, k, v))


@pytest.mark.parametrize("causal", [False, True])
def test_linear_attention_never_builds_the_score_matrix(causal):
    q, k, v = qkv(batch=(1,), len_q=64, len_k=64, d_k=4, d_v=4, seed=140)
    with RecordShapes() as recorder:
        linear_attention(q, k, v, causal=causal)
    assert not any(len(s) >= 2 and s[-2:] == (64, 64) for s in recorder.shapes)


@pytest.mark.parametrize("kwargs, error, words", [
    (dict(feature_map="elu"), TypeError, "feature_map"),
    (dict(feature_map=lambda x: x), ValueError, "non-negative"),
    (dict(feature_map=lambda x: x.sum(-2)), ValueError, "feature_map"),
    (dict(causal="yes"), TypeError, "is_causal|causal"),
])
def test_linear_attention_rejects_bad_input(kwargs, error, words):
    q, k, v = qkv(batch=(1,), len_q=4, len_k=6, seed=150)
    with pytest.raises(error, match=words):
        linear_attention(q, k, v, **kwargs)
    with pytest.raises(ValueError, match="d_k"):
        linear_attention(q, k[..., :3], v)


# --- the key-value cache, as the chapter uses it --------------------------------------------


def test_kv_cache_gives_the_same_tokens_and_counts_its_bytes():
    """The chapter's model: greedy tokens equal with and without the cache (two prompts at once),
    and the cache holds exactly 2 * B * L * layers * heads * head_dim numbers."""
    from companion.grouped_query import kv_cache_bytes
    from companion.transformer import DecoderOnlyTransformer

    torch.manual_seed(0)
    model = DecoderOnlyTransformer(vocab_size=64, dim=256, num_heads=4, num_layers=2, ffn_dim=1024,
                                   max_len=256).eval()
    prompt = torch.randint(0, 64, (2, 32), generator=torch.Generator().manual_seed(5))
    with_cache = model.generate(prompt, 48, use_cache=True)
    assert torch.equal(with_cache, model.generate(prompt, 48, use_cache=False))
    cache = model.new_cache()
    model(with_cache, cache)
    assert len(cache) == 80
    assert cache.nbytes() == kv_cache_bytes(2, 80, 2, 4, 64, 4)
