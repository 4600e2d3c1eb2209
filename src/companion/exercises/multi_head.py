"""Exercises of the chapter on multi-head attention: splitting the heads by a reshape, the
parameter count of a configuration (a derivation), each head's share of the output through its
block of W^O (a derivation), grouped-query attention with shared keys and values, and the size
of a key/value cache (a derivation)."""

from __future__ import annotations

import math

import torch

from .checker import FunctionExercise, Mistake, ValueExercise, register

# --- 1. splitting the heads by a reshape -----------------------------------------------------


def _split_heads(x, num_heads):
    """(B, L, d) -> (B, h, L, d / h): head i owns the features i d_k .. (i + 1) d_k - 1."""
    B, L, d = x.shape
    return x.view(B, L, num_heads, d // num_heads).transpose(1, 2)


def _split_no_transpose(x, num_heads):
    B, L, d = x.shape
    return x.reshape(B, num_heads, L, d // num_heads)


def _split_strided(x, num_heads):
    B, L, d = x.shape
    return x.view(B, L, d // num_heads, num_heads).permute(0, 3, 1, 2)


def _split_cases():
    g = torch.Generator().manual_seed(21)
    return [(torch.randn(B, L, d, generator=g, dtype=torch.float64), h)
            for B, L, d, h in ((2, 5, 12, 3), (1, 7, 8, 2), (3, 4, 16, 4), (2, 6, 6, 1),
                               (1, 3, 10, 5))]


register(FunctionExercise(
    id="multi_head/split-heads",
    title="Splitting the heads",
    reference=_split_heads,
    cases=_split_cases,
    rtol=0,
    atol=0,
    mistakes=(
        Mistake(_split_no_transpose, "A reshape straight to (B, h, L, d_k) keeps the memory order: "
                                     "its 'head 0' is the first L d_k numbers of the sequence, "
                                     "which mixes positions. Split the feature axis where it is "
                                     "(B, L, h, d_k), then move the head axis forward."),
        Mistake(_split_strided, "Head i owns a contiguous block of features, i d_k .. (i + 1) d_k - 1, "
                                "the block of columns of W^Q that belongs to it: split the last "
                                "axis as (h, d_k), not (d_k, h)."),
    ),
    solution_text=r"""Head $i$ owns the contiguous block of features $i d_k, \dots, (i+1) d_k - 1$ of each
position (the block of columns $\mathbf{W}_i^Q$ of $\mathbf{W}^Q$). Splitting the last axis as
`(h, d_k)` gives `(B, L, h, d_k)` without moving any number; swapping the length and head axes
gives `(B, h, L, d_k)`, a view whose last two axes are one head's $L \times d_k$ matrix.
Merging is the reverse: `x.transpose(1, 2).reshape(B, L, h * d_k)`.""",
    solution='''def split_heads(x, num_heads):
    B, L, d = x.shape
    return x.view(B, L, num_heads, d // num_heads).transpose(1, 2)


x_ = torch.randn(2, 5, 12)
merged_ = split_heads(x_, 3).transpose(1, 2).reshape(2, 5, 12)
assert torch.equal(merged_, x_)  # merging undoes the split
''',
    solution_answer="split_heads",
))


# --- 2. the parameter count (derivation) -----------------------------------------------------


def _count(embed_dim, num_heads, kdim, vdim, bias):
    """eq-mha-params with kdim, vdim: W^Q (d x d), W^K (kdim x d), W^V (vdim x d), W^O (d x d)."""
    d = embed_dim
    return d * d + kdim * d + vdim * d + d * d + (4 * d if bias else 0)


def _count_no_bias(embed_dim, num_heads, kdim, vdim, bias):
    return _count(embed_dim, num_heads, kdim, vdim, False)


def _count_full_width_heads(embed_dim, num_heads, kdim, vdim, bias):
    d = embed_dim
    per_head = d * d + kdim * d + vdim * d + (3 * d if bias else 0)
    return num_heads * per_head + num_heads * d * d + (d if bias else 0)


def _count_square(embed_dim, num_heads, kdim, vdim, bias):
    return _count(embed_dim, num_heads, embed_dim, embed_dim, bias)


def _count_bias_three(embed_dim, num_heads, kdim, vdim, bias):
    return _count(embed_dim, num_heads, kdim, vdim, False) + (3 * embed_dim if bias else 0)


def _count_cases():
    return [(16, 4, 16, 16, True), (24, 3, 10, 7, True), (32, 8, 32, 32, False),
            (12, 2, 5, 12, False), (48, 6, 20, 33, True), (8, 1, 8, 3, True)]


register(FunctionExercise(
    id="multi_head/parameter-count",
    title="The parameter count",
    reference=_count,
    cases=_count_cases,
    rtol=0,
    atol=0,
    mistakes=(
        Mistake(_count_no_bias, "Count the biases too when bias=True: each of the four projections "
                                "has one, of its output size d."),
        Mistake(_count_full_width_heads, "Each head projects to d_k = d / h, not to d: the h heads "
                                         "together are one d-wide projection, so the count does "
                                         "not grow with h."),
        Mistake(_count_square, "W^K reads keys of size kdim and W^V values of size vdim: their "
                               "matrices are kdim x d and vdim x d."),
        Mistake(_count_bias_three, "The output projection W^O has a bias as well: four biases of size "
                                   "d, not three."),
    ),
    solution_text=r"""The heads' projections $\mathbf{W}_i^Q \in \mathbb{R}^{d \times d_k}$ side by side form
one $d \times h d_k = d \times d$ matrix, so the query projection has $d^2$ weights whatever $h$
is; the key and value projections read inputs of sizes `kdim` and `vdim`, so they have
$\text{kdim} \cdot d$ and $\text{vdim} \cdot d$; $\mathbf{W}^O$ has $d^2$. Each of the four
has a bias of size $d$: $2d^2 + (\text{kdim} + \text{vdim})\,d + 4d$, which is
{eq}`eq-mha-params` when kdim = vdim = d.""",
    solution='''def parameter_count(embed_dim, num_heads, kdim, vdim, bias):
    d = embed_dim
    weights = 2 * d * d + (kdim + vdim) * d
    return weights + (4 * d if bias else 0)
''',
    solution_answer="parameter_count",
))


# --- 3. each head's share of the output (derivation) -----------------------------------------


def _contributions(heads, W_o):
    """heads (B, h, L, d_k), W_o (d, h d_k) as nn.Linear stores it -> (B, h, L, d): head i
    times its block of columns, eq-mha-sum."""
    B, h, L, d_k = heads.shape
    blocks = W_o.view(W_o.shape[0], h, d_k)  # (d, h, d_k): block i = columns i d_k ..
    return torch.einsum("bhld,ehd->bhle", heads, blocks)


def _contributions_wrong_blocks(heads, W_o):
    B, h, L, d_k = heads.shape
    return torch.einsum("bhld,hde->bhle", heads, W_o.view(h, d_k, W_o.shape[1]))  # row blocks


def _contributions_averaged(heads, W_o):
    return _contributions(heads, W_o) / heads.shape[1]


def _contribution_cases():
    g = torch.Generator().manual_seed(23)
    cases = []
    for B, h, L, d_k in ((2, 3, 4, 2), (1, 4, 5, 3), (2, 2, 3, 4), (1, 1, 4, 5)):
        d = h * d_k
        cases.append((torch.randn(B, h, L, d_k, generator=g, dtype=torch.float64),
                      torch.randn(d, d, generator=g, dtype=torch.float64)))
    return cases


register(FunctionExercise(
    id="multi_head/head-contributions",
    title="Each head's share of the output",
    reference=_contributions,
    cases=_contribution_cases,
    rtol=1e-9,
    atol=1e-12,
    mistakes=(
        Mistake(_contributions_wrong_blocks, "torch.nn.Linear stores its weight as (out, in), so the "
                                             "concatenation [head_1; ...; head_h] meets W_o's "
                                             "columns: head i's block is W_o[:, i d_k:(i + 1) d_k]."),
        Mistake(_contributions_averaged, "The heads' contributions add up, they are not averaged: "
                                         "[H_1, ..., H_h] W^O = sum_i H_i W_i^O."),
    ),
    solution_text=r"""Write the concatenation as a row of blocks $[\operatorname{head}_1, \dots, \operatorname{head}_h]$ and cut
$\mathbf{W}^O$ into the matching blocks of rows $\mathbf{W}_i^O \in \mathbb{R}^{d_k \times d}$;
block multiplication gives $\sum_i \operatorname{head}_i \mathbf{W}_i^O$ {eq}`eq-mha-sum`. In code
`nn.Linear` computes $\mathbf{x} \mathbf{W}^\top$ with `weight` of shape `(out, in)`, so
$\mathbf{W}_i^O$ is the transpose of `weight[:, i * d_k:(i + 1) * d_k]`: viewing the weight as
`(d, h, d_k)` picks all blocks at once.""",
    solution='''def head_contributions(heads, W_o):
    B, h, L, d_k = heads.shape
    blocks = W_o.view(W_o.shape[0], h, d_k)  # (d, h, d_k)
    return torch.einsum("bhld,ehd->bhle", heads, blocks)


heads_ = torch.randn(2, 3, 4, 2, dtype=torch.float64)
W_ = torch.randn(6, 6, dtype=torch.float64)
concat_ = heads_.transpose(1, 2).reshape(2, 4, 6)
torch.testing.assert_close(head_contributions(heads_, W_).sum(1), concat_ @ W_.T)
''',
    solution_answer="head_contributions",
))


# --- 4. grouped-query attention: shared keys and values --------------------------------------


def _grouped(q, k, v):
    """q (B, h, L, d_k), k and v (B, g, L, d_k): query head i reads kv head i // (h / g)."""
    r = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(r, dim=1), v.repeat_interleave(r, dim=1)  # (B, h, L, d_k)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1)
    return weights @ v


def _grouped_tiled(q, k, v):
    r = q.shape[1] // k.shape[1]
    k, v = k.repeat(1, r, 1, 1), v.repeat(1, r, 1, 1)
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1]), -1)
    return weights @ v


