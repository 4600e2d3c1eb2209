"""The references of the self-attention exercises against the companion and against each other:
a wrong reference would make every reader's right answer fail."""

import math

import torch

from companion.exercises import REGISTRY
from companion.exercises import self_attention as ex
from companion.positional import frequencies, rotary_embedding, sinusoidal_encoding


def test_sinusoidal_reference_is_the_companions_table():
    for length, dim, base in ex._sinusoidal_cases():
        torch.testing.assert_close(ex._sinusoidal(length, dim, base),
                                   sinusoidal_encoding(length, dim, base, dtype=torch.float64))


def test_offset_matrix_moves_every_row_of_the_table():
    table = sinusoidal_encoding(40, 8, dtype=torch.float64)  # (40, 8)
    omega = frequencies(8)
    for k in (1, 3, 7):
        for i in range(4):
            M = ex._offset_matrix(k, omega[i].item())
            pairs = table[:, 2 * i:2 * i + 2]  # (40, 2)
            torch.testing.assert_close(pairs[:-k] @ M.T, pairs[k:])
    M = ex._offset_matrix(5, 0.3)
    torch.testing.assert_close(M.T @ M, torch.eye(2, dtype=torch.float64))
    assert math.isclose(torch.linalg.det(M).item(), 1.0)


def test_rope_reference_is_the_companions_rotary_embedding():
    for x, positions, base in ex._rope_cases():
        torch.testing.assert_close(ex._rope(x, positions, base),
                                   rotary_embedding(x, positions=positions, base=base))


def test_input_gradient_reference_matches_the_closed_form():
    """The autograd reference against the derived formula (the worked solution's)."""
    scope = {"math": math, "torch": torch}
    exec(REGISTRY["self_attention/input-gradient"].solution, scope)
    for case in ex._gradient_cases():
        torch.testing.assert_close(ex._input_gradient(*case), scope["input_gradient"](*case))
