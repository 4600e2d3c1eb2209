"""Input checks shared by the public functions.

Every message names the argument and the shapes involved, so that a reader who passes a
wrong tensor learns what was expected instead of meeting a NaN or a cryptic broadcast error.
"""

from __future__ import annotations

import math
import numbers

import torch

FLOAT_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def tensor(x, name: str, *, min_dim: int = 0, float_: bool = True) -> torch.Tensor:
    """Check that ``x`` is a tensor with at least ``min_dim`` axes (and a float dtype)."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.dim() < min_dim:
        raise ValueError(
            f"{name} must have at least {min_dim} dimensions, got shape {tuple(x.shape)}"
        )
    if float_ and x.dtype not in FLOAT_DTYPES:
        raise TypeError(f"{name} must have a floating dtype, got {x.dtype}")
    return x


def same_dtype(**tensors: torch.Tensor) -> None:
    """Check that all named tensors share one dtype."""
    dtypes = {name: t.dtype for name, t in tensors.items()}
    if len(set(dtypes.values())) > 1:
        listed = ", ".join(f"{n}: {d}" for n, d in dtypes.items())
        raise TypeError(f"dtypes must match, got {listed}")


def batch_shapes_broadcast(**shapes: tuple) -> None:
    """Check that the named leading (batch) shapes broadcast against each other."""
    try:
        torch.broadcast_shapes(*shapes.values())
    except RuntimeError:
        listed = ", ".join(f"{n} {tuple(s)}" for n, s in shapes.items())
        raise ValueError(f"batch dimensions do not broadcast: {listed}") from None


def mask(m, name: str, target_shape: tuple, target: str = "the scores' shape") -> torch.Tensor | None:
    """Check that ``m`` is None or a boolean tensor broadcastable to ``target_shape``.

    ``target`` names what ``target_shape`` is, for the error message.
    """
    if m is None:
        return None
    if not isinstance(m, torch.Tensor):
        raise TypeError(f"{name} must be a boolean torch.Tensor or None, got {type(m).__name__}")
    if m.dtype != torch.bool:
        raise TypeError(
            f"{name} must be a boolean tensor (True = may attend), got dtype {m.dtype}"
        )
    try:
        shape = torch.broadcast_shapes(m.shape, target_shape)
    except RuntimeError:
        shape = None
    if shape != torch.Size(target_shape):
        raise ValueError(
            f"{name} of shape {tuple(m.shape)} does not broadcast to {target} {tuple(target_shape)}"
        )
    return m


def attention_inputs(query, key, value, mask_, is_causal) -> torch.Size:
    """The checks every attention function makes of ``query (..., Lq, d_k)``, ``key (..., Lk, d_k)``,
    ``value (..., Lk, d_v)``, a boolean ``mask_`` and ``is_causal``, on metadata only (no scan of
    the data). Returns the broadcast batch shape."""
    tensor(query, "query", min_dim=2)
    tensor(key, "key", min_dim=2)
    tensor(value, "value", min_dim=2)
    same_dtype(query=query, key=key, value=value)
    if query.shape[-1] != key.shape[-1]:
        raise ValueError(
            f"query and key must have the same feature size d_k, got query {tuple(query.shape)} "
            f"and key {tuple(key.shape)}"
        )
    if key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"key and value must have the same length, got key {tuple(key.shape)} and value "
            f"{tuple(value.shape)}"
        )
    batch_shapes_broadcast(query=query.shape[:-2], key=key.shape[:-2], value=value.shape[:-2])
    batch = torch.broadcast_shapes(query.shape[:-2], key.shape[:-2], value.shape[:-2])
    mask(mask_, "mask", (*batch, query.shape[-2], key.shape[-2]))
    if not isinstance(is_causal, bool):
        raise TypeError(f"is_causal must be True or False, got {is_causal!r}")
    return batch


def finite(x: torch.Tensor, name: str) -> None:
    """Reject NaN inputs (infinite values are allowed: they are legitimate masked scores).

    This scans the whole tensor: keep it out of hot paths (attention and the softmax check
    only the row maxima they compute anyway, see :mod:`companion.softmax`).
    """
    if torch.isnan(x).any():
        raise ValueError(f"{name} contains NaN (shape {tuple(x.shape)})")


def positive_number(value, name: str) -> float:
    """Check that ``value`` is a positive, finite real number (not a bool, not a tensor)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0 < value < math.inf):
        raise ValueError(f"{name} must be positive and finite (a real number), got {value!r}")
    return float(value)


def positive_int(value, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return value


def non_negative_int(value, name: str) -> int:
    """Check a count that may be zero (training steps, say)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    return value



def generator(rng, name: str = "rng") -> torch.Generator:
    """An integer seed becomes a fresh seeded ``torch.Generator``; a generator is used as it is."""
    if isinstance(rng, torch.Generator):
        return rng
    if isinstance(rng, int) and not isinstance(rng, bool):
        return torch.Generator().manual_seed(rng)
    raise TypeError(f"{name} must be an integer seed or a torch.Generator, got {type(rng).__name__}")
