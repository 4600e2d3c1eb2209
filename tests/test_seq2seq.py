"""Chapter 3's encoder-decoders: shapes, masking, the precomputed additive score, padding
invariance, greedy decoding, input checks, the gradient paths that attention opens, Luong's
location score and input feeding unrolled by hand, imposed weights, and the encoder's chain
factors of eq-plain-gradient."""

import pytest
import torch

from companion.masks import padding_mask
from companion.seq2seq import Seq2Seq, Seq2SeqConfig, chain_bound, encoder_jacobians, input_gradient_norms
from companion.tasks.toy_translation import EOS, encode


def _model(kind, **kw):
    torch.manual_seed(0)
    return Seq2Seq(Seq2SeqConfig(kind=kind, embed_dim=8, hidden=6, attn_dim=5, **kw)).eval()


def _batch():
    return encode([[3, 1, 4, 1, 5], [9, 2], [6, 5, 3]])


CONFIGS = [("plain", {}), ("bahdanau", {}), ("luong", {"luong_score": "dot"}),
           ("luong", {"luong_score": "general"}), ("luong", {"luong_score": "concat"}),
           ("luong", {"luong_score": "location"}), ("luong", {"input_feeding": False})]


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
    """At initialisation, on 40-word inputs, the gradient of the output aligned with the middle
    word with respect to the middle words is orders of magnitude larger with attention than
    through the fixed context."""
    g = torch.Generator().manual_seed(0)
    b = encode(torch.randint(0, 10, (8, 40), generator=g).tolist())
    norms = {}
    for kind in ("plain", "bahdanau"):
        torch.manual_seed(0)
        model = Seq2Seq(Seq2SeqConfig(kind=kind))
        # output 20 (counted from 0) translates source word 40 - 1 - 20 = 19, the middle
        norms[kind] = input_gradient_norms(model, b.src, b.src_lengths, b.tgt_in, b.tgt_out, step=20)
    middle = slice(15, 25)
    plain, attention = norms["plain"][:, middle].mean(), norms["bahdanau"][:, middle].mean()
    assert attention > 10 * plain, (attention, plain)
    # the plain model still sees the ends: the two directions' last states read them
    assert norms["plain"][:, 0].mean() > 10 * plain
    padded = encode([[1, 2, 3], [4]])
    grads = input_gradient_norms(_model("bahdanau"), padded.src, padded.src_lengths, padded.tgt_in, padded.tgt_out, 1)
    assert torch.all(grads[1, 1:] == 0) and torch.all(grads[0] > 0)


def test_location_score_ignores_the_annotations_and_its_length_is_checked():
    model = _model("luong", luong_score="location", max_source=6)
    dec = model.decoder
    z = torch.randn(2, 12)
    annotations = torch.randn(2, 4, 12)
    scores = dec.scores(z, annotations)  # (B, 1, S)
    torch.testing.assert_close(scores, (z @ dec.score.W_a.weight.T)[:, None, :4])  # s_t = W_a z_t, first S rows
    torch.testing.assert_close(dec.scores(z, torch.randn(2, 4, 12)), scores)  # content plays no part
    b = encode([[1] * 7])
    with pytest.raises(ValueError, match="max_source"):
        model(b.src, b.src_lengths, b.tgt_in)
    with pytest.raises(ValueError, match="max_source"):
        Seq2Seq(Seq2SeqConfig(max_source=0))


