"""The neural Turing machine (book, chapter "Neural Turing machines"; Graves et al., 2014).

A controller network reads and writes a memory matrix ``M`` of ``N`` rows of width ``W``
through heads whose weighting over the rows is computed by a four-step addressing pipeline.
Every step is a function of its own, batch-first:

- :func:`content_addressing`: softmax of ``beta`` times cosine similarity      (eq-ntm-content)
- :func:`interpolate`: gate between the content and the previous weighting    (eq-ntm-interpolate)
- :func:`shift`: circular convolution with a distribution over offsets         (eq-ntm-shift)
- :func:`sharpen`: raise to the power ``gamma`` and renormalise                (eq-ntm-sharpen)
- :func:`read`: the weighted sum of the rows                                   (eq-ntm-read)
- :func:`write`: erase then add                                                 (eq-ntm-erase, eq-ntm-add)

:func:`address` chains the four steps, :func:`head_parameters` turns a controller's raw
output into valid head parameters (eq-ntm-head-params), and :class:`NTM` puts an LSTM
controller, one write head and one read head around a memory, vectorised over the batch.

Shapes: memory ``(B, N, W)``, key ``(B, W)``, weightings ``(B, N)``, scalar head parameters
``(B,)`` or ``(B, 1)``, shift distributions ``(B, 2R+1)`` over the offsets ``-R, ..., R``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate

__all__ = [
    "NTM", "NTMConfig", "NTMTrace", "address", "content_addressing", "cosine_similarity",
    "head_parameters", "interpolate", "read", "sharpen", "shift", "write",
]

EPS = 1e-8
"""Added to squared norms in the cosine similarity, so that an all-zero row has a finite
similarity (zero) and finite gradients."""

DIST_TOL = 1e-3
"""How far from 1 the sum of a weighting or shift distribution may be (float32 round-off)."""


# --- input checks -------------------------------------------------------------------------

def _batch_scalar(x, name: str, batch: int, ref: torch.Tensor) -> torch.Tensor:
    """``x`` of shape ``(B,)`` or ``(B, 1)`` as ``(B, 1)``; same dtype as ``ref``."""
    _validate.tensor(x, name)
    if x.shape not in ((batch,), (batch, 1)):
        raise ValueError(f"{name} must have shape ({batch},) or ({batch}, 1), got {tuple(x.shape)}")
    _validate.same_dtype(**{name: x, "the weighting/memory": ref})
    _validate.finite(x, name)
    if torch.isinf(x).any():
        raise ValueError(f"{name} must be finite (shape {tuple(x.shape)})")
    return x.reshape(batch, 1)


def _weighting(w, name: str, dim: int = 2) -> torch.Tensor:
    """Check that ``w`` is a batch of probability distributions over its last axis."""
    _validate.tensor(w, name)
    if w.dim() != dim:
        raise ValueError(f"{name} must have {dim} dimensions (batch, rows), got shape {tuple(w.shape)}")
    _validate.finite(w, name)
    total = w.sum(-1)
    if (w < 0).any() or ((total - 1).abs() > DIST_TOL).any():
        raise ValueError(
            f"{name} must be a distribution over its last axis (non-negative, rows summing to 1); "
            f"got shape {tuple(w.shape)}, minimum {w.min().item():.3g}, "
            f"row sums from {total.min().item():.4g} to {total.max().item():.4g}"
        )
    return w


def _memory(memory, name: str = "memory") -> torch.Tensor:
    _validate.tensor(memory, name)
    if memory.dim() != 3:
        raise ValueError(f"{name} must have shape (batch, N, W), got {tuple(memory.shape)}")
    _validate.finite(memory, name)
    return memory


def _same_rows(memory: torch.Tensor, w: torch.Tensor, w_name: str = "w") -> None:
    if w.shape != memory.shape[:2]:
        raise ValueError(
            f"{w_name} of shape {tuple(w.shape)} does not match memory of shape "
            f"{tuple(memory.shape)}: expected {tuple(memory.shape[:2])}"
        )
    _validate.same_dtype(memory=memory, **{w_name: w})


def _row_vector(v, name: str, memory: torch.Tensor) -> torch.Tensor:
    """A ``(B, W)`` vector that matches ``memory`` ``(B, N, W)``."""
    _validate.tensor(v, name)
    expected = (memory.shape[0], memory.shape[2])
    if tuple(v.shape) != expected:
        raise ValueError(f"{name} must have shape {expected} to match memory {tuple(memory.shape)}, "
                         f"got {tuple(v.shape)}")
    _validate.same_dtype(memory=memory, **{name: v})
    _validate.finite(v, name)
    return v


# --- the addressing pipeline --------------------------------------------------------------

def cosine_similarity(memory: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    """K(k, M(i)) = k . M(i) / (||k|| ||M(i)||), with ``EPS`` added to each squared norm.

    memory ``(B, N, W)``, key ``(B, W)`` -> ``(B, N)``. An all-zero row (or key) has
    similarity 0 and finite gradients: ``sqrt(0 + EPS)`` is never zero.
    """
    _memory(memory)
    _row_vector(key, "key", memory)
    return _cosine(memory, key)


def _cosine(memory: torch.Tensor, key: torch.Tensor) -> torch.Tensor:
    dots = torch.einsum("bnw,bw->bn", memory, key)  # (B, N)
    row_norms = torch.sqrt((memory * memory).sum(-1) + EPS)  # (B, N)
    key_norm = torch.sqrt((key * key).sum(-1, keepdim=True) + EPS)  # (B, 1)
    return dots / (row_norms * key_norm)  # (B, N)


def content_addressing(memory: torch.Tensor, key: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    """w^c(i) = softmax_i(beta * K(k, M(i)))                                     (eq-ntm-content)

    Args:
        memory: ``(B, N, W)``.
        key: ``(B, W)``, the key emitted by the head.
        beta: ``(B,)`` or ``(B, 1)``, the key strength, ``>= 0``. ``beta = 0`` gives the
            uniform weighting; a large ``beta`` approaches the argmax (the softmax subtracts
            the row maximum, so ``beta = 1000`` does not overflow).

    Returns:
        The content weighting ``(B, N)``; each row sums to one.
    """
    _memory(memory)
    _row_vector(key, "key", memory)
    beta = _batch_scalar(beta, "beta", memory.shape[0], memory)
    if (beta < 0).any():
        raise ValueError(f"beta must be >= 0 (a key strength), got minimum {beta.min().item():.4g}")
    return _content(memory, key, beta)


def _content(memory, key, beta):
    return torch.softmax(beta * _cosine(memory, key), dim=-1)  # (B, N)


def interpolate(w_content: torch.Tensor, w_prev: torch.Tensor, g: torch.Tensor) -> torch.Tensor:
    """w^g = g w^c + (1 - g) w_{t-1}                                              (eq-ntm-interpolate)

    ``w_content`` and ``w_prev`` are distributions ``(B, N)``; the gate ``g`` ``(B,)`` or
    ``(B, 1)`` lies in ``[0, 1]``: 1 takes the content weighting, 0 keeps the previous one.
    """
    _weighting(w_content, "w_content")
    _weighting(w_prev, "w_prev")
    if w_content.shape != w_prev.shape:
        raise ValueError(f"w_content {tuple(w_content.shape)} and w_prev {tuple(w_prev.shape)} must match")
    _validate.same_dtype(w_content=w_content, w_prev=w_prev)
    g = _batch_scalar(g, "g", w_content.shape[0], w_content)
    if ((g < 0) | (g > 1)).any():
        raise ValueError(f"g must lie in [0, 1], got values from {g.min().item():.4g} to {g.max().item():.4g}")
    return _interpolate(w_content, w_prev, g)


def _interpolate(w_content, w_prev, g):
    return g * w_content + (1 - g) * w_prev  # (B, N)


def shift(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """w~(i) = sum_{j=-R..R} s(j) w((i - j) mod N)                                   (eq-ntm-shift)

    ``w`` ``(B, N)`` is a distribution over rows, ``s`` ``(B, 2R+1)`` a distribution over the
    ``2R+1`` offsets ``-R, ..., R`` (at most ``N`` of them): ``s[:, j + R]`` is the probability
    of moving by ``j`` rows. A one-hot ``s`` on offset ``+1`` moves all weight on row ``i`` to
    row ``i + 1 (mod N)``.
    """
    _weighting(w, "w")
    _weighting(s, "s")
    B, N = w.shape
    width = s.shape[-1]  # 2R + 1
    if width % 2 == 0:
        raise ValueError(f"the shift width 2R+1 must be odd (offsets -R..R, centred on 0), got s of shape "
                         f"{tuple(s.shape)}")
    if width > N:
        raise ValueError(f"the shift width 2R+1={width} must not exceed the number of rows N={N}")
    if s.shape[0] != B:
        raise ValueError(f"s of shape {tuple(s.shape)} and w of shape {tuple(w.shape)} differ in batch size")
    _validate.same_dtype(w=w, s=s)
    return _shift(w, s)


def _shift(w, s):
    R = (s.shape[-1] - 1) // 2
    rolled = torch.stack([torch.roll(w, j, dims=-1) for j in range(-R, R + 1)], -1)  # (B, N, 2R+1)
    return torch.einsum("bnj,bj->bn", rolled, s)  # (B, N)


def sharpen(w: torch.Tensor, gamma: torch.Tensor) -> torch.Tensor:
    """w(i) = w~(i)^gamma / sum_j w~(j)^gamma                                     (eq-ntm-sharpen)

    Computed as a softmax of ``gamma * log w~`` over the rows with zero entries masked out,
    so that it is exact where ``w~^gamma`` underflows (128 rows and ``gamma = 40`` in float32),
    and a zero entry stays zero with finite gradients (zero gradient through that entry,
    in particular no ``0 * log 0``). ``gamma`` ``(B,)`` or ``(B, 1)`` is ``>= 1``.
    """
    _weighting(w, "w")
    gamma = _batch_scalar(gamma, "gamma", w.shape[0], w)
    if (gamma < 1).any():
        raise ValueError(f"gamma must be >= 1 (sharpening only), got minimum {gamma.min().item():.4g}")
    return _sharpen(w, gamma)


def _sharpen(w, gamma):
    positive = w > 0  # (B, N)
    log_w = torch.log(torch.where(positive, w, torch.ones_like(w)))  # (B, N), 0 where w = 0
    logits = torch.where(positive, gamma * log_w, torch.full_like(w, -math.inf))  # (B, N)
    return torch.softmax(logits, dim=-1)  # (B, N)


def address(memory, w_prev, key, beta, g, s, gamma) -> torch.Tensor:
    """The whole pipeline: content -> interpolation -> shift -> sharpening      (eq-ntm-address)"""
    w_c = content_addressing(memory, key, beta)  # (B, N)
    w_g = interpolate(w_c, w_prev, g)  # (B, N)
    w_s = shift(w_g, s)  # (B, N)
    return sharpen(w_s, gamma)  # (B, N)


def _address(memory, w_prev, key, beta, g, s, gamma):
    """:func:`address` without the input checks, for the model's inner loop."""
    w_g = _interpolate(_content(memory, key, beta), w_prev, g)  # (B, N)
    return _sharpen(_shift(w_g, s), gamma)  # (B, N)


