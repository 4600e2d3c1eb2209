"""The Transformer chapter's exercises: each reference agrees with an independent computation.

(tests/test_exercises.py checks generically that every reference and worked solution passes its
checker and that every listed mistake fails with its hint.)"""

import math

import numpy as np
import torch
import torch.nn.functional as F

from companion.exercises import check, solution
from companion.exercises import transformer as ex
from companion.masks import causal_mask
from companion.transformer import DecoderOnlyTransformer, warmup_schedule


def test_encoder_block_reference_is_the_written_out_block():
    for x, p, h in ex._encoder_cases():
        torch.testing.assert_close(ex._encoder_block(x, p, h), ex._written_block(x, p, h))


def test_encoder_block_parameters_helper_has_every_weight():
    p = ex.block_parameters(8, 16, seed=3)
    assert set(p) == set(ex._PARAMS)
    assert p["W_1"].shape == (16, 8) and p["W_2"].shape == (8, 16)
    assert check("transformer/encoder-block", lambda x, p, h: ex._written_block(x, p, h))


def test_cached_mask_is_the_end_aligned_causal_mask():
    for len_q, len_k in ex._mask_cases():
        assert torch.equal(ex._cached_mask(len_q, len_k), causal_mask(len_q, len_k, offset=len_k - len_q))
    # with all positions new, it is the plain causal mask
    assert torch.equal(ex._cached_mask(5, 5), causal_mask(5))


def test_cached_mask_gives_the_rows_of_full_causal_attention():
    g = torch.Generator().manual_seed(0)
    q = torch.randn(9, 4, generator=g, dtype=torch.float64)
    k = torch.randn(9, 4, generator=g, dtype=torch.float64)
    full = (q @ k.T).masked_fill(~causal_mask(9), float("-inf")).softmax(-1)  # (9, 9)
    new = 3  # the last three queries, with six cached keys before them
    part = (q[-new:] @ k.T).masked_fill(~ex._cached_mask(new, 9), float("-inf")).softmax(-1)
    torch.testing.assert_close(part, full[-new:])


def test_smoothed_optimum_minimises_torch_label_smoothing_loss():
    for targets, V, eps in ex._smoothing_cases():
        q = ex._smoothed_optimum(targets, V, eps)
        torch.testing.assert_close(q.sum(1), torch.ones(len(targets), dtype=torch.float64))
        logits = q.log().clone().requires_grad_(True)
        F.cross_entropy(logits, targets, label_smoothing=eps).backward()
        assert logits.grad.abs().max() < 1e-12  # a stationary point of a convex loss
        best = F.cross_entropy(logits.detach(), targets, label_smoothing=eps)
        worse = (logits + 0.1 * torch.randn_like(logits)).detach()
        assert F.cross_entropy(worse, targets, label_smoothing=eps) > best


def test_logit_gap_is_the_optimum_logit_difference():
    q = ex._smoothed_optimum(torch.tensor([4]), ex.GAP_VOCAB, ex.GAP_EPSILON)[0]
    gap = math.log(q[4] / q[0])
    assert check("transformer/smoothed-logit-gap", gap)
    assert not check("transformer/smoothed-logit-gap", math.log(91) + 0.05)


def test_parameter_count_matches_the_companion_model_and_the_closed_form():
    for V, d, L, f in ex._count_cases() + [(20, 32, 3, 64)]:
        heads = 2 if d % 2 == 0 else 1
        model = DecoderOnlyTransformer(V, d, heads, L, f, max_len=8)
        assert sum(p.numel() for p in model.parameters()) == ex._torch_count(V, d, L, f)
        closed = V * d + L * (4 * d * d + 2 * d * f + 9 * d + f) + 2 * d
        assert ex._torch_count(V, d, L, f) == closed


def test_warmup_peak_is_the_maximum_of_the_schedule():
    for dim, warmup in ex._peak_cases():
        steps = np.arange(1, 4 * warmup)
        rates = np.array([warmup_schedule(int(s), dim, warmup) for s in steps])
        step, rate = ex._warmup_peak(dim, warmup)
        assert steps[rates.argmax()] == step
        assert math.isclose(rates.max(), rate, rel_tol=1e-12)


def test_worked_solutions_define_the_answers():
    scope = {}
    solution("transformer/parameter-count", scope)
    assert scope["parameter_count"](11, 8, 1, 16) == ex._torch_count(11, 8, 1, 16)
