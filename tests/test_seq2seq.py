"""Chapter 3's encoder-decoders: shapes, masking, the precomputed additive score, padding
invariance, greedy decoding, input checks and the gradient paths that attention opens."""

import pytest
import torch

from companion.masks import padding_mask
from companion.seq2seq import Seq2Seq, Seq2SeqConfig, input_gradient_norms
from companion.tasks.toy_translation import EOS, encode


def _model(kind, **kw):
    torch.manual_seed(0)
    return Seq2Seq(Seq2SeqConfig(kind=kind, embed_dim=8, hidden=6, attn_dim=5, **kw)).eval()


def _batch():
    return encode([[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]])


CONFIGS = [("plain", {}), ("bahdanau", {}), ("luong", {"luong_score": "dot"}),
           ("luong", {"luong_score": "general"}), ("luong", {"luong_score": "concat"}),
           ("luong", {"input_feeding": False})]


@pytest.mark.parametrize("kind,kw", CONFIGS)
def test_forward_shapes_and_weights_are_distributions_over_real_words(kind, kw):
    b = _batch()
    logits, weights = _model(kind, **kw)(b.src, b.src_lengths, b.tgt_in)
    assert logits.shape == (3, 6, 13)
    if kind == "plain":
        assert weights is None
        return
    assert weights.shape == (3, 6, 5)
    torch.testing.assert_close(weights.sum(-1), torch.ones(3, 6))
    padded = ~padding_mask(b.src_lengths, 5).expand(3, 6, 5)
    assert torch.all(weights[padded] == 0)  # exactly zero, not just small


@pytest.mark.parametrize("kind,kw", CONFIGS)
def test_padding_does_not_change_a_sentence_translation(kind, kw):
    model = _model(kind, **kw)
    b = _batch()
    alone = encode([[9, 2]])
    logits, _ = model(b.src, b.src_lengths, b.tgt_in)
    logits_alone, _ = model(alone.src, alone.src_lengths, alone.tgt_in)
    torch.testing.assert_close(logits[1, :3], logits_alone[0], atol=1e-5, rtol=1e-5)


def test_precomputed_energies_equal_the_additive_score():
    model = _model("bahdanau")
    annotations = torch.randn(2, 7, 12)
    s = torch.randn(2, 12)
    _, keys = model.decoder.start(annotations, torch.randn(2, 12), None)
    torch.testing.assert_close(model.decoder.energies(s, keys), model.decoder.score(s.unsqueeze(1), annotations))


def test_encoder_summary_is_the_last_real_state_of_each_direction():
    model = _model("plain")
    b = _batch()
    annotations, summary = model.encoder(model.encoder.embed(b.src), b.src_lengths)
    H = 6
    for n, L in enumerate(b.src_lengths.tolist()):
        torch.testing.assert_close(summary[n, :H], annotations[n, L - 1, :H])  # forward, after the last word
        torch.testing.assert_close(summary[n, H:], annotations[n, 0, H:])  # backward, after the first word
        assert torch.all(annotations[n, L:] == 0)


def test_greedy_decoding_matches_teacher_forcing_on_its_own_output():
    model = _model("bahdanau")
    b = _batch()
    ids, weights = model.greedy(b.src, b.src_lengths)
    assert ids.shape[1] <= 6 and weights.shape == (3, ids.shape[1], 5)
    tgt_in = torch.cat([torch.ones(3, 1, dtype=torch.long), ids[:, :-1]], 1)
    logits, alphas = model(b.src, b.src_lengths, tgt_in)
    assert torch.equal(logits.argmax(-1), ids)
    torch.testing.assert_close(alphas, weights)
    long_ids, _ = model.greedy(b.src, b.src_lengths, max_steps=2)
    assert long_ids.shape[1] <= 2 or (long_ids == EOS).any(1).all()


def test_inputs_and_configs_are_checked():
    model = _model("luong")
    b = _batch()
    with pytest.raises(TypeError, match="src"):
        model(b.src.float(), b.src_lengths, b.tgt_in)
    with pytest.raises(ValueError, match="src_lengths"):
        model(b.src, torch.tensor([6, 2, 3]), b.tgt_in)
    with pytest.raises(ValueError, match="src_lengths"):
        model(b.src, b.src_lengths[:2], b.tgt_in)
    with pytest.raises(ValueError, match="tgt_in"):
        model(b.src, b.src_lengths, b.tgt_in[:2])
    with pytest.raises(ValueError, match="kind"):
        Seq2Seq(Seq2SeqConfig(kind="transformer"))
    with pytest.raises(ValueError, match="luong_score"):
        Seq2Seq(Seq2SeqConfig(kind="luong", luong_score="cosine"))
    with pytest.raises(ValueError, match="hidden"):
        Seq2Seq(Seq2SeqConfig(hidden=0))
    with pytest.raises(ValueError, match="step"):
        input_gradient_norms(model, b.src, b.src_lengths, b.tgt_in, b.tgt_out, step=6)


def test_attention_opens_a_short_gradient_path_to_the_middle_of_a_long_input():
    """At initialisation, on 40-word inputs, the last output's gradient with respect to the
    middle words is orders of magnitude larger with attention than through the fixed context."""
    g = torch.Generator().manual_seed(0)
    b = encode(torch.randint(0, 10, (8, 40), generator=g).tolist())
    norms = {}
    for kind in ("plain", "bahdanau"):
        torch.manual_seed(0)
        model = Seq2Seq(Seq2SeqConfig(kind=kind))
        norms[kind] = input_gradient_norms(model, b.src, b.src_lengths, b.tgt_in, b.tgt_out, step=40)
    middle = slice(15, 25)
    plain, attention = norms["plain"][:, middle].mean(), norms["bahdanau"][:, middle].mean()
    assert attention > 10 * plain, (attention, plain)
    # the plain model still sees the ends: the two directions' last states read them
    assert norms["plain"][:, 0].mean() > 10 * plain
    padded = encode([[1, 2, 3], [4]])
    grads = input_gradient_norms(_model("bahdanau"), padded.src, padded.src_lengths, padded.tgt_in, padded.tgt_out, 1)
    assert torch.all(grads[1, 1:] == 0) and torch.all(grads[0] > 0)
