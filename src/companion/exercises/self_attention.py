"""Exercises of the chapter on self-attention and positional encodings: the sinusoidal table,
the offset as a rotation of one frequency pair, RoPE by hand (three derivations) and the gradient
of self-attention's output with respect to one input position, without autograd."""

from __future__ import annotations

import math

import torch

from .checker import FunctionExercise, Mistake, register

# --- 1. the sinusoidal table -------------------------------------------------------------


def _sinusoidal(length, dim, base):
    """eq-sinusoidal: PE[t, 2i] = sin(t w_i), PE[t, 2i+1] = cos(t w_i), w_i = base^(-2i/d)."""
    t = torch.arange(length, dtype=torch.float64)[:, None]  # (L, 1)
    w = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)  # (d/2,)
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(t * w)
    pe[:, 1::2] = torch.cos(t * w)
    return pe


def _sinusoidal_index_i(length, dim, base):
    t = torch.arange(length, dtype=torch.float64)[:, None]
    w = base ** (-torch.arange(dim // 2, dtype=torch.float64) / dim)
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(t * w)
    pe[:, 1::2] = torch.cos(t * w)
    return pe


def _sinusoidal_swapped(length, dim, base):
    pe = _sinusoidal(length, dim, base)
    return pe.view(length, dim // 2, 2).flip(-1).reshape(length, dim)


def _sinusoidal_halves(length, dim, base):
    t = torch.arange(length, dtype=torch.float64)[:, None]
    w = base ** (-torch.arange(0, dim, 2, dtype=torch.float64) / dim)
    return torch.cat([torch.sin(t * w), torch.cos(t * w)], dim=1)


def _sinusoidal_cases():
    return [(6, 8, 10000.0), (12, 4, 100.0), (5, 16, 10.0), (20, 6, 1000.0), (1, 2, 10000.0)]


register(FunctionExercise(
    id="self_attention/sinusoidal-table",
    title="The sinusoidal table",
    reference=_sinusoidal,
    cases=_sinusoidal_cases,
    rtol=1e-6,
    atol=1e-9,
    mistakes=(
        Mistake(_sinusoidal_index_i, "The exponent is -2i/d, where i counts the pairs: feature 2i and "
                                     "2i+1 share the frequency w_i = base^(-2i/d). Counting features "
                                     "instead of pairs halves every exponent."),
        Mistake(_sinusoidal_swapped, "Even features (0, 2, 4, ...) hold the sines, odd ones the cosines."),
        Mistake(_sinusoidal_halves, "The sines and cosines are interleaved, feature 2i and 2i+1, not the "
                                    "sines in the first half and the cosines in the second."),
    ),
    solution_text=r"""Pair $i$ (features $2i$ and $2i+1$) turns at $\omega_i = \text{base}^{-2i/d}$: build the
column of positions $t$ and the row of the $d/2$ frequencies, multiply them into the $(L, d/2)$
table of angles, and put its sines in the even columns and its cosines in the odd ones.""",
    solution='''def sinusoidal(length, dim, base):
    t = torch.arange(length, dtype=torch.float64)[:, None]      # (L, 1)
    two_i = torch.arange(0, dim, 2, dtype=torch.float64)         # (d/2,)
    angle = t * base ** (-two_i / dim)                           # (L, d/2)
    pe = torch.zeros(length, dim, dtype=torch.float64)
    pe[:, 0::2] = torch.sin(angle)
    pe[:, 1::2] = torch.cos(angle)
    return pe
''',
    solution_answer="sinusoidal",
))


# --- 2. the offset as a linear map on one pair ------------------------------------------


def _offset_matrix(k, w):
    """The 2x2 M with (sin((t+k)w), cos((t+k)w)) = M (sin(tw), cos(tw)) for every t."""
    c, s = math.cos(k * w), math.sin(k * w)
    return torch.tensor([[c, s], [-s, c]], dtype=torch.float64)


def _offset_matrix_transposed(k, w):
    return _offset_matrix(k, w).T


def _offset_matrix_no_frequency(k, w):
    return _offset_matrix(k, 1.0)


def _offset_cases():
    return [(1, 1.0), (3, 0.1), (-2, 0.5), (5, 0.01), (7, 1.3), (0, 0.4)]


register(FunctionExercise(
    id="self_attention/offset-rotation",
    title="The offset as a rotation",
    reference=_offset_matrix,
    cases=_offset_cases,
    rtol=1e-6,
    atol=1e-9,
    mistakes=(
        Mistake(_offset_matrix_transposed,
                "That is the rotation of a pair written (cos, sin). The encoding's pair is "
                "(sin, cos): expand sin(a + b) and cos(a + b) and read the coefficients of sin(a) "
                "and cos(a) off each line."),
        Mistake(_offset_matrix_no_frequency, "The angle of the rotation is k * w, the offset times the "
                                             "pair's frequency, not k alone."),
    ),
    solution_text=r"""With $a = t\omega$ and $b = k\omega$:
$\sin(a + b) = \cos b \,\sin a + \sin b\, \cos a$ and $\cos(a + b) = -\sin b\, \sin a + \cos b\, \cos a$.
The coefficients of $(\sin a, \cos a)$ are the rows of
$\begin{pmatrix} \cos k\omega & \sin k\omega \\ -\sin k\omega & \cos k\omega \end{pmatrix}$, a rotation
(by $-k\omega$ in the plane of the pair written as (sine, cosine)) that does not depend on $t$.""",
    solution='''def offset_matrix(k, w):
    c, s = math.cos(k * w), math.sin(k * w)
    return torch.tensor([[c, s], [-s, c]], dtype=torch.float64)
''',
    solution_answer="offset_matrix",
))


# --- 3. RoPE by hand --------------------------------------------------------------------


def _rope(x, positions, base):
    """eq-rope: rotate the pair (x[2i], x[2i+1]) of row t by positions[t] * base^(-2i/d)."""
    d = x.shape[-1]
    w = base ** (-torch.arange(0, d, 2, dtype=x.dtype) / d)  # (d/2,)
    theta = positions.to(x.dtype)[:, None] * w  # (L, d/2)
    even, odd = x[:, 0::2], x[:, 1::2]
    out = torch.empty_like(x)
    out[:, 0::2] = even * torch.cos(theta) - odd * torch.sin(theta)
    out[:, 1::2] = even * torch.sin(theta) + odd * torch.cos(theta)
    return out


def _rope_backwards(x, positions, base):
    return _rope(x, -positions, base)


def _rope_halves(x, positions, base):
    d = x.shape[-1]
    w = base ** (-torch.arange(0, d, 2, dtype=x.dtype) / d)
    theta = positions.to(x.dtype)[:, None] * w
    first, second = x[:, : d // 2], x[:, d // 2:]
    return torch.cat([first * torch.cos(theta) - second * torch.sin(theta),
                      first * torch.sin(theta) + second * torch.cos(theta)], dim=1)


def _rope_pair_index(x, positions, base):
    d = x.shape[-1]
    w = base ** (-torch.arange(d // 2, dtype=x.dtype) / d)
    theta = positions.to(x.dtype)[:, None] * w
    even, odd = x[:, 0::2], x[:, 1::2]
    out = torch.empty_like(x)
    out[:, 0::2] = even * torch.cos(theta) - odd * torch.sin(theta)
    out[:, 1::2] = even * torch.sin(theta) + odd * torch.cos(theta)
    return out


def _rope_cases():
    g = torch.Generator().manual_seed(6)
    cases = []
    for L, d, base in ((5, 4, 10000.0), (7, 8, 100.0), (3, 6, 10.0), (6, 2, 10000.0)):
        x = torch.randn(L, d, generator=g, dtype=torch.float64)
        positions = torch.randint(-3, 40, (L,), generator=g)
        cases.append((x, positions, base))
    return cases


register(FunctionExercise(
    id="self_attention/rope-by-hand",
    title="RoPE by hand",
    reference=_rope,
    cases=_rope_cases,
    rtol=1e-6,
    atol=1e-9,
    mistakes=(
        Mistake(_rope_backwards, "The rotation turns the wrong way: the pair (x_2i, x_2i+1), read as "
                                 "the complex number x_2i + i x_2i+1, is multiplied by exp(+i theta)."),
        Mistake(_rope_halves, "This pairs feature i with feature i + d/2 (a layout some libraries use). "
                              "The book follows the RoFormer paper: pairs of neighbours (2i, 2i+1)."),
        Mistake(_rope_pair_index, "Pair i turns at base^(-2i/d): the exponent uses 2i, twice the index "
                                  "of the pair."),
    ),
    solution_text=r"""Row $t$'s pair $i$, read as the complex number $z = x_{2i} + \mathrm{i}\, x_{2i+1}$, is
multiplied by $e^{\mathrm{i}\theta}$ with $\theta = p_t \omega_i$, $\omega_i = \text{base}^{-2i/d}$:
$(x_{2i}\cos\theta - x_{2i+1}\sin\theta,\ x_{2i}\sin\theta + x_{2i+1}\cos\theta)$.""",
    solution='''def rope(x, positions, base):
    d = x.shape[-1]
    w = base ** (-torch.arange(0, d, 2, dtype=x.dtype) / d)     # (d/2,)
    theta = positions.to(x.dtype)[:, None] * w                   # (L, d/2)
    cos, sin = torch.cos(theta), torch.sin(theta)
    out = torch.empty_like(x)
    out[:, 0::2] = x[:, 0::2] * cos - x[:, 1::2] * sin
    out[:, 1::2] = x[:, 0::2] * sin + x[:, 1::2] * cos
    return out
''',
    solution_answer="rope",
))


# --- 4. the gradient of self-attention's output with respect to one input -----------------


def _self_attention_row(X, W_q, W_k, W_v, i):
    """Row i of eq-self-attention (no mask): softmax(q_i K^T / sqrt(d_k)) V."""
    q = X[i] @ W_q  # (d_k,)
    K, V = X @ W_k, X @ W_v  # (L, d_k), (L, d_v)
    alpha = torch.softmax(K @ q / math.sqrt(W_q.shape[1]), 0)  # (L,)
    return alpha @ V  # (d_v,)


def _input_gradient(X, W_q, W_k, W_v, i, j):
    """The Jacobian d y_i / d x_j, (d_v, d), for j != i, by autograd (the reference only)."""
    X = X.clone()
    row = X[j].clone().requires_grad_(True)

    def f(xj):
        Y = torch.cat([X[:j], xj[None], X[j + 1:]])
        return _self_attention_row(Y, W_q, W_k, W_v, i)

    return torch.autograd.functional.jacobian(f, row)


def _input_gradient_values_only(X, W_q, W_k, W_v, i, j):
    q = X[i] @ W_q
    alpha = torch.softmax((X @ W_k) @ q / math.sqrt(W_q.shape[1]), 0)
    return alpha[j] * W_v.T


def _input_gradient_unscaled(X, W_q, W_k, W_v, i, j):
    q = X[i] @ W_q
    K, V = X @ W_k, X @ W_v
    alpha = torch.softmax(K @ q / math.sqrt(W_q.shape[1]), 0)
    y = alpha @ V
    return alpha[j] * (W_v.T + torch.outer(V[j] - y, W_k @ q))


def _input_gradient_sign(X, W_q, W_k, W_v, i, j):
    q = X[i] @ W_q
    K, V = X @ W_k, X @ W_v
    d_k = W_q.shape[1]
    alpha = torch.softmax(K @ q / math.sqrt(d_k), 0)
    y = alpha @ V
    return alpha[j] * (W_v.T + torch.outer(y - V[j], W_k @ q) / math.sqrt(d_k))


def _gradient_cases():
    g = torch.Generator().manual_seed(9)
    cases = []
    for L, d, d_k, d_v, i, j in ((4, 3, 2, 3, 0, 2), (6, 5, 4, 2, 3, 1), (3, 4, 4, 4, 2, 0),
                                 (5, 2, 3, 5, 1, 4)):
        X = torch.randn(L, d, generator=g, dtype=torch.float64)
        W_q = torch.randn(d, d_k, generator=g, dtype=torch.float64)
        W_k = torch.randn(d, d_k, generator=g, dtype=torch.float64)
        W_v = torch.randn(d, d_v, generator=g, dtype=torch.float64)
        cases.append((X, W_q, W_k, W_v, i, j))
    return cases


register(FunctionExercise(
    id="self_attention/input-gradient",
    title="The gradient with respect to one input position",
    reference=_input_gradient,
    cases=_gradient_cases,
    rtol=1e-6,
    atol=1e-9,
    forbid=("autograd",),
    mistakes=(
        Mistake(_input_gradient_values_only,
                "x_j enters twice: through its value v_j = x_j W_V, and through its key k_j = x_j W_K, "
                "which moves every weight of row i. You have only the first path."),
        Mistake(_input_gradient_unscaled, "The score is q_i . k_j / sqrt(d_k): the key path carries the "
                                          "factor 1 / sqrt(d_k)."),
        Mistake(_input_gradient_sign, "Check the sign of the key path: raising s_ij moves y_i towards v_j, "
                                      "so the term is alpha_ij (v_j - y_i) times the score's gradient."),
    ),
    solution_text=r"""With row vectors, $\mathbf{y}_i = \sum_l \alpha_{il}\mathbf{v}_l$, $\mathbf{v}_l = \mathbf{x}_l\mathbf{W}_V$ and
$s_{il} = \mathbf{q}_i \cdot \mathbf{x}_l \mathbf{W}_K / \sqrt{d_k}$. For $j \ne i$, $\mathbf{x}_j$ appears in $\mathbf{v}_j$ and in
$s_{ij}$ only. The value path gives $\alpha_{ij}\mathbf{W}_V^\top$. The key path: $\partial \alpha_{il} / \partial s_{ij}
= \alpha_{il}(\delta_{lj} - \alpha_{ij})$, so $\partial \mathbf{y}_i / \partial s_{ij} = \alpha_{ij}(\mathbf{v}_j - \mathbf{y}_i)$, and
$\partial s_{ij} / \partial \mathbf{x}_j = \mathbf{W}_K \mathbf{q}_i^\top / \sqrt{d_k}$. Together
$\partial \mathbf{y}_i / \partial \mathbf{x}_j = \alpha_{ij}\big[\mathbf{W}_V^\top + (\mathbf{v}_j - \mathbf{y}_i)^\top (\mathbf{W}_K\mathbf{q}_i^\top)^\top / \sqrt{d_k}\big]$,
a $(d_v, d)$ matrix: zero only when $\alpha_{ij}$ is, so one layer connects every pair of positions.""",
    solution='''def input_gradient(X, W_q, W_k, W_v, i, j):
    d_k = W_q.shape[1]
    q = X[i] @ W_q                                   # (d_k,)
    K, V = X @ W_k, X @ W_v                          # (L, d_k), (L, d_v)
    alpha = torch.softmax(K @ q / math.sqrt(d_k), 0)  # (L,)
    y = alpha @ V                                    # (d_v,)
    key_path = torch.outer(V[j] - y, W_k @ q) / math.sqrt(d_k)  # (d_v, d)
    return alpha[j] * (W_v.T + key_path)
''',
    solution_answer="input_gradient",
))
