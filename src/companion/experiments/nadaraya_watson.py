"""Chapter 1's trained model: Nadaraya-Watson regression with a learned width.

``nadaraya-watson``: one-dimensional data ``y = 2 sin(x) + x^0.8 + noise`` (eq-toy-regression);
the model is :class:`companion.kernel_regression.NadarayaWatson`, whose only parameter is the
log of the kernel width. It is trained on the leave-one-out squared error of the training set
(each training point predicted from the others; eq-loo) and evaluated on a held-out test set,
against two baselines: plain averaging (the width -> infinity limit) and the best fixed width
on a grid, chosen by the same leave-one-out error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import _validate
from ..kernel_regression import KERNELS, NadarayaWatson, fixed_width_mse, width_grid
from ..tasks.regression import make_data, true_function
from ..training import train
from .registry import register


@dataclass(frozen=True)
class NadarayaWatsonConfig:
    seed: int = 0
    n_train: int = 50
    n_test: int = 50
    x_max: float = 5.0  # inputs are uniform on [0, x_max]
    noise: float = 0.5  # standard deviation of the target noise
    kernel: str = "gaussian"
    init_width: float = 1.0
    steps: int = 200
    lr: float = 0.05
    leave_one_out: bool = True  # False shows why it is needed: the width collapses


def _check(config: NadarayaWatsonConfig) -> None:
    _validate.positive_int(config.n_train, "n_train")
    _validate.positive_int(config.n_test, "n_test")
    if config.n_train < 2:
        raise ValueError(f"n_train must be at least 2 for leave-one-out, got {config.n_train}")
    if config.kernel not in KERNELS:
        raise ValueError(f"kernel must be one of {sorted(KERNELS)}, got {config.kernel!r}")
    for name in ("x_max", "init_width", "lr"):
        if not getattr(config, name) > 0:
            raise ValueError(f"{name} must be positive, got {getattr(config, name)!r}")
    if config.noise < 0:
        raise ValueError(f"noise must be non-negative, got {config.noise!r}")
    if not isinstance(config.steps, int) or config.steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {config.steps!r}")


def build(config: NadarayaWatsonConfig) -> NadarayaWatson:
    _check(config)
    x_train, y_train, _, _ = make_data(config)
    return NadarayaWatson(x_train, y_train, kernel=config.kernel, width=config.init_width)


def fit(model: NadarayaWatson, config: NadarayaWatsonConfig, progress: bool):
    _check(config)
    x_train, y_train, x_test, y_test = make_data(config)
    mask = model.leave_one_out_mask() if config.leave_one_out else None
    widths = []

    def loss_fn(step):
        widths.append(model.width.item())
        prediction, _ = model(x_train, mask=mask)  # (m,)
        return ((prediction - y_train) ** 2).mean()

    log = train(model, loss_fn, steps=config.steps, lr=config.lr, clip=None, progress=progress,
                desc="nadaraya-watson")
    with torch.no_grad():
        test_pred, _ = model(x_test)  # (n,)
        loo_pred, _ = model(x_train, mask=model.leave_one_out_mask())  # (m,)
        grid = width_grid()
        grid_loo, grid_test = fixed_width_mse(x_train, y_train, x_test, y_test, config.kernel, grid)
    best = int(grid_loo.argmin())  # chosen on training data only, like the learned width
    metrics = {
        "test_mse": ((test_pred - y_test) ** 2).mean().item(),
        "test_mse_vs_truth": ((test_pred - true_function(x_test)) ** 2).mean().item(),
        "learned_width": model.width.item(),
        "train_loo_mse": ((loo_pred - y_train) ** 2).mean().item(),
        "grid_width": grid[best].item(),
        "grid_test_mse": grid_test[best].item(),
        "oracle_width": grid[int(grid_test.argmin())].item(),
        "oracle_test_mse": grid_test.min().item(),
        "mean_test_mse": ((y_train.mean() - y_test) ** 2).mean().item(),
        "noise_variance": config.noise**2,
        "interrupted": log.interrupted,
    }
    history = {"loss": log.losses, "width": widths[: log.steps]}
    return metrics, history


register(
    "nadaraya-watson",
    "Nadaraya-Watson regression with a learned Gaussian width, trained leave-one-out (ch. 1)",
    NadarayaWatsonConfig(),
    build,
    fit,
)
