"""The Transformer: blocks against direct computations and torch's own layers, the masks by
leakage tests (no future token, no padded source token, no other row changes an output),
decoding with and without the key-value cache, label smoothing and the warm-up schedule."""

import itertools
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from companion.transformer import (
    DecoderBlock,
    DecoderOnlyTransformer,
    EncoderBlock,
    Transformer,
    beam_search,
    greedy_decode,
    label_smoothing_loss,
    warmup_schedule,
)

torch.set_num_threads(1)


def _encdec(norm_first=False, seed=0, **kw):
    torch.manual_seed(seed)
    sizes = dict(src_vocab_size=11, tgt_vocab_size=13, dim=16, num_heads=4, num_layers=2, ffn_dim=32,
                 max_len=24)
    sizes.update(kw)
    return Transformer(**sizes, norm_first=norm_first).double().eval()


def _decoder(norm_first=True, seed=0, **kw):
    torch.manual_seed(seed)
    sizes = dict(vocab_size=10, dim=16, num_heads=4, num_layers=2, ffn_dim=32, max_len=24)
    sizes.update(kw)
    return DecoderOnlyTransformer(**sizes, norm_first=norm_first).double().eval()


# ---- the blocks against torch's own layers ---------------------------------------------------


def _copy_into_torch(block: EncoderBlock, layer: nn.TransformerEncoderLayer) -> None:
    with torch.no_grad():
        mha = block.attn.to_torch()
        layer.self_attn.load_state_dict(mha.state_dict())
        for ours, theirs in ((block.ffn.fc1, layer.linear1), (block.ffn.fc2, layer.linear2),
                             (block.norm1, layer.norm1), (block.norm2, layer.norm2)):
            theirs.load_state_dict(ours.state_dict())


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_block_equals_torch_encoder_layer(norm_first):
    torch.manual_seed(0)
    block = EncoderBlock(16, 4, 32, norm_first=norm_first).double().eval()
    for p in block.parameters():  # LayerNorm starts at 1 and 0: move it so the test sees it
        nn.init.normal_(p, std=0.3)
    layer = nn.TransformerEncoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first,
                                       dtype=torch.float64).eval()
    _copy_into_torch(block, layer)
    x = torch.randn(3, 7, 16, dtype=torch.float64)
    lengths = torch.tensor([7, 5, 2])
    keep = torch.arange(7)[None, :] < lengths[:, None]  # (B, S)
    ours, weights = block(x, keep[:, None, :])
    theirs = layer(x, src_key_padding_mask=~keep)
    for b, L in enumerate(lengths.tolist()):  # torch leaves padded rows alone; compare the real ones
        torch.testing.assert_close(ours[b, :L], theirs[b, :L])
    assert weights.shape == (3, 4, 7, 7)
    assert torch.all(weights[1, :, :, 5:] == 0) and torch.all(weights[2, :, :, 2:] == 0)


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_block_equals_torch_decoder_layer(norm_first):
    torch.manual_seed(0)
    block = DecoderBlock(16, 4, 32, norm_first=norm_first).double().eval()
    for p in block.parameters():
        nn.init.normal_(p, std=0.3)
    layer = nn.TransformerDecoderLayer(16, 4, 32, dropout=0.0, batch_first=True, norm_first=norm_first,
                                       dtype=torch.float64).eval()
    with torch.no_grad():
        layer.self_attn.load_state_dict(block.self_attn.to_torch().state_dict())
        layer.multihead_attn.load_state_dict(block.cross_attn.to_torch().state_dict())
        for ours, theirs in ((block.ffn.fc1, layer.linear1), (block.ffn.fc2, layer.linear2),
                             (block.norm1, layer.norm1), (block.norm2, layer.norm2), (block.norm3, layer.norm3)):
            theirs.load_state_dict(ours.state_dict())
    x, memory = torch.randn(3, 5, 16, dtype=torch.float64), torch.randn(3, 7, 16, dtype=torch.float64)
    keep = torch.arange(7)[None, :] < torch.tensor([7, 4, 2])[:, None]  # (B, S)
    ours, self_w, cross_w = block(x, memory, keep[:, None, :])
    causal = nn.Transformer.generate_square_subsequent_mask(5, dtype=torch.float64)
    theirs = layer(x, memory, tgt_mask=causal, memory_key_padding_mask=~keep)
    torch.testing.assert_close(ours, theirs)
    assert self_w.shape == (3, 4, 5, 5) and cross_w.shape == (3, 4, 5, 7)


