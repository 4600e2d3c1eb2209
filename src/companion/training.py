"""A small training loop shared by every experiment.

It shows a progress bar, stops with an error naming the step if the loss turns NaN, and
keeps what was learned when interrupted (Ctrl-C / the notebook's stop button): the model
holds the weights of the last finished step and the log says ``interrupted=True``.

Code that must know whether any training inside it was cut short, however deeply nested (the
experiment registry, which never caches an interrupted run), opens :func:`watch_interruptions`
around it: every interruption that :func:`train` swallows is recorded in each open watch.
"""

from __future__ import annotations

import contextlib
import contextvars
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import torch
from tqdm.auto import tqdm


_WATCHES: contextvars.ContextVar[tuple[list[str], ...]] = contextvars.ContextVar("watches", default=())


@contextlib.contextmanager
def watch_interruptions() -> Iterator[list[str]]:
    """Yield a list that receives the ``desc`` of every :func:`train` interrupted inside the block."""
    record: list[str] = []
    token = _WATCHES.set((*_WATCHES.get(), record))
    try:
        yield record
    finally:
        _WATCHES.reset(token)


@dataclass
class TrainLog:
    """What a training run did: the loss of every step and whether it was cut short."""

    losses: list[float] = field(default_factory=list)
    interrupted: bool = False

    @property
    def steps(self) -> int:
        return len(self.losses)


def train(
    model: torch.nn.Module,
    loss_fn: Callable[[int], torch.Tensor],
    *,
    steps: int,
    lr: float = 1e-3,
    clip: float | None = 1.0,
    optimizer: torch.optim.Optimizer | None = None,
    progress: bool = True,
    desc: str = "training",
) -> TrainLog:
    """Run ``steps`` optimisation steps; ``loss_fn(step)`` returns the loss of one batch.

    Adam with learning rate ``lr`` unless an ``optimizer`` is given; gradients are clipped
    to global norm ``clip`` (None: no clipping).
    """
    if not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be a non-negative integer, got {steps!r}")
    if optimizer is None:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    log = TrainLog()
    model.train()
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False, mininterval=0.5)
    try:
        for step in bar:
            loss = loss_fn(step)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: the loss became {loss.item()} at step {step}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
            optimizer.step()
            log.losses.append(loss.item())
            if step % 25 == 0:
                bar.set_postfix(loss=f"{log.losses[-1]:.4f}")
    except KeyboardInterrupt:
        log.interrupted = True
        for record in _WATCHES.get():
            record.append(desc)
        warnings.warn(
            f"{desc}: interrupted after {log.steps} of {steps} steps; the model keeps what it learned",
            stacklevel=2,
        )
    finally:
        bar.close()
        model.eval()
    return log


def smoothed(losses: list[float], window: int = 25) -> list[float]:
    """Running mean of a loss curve, for plotting."""
    out, total = [], 0.0
    for i, value in enumerate(losses):
        total += value
        if i >= window:
            total -= losses[i - window]
        out.append(total / min(i + 1, window))
    return out


def average_state_dicts(states: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """The entry-wise mean of several ``state_dict``s of one model (checkpoint averaging, as
    Vaswani et al. 2017 did with their last five checkpoints). Floating-point entries are
    averaged; others (step counters, integer buffers) are taken from the last state."""
    if not isinstance(states, (list, tuple)) or not states:
        raise ValueError(f"states must be a non-empty list of state_dicts, got {type(states).__name__}")
    keys = list(states[-1])
    for n, state in enumerate(states):
        if list(state) != keys:
            raise ValueError(f"state {n} has the keys {sorted(state)[:4]}..., not those of the last state")
        for key in keys:
            if state[key].shape != states[-1][key].shape:
                raise ValueError(f"state {n}'s {key} has shape {tuple(state[key].shape)}, the last state's "
                                 f"{tuple(states[-1][key].shape)}")
    return {key: (torch.stack([s[key] for s in states]).mean(0) if states[-1][key].is_floating_point()
                  else states[-1][key].clone())
            for key in keys}
