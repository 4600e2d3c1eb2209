"""The attention-only model, head ablation against a hand computation, and the offset profile
against a loop."""

import pytest
import torch

from companion.attention import MultiHeadAttention, scaled_dot_product_attention
from companion.attention_only import AttentionOnly, AttentionOnlyConfig, ablate_heads, attention_by_offset
from companion.positional import sinusoidal_encoding


def _by_hand(mha: MultiHeadAttention, x: torch.Tensor, dropped):
    """Multi-head causal self-attention written out, with the dropped heads' outputs zeroed."""
    B, L, E = x.shape
    h, d = mha.num_heads, mha.head_dim
    split = lambda t: t.view(B, L, h, d).transpose(1, 2)  # noqa: E731  (B, h, L, d)
    heads, _ = scaled_dot_product_attention(split(mha.W_q(x)), split(mha.W_k(x)), split(mha.W_v(x)), is_causal=True)
    heads = heads.clone()
    heads[:, list(dropped)] = 0.0
    return mha.W_o(heads.transpose(1, 2).reshape(B, L, E))


def test_ablate_heads_zeroes_exactly_those_heads():
    torch.manual_seed(0)
    mha = MultiHeadAttention(12, 3).double()
    x = torch.randn(2, 5, 12, dtype=torch.float64)
    for dropped in ([], [0], [2], [0, 2], [0, 1, 2]):
        with ablate_heads(mha, dropped):
            out, weights = mha(x, x, x, is_causal=True)
        torch.testing.assert_close(out, _by_hand(mha, x, dropped))
    # the hook is gone after the block, also after an error inside it
    with pytest.raises(RuntimeError, match="inside"):
        with ablate_heads(mha, [1]):
            raise RuntimeError("inside")
    torch.testing.assert_close(mha(x, x, x, is_causal=True)[0], _by_hand(mha, x, []))
    assert not mha.W_o._forward_pre_hooks


def test_ablate_heads_errors():
    mha = MultiHeadAttention(8, 2)
    for heads in ([2], [-1], [0.0], [True]):
        with pytest.raises(ValueError, match=r"heads must be integers in 0 \.\. 1"):
            with ablate_heads(mha, heads):
                pass
    with pytest.raises(TypeError, match="attention must be a MultiHeadAttention"):
        with ablate_heads(torch.nn.MultiheadAttention(8, 2), [0]):
            pass


def test_model_forward_against_its_formula():
    torch.manual_seed(1)
    config = AttentionOnlyConfig(vocab=5, num_classes=7, max_length=6, embed_dim=8, num_heads=2)
    model = AttentionOnly(config).double()
    tokens = torch.randint(0, 5, (3, 6))
    logits, weights = model(tokens)
    assert logits.shape == (3, 6, 7) and weights.shape == (3, 2, 6, 6)
    h = model.embed(tokens) + sinusoidal_encoding(6, 8, dtype=torch.float64)
    torch.testing.assert_close(logits, model.unembed(h + _by_hand(model.attn, h, [])))
    ablated, _ = model(tokens, ablate=[1])
    torch.testing.assert_close(ablated, model.unembed(h + _by_hand(model.attn, h, [1])))
    assert torch.equal(torch.triu(weights, diagonal=1), torch.zeros_like(weights))  # causal
    shorter, _ = model(tokens[:, :4])  # positions 0..3: causal, so the first 4 outputs agree
    torch.testing.assert_close(shorter, logits[:, :4])


def test_model_validation():
    with pytest.raises(ValueError, match="embed_dim=6 must be a multiple of 2 \\* num_heads=4"):
        AttentionOnlyConfig(vocab=4, num_classes=4, max_length=8, embed_dim=6, num_heads=2)
    with pytest.raises(ValueError, match="vocab must be a positive integer"):
        AttentionOnlyConfig(vocab=0, num_classes=4, max_length=8)
    with pytest.raises(TypeError, match="config must be an AttentionOnlyConfig"):
        AttentionOnly({"vocab": 4})
    model = AttentionOnly(AttentionOnlyConfig(vocab=4, num_classes=4, max_length=8, embed_dim=8))
    with pytest.raises(TypeError, match="tokens must be integer token ids, got dtype torch.float32"):
        model(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"length at most 8, got \(2, 9\)"):
        model(torch.zeros(2, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"shape \(batch, length\)"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="tokens must lie in 0 .. 3, got values from 0 to 4"):
        model(torch.tensor([[0, 4]]))


def test_attention_by_offset_against_a_loop():
    g = torch.Generator().manual_seed(2)
    B, H, L, start = 3, 2, 6, 2
    raw = torch.randn(B, H, L, L, generator=g).masked_fill(~torch.ones(L, L, dtype=torch.bool).tril(), float("-inf"))
    weights = raw.softmax(-1)
    expected = torch.zeros(H, L)
    for h in range(H):
        for k in range(L):
            total = 0.0
            for b in range(B):
                for t in range(start, L):
                    total += weights[b, h, t, t - k].item() if t - k >= 0 else 0.0
            expected[h, k] = total / (B * (L - start))
    profile = attention_by_offset(weights, start=start)
    torch.testing.assert_close(profile, expected)
    torch.testing.assert_close(profile.sum(-1), torch.ones(H))
    # a head that always looks exactly 3 back
    exact = torch.zeros(1, 1, L, L)
    for t in range(L):
        exact[0, 0, t, max(t - 3, 0)] = 1.0
    assert attention_by_offset(exact, start=3)[0].argmax() == 3
    assert attention_by_offset(exact, start=3)[0, 3] == 1.0


def test_attention_by_offset_errors():
    with pytest.raises(ValueError, match=r"weights must have shape \(batch, heads, L, L\), got \(2, 4, 4\)"):
        attention_by_offset(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"start must be an integer in 0 \.\. 3, got 4"):
        attention_by_offset(torch.zeros(1, 1, 4, 4), start=4)
    with pytest.raises(TypeError, match="weights must have a floating dtype"):
        attention_by_offset(torch.zeros(1, 1, 4, 4, dtype=torch.long))