@pytest.mark.parametrize("score", ["dot", "general", "location"])
def test_luong_input_feeding_unrolled_by_hand_at_step_three(score):
    """Three teacher-forced steps recomputed from eq-luong-state and eq-luong-attentional with
    the decoder's own parameters; the third step's state depends on the fed z~_2."""
    model = _model("luong", luong_score=score)
    b = _batch()
    logits, weights = model(b.src, b.src_lengths, b.tgt_in)
    dec = model.decoder
    annotations, summary = model.encoder(model.encoder.embed(b.src), b.src_lengths)
    real = padding_mask(b.src_lengths, 5)[:, 0]  # (B, S)
    z, z_tilde = torch.tanh(dec.init(summary)), torch.zeros(3, 12)
    for t in range(3):
        z = dec.cell(torch.cat([dec.embed(b.tgt_in[:, t]), z_tilde], -1), z)
        if score == "dot":
            s = torch.einsum("bd,bsd->bs", z, annotations)
        elif score == "general":
            s = torch.einsum("bd,de,bse->bs", z, dec.score.W, annotations)
        else:
            s = (z @ dec.score.W_a.weight.T)[:, :5]
        alpha = torch.softmax(s.masked_fill(~real, float("-inf")), -1)
        c = torch.einsum("bs,bsd->bd", alpha, annotations)
        z_tilde = torch.tanh(torch.cat([c, z], -1) @ dec.W_c.weight.T)
        torch.testing.assert_close(weights[:, t], alpha)
        torch.testing.assert_close(logits[:, t], dec.out(z_tilde))


def test_imposed_weights_replace_the_computed_ones():
    for kind, kw in (("bahdanau", {}), ("luong", {})):
        model = _model(kind, **kw)
        b = _batch()
        logits, weights = model(b.src, b.src_lengths, b.tgt_in)
        again, used = model(b.src, b.src_lengths, b.tgt_in, weights=weights)
        torch.testing.assert_close(again, logits)
        uniform = padding_mask(b.src_lengths, 5).expand(3, 6, 5).float()
        uniform = uniform / uniform.sum(-1, keepdim=True)
        changed, used = model(b.src, b.src_lengths, b.tgt_in, weights=uniform)
        assert torch.equal(used, uniform) and not torch.allclose(changed, logits)
        with pytest.raises(ValueError, match="padded"):
            model(b.src, b.src_lengths, b.tgt_in, weights=torch.full((3, 6, 5), 0.2))
        with pytest.raises(ValueError, match="sum to one"):
            model(b.src, b.src_lengths, b.tgt_in, weights=2 * uniform)
        with pytest.raises(ValueError, match="weights must be"):
            model(b.src, b.src_lengths, b.tgt_in, weights=uniform[:, :2])
    with pytest.raises(ValueError, match="plain"):
        _model("plain")(b.src, b.src_lengths, b.tgt_in, weights=uniform)


def test_encoder_chain_factors_reproduce_autograd_and_bound_it():
    """The product of the step Jacobians equals autograd's d h_end / d x_j through nn.GRU, and
    its spectral norm is at most the product of the factors' norms (eq-plain-gradient)."""
    model = _model("plain")
    x = torch.randn(7, 8, generator=torch.Generator().manual_seed(2))
    factors = encoder_jacobians(model.encoder, x)
    annotations, summary = model.encoder(x[None], torch.tensor([7]))
    torch.testing.assert_close(factors["forward"].states, annotations[0, :, :6])
    torch.testing.assert_close(factors["backward"].states, annotations[0, :, 6:])

    def ends(x_j, j):
        xs = torch.cat([x[:j], x_j[None], x[j + 1:]])[None]
        return model.encoder(xs, torch.tensor([7]))[1][0]  # [h_S^fwd; h_1^bwd]

    for j in (0, 3, 6):
        full = torch.autograd.functional.jacobian(lambda x_j: ends(x_j, j), x[j])  # (12, 8)
        for direction, rows in (("forward", slice(0, 6)), ("backward", slice(6, 12))):
            product, gammas, bound = chain_bound(factors[direction], j)
            torch.testing.assert_close(product, full[rows], atol=1e-5, rtol=1e-4)
            assert len(gammas) == (6 - j if direction == "forward" else j)
            assert torch.linalg.matrix_norm(product, ord=2) <= bound * (1 + 1e-5)
    with pytest.raises(ValueError, match="j must"):
        chain_bound(factors["forward"], 7)
    with pytest.raises(ValueError, match="x must"):
        encoder_jacobians(model.encoder, x[None])
    with pytest.raises(TypeError, match="encoder"):
        encoder_jacobians(model, x)
