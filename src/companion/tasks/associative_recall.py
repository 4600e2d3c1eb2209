"""Associative recall: find the value stored under the key that a noisy query resembles.

Each example holds ``m`` random keys ``x_j`` with random values ``v_j`` and a query
``x_t + noise`` for one target index ``t``; the right output is ``v_t``. The target is known, so
a chapter can measure where a model's attention goes, not only how close its output is.
"""

from __future__ import annotations

import torch

from .. import _validate


def make_batch(config, size: int, generator: torch.Generator):
    """``(query (N, 1, input_dim), keys (N, m, input_dim), values (N, m, value_dim), target (N,))``.

    ``config`` is any object with ``num_pairs`` (m), ``input_dim``, ``value_dim`` and ``noise``
    (the standard deviation of the query's noise); the recall experiments' configuration is one.
    """
    for name in ("num_pairs", "input_dim", "value_dim", "noise"):
        if not hasattr(config, name):
            raise TypeError(f"config must have a field {name!r}; got {type(config).__name__}")
    _validate.positive_int(size, "size")
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    keys = torch.randn(size, config.num_pairs, config.input_dim, generator=generator)  # (N, m, d_in)
    values = torch.randn(size, config.num_pairs, config.value_dim, generator=generator)  # (N, m, d_v)
    target = torch.randint(0, config.num_pairs, (size,), generator=generator)  # (N,)
    noise = config.noise * torch.randn(size, config.input_dim, generator=generator)
    query = (keys[torch.arange(size), target] + noise).unsqueeze(1)  # (N, 1, d_in)
    return query, keys, values, target