def test_encoder_block_by_hand_post_norm():
    """eq-transformer-encoder-block written out with the block's own pieces."""
    torch.manual_seed(1)
    block = EncoderBlock(8, 2, 12).double().eval()
    x = torch.randn(2, 5, 8, dtype=torch.float64)
    a, _ = block.attn(x, x, x)
    h = F.layer_norm(x + a, (8,), block.norm1.weight, block.norm1.bias)
    ffn = block.ffn.fc2(torch.relu(block.ffn.fc1(h)))
    expected = F.layer_norm(h + ffn, (8,), block.norm2.weight, block.norm2.bias)
    torch.testing.assert_close(block(x)[0], expected)


# ---- shapes, weights, embeddings --------------------------------------------------------------


def test_shapes_and_weights_of_every_attention():
    model = _encdec()
    src, tgt = torch.randint(1, 11, (3, 7)), torch.randint(0, 13, (3, 5))
    logits, weights = model(src, tgt, torch.tensor([7, 4, 2]), return_weights=True)
    assert logits.shape == (3, 5, 13)
    assert weights["encoder"].shape == (2, 3, 4, 7, 7)
    assert weights["decoder"].shape == (2, 3, 4, 5, 5)
    assert weights["cross"].shape == (2, 3, 4, 5, 7)
    for w in weights.values():
        torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1], dtype=w.dtype))
    assert torch.all(weights["decoder"].triu(1) == 0)  # causal
    assert torch.all(weights["cross"][:, 2, :, :, 2:] == 0)  # padding of row 2 never read
    torch.testing.assert_close(model(src, tgt, torch.tensor([7, 4, 2])), logits)

    decoder = _decoder()
    tokens = torch.randint(0, 10, (2, 6))
    logits, weights = decoder(tokens, return_weights=True)
    assert logits.shape == (2, 6, 10) and weights["decoder"].shape == (2, 2, 4, 6, 6)


def test_embedding_is_scaled_and_tied():
    model = _encdec()
    tgt = torch.tensor([[3, 5]])
    expected = model.tgt_embed.tokens.weight[tgt] * math.sqrt(16) + model.tgt_embed.pe[:2]
    torch.testing.assert_close(model.tgt_embed(tgt), expected)
    # tied: a zero embedding row gives a zero logit for that token at every position
    with torch.no_grad():
        model.tgt_embed.tokens.weight[7] = 0.0
    logits = model(torch.tensor([[1, 2, 3]]), torch.tensor([[0, 4, 5]]))
    assert torch.all(logits[..., 7] == 0)
    decoder = _decoder()
    names = [n for n, _ in decoder.named_parameters()]
    assert not any("unembed" in n or "head" in n for n in names)  # no separate output matrix


# ---- leakage ---------------------------------------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
def test_no_future_token_changes_an_earlier_logit(norm_first):
    model = _encdec(norm_first)
    src = torch.randint(1, 11, (2, 6))
    tgt = torch.randint(0, 13, (2, 8))
    base = model(src, tgt)
    for t in range(8):
        changed = tgt.clone()
        changed[:, t] = (changed[:, t] + 1) % 13
        out = model(src, changed)
        assert torch.equal(out[:, :t], base[:, :t]), f"position {t} leaks backwards"
        assert not torch.equal(out[:, t:], base[:, t:])  # and it does change what follows

    decoder = _decoder(norm_first)
    tokens = torch.randint(0, 10, (2, 9))
    base = decoder(tokens)
    for t in range(9):
        changed = tokens.clone()
        changed[:, t] = (changed[:, t] + 1) % 10
        out = decoder(changed)
        assert torch.equal(out[:, :t], base[:, :t]), f"position {t} leaks backwards"
        assert not torch.equal(out[:, t], base[:, t])


