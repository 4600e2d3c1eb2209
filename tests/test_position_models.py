"""The position model: its attention against a direct computation for every scheme, causality,
what each scheme adds, and the validation of its settings and inputs."""

import math

import pytest
import torch

from companion.position_models import SCHEMES, CausalSelfAttention, PositionModel, PositionModelConfig
from companion.positional import sinusoidal_encoding


def _config(positions, **kw):
    return PositionModelConfig(vocab=10, num_classes=4, positions=positions, dim=8, max_length=20, **kw)


def _rotate(x, base):
    """RoPE written with complex numbers, (B, L, d) -> (B, L, d)."""
    B, L, d = x.shape
    z = torch.complex(x[..., 0::2], x[..., 1::2])  # (B, L, d/2)
    w = base ** (-torch.arange(0, d, 2, dtype=x.dtype) / d)
    turned = z * torch.polar(torch.ones(L, d // 2, dtype=x.dtype), torch.arange(L, dtype=x.dtype)[:, None] * w)
    return torch.stack([turned.real, turned.imag], dim=-1).flatten(-2)


@pytest.mark.parametrize("positions", SCHEMES)
def test_attention_against_a_direct_computation(positions):
    torch.manual_seed(0)
    config = _config(positions, alibi_slope=0.3)
    attn = CausalSelfAttention(config).double()
    x = torch.randn(2, 6, 8, dtype=torch.float64)
    out, weights = attn(x)
    q, k, v = attn.W_q(x), attn.W_k(x), attn.W_v(x)
    if positions == "rope":
        q, k = _rotate(q, config.base), _rotate(k, config.base)
    expected = torch.zeros(2, 6, 6, dtype=torch.float64)
    for i in range(6):
        for j in range(i + 1):
            s = (q[:, i] * k[:, j]).sum(-1) / math.sqrt(8)
            if positions == "alibi":
                s = s - 0.3 * (i - j)
            expected[:, i, j] = s
    expected = torch.where(torch.ones(6, 6, dtype=torch.bool).tril(), expected, -math.inf).softmax(-1)
    torch.testing.assert_close(weights, expected)
    torch.testing.assert_close(out, attn.W_o(expected @ v))


@pytest.mark.parametrize("positions", SCHEMES)
def test_the_model_is_causal(positions):
    torch.manual_seed(1)
    model = PositionModel(_config(positions, layers=2))
    tokens = torch.randint(0, 10, (3, 12))
    logits, weights = model(tokens)
    assert logits.shape == (3, 12, 4) and weights.shape == (3, 2, 12, 12)
    changed = tokens.clone()
    changed[:, 8:] = (changed[:, 8:] + 1) % 10
    torch.testing.assert_close(model(changed)[0][:, :8], logits[:, :8])
    assert not torch.allclose(model(changed)[0][:, 8:], logits[:, 8:])


def test_only_none_is_blind_to_the_order_of_a_prefix():
    """The last output of a causal model without positions sees its prefix as a bag: reordering the
    earlier tokens changes nothing. Every other scheme notices."""
    torch.manual_seed(2)
    tokens = torch.tensor([[1, 2, 3, 4, 5, 6]])
    shuffled = torch.tensor([[4, 2, 5, 1, 3, 6]])  # the same tokens, the last one in place
    for positions in SCHEMES:
        model = PositionModel(_config(positions))
        last, again = model(tokens)[0][0, -1], model(shuffled)[0][0, -1]
        if positions == "none":
            torch.testing.assert_close(last, again)
        else:
            assert not torch.allclose(last, again), positions


def test_what_each_scheme_adds_to_the_inputs():
    for positions in SCHEMES:
        model = PositionModel(_config(positions))
        added = model.input_positions(7)
        if positions == "sinusoidal":
            torch.testing.assert_close(added, sinusoidal_encoding(7, 8))
        elif positions == "learned":
            assert torch.equal(added, model.position_table.weight[:7])
        else:
            assert added is None


def test_rope_and_alibi_accept_any_length_the_learned_table_does_not():
    tokens = torch.randint(0, 10, (1, 30))
    for positions in ("none", "sinusoidal", "rope", "alibi"):
        PositionModel(_config(positions))(tokens)  # max_length is the learned table's only
    with pytest.raises(ValueError, match="max_length=20"):
        PositionModel(_config("learned"))(tokens)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(positions="absolute"), ValueError, "positions"),
        (dict(dim=7), ValueError, "dim"),
        (dict(layers=0), ValueError, "layers"),
        (dict(base=1.0), ValueError, "base"),
        (dict(alibi_slope=0.0), ValueError, "alibi_slope"),
        (dict(vocab=0), ValueError, "vocab"),
    ],
)
def test_bad_settings(kwargs, error, match):
    settings = dict(vocab=10, num_classes=4, positions="rope", dim=8) | kwargs
    with pytest.raises(error, match=match):
        PositionModelConfig(**settings)


def test_bad_tokens():
    model = PositionModel(_config("rope"))
    with pytest.raises(TypeError, match="integer"):
        model(torch.zeros(1, 4))
    with pytest.raises(ValueError, match="shape"):
        model(torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="0 .. 9"):
        model(torch.tensor([[0, 10]]))
    with pytest.raises(TypeError, match="PositionModelConfig"):
        PositionModel({"vocab": 10})
    attn = CausalSelfAttention(_config("alibi"))
    with pytest.raises(ValueError, match=r"\(batch, length, 8\)"):
        attn(torch.zeros(2, 5, 6))
    with pytest.raises(TypeError):
        attn(torch.zeros(2, 5, 8, dtype=torch.long))