# --- reading and writing ------------------------------------------------------------------

def read(memory: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """r = sum_i w(i) M(i)                                                         (eq-ntm-read)

    memory ``(B, N, W)``, weighting ``w`` ``(B, N)`` -> read vector ``(B, W)``.
    """
    _memory(memory)
    _weighting(w, "w")
    _same_rows(memory, w)
    return _read(memory, w)


def _read(memory, w):
    return torch.einsum("bn,bnw->bw", w, memory)  # (B, W)


def write(memory: torch.Tensor, w: torch.Tensor, erase: torch.Tensor, add: torch.Tensor) -> torch.Tensor:
    """M_t(i) = M_{t-1}(i) [1 - w(i) e] + w(i) a                        (eq-ntm-erase, eq-ntm-add)

    memory ``(B, N, W)``, weighting ``w`` ``(B, N)``, erase vector ``e`` ``(B, W)`` with
    entries in ``[0, 1]``, add vector ``a`` ``(B, W)``. Returns a new memory; the input is
    not modified.
    """
    _memory(memory)
    _weighting(w, "w")
    _same_rows(memory, w)
    _row_vector(erase, "erase", memory)
    _row_vector(add, "add", memory)
    if ((erase < 0) | (erase > 1)).any():
        raise ValueError(f"erase must lie in [0, 1], got values from {erase.min().item():.4g} "
                         f"to {erase.max().item():.4g}")
    return _write(memory, w, erase, add)


def _write(memory, w, erase, add):
    w = w[:, :, None]  # (B, N, 1)
    return memory * (1 - w * erase[:, None, :]) + w * add[:, None, :]  # (B, N, W)


# --- from controller output to head parameters --------------------------------------------

@dataclass
class HeadParameters:
    key: torch.Tensor  # (B, W)
    beta: torch.Tensor  # (B, 1), >= 0
    g: torch.Tensor  # (B, 1), in [0, 1]
    s: torch.Tensor  # (B, 2R+1), a distribution over the offsets -R..R
    gamma: torch.Tensor  # (B, 1), >= 1
    erase: torch.Tensor | None = None  # (B, W), in [0, 1]; write heads only
    add: torch.Tensor | None = None  # (B, W); write heads only


def head_sizes(width: int, shift_width: int, writes: bool) -> list[int]:
    """Sizes of the raw chunks: key, beta, g, s, gamma (and erase, add for a write head).

    ``width`` is the memory's row width ``W``, ``shift_width`` the number ``2R+1`` of shift offsets.
    """
    return [width, 1, 1, shift_width, 1] + ([width, width] if writes else [])


def head_parameters(raw: torch.Tensor, width: int, shift_width: int, writes: bool,
                    clamp: float | None = 20.0) -> HeadParameters:
    """Split a head's raw controller output and map each chunk to its valid range (eq-ntm-head-params):

    key as is, beta = softplus (>= 0), g = sigmoid (in [0, 1]), s = softmax (a distribution),
    gamma = 1 + softplus (>= 1); for a write head erase = sigmoid (in [0, 1]) and
    add as is. ``clamp`` bounds the raw values first, so that no parameter saturates beyond
    recovery (a sigmoid at 20 is already 1 - 2e-9); the add vector needs no constraint.
    """
    _validate.tensor(raw, "raw", min_dim=2)
    sizes = head_sizes(width, shift_width, writes)
    if raw.dim() != 2 or raw.shape[-1] != sum(sizes):
        raise ValueError(f"raw must have shape (batch, {sum(sizes)}) for width {width}, shift width "
                         f"{shift_width} and writes={writes}; got {tuple(raw.shape)}")
    if clamp is not None:
        raw = raw.clamp(-clamp, clamp)
    chunks = torch.split(raw, sizes, dim=-1)
    params = HeadParameters(
        key=chunks[0],
        beta=F.softplus(chunks[1]),
        g=torch.sigmoid(chunks[2]),
        s=torch.softmax(chunks[3], dim=-1),
        gamma=1 + F.softplus(chunks[4]),
    )
    if writes:
        params.erase = torch.sigmoid(chunks[5])
        params.add = chunks[6]
    return params


# --- the machine --------------------------------------------------------------------------

@dataclass(frozen=True)
class NTMConfig:
    input_size: int = 9  # 8 bits + the delimiter channel (copy task)
    output_size: int = 8
    controller_size: int = 100  # LSTM units
    rows: int = 32  # N
    width: int = 20  # W
    shift_width: int = 3  # 2R+1 with R = 1: offsets -1, 0, +1
    memory_init: float = 1e-6  # every entry of M_0
    clamp: float = 20.0  # bound on the raw head parameters


def check_config(config: NTMConfig) -> None:
    if not isinstance(config, NTMConfig):
        raise TypeError(f"config must be an NTMConfig, got {type(config).__name__}")
    for name in ("input_size", "output_size", "controller_size", "rows", "width", "shift_width"):
        _validate.positive_int(getattr(config, name), name)
    if config.shift_width % 2 == 0 or config.shift_width > config.rows:
        raise ValueError(f"shift_width must be odd and at most rows={config.rows}, got {config.shift_width}")
    if not math.isfinite(config.memory_init):
        raise ValueError(f"memory_init must be finite, got {config.memory_init}")
    if not (config.clamp > 0):
        raise ValueError(f"clamp must be positive, got {config.clamp}")


@dataclass
class NTMTrace:
    """What the heads did at every step of one forward pass (for figures)."""

    write_weights: torch.Tensor  # (B, T, N)
    read_weights: torch.Tensor  # (B, T, N)
    memory: torch.Tensor  # (B, T, N, W), the memory after each step's write
    write_params: list  # one HeadParameters a step
    read_params: list


class NTM(nn.Module):
    """An LSTM controller with one write head and one read head on an ``N x W`` memory.

    At each step ``t`` (eq-ntm-controller) the controller reads ``[x_t, r_{t-1}]``; the read head
    addresses (eq-ntm-address) the memory ``M_{t-1}`` and reads ``r_t`` (eq-ntm-read); the write
    head addresses ``M_{t-1}`` too and writes ``M_t`` (eq-ntm-erase, eq-ntm-add); the output
    is a linear map of ``[u_t, r_t]``, where ``u_t`` is the controller's (LSTM) state. The initial
    memory is the constant ``memory_init`` and both heads start with all their weight on row
    0, which breaks the symmetry between the rows (a uniform first weighting on a constant
    memory would make every row identical forever).

    The step calls the unchecked cores of the functions above (``_address``, ``_write``,
    ``_read``: the same code the public functions run after their checks), because the checks
    cost about a third of the training time; head parameters are valid by construction
    (eq-ntm-head-params) and ``forward`` checks its input once.
    """

    def __init__(self, config: NTMConfig):
        super().__init__()
        check_config(config)
        self.config = config
        c = config
        self.controller = nn.LSTMCell(c.input_size + c.width, c.controller_size)
        self.write_head = nn.Linear(c.controller_size, sum(head_sizes(c.width, c.shift_width, True)))
        self.read_head = nn.Linear(c.controller_size, sum(head_sizes(c.width, c.shift_width, False)))
        self.output = nn.Linear(c.controller_size + c.width, c.output_size)

    def initial_state(self, batch: int, dtype=torch.float32):
        c = self.config
        memory = torch.full((batch, c.rows, c.width), c.memory_init, dtype=dtype)  # (B, N, W)
        w0 = torch.zeros(batch, c.rows, dtype=dtype)
        w0[:, 0] = 1.0  # (B, N), one-hot on row 0
        h = torch.zeros(batch, c.controller_size, dtype=dtype)
        return {"memory": memory, "w_write": w0, "w_read": w0.clone(), "read": torch.zeros(batch, c.width, dtype=dtype),
                "h": h, "c": h.clone()}

    def step(self, x: torch.Tensor, state: dict):
        """One time step: ``x`` ``(B, input_size)`` -> output logits ``(B, output_size)``, new state,
        and the two heads' parameters."""
        c = self.config
        # the controller's state u_t (eq-ntm-controller); "h" and "c" are the LSTM's output and cell
        u, cell = self.controller(torch.cat([x, state["read"]], -1), (state["h"], state["c"]))  # (B, d_h)
        old = state["memory"]  # (B, N, W)
        rp = head_parameters(self.read_head(u), c.width, c.shift_width, False, c.clamp)
        w_read = _address(old, state["w_read"], rp.key, rp.beta, rp.g, rp.s, rp.gamma)  # (B, N)
        r = _read(old, w_read)  # (B, W)
        wp = head_parameters(self.write_head(u), c.width, c.shift_width, True, c.clamp)
        w_write = _address(old, state["w_write"], wp.key, wp.beta, wp.g, wp.s, wp.gamma)  # (B, N)
        memory = _write(old, w_write, wp.erase, wp.add)  # (B, N, W)
        y = self.output(torch.cat([u, r], -1))  # (B, output_size)
        new = {"memory": memory, "w_write": w_write, "w_read": w_read, "read": r, "h": u, "c": cell}
        return y, new, wp, rp

    def forward(self, x: torch.Tensor, return_trace: bool = False):
        """``x`` ``(B, T, input_size)`` -> logits ``(B, T, output_size)`` (and an :class:`NTMTrace`)."""
        _validate.tensor(x, "x", min_dim=3)
        if x.dim() != 3 or x.shape[-1] != self.config.input_size:
            raise ValueError(f"x must have shape (batch, time, {self.config.input_size}), got {tuple(x.shape)}")
        state = self.initial_state(x.shape[0], x.dtype)
        outputs, trace = [], {"write_weights": [], "read_weights": [], "memory": [], "write_params": [],
                              "read_params": []}
        for t in range(x.shape[1]):
            y, state, wp, rp = self.step(x[:, t], state)
            outputs.append(y)
            if return_trace:
                trace["write_weights"].append(state["w_write"])
                trace["read_weights"].append(state["w_read"])
                trace["memory"].append(state["memory"])
                trace["write_params"].append(wp)
                trace["read_params"].append(rp)
        logits = torch.stack(outputs, 1)  # (B, T, output_size)
        if not return_trace:
            return logits
        return logits, NTMTrace(
            write_weights=torch.stack(trace["write_weights"], 1),  # (B, T, N)
            read_weights=torch.stack(trace["read_weights"], 1),  # (B, T, N)
            memory=torch.stack(trace["memory"], 1),  # (B, T, N, W)
            write_params=trace["write_params"],
            read_params=trace["read_params"],
        )
