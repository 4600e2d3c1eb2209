"""The NTM's addressing steps, read and write, each against a direct computation (loops over rows
in float64), with the degenerate inputs: zero rows, a huge key strength, sharpening where
w^gamma underflows, inputs that are not distributions. Then gradchecks, and the model: shapes,
batch independence, and the vectorised forward equal to a batch-1 loop."""

import math

import pytest
import torch

from companion import ntm
from companion.ntm import (NTM, NTMConfig, address, content_addressing, cosine_similarity, head_parameters,
                           interpolate, read, sharpen, shift, write)
from companion.tasks.copy import bit_errors, copy_batch


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _dist(B, N, seed=0, dtype=torch.float32):
    return torch.softmax(torch.randn(B, N, generator=_gen(seed), dtype=torch.float64), -1).to(dtype)


# --- content addressing -------------------------------------------------------------------

def _content_direct(memory, key, beta):
    B, N, _ = memory.shape
    out = torch.zeros(B, N, dtype=torch.float64)
    for b in range(B):
        k = key[b].double()
        sims = []
        for i in range(N):
            row = memory[b, i].double()
            sims.append(float(k @ row) / math.sqrt((float(k @ k) + ntm.EPS) * (float(row @ row) + ntm.EPS)))
        top = max(float(beta[b]) * s for s in sims)
        e = [math.exp(float(beta[b]) * s - top) for s in sims]
        out[b] = torch.tensor(e) / sum(e)
    return out


