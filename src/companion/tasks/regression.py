"""One-dimensional regression data for Nadaraya-Watson attention pooling.

    y = f(x) + noise,   f(x) = 2 sin(x) + x^0.8,   x ~ U[0, x_max],   noise ~ N(0, sigma^2)
                                                                              (eq-toy-regression)

The regression function is known, so a chapter can compare an estimate with the truth and split
its error into bias and variance.
"""

from __future__ import annotations

import torch

from .. import _validate


def true_function(x: torch.Tensor) -> torch.Tensor:
    """The regression function of the toy data, ``f(x) = 2 sin(x) + x^0.8`` (eq-toy-regression)."""
    _validate.tensor(x, "x")
    return 2 * torch.sin(x) + x**0.8


def make_data(config):
    """``(x_train, y_train, x_test, y_test)``, float32, each sorted by input; seeded.

    ``config`` is any object with the fields ``seed``, ``n_train``, ``n_test``, ``x_max`` and
    ``noise`` (the ``nadaraya-watson`` experiment's configuration is one).
    """
    for name in ("seed", "n_train", "n_test", "x_max", "noise"):
        if not hasattr(config, name):
            raise TypeError(f"config must have a field {name!r}; got {type(config).__name__}")
    _validate.positive_int(config.n_train, "n_train")
    _validate.positive_int(config.n_test, "n_test")
    if not config.x_max > 0 or not config.noise >= 0:
        raise ValueError(f"need x_max > 0 and noise >= 0, got x_max={config.x_max!r}, noise={config.noise!r}")
    g = torch.Generator().manual_seed(config.seed)

    def draw(n):
        x = torch.sort(torch.rand(n, generator=g) * config.x_max).values  # (n,)
        return x, true_function(x) + config.noise * torch.randn(n, generator=g)  # (n,), (n,)

    return (*draw(config.n_train), *draw(config.n_test))