def _grouped_unscaled(q, k, v):
    r = q.shape[1] // k.shape[1]
    k, v = k.repeat_interleave(r, dim=1), v.repeat_interleave(r, dim=1)
    return torch.softmax(q @ k.transpose(-2, -1), -1) @ v


def _grouped_cases():
    g = torch.Generator().manual_seed(24)
    cases = []
    for B, h, kv, L, d_k in ((2, 4, 2, 5, 3), (1, 6, 3, 4, 2), (2, 8, 2, 3, 4), (1, 4, 1, 6, 2),
                             (1, 3, 3, 4, 2)):
        q = torch.randn(B, h, L, d_k, generator=g, dtype=torch.float64) * 2
        k = torch.randn(B, kv, L, d_k, generator=g, dtype=torch.float64) * 2
        v = torch.randn(B, kv, L, d_k, generator=g, dtype=torch.float64)
        cases.append((q, k, v))
    return cases


register(FunctionExercise(
    id="multi_head/grouped-attention",
    title="Grouped-query attention",
    reference=_grouped,
    cases=_grouped_cases,
    rtol=1e-9,
    atol=1e-12,
    mistakes=(
        Mistake(_grouped_tiled, "Head i belongs to group i // (h / g): heads 0 .. r - 1 share key/value "
                                "head 0. Tensor.repeat tiles the heads (0, 1, 0, 1, ...) and gives "
                                "head i the key/value head i % g; repeat_interleave (or a broadcast "
                                "over a group axis) gives 0, 0, 1, 1, ..."),
        Mistake(_grouped_unscaled, "Scale the scores by 1 / sqrt(d_k), as in eq-sdpa."),
    ),
    solution_text=r"""Query head $i$ uses key/value head $\lfloor i / r \rfloor$ with $r = h/g$
{eq}`eq-gqa`. `repeat_interleave(r, dim=1)` lists each key/value head $r$ times in a row, so the
repeated tensors line up with the query heads; then it is {eq}`eq-sdpa` head by head. (The companion's
`GroupedQueryAttention` avoids the copies: it views the queries as `(B, g, r, L, d_k)` and the keys
as `(B, g, 1, L, d_k)`, and lets the product broadcast.)""",
    solution='''def grouped_attention(q, k, v):
    r = q.shape[1] // k.shape[1]
    k = k.repeat_interleave(r, dim=1)  # (B, h, L, d_k)
    v = v.repeat_interleave(r, dim=1)
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return torch.softmax(scores, -1) @ v
''',
    solution_answer="grouped_attention",
))