def test_content_addressing_matches_direct_computation():
    g = _gen(1)
    memory, key, beta = torch.randn(3, 7, 5, generator=g), torch.randn(3, 5, generator=g), torch.rand(3, generator=g) * 5
    memory[1, 2] = 0.0  # an all-zero row
    w = content_addressing(memory, key, beta)
    assert w.shape == (3, 7)
    torch.testing.assert_close(w.double(), _content_direct(memory, key, beta), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(content_addressing(memory, key, beta[:, None]), w)  # (B, 1) works too
    torch.testing.assert_close(cosine_similarity(memory, key)[0], torch.nn.functional.cosine_similarity(
        memory[0], key[0][None], dim=-1), rtol=1e-5, atol=1e-6)


def test_content_addressing_degenerate_inputs():
    g = _gen(2)
    memory = torch.randn(2, 6, 4, generator=g)
    memory[:, 3] = 0.0
    key = torch.randn(2, 4, generator=g, requires_grad=True)
    beta = torch.tensor([1000.0, 0.0], requires_grad=True)
    w = content_addressing(memory, key, beta)
    assert torch.isfinite(w).all()
    torch.testing.assert_close(w.sum(-1), torch.ones(2))
    sims = cosine_similarity(memory, key.detach())
    assert w[0].argmax() == sims[0].argmax() and w[0].max() > 0.99  # huge beta: the best row
    torch.testing.assert_close(w[1], torch.full((6,), 1 / 6))  # beta = 0: uniform
    assert sims[:, 3].abs().max() == 0  # a zero row has similarity zero
    memory.requires_grad_(True)
    (content_addressing(memory, key, beta) * torch.randn(2, 6, generator=g)).sum().backward()
    for grad in (memory.grad, key.grad, beta.grad):
        assert torch.isfinite(grad).all()
    zero_key = content_addressing(memory.detach(), torch.zeros(2, 4), beta.detach())  # a zero key
    torch.testing.assert_close(zero_key, torch.full((2, 6), 1 / 6))


def test_content_addressing_rejects_bad_input():
    memory, key = torch.randn(2, 5, 4), torch.randn(2, 4)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        content_addressing(memory, key, torch.tensor([1.0, -0.1]))
    with pytest.raises(ValueError, match=r"key must have shape \(2, 4\)"):
        content_addressing(memory, torch.randn(2, 3), torch.ones(2))
    with pytest.raises(ValueError, match=r"beta must have shape \(2,\) or \(2, 1\)"):
        content_addressing(memory, key, torch.ones(3))
    with pytest.raises(ValueError, match="memory must have shape"):
        content_addressing(torch.randn(5, 4), key, torch.ones(2))
    with pytest.raises(TypeError, match="dtypes must match"):
        content_addressing(memory, key, torch.ones(2, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN"):
        content_addressing(memory, key, torch.tensor([1.0, float("nan")]))


# --- interpolation ------------------------------------------------------------------------

def test_interpolate_matches_direct_computation_and_its_ends():
    wc, wp = _dist(3, 6, 0), _dist(3, 6, 1)
    g = torch.tensor([0.0, 0.3, 1.0])
    out = interpolate(wc, wp, g)
    for b in range(3):
        for i in range(6):
            assert out[b, i].item() == pytest.approx(g[b].item() * wc[b, i].item() + (1 - g[b].item()) * wp[b, i].item(),
                                                     abs=1e-7)
    torch.testing.assert_close(out[0], wp[0])
    torch.testing.assert_close(out[2], wc[2])


def test_interpolate_rejects_bad_input():
    wc, wp = _dist(2, 4, 0), _dist(2, 4, 1)
    for bad in (torch.tensor([0.5, 1.2]), torch.tensor([-0.01, 0.5])):
        with pytest.raises(ValueError, match=r"g must lie in \[0, 1\]"):
            interpolate(wc, wp, bad)
    with pytest.raises(ValueError, match="w_prev must be a distribution"):
        interpolate(wc, wp * 2, torch.ones(2))
    with pytest.raises(ValueError, match="must match"):
        interpolate(wc, _dist(2, 5), torch.ones(2))


# --- circular shift -----------------------------------------------------------------------

def _shift_direct(w, s):
    """eq-ntm-shift as a loop: s[:, j + R] is the probability of offset j in -R..R."""
    B, N = w.shape
    R = (s.shape[1] - 1) // 2
    out = torch.zeros(B, N, dtype=torch.float64)
    for b in range(B):
        for i in range(N):
            out[b, i] = sum(s[b, j + R].double() * w[b, (i - j) % N].double() for j in range(-R, R + 1))
    return out


@pytest.mark.parametrize("R", [0, 1, 2])
def test_shift_matches_direct_computation(R):
    w, s = _dist(3, 7, 0), _dist(3, 2 * R + 1, 1)
    out = shift(w, s)
    torch.testing.assert_close(out.double(), _shift_direct(w, s), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out.sum(-1), torch.ones(3))


def test_shift_by_plus_one_moves_a_focus_forward_and_wraps():
    N = 5
    w = torch.eye(N)  # batch of N one-hot weightings, row i on slot i
    s = torch.tensor([[0.0, 0.0, 1.0]]).expand(N, 3)  # all mass on offset +1
    torch.testing.assert_close(shift(w, s), torch.roll(torch.eye(N), 1, dims=-1))
    assert shift(w, s)[N - 1, 0] == 1.0  # the last row wraps to the first
    back = torch.tensor([[1.0, 0.0, 0.0]]).expand(N, 3)
    torch.testing.assert_close(shift(w, back)[2], torch.eye(N)[1])


def test_shift_rejects_bad_input():
    w = _dist(2, 6)
    with pytest.raises(ValueError, match="must be odd"):
        shift(w, _dist(2, 4))
    with pytest.raises(ValueError, match="s must be a distribution"):
        shift(w, torch.tensor([[0.2, 0.2, 0.2], [0.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="s must be a distribution"):
        shift(w, torch.tensor([[-0.5, 1.0, 0.5], [0.0, 1.0, 0.0]]))
    with pytest.raises(ValueError, match="must not exceed"):
        shift(_dist(2, 3), _dist(2, 5))
    with pytest.raises(ValueError, match="batch size"):
        shift(w, _dist(3, 3))


# --- sharpening ---------------------------------------------------------------------------

def test_sharpen_matches_direct_computation():
    w = _dist(3, 6, 4)
    gamma = torch.tensor([1.0, 2.5, 7.0])
    out = sharpen(w, gamma)
    for b in range(3):
        p = [w[b, i].double().item() ** gamma[b].item() for i in range(6)]
        torch.testing.assert_close(out[b].double(), torch.tensor(p, dtype=torch.float64) / sum(p), rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(out[0], w[0])  # gamma = 1 changes nothing


def test_sharpen_where_the_power_underflows():
    w = _dist(2, 128, 5)  # entries around 1/128: w^40 ~ 1e-84, below float32's smallest (1e-45)
    gamma = torch.tensor([40.0, 40.0])
    assert (w**40).sum(-1).max() == 0  # the naive formula would give 0/0
    out = sharpen(w, gamma)
    ref = torch.softmax(40 * torch.log(w.double()), -1)
    torch.testing.assert_close(out.double(), ref, rtol=1e-4, atol=1e-7)
    assert torch.isfinite(out).all()


def test_sharpen_is_zero_safe_in_value_and_gradient():
    w = torch.tensor([[0.0, 0.25, 0.75, 0.0], [1.0, 0.0, 0.0, 0.0]], requires_grad=True)
    gamma = torch.tensor([3.0, 1.0], requires_grad=True)
    out = sharpen(w, gamma)
    torch.testing.assert_close(out[0].detach(), torch.tensor([0.0, 1.0, 27.0, 0.0]) / 28)
    torch.testing.assert_close(out[1].detach(), torch.tensor([1.0, 0.0, 0.0, 0.0]))
    (out * torch.arange(4.0)).sum().backward()
    assert torch.isfinite(w.grad).all() and torch.isfinite(gamma.grad).all()
    # d/dgamma of the first row: sum_i out_i log(w_i) (c_i - <c>) over the non-zero entries
    c = torch.arange(4.0)[1:3]
    p = out[0, 1:3].detach()
    expected = (p * torch.log(torch.tensor([0.25, 0.75])) * (c - (p * c).sum())).sum()
    torch.testing.assert_close(gamma.grad[0], expected)


def test_sharpen_rejects_bad_input():
    w = _dist(2, 5)
    with pytest.raises(ValueError, match="gamma must be >= 1"):
        sharpen(w, torch.tensor([1.0, 0.5]))
    with pytest.raises(ValueError, match="w must be a distribution"):
        sharpen(torch.zeros(2, 5), torch.ones(2))
    with pytest.raises(ValueError, match="w must have 2 dimensions"):
        sharpen(torch.ones(2, 1, 5) / 5, torch.ones(2))


# --- read and write -----------------------------------------------------------------------

def test_read_matches_direct_computation():
    memory, w = torch.randn(2, 5, 3, generator=_gen(6)), _dist(2, 5, 7)
    r = read(memory, w)
    for b in range(2):
        torch.testing.assert_close(r[b], sum(w[b, i] * memory[b, i] for i in range(5)))


def test_write_matches_direct_computation_and_leaves_its_input_alone():
    g = _gen(8)
    memory, w = torch.randn(2, 5, 3, generator=g), _dist(2, 5, 9)
    erase, add = torch.rand(2, 3, generator=g), torch.randn(2, 3, generator=g)
    before = memory.clone()
    new = write(memory, w, erase, add)
    torch.testing.assert_close(memory, before)  # not modified in place
    for b in range(2):
        for i in range(5):
            erased = memory[b, i] * (1 - w[b, i] * erase[b])
            torch.testing.assert_close(new[b, i], erased + w[b, i] * add[b])
    # a one-hot weighting with a full erase replaces exactly one row
    onehot = torch.zeros(2, 5)
    onehot[:, 2] = 1
    new = write(memory, onehot, torch.ones(2, 3), add)
    torch.testing.assert_close(new[:, 2], add)
    torch.testing.assert_close(new[:, [0, 1, 3, 4]], memory[:, [0, 1, 3, 4]])


def test_read_write_reject_bad_input():
    memory, w = torch.randn(2, 5, 3), _dist(2, 5)
    with pytest.raises(ValueError, match=r"w of shape \(2, 4\) does not match memory"):
        read(memory, _dist(2, 4))
    with pytest.raises(ValueError, match=r"erase must lie in \[0, 1\]"):
        write(memory, w, torch.full((2, 3), 1.5), torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"add must have shape \(2, 3\)"):
        write(memory, w, torch.zeros(2, 3), torch.zeros(2, 4))
    with pytest.raises(ValueError, match="w must be a distribution"):
        write(memory, w + 0.1, torch.zeros(2, 3), torch.zeros(2, 3))
    with pytest.raises(TypeError, match="memory must be a torch.Tensor"):
        read(memory.numpy(), w)


# --- gradients ----------------------------------------------------------------------------

def _d(*shape, seed=0):
    return torch.randn(*shape, generator=_gen(seed), dtype=torch.float64)


def test_gradcheck_content_addressing():
    memory = _d(2, 5, 3, seed=1).requires_grad_()
    key = _d(2, 3, seed=2).requires_grad_()
    beta = (torch.rand(2, generator=_gen(3), dtype=torch.float64) * 4 + 0.5).requires_grad_()
    assert torch.autograd.gradcheck(content_addressing, (memory, key, beta))


def test_gradcheck_interpolate():
    wc = _dist(2, 5, 1, torch.float64).requires_grad_()
    wp = _dist(2, 5, 2, torch.float64).requires_grad_()
    g = torch.tensor([0.3, 0.8], dtype=torch.float64, requires_grad=True)
    # perturbing one entry breaks the sum-to-one check, so check the core with the same formula
    assert torch.autograd.gradcheck(ntm._interpolate, (wc, wp, g[:, None]))
    torch.testing.assert_close(interpolate(wc, wp, g), ntm._interpolate(wc, wp, g[:, None]))


def test_gradcheck_shift_sharpen_read_write():
    w = _dist(2, 6, 3, torch.float64).requires_grad_()
    s = _dist(2, 3, 4, torch.float64).requires_grad_()
    gamma = torch.tensor([[1.5], [3.0]], dtype=torch.float64, requires_grad=True)
    memory = _d(2, 6, 4, seed=5).requires_grad_()
    erase = torch.rand(2, 4, generator=_gen(6), dtype=torch.float64).requires_grad_()
    add = _d(2, 4, seed=7).requires_grad_()
    # the public functions reject perturbed (not-normalised) inputs, so gradcheck their cores,
    # after checking that each public function returns exactly what its core returns
    torch.testing.assert_close(shift(w, s), ntm._shift(w, s))
    torch.testing.assert_close(sharpen(w, gamma), ntm._sharpen(w, gamma))
    torch.testing.assert_close(read(memory, w), ntm._read(memory, w))
    torch.testing.assert_close(write(memory, w, erase, add), ntm._write(memory, w, erase, add))
    assert torch.autograd.gradcheck(ntm._shift, (w, s))
    assert torch.autograd.gradcheck(ntm._sharpen, (w, gamma))
    assert torch.autograd.gradcheck(ntm._read, (memory, w))
    assert torch.autograd.gradcheck(ntm._write, (memory, w, erase, add))


def test_gradcheck_whole_pipeline_wrt_beta_and_gamma():
    memory, key, w_prev = _d(1, 6, 4, seed=8), _d(1, 4, seed=9), _dist(1, 6, 10, torch.float64)
    g = torch.tensor([0.7], dtype=torch.float64)
    s = torch.tensor([[0.1, 0.7, 0.2]], dtype=torch.float64)

    def pipeline(beta, gamma):
        return read(memory, address(memory, w_prev, key, beta, g, s, gamma))

    beta = torch.tensor([2.0], dtype=torch.float64, requires_grad=True)
    gamma = torch.tensor([2.5], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(pipeline, (beta, gamma))


# --- head parameters and the model --------------------------------------------------------

def test_head_parameters_are_in_range():
    raw = torch.randn(4, sum(ntm.head_sizes(5, 3, True)), generator=_gen(11)) * 50
    p = head_parameters(raw, 5, 3, True)
    assert (p.beta >= 0).all() and ((p.g >= 0) & (p.g <= 1)).all() and (p.gamma >= 1).all()
    torch.testing.assert_close(p.s.sum(-1), torch.ones(4))
    assert ((p.erase >= 0) & (p.erase <= 1)).all() and p.add.abs().max() <= 20
    assert p.key.abs().max() <= 20  # clamped
    with pytest.raises(ValueError, match="raw must have shape"):
        head_parameters(raw, 5, 3, False)


def test_ntm_shapes_trace_and_valid_weightings():
    config = NTMConfig(controller_size=16, rows=8, width=5)
    model = NTM(config)
    batch = copy_batch(3, 4, generator=_gen(12))
    logits, trace = model(batch.inputs, return_trace=True)
    T = 9
    assert logits.shape == (3, T, 8)
    assert trace.write_weights.shape == (3, T, 8) and trace.read_weights.shape == (3, T, 8)
    assert trace.memory.shape == (3, T, 8, 5)
    torch.testing.assert_close(trace.write_weights.sum(-1), torch.ones(3, T))
    torch.testing.assert_close(trace.read_weights.sum(-1), torch.ones(3, T))
    torch.testing.assert_close(model(batch.inputs), logits)
    with pytest.raises(ValueError, match=r"x must have shape \(batch, time, 9\)"):
        model(torch.zeros(3, 5, 8))
    with pytest.raises(ValueError, match="shift_width must be odd"):
        NTM(NTMConfig(shift_width=2))


def test_ntm_batch_rows_are_independent_and_match_a_batch_one_loop():
    torch.manual_seed(0)
    model = NTM(NTMConfig(controller_size=20, rows=10, width=6)).double()
    x = copy_batch(5, 6, generator=_gen(13)).inputs.double()
    batched = model(x)
    looped = torch.cat([model(x[b:b + 1]) for b in range(5)])
    torch.testing.assert_close(batched, looped, rtol=1e-10, atol=1e-12)
    x2 = x.clone()
    x2[3] = 1 - x2[3]  # change one sequence: the others' outputs do not move
    changed = model(x2)
    torch.testing.assert_close(changed[[0, 1, 2, 4]], batched[[0, 1, 2, 4]], rtol=0, atol=0)
    assert not torch.allclose(changed[3], batched[3])


def test_model_step_uses_the_public_pipeline():
    """The model's unchecked inner loop computes what the checked public functions compute."""
    torch.manual_seed(1)
    model = NTM(NTMConfig(controller_size=12, rows=6, width=4))
    x = copy_batch(2, 3, generator=_gen(14)).inputs
    state = model.initial_state(2)
    y, new, wp, rp = model.step(x[:, 0], state)
    w_read = address(state["memory"], state["w_read"], rp.key, rp.beta, rp.g, rp.s, rp.gamma)
    w_write = address(state["memory"], state["w_write"], wp.key, wp.beta, wp.g, wp.s, wp.gamma)
    memory = write(state["memory"], w_write, wp.erase, wp.add)
    torch.testing.assert_close(new["w_write"], w_write)
    torch.testing.assert_close(new["w_read"], w_read)
    torch.testing.assert_close(new["memory"], memory)
    torch.testing.assert_close(new["read"], read(state["memory"], w_read))


# --- the copy task ------------------------------------------------------------------------

def test_copy_batch_layout_and_bit_errors():
    batch = copy_batch(4, 3, generator=_gen(15))
    assert batch.inputs.shape == (4, 7, 9) and batch.targets.shape == (4, 7, 8) and batch.mask.shape == (4, 7)
    torch.testing.assert_close(batch.targets[:, 4:], batch.inputs[:, :3, :8])
    assert (batch.inputs[:, 3, 8] == 1).all() and batch.inputs[:, 3, :8].abs().sum() == 0
    assert batch.inputs[:, 4:].abs().sum() == 0 and batch.inputs[:, :3, 8].abs().sum() == 0
    assert batch.mask[:, 4:].all() and not batch.mask[:, :4].any()
    perfect = batch.targets * 20 - 10  # logits with the right sign
    assert bit_errors(perfect, batch).tolist() == [0, 0, 0, 0]
    flipped = perfect.clone()
    flipped[0, 5, :2] *= -1  # two wrong bits in sequence 0
    flipped[1, 0] *= -1  # wrong "outputs" on an input step are not scored
    assert bit_errors(flipped, batch).tolist() == [2, 0, 0, 0]
    same = copy_batch(4, 3, generator=_gen(15))
    assert torch.equal(same.inputs, batch.inputs)
    with pytest.raises(ValueError, match="length must be a positive integer"):
        copy_batch(4, 0)
