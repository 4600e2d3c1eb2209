"""Tensors a function creates live on its inputs' device, not on the default one.

The machine has no GPU, so we make the *default* device a different one: inside
``with torch.device("meta")`` every factory call without ``device=`` makes a meta tensor,
and mixing it with the CPU inputs raises. A function that takes its device from its
inputs runs there as it does outside.
"""

import pytest
import torch

from companion.attention import MultiHeadAttention, scaled_dot_product_attention
from companion.masks import causal_mask, padding_mask
from companion.seq2seq import Seq2Seq, Seq2SeqConfig
from companion.toy_translation import encode


def test_meta_default_device_catches_a_missing_device_argument():
    x = torch.randn(3, 3)
    with torch.device("meta"):
        made_here = torch.ones(3, 3, dtype=torch.bool)
        assert made_here.device.type == "meta"
        with pytest.raises(RuntimeError, match="device"):
            x.masked_fill(~made_here, 0.0)


def test_causal_attention_and_mha_create_their_masks_on_the_inputs_device():
    torch.manual_seed(0)
    q, k, v = torch.randn(2, 3, 4), torch.randn(2, 5, 4), torch.randn(2, 5, 6)
    expected, _ = scaled_dot_product_attention(q, k, v, is_causal=True)
    mha = MultiHeadAttention(8, 2)
    x = torch.randn(2, 5, 8)
    expected_mha, _ = mha(x, x, x, padding_mask(torch.tensor([5, 2])), is_causal=True)
    with torch.device("meta"):
        out, w = scaled_dot_product_attention(q, k, v, is_causal=True)
        out_mha, _ = mha(x, x, x, padding_mask(torch.tensor([5, 2], device="cpu")), is_causal=True)
    assert out.device.type == "cpu" and w.device.type == "cpu"
    torch.testing.assert_close(out, expected)
    torch.testing.assert_close(out_mha, expected_mha)
    assert causal_mask(2, 3, device="meta").device.type == "meta"


def test_greedy_decoding_creates_its_tensors_on_the_inputs_device():
    torch.manual_seed(0)
    model = Seq2Seq(Seq2SeqConfig(kind="bahdanau", embed_dim=8, hidden=6, attn_dim=5)).eval()
    batch = encode([[3, 1, 4, 1, 5], [9, 2]])
    expected_ids, expected_w = model.greedy(batch.src, batch.src_lengths)
    with torch.device("meta"):
        ids, weights = model.greedy(batch.src, batch.src_lengths)
    assert ids.device.type == "cpu"
    assert torch.equal(ids, expected_ids)
    torch.testing.assert_close(weights, expected_w)
