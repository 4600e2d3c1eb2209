"""companion.local_seq2seq: the local-m and local-p decoders attend only inside their window,
one decoder step equals the equations computed by hand, and decode returns the centres."""

import pytest
import torch

from companion.local import local_weights
from companion.local_seq2seq import LocalSeq2Seq, LocalSeq2SeqConfig, decode
from companion.masks import padding_mask
from companion.seq2seq import evaluate
from companion.tasks.toy_translation import encode


@pytest.fixture
def batch():
    return encode([[3, 1, 4, 1, 5, 9, 2, 6], [2, 7, 1]])


@pytest.mark.parametrize("kind", ["local-m", "local-p"])
def test_weights_vanish_outside_the_window(batch, kind):
    torch.manual_seed(0)
    model = LocalSeq2Seq(LocalSeq2SeqConfig(kind=kind, half_width=1))
    ids, weights, centres = decode(model, batch.src, batch.src_lengths)
    S = batch.src.shape[1]
    distance = (torch.arange(S) - centres.unsqueeze(-1)).abs()  # (B, T', S)
    assert (weights[distance > 1] == 0).all()
    assert (weights[1, :, 3:] == 0).all()  # padding of the 3-word sentence
    if kind == "local-m":
        assert centres[0].tolist() == list(range(centres.shape[1]))
    else:
        assert (centres >= 0).all() and (centres <= batch.src_lengths[:, None]).all()
    logits, alphas = model(batch.src, batch.src_lengths, batch.tgt_in)
    assert logits.shape == (2, 9, 13) and alphas.shape == (2, 9, S)


def test_one_local_p_step_by_hand(batch):
    torch.manual_seed(1)
    model = LocalSeq2Seq(LocalSeq2SeqConfig(kind="local-p", half_width=2))
    dec = model.decoder
    annotations, summary = model.encoder(model.encoder.embed(batch.src), batch.src_lengths)
    mask = padding_mask(batch.src_lengths, batch.src.shape[1])
    carry = dec.start(annotations, summary, mask)
    logits, (z, z_tilde, t, p), alpha = dec.step(batch.tgt_in[:, 0], carry, annotations, mask)

    z_hand = dec.cell(torch.cat([dec.embed(batch.tgt_in[:, 0]), carry[1]], -1), carry[0])
    p_hand = batch.src_lengths * torch.sigmoid(torch.tanh(z_hand @ dec.center.W_p.weight.T) @ dec.center.v_p.weight[0])
    scores = torch.einsum("bd,de,bse->bs", z_hand, dec.score.W, annotations)
    alpha_hand = torch.zeros_like(scores)
    for b in range(2):
        L = int(batch.src_lengths[b])
        inside = [j for j in range(L) if abs(j - p_hand[b].item()) <= 2]
        soft = torch.softmax(scores[b, inside], 0)
        gauss = torch.exp(-(torch.tensor(inside) - p_hand[b]) ** 2 / (2 * 1.0**2))
        alpha_hand[b, inside] = soft * gauss
    torch.testing.assert_close(p, p_hand)
    torch.testing.assert_close(alpha, alpha_hand)
    c = torch.einsum("bs,bsd->bd", alpha_hand, annotations)
    torch.testing.assert_close(z_tilde, torch.tanh(dec.W_c(torch.cat([c, z_hand], -1))))
    torch.testing.assert_close(logits, dec.out(z_tilde))
    assert t.tolist() == [1.0, 1.0]


def test_local_m_weights_are_the_plain_windowed_softmax(batch):
    """Luong's local-m has no Gaussian factor: inside the window p_t = t the weights are the
    softmax of the scores there, and they sum to one (eq-local-m-weights)."""
    torch.manual_seed(3)
    model = LocalSeq2Seq(LocalSeq2SeqConfig(kind="local-m", half_width=2))
    dec = model.decoder
    annotations, summary = model.encoder(model.encoder.embed(batch.src), batch.src_lengths)
    mask = padding_mask(batch.src_lengths, batch.src.shape[1])
    carry = dec.start(annotations, summary, mask)
    for step in range(3):
        y = batch.tgt_in[:, step]
        z_hand = dec.cell(torch.cat([dec.embed(y), carry[1]], -1), carry[0])
        logits, carry, alpha = dec.step(y, carry, annotations, mask)
        scores = torch.einsum("bd,de,bse->bs", z_hand, dec.score.W, annotations)
        for b in range(2):
            inside = [j for j in range(int(batch.src_lengths[b])) if abs(j - step) <= 2]
            want = torch.zeros(batch.src.shape[1])
            want[inside] = torch.softmax(scores[b, inside], 0)
            torch.testing.assert_close(alpha[b], want)
        torch.testing.assert_close(alpha.sum(-1), torch.ones(2))


def test_local_p_centre_gets_a_gradient(batch):
    torch.manual_seed(2)
    model = LocalSeq2Seq(LocalSeq2SeqConfig(kind="local-p"))
    logits, _ = model(batch.src, batch.src_lengths, batch.tgt_in)
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), batch.tgt_out.flatten(), ignore_index=0).backward()
    assert model.decoder.center.v_p.weight.grad.abs().sum() > 0


def test_evaluate_works_on_the_local_model(batch):
    torch.manual_seed(0)
    result = evaluate(LocalSeq2Seq(LocalSeq2SeqConfig(kind="local-m")), batch)
    assert 0 <= result["exact_match"] <= result["token_accuracy"] <= 1


def test_bad_config():
    with pytest.raises(ValueError, match="kind"):
        LocalSeq2Seq(LocalSeq2SeqConfig(kind="global"))
    with pytest.raises(ValueError, match="half_width"):
        LocalSeq2Seq(LocalSeq2SeqConfig(half_width=0))
    with pytest.raises(TypeError, match="model"):
        decode(torch.nn.Linear(2, 2), torch.zeros(1, 2, dtype=torch.long), torch.tensor([2]))