@pytest.mark.parametrize("norm_first", [False, True])
def test_padded_source_tokens_change_nothing(norm_first):
    model = _encdec(norm_first)
    src = torch.randint(1, 11, (3, 7))
    tgt = torch.randint(0, 13, (3, 5))
    lengths = torch.tensor([7, 4, 2])
    base = model(src, tgt, lengths)
    for j in range(7):
        changed = src.clone()
        changed[:, j] = (changed[:, j] + 3) % 11
        out = model(changed, tgt, lengths)
        for b, L in enumerate(lengths.tolist()):
            if j >= L:
                assert torch.equal(out[b], base[b]), f"padded position {j} of row {b} is read"
            else:
                assert not torch.equal(out[b], base[b])


@pytest.mark.parametrize("norm_first", [False, True])
def test_a_padded_row_equals_the_row_alone(norm_first):
    model = _encdec(norm_first)
    src = torch.randint(1, 11, (3, 7))
    tgt = torch.randint(0, 13, (3, 5))
    lengths = torch.tensor([7, 4, 2])
    batched = model(src, tgt, lengths)
    for b, L in enumerate(lengths.tolist()):
        alone = model(src[b:b + 1, :L], tgt[b:b + 1])
        torch.testing.assert_close(batched[b:b + 1], alone, rtol=1e-12, atol=1e-12)


def test_each_row_depends_on_its_own_row_alone():
    model = _encdec()
    src, tgt = torch.randint(1, 11, (3, 6)), torch.randint(0, 13, (3, 5))
    base = model(src, tgt)
    src2, tgt2 = src.clone(), tgt.clone()
    src2[1] = (src2[1] + 1) % 11
    tgt2[1] = (tgt2[1] + 1) % 13
    out = model(src2, tgt2)
    assert torch.equal(out[0], base[0]) and torch.equal(out[2], base[2])
    assert not torch.equal(out[1], base[1])

    decoder = _decoder()
    tokens = torch.randint(0, 10, (3, 6))
    base = decoder(tokens)
    changed = tokens.clone()
    changed[2] = (changed[2] + 1) % 10
    out = decoder(changed)
    assert torch.equal(out[:2], base[:2]) and not torch.equal(out[2], base[2])


# ---- generation with the key-value cache -----------------------------------------------------


@pytest.mark.parametrize("norm_first", [False, True])
def test_generate_with_and_without_cache_gives_the_same_tokens(norm_first):
    decoder = _decoder(norm_first, vocab_size=12, max_len=40)
    prompt = torch.randint(0, 12, (4, 5))
    with_cache = decoder.generate(prompt, 20, use_cache=True)
    without = decoder.generate(prompt, 20, use_cache=False)
    assert with_cache.shape == (4, 25)
    assert torch.equal(with_cache, without)
    assert torch.equal(with_cache[:, :5], prompt)
    # each generated token is the argmax of a full forward pass over what precedes it
    logits = decoder(with_cache[:, :-1])  # (B, 24, V)
    assert torch.equal(logits[:, 4:].argmax(-1), with_cache[:, 5:])


def test_cached_logits_equal_the_full_pass():
    decoder = _decoder()
    tokens = torch.randint(0, 10, (2, 10))
    full, weights = decoder(tokens, return_weights=True)
    cache = decoder.new_cache()
    first, _ = decoder(tokens[:, :6], cache, return_weights=True)
    assert len(cache) == 6
    rest, w_rest = decoder(tokens[:, 6:], cache, return_weights=True)
    assert len(cache) == 10 and cache.nbytes() == 2 * 2 * (2 * 4 * 10 * 4) * 8
    torch.testing.assert_close(torch.cat([first, rest], 1), full, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(w_rest["decoder"], weights["decoder"][..., 6:, :], rtol=1e-12, atol=1e-12)


def test_generate_restores_training_mode_and_ignores_dropout():
    torch.manual_seed(0)
    decoder = DecoderOnlyTransformer(10, 16, 2, 2, 32, 30, dropout=0.3).train()
    prompt = torch.randint(0, 10, (2, 4))
    a, b = decoder.generate(prompt, 8), decoder.generate(prompt, 8, use_cache=False)
    assert torch.equal(a, b) and decoder.training


# ---- decoding the encoder-decoder ------------------------------------------------------------


def _by_hand_greedy(model, src, lengths, steps, start):
    tokens = torch.full((src.shape[0], 1), start)
    for _ in range(steps):
        nxt = model(src, tokens, lengths)[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, nxt], 1)
    return tokens[:, 1:]


