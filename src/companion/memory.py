"""How much memory a computation needs: the peak of the tensor bytes it holds at once.

Timing a computation is easy; its memory is not, on a CPU: the process's resident size moves
with the allocator's caches and with everything else the process holds. This module counts
instead. :func:`peak_memory` runs a function under a ``TorchDispatchMode`` that sees every
tensor operation; each output whose storage is new (not one of its inputs' storages, as a view
or an in-place result is) adds its storage's bytes to a running total, and a finaliser
subtracts them when the last tensor on that storage is freed. The peak of that total is the
memory the function's tensors needed at once, on top of what existed before it ran: exact,
deterministic, and the same on any machine.

What it does not count: memory an operator uses internally without returning it as a tensor
(a matrix-multiply kernel's scratch space, say), and Python objects. For attention, the
figure that matters is the ``(Lq, Lk)`` score matrix, which is a tensor and is counted.
"""

from __future__ import annotations

import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten


def _storage_key(t: torch.Tensor):
    storage = t.untyped_storage()
    return storage.data_ptr(), storage.nbytes()


class _LiveBytes(TorchDispatchMode):
    """Counts the bytes of the storages that operations allocate while the mode is active."""

    def __init__(self):
        super().__init__()
        self.live = 0  # bytes held now by storages allocated under the mode
        self.peak = 0
        self.tensors_on = {}  # storage key -> number of live tensors on it
        self.largest = ()  # the shape of the largest tensor allocated

    def _release(self, key):
        self.tensors_on[key] -= 1
        if self.tensors_on[key] == 0:
            del self.tensors_on[key]
            self.live -= key[1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {_storage_key(t) for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor) and t.device.type != "meta"}
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor) or t.device.type == "meta":
                continue
            key = _storage_key(t)
            if key in inputs or key[1] == 0:
                continue  # a view of, or an in-place write to, an existing storage
            if key not in self.tensors_on:
                self.tensors_on[key] = 0
                self.live += key[1]
                if self.live > self.peak:
                    self.peak = self.live
                if t.numel() > (torch.Size(self.largest).numel() if self.largest else 0):
                    self.largest = tuple(t.shape)
            self.tensors_on[key] += 1
            weakref.finalize(t, self._release, key)
        return out


def peak_memory(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` and return ``(result, peak_bytes)``.

    ``peak_bytes`` is the largest number of bytes that tensors allocated by ``fn`` held at the
    same moment (see the module docstring for what is and is not counted). The inputs do not
    count; the result does, if it is still alive at the peak.

    >>> _, peak = peak_memory(torch.zeros, 1000, dtype=torch.float64)
    >>> peak
    8000
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    mode = _LiveBytes()
    with mode:
        result = fn(*args, **kwargs)
    return result, mode.peak


def largest_tensor(fn, *args, **kwargs):
    """Run ``fn(*args, **kwargs)`` and return ``(result, shape)``, the shape of the tensor
    with the most elements that ``fn`` allocated (``()`` if it allocated none).

    A test can use it to show that a computation never builds an ``(Lq, Lk)`` matrix.
    """
    if not callable(fn):
        raise TypeError(f"fn must be callable, got {type(fn).__name__}")
    mode = _LiveBytes()
    with mode:
        result = fn(*args, **kwargs)
    return result, mode.largest
