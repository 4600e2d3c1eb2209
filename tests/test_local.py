"""companion.local: Luong's local attention weights (eq-local-weights) and local-p's centre."""

import math

import pytest
import torch

from companion.local import PredictiveCenter, local_weights, window_mask


def reference(scores, center, D):
    """A direct loop: softmax over |j - p| <= D, times the Gaussian with sigma = D / 2."""
    S = len(scores)
    inside = [j for j in range(S) if abs(j - center) <= D]
    out = [0.0] * S
    if not inside:
        return torch.tensor(out, dtype=torch.float64)
    total = sum(math.exp(scores[j]) for j in inside)
    for j in inside:
        out[j] = math.exp(scores[j]) / total * math.exp(-(j - center) ** 2 / (2 * (D / 2) ** 2))
    return torch.tensor(out, dtype=torch.float64)


def test_matches_a_direct_computation():
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 3, 9, generator=g, dtype=torch.float64)
    center = torch.rand(4, 3, generator=g, dtype=torch.float64) * 12 - 2  # some windows hang over
    for D in (1, 2, 3):
        got = local_weights(scores, center, D)
        assert got.shape == scores.shape
        for b in range(4):
            for t in range(3):
                want = reference(scores[b, t].tolist(), center[b, t].item(), D)
                torch.testing.assert_close(got[b, t], want)


def test_exactly_zero_outside_the_window_with_a_real_centre():
    scores = torch.zeros(1, 10)
    w = local_weights(scores, torch.tensor([4.5]), 2)  # window 2.5 .. 6.5 holds 3, 4, 5, 6
    assert (w[0, [0, 1, 2, 7, 8, 9]] == 0).all()
    assert (w[0, 3:7] > 0).all()
    assert window_mask(torch.tensor([4.5]), 10, 2)[0].nonzero().flatten().tolist() == [3, 4, 5, 6]
    # not renormalised: the Gaussian factor makes the total less than one
    assert w.sum() < 1


def test_edges_are_inclusive():
    w = local_weights(torch.zeros(7), torch.tensor(3.0), 2)
    assert w.nonzero().flatten().tolist() == [1, 2, 3, 4, 5]


def test_gradient_in_scores_and_in_the_centre():
    g = torch.Generator().manual_seed(1)
    scores = torch.randn(2, 8, generator=g, dtype=torch.float64, requires_grad=True)
    center = torch.tensor([2.3, 5.6], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda s, c: local_weights(s, c, 2), (scores, center))
    out = (local_weights(scores, center, 2) * torch.arange(8.0, dtype=torch.float64)).sum()
    out.backward()
    assert (center.grad != 0).all() and (scores.grad[0, 5:] == 0).all()


def test_a_window_with_no_position_gives_zeros_not_nan():
    scores = torch.randn(2, 5, requires_grad=True)
    center = torch.tensor([20.0, -9.0], requires_grad=True)
    w = local_weights(scores, center, 2)
    assert torch.equal(w, torch.zeros(2, 5))
    w.sum().backward()
    assert torch.isfinite(scores.grad).all() and torch.isfinite(center.grad).all()


def test_mask_blocks_padding():
    scores = torch.zeros(2, 6)
    mask = torch.tensor([[True] * 6, [True] * 3 + [False] * 3])
    w = local_weights(scores, torch.tensor([3.0, 3.0]), 1, mask=mask)
    assert (w[1, 3:] == 0).all() and w[1, 2] > 0
    torch.testing.assert_close(w[1, 2], torch.tensor(math.exp(-2.0)))  # alone in the window


@pytest.mark.parametrize("D", [0, -1, 1.5, 2.0, True, "2"])
def test_bad_half_width(D):
    with pytest.raises(ValueError, match="half_width"):
        local_weights(torch.zeros(5), torch.tensor(2.0), D)


def test_bad_shapes_and_values():
    with pytest.raises(ValueError, match="center"):
        local_weights(torch.zeros(2, 5), torch.zeros(3), 1)
    with pytest.raises(ValueError, match="center"):
        local_weights(torch.zeros(2, 5), torch.tensor([1.0, float("nan")]), 1)
    with pytest.raises(ValueError, match="scores"):
        local_weights(torch.tensor([0.0, float("nan")]), torch.tensor(0.0), 1)
    with pytest.raises(TypeError, match="scores"):
        local_weights(torch.zeros(5, dtype=torch.long), torch.tensor(1.0), 1)
    with pytest.raises(ValueError, match="mask"):
        local_weights(torch.zeros(2, 5), torch.zeros(2), 1, mask=torch.ones(3, 5, dtype=torch.bool))


def test_predictive_center_lies_in_zero_to_length():
    torch.manual_seed(0)
    pc = PredictiveCenter(6, 4)
    state = torch.randn(3, 5, 6) * 10
    lengths = torch.tensor([4, 9, 1])
    p = pc(state, lengths)
    assert p.shape == (3, 5)
    assert (p >= 0).all() and (p <= lengths[:, None]).all()
    want = lengths[:, None] * torch.sigmoid(torch.tanh(state @ pc.W_p.weight.T) @ pc.v_p.weight[0])
    torch.testing.assert_close(p, want)
    with pytest.raises(ValueError, match="lengths"):
        pc(state, torch.tensor([4, 9]))
    with pytest.raises(ValueError, match="state"):
        pc(torch.randn(3, 5, 7), lengths)


def test_without_the_gaussian_it_is_the_softmax_inside_the_window():
    g = torch.Generator().manual_seed(4)
    scores = torch.randn(5, 9, generator=g, dtype=torch.float64, requires_grad=True)
    center = torch.rand(5, generator=g, dtype=torch.float64) * 8
    got = local_weights(scores, center, 2, gaussian=False)
    for b in range(5):
        inside = [j for j in range(9) if abs(j - center[b].item()) <= 2]
        want = torch.zeros(9, dtype=torch.float64)
        want[inside] = torch.softmax(scores[b, inside].detach(), 0)
        torch.testing.assert_close(got[b].detach(), want)
    torch.testing.assert_close(got.sum(-1).detach(), torch.ones(5, dtype=torch.float64))
    got[:, 4].sum().backward()
    assert torch.isfinite(scores.grad).all() and scores.grad.abs().sum() > 0
    with pytest.raises(TypeError, match="gaussian"):
        local_weights(scores, center, 2, gaussian=1)