def test_greedy_decode_and_beam_of_one():
    model = _encdec(seed=3)
    src = torch.randint(1, 11, (3, 6))
    lengths = torch.tensor([6, 3, 5])
    greedy = greedy_decode(model, src, 7, start=1, src_lengths=lengths)
    assert torch.equal(greedy, _by_hand_greedy(model, src, lengths, 7, 1))
    with_end = greedy_decode(model, src, 7, start=1, src_lengths=lengths, end=int(greedy[0, 2]))
    assert torch.equal(with_end[0, :3], greedy[0, :3]) and torch.all(with_end[0, 3:] == greedy[0, 2])
    # a beam of one is greedy decoding
    end = 2
    beam = beam_search(model, src, 1, 7, start=1, end=end, src_lengths=lengths)
    torch.testing.assert_close(beam, greedy_decode(model, src, 7, start=1, src_lengths=lengths, end=end))


@torch.no_grad()
def _sequence_logprob(model, src, lengths, seq, start, end):
    """Total log-probability of ``seq`` up to and including its first ``end``."""
    stop = (seq == end).nonzero()
    n = int(stop[0]) + 1 if len(stop) else len(seq)
    tgt_in = torch.cat([torch.tensor([start]), seq[: n - 1]])[None]
    logp = model(src, tgt_in, lengths).log_softmax(-1)[0]  # (n, V)
    return float(logp[torch.arange(n), seq[:n]].sum())


def test_beam_search_is_exact_with_a_wide_beam():
    """With a beam as wide as the vocabulary to the power of the length, beam search is
    exhaustive: its answer has the largest probability of all sequences (checked by enumeration)."""
    torch.manual_seed(0)
    model = Transformer(5, 4, 8, 2, 1, 16, 8).double().eval()  # target ids: 0 start, 1 end, 2, 3
    src = torch.randint(0, 5, (2, 4))

    for b in range(2):
        best = max(
            (_sequence_logprob(model, src[b:b + 1], None, torch.tensor(seq), 0, 1), seq)
            for n in range(1, 4) for seq in itertools.product([1, 2, 3], repeat=n)
            if (1 not in seq[:-1]) and (seq[-1] == 1 or n == 3)
        )
        found = beam_search(model, src[b:b + 1], 64, 3, start=0, end=1)[0]
        assert math.isclose(_sequence_logprob(model, src[b:b + 1], None, found, 0, 1), best[0], rel_tol=1e-12)
        beam2 = beam_search(model, src[b:b + 1], 2, 3, start=0, end=1)[0]
        assert _sequence_logprob(model, src[b:b + 1], None, beam2, 0, 1) <= best[0] + 1e-12


# ---- training helpers ------------------------------------------------------------------------


@pytest.mark.parametrize("smoothing", [0.0, 0.1, 0.5])
def test_label_smoothing_equals_torch(smoothing):
    torch.manual_seed(0)
    logits = torch.randn(3, 5, 7, dtype=torch.float64)
    targets = torch.randint(0, 7, (3, 5))
    targets[0, 3] = 0
    ours = label_smoothing_loss(logits, targets, smoothing, ignore_index=0)
    theirs = F.cross_entropy(logits.flatten(0, 1), targets.flatten(), label_smoothing=smoothing, ignore_index=0)
    torch.testing.assert_close(ours, theirs)
    # against the smoothed distribution written out
    q = torch.full((15, 7), smoothing / 7, dtype=torch.float64)
    q[torch.arange(15), targets.flatten()] += 1 - smoothing
    keep = targets.flatten() != 0
    direct = -(q * logits.flatten(0, 1).log_softmax(-1)).sum(-1)[keep].mean()
    torch.testing.assert_close(ours, direct)


