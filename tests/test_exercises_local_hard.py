"""The local_hard exercises' checkers: the Gumbel-max sampler is judged by its frequencies,
so every correct sampler passes and a wrong one fails, whatever its formula."""

import torch

from companion.exercises import check


def gumbel_from_one_minus_u(logits, u):
    return (logits - torch.log(-torch.log(1 - u))).argmax(-1)  # 1 - u is uniform too


def exponential_race(logits, u):
    return (-torch.log(u) / logits.exp()).argmin(-1)  # the first of K exponential clocks to ring


def inverse_cdf(logits, u):
    cdf = torch.softmax(logits, -1).cumsum(-1)  # (N, K)
    return (u[:, :1] > cdf).sum(-1).clamp_max(logits.shape[-1] - 1)  # (N,)


def test_any_correct_sampler_passes():
    for sampler in (gumbel_from_one_minus_u, exponential_race, inverse_cdf):
        feedback = check("local_hard/gumbel-max", sampler)
        assert feedback, (sampler.__name__, feedback.message)


def test_wrong_samplers_fail():
    too_sharp = check("local_hard/gumbel-max", lambda l, u: (2 * l - torch.log(-torch.log(u))).argmax(-1))
    assert not too_sharp and "do not match softmax" in too_sharp.message
    random = check("local_hard/gumbel-max", lambda l, u: torch.multinomial(torch.softmax(l, -1), 1).squeeze(-1))
    assert not random and "function of u" in random.message
    floats = check("local_hard/gumbel-max", lambda l, u: (l - torch.log(-torch.log(u))).argmax(-1).double())
    assert not floats and "integer" in floats.message
