"""companion.memory counts the bytes of tensors a computation holds at once."""

import pytest
import torch

from companion.memory import largest_tensor, peak_memory


def test_one_allocation_is_its_bytes():
    result, peak = peak_memory(torch.zeros, 1000, dtype=torch.float64)
    assert result.shape == (1000,)
    assert peak == 8000


def test_views_and_in_place_writes_allocate_nothing():
    x = torch.randn(64, 32)

    def views(x):
        y = x.t().reshape(-1)[:5]  # t() is a view; flattening it copies
        x.mul_(2.0)
        return y

    _, peak = peak_memory(views, x)
    assert peak == 64 * 32 * 4  # only the reshape's copy


def test_freed_tensors_leave_the_total():
    def chain(x):
        for _ in range(10):
            x = x * 2.0  # each step frees the previous intermediate
        return x

    _, peak = peak_memory(chain, torch.randn(1000))
    assert peak == 2 * 4000  # at most two arrays are alive at once, never ten


def test_score_matrix_is_counted():
    q = torch.randn(1, 300, 16)
    scores, peak = peak_memory(lambda a: a @ a.transpose(-2, -1), q)
    assert peak >= scores.numel() * 4
    _, shape = largest_tensor(lambda a: a @ a.transpose(-2, -1), q)
    assert shape == (1, 300, 300)


def test_inputs_do_not_count():
    x = torch.randn(10_000)
    _, peak = peak_memory(lambda t: t[:10], x)
    assert peak == 0
    _, shape = largest_tensor(lambda t: t[:10], x)
    assert shape == ()


def test_not_callable_is_a_type_error():
    with pytest.raises(TypeError, match="fn must be callable"):
        peak_memory(3)
    with pytest.raises(TypeError, match="fn must be callable"):
        largest_tensor("f")