def test_warmup_schedule_matches_the_paper_and_lambda_lr():
    d, w = 512, 4000
    assert warmup_schedule(0, d, w) == 0.0
    assert math.isclose(warmup_schedule(w, d, w), (d * w) ** -0.5)
    assert math.isclose(warmup_schedule(100, d, w), d ** -0.5 * 100 * w ** -1.5)
    assert math.isclose(warmup_schedule(10_000, d, w), d ** -0.5 * 10_000 ** -0.5)
    rates = [warmup_schedule(s, d, w) for s in range(1, 3 * w)]
    assert max(range(len(rates)), key=rates.__getitem__) + 1 == w
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=1.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_schedule(s + 1, d, w))
    seen = []
    for _ in range(5):
        seen.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert seen == pytest.approx([warmup_schedule(s, d, w) for s in range(1, 6)])


# ---- bad input -------------------------------------------------------------------------------


def test_bad_input_raises():
    model = _encdec()
    src, tgt = torch.randint(1, 11, (2, 5)), torch.randint(0, 13, (2, 4))
    with pytest.raises(ValueError, match="src must hold ids in 0 .. 10"):
        model(src + 11, tgt)
    with pytest.raises(ValueError, match="tgt must hold ids in 0 .. 12"):
        model(src, tgt - 20)
    with pytest.raises(ValueError, match="longer than max_len=24"):
        model(torch.ones(2, 25, dtype=torch.long), tgt)
    with pytest.raises(ValueError, match="longer than max_len=24"):
        model(src, torch.ones(2, 25, dtype=torch.long))
    with pytest.raises(TypeError, match="integer token ids"):
        model(src.float(), tgt)
    with pytest.raises(ValueError, match="same batch size"):
        model(src, tgt[:1])
    with pytest.raises(ValueError, match=r"src_lengths must lie in 1 .. 5"):
        model(src, tgt, torch.tensor([6, 2]))
    with pytest.raises(ValueError, match=r"src_lengths must have shape \(2,\)"):
        model(src, tgt, torch.tensor([5]))
    with pytest.raises(ValueError, match="shape \\(batch, length\\)"):
        model(src[0], tgt)

    decoder = _decoder()
    with pytest.raises(ValueError, match="tokens must hold ids in 0 .. 9"):
        decoder(torch.tensor([[1, 10]]))
    with pytest.raises(ValueError, match="longer than max_len=24"):
        decoder(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="exceeds max_len=24"):
        decoder.generate(torch.zeros(1, 20, dtype=torch.long), 5)
    cache = decoder.new_cache()
    decoder(torch.zeros(1, 20, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="after 20 cached positions"):
        decoder(torch.zeros(1, 5, dtype=torch.long), cache)
    with pytest.raises(ValueError, match="max_new_tokens"):
        decoder.generate(torch.zeros(1, 2, dtype=torch.long), -1)

    for bad in (dict(dim=15), dict(num_heads=3), dict(dropout=1.0), dict(max_len=0)):
        with pytest.raises(ValueError):
            _decoder(**bad)
    with pytest.raises(ValueError, match="start must be a token id"):
        greedy_decode(model, src, 4, start=13)
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, src, 0, 4, start=1, end=2)
    with pytest.raises(ValueError, match="targets must have shape"):
        label_smoothing_loss(torch.randn(3, 4), torch.zeros(2, dtype=torch.long), 0.1)
    with pytest.raises(ValueError, match="smoothing"):
        label_smoothing_loss(torch.randn(3, 4), torch.zeros(3, dtype=torch.long), 1.5)
    with pytest.raises(ValueError, match="warmup"):
        warmup_schedule(3, 512, 0)
