"""Exercises of the chapter on attention at scale: merging two partial softmax sums and one
tiled step by hand (two derivations), the causal linear-attention recurrence, and the memory
of a key-value cache with grouped-query attention."""

from __future__ import annotations

import math

import torch

from .checker import FunctionExercise, Mistake, ValueExercise, register

# --- 1. merging two partial softmax sums ------------------------------------------------


def _merge(m1, l1, m2, l2):
    """eq-online-softmax for two blocks: the maximum and sum of exp(s - m) over their union."""
    m = torch.maximum(m1, m2)
    return m, l1 * torch.exp(m1 - m) + l2 * torch.exp(m2 - m)


def _merge_no_rescale(m1, l1, m2, l2):
    return torch.maximum(m1, m2), l1 + l2


def _merge_upside_down(m1, l1, m2, l2):
    m = torch.maximum(m1, m2)
    return m, l1 * torch.exp(m - m1) + l2 * torch.exp(m - m2)


def _merge_first_only(m1, l1, m2, l2):
    m = torch.maximum(m1, m2)
    return m, l1 * torch.exp(m1 - m) + l2


def _merge_cases():
    g = torch.Generator().manual_seed(13)
    cases = []
    for n, spread in ((1, 1.0), (5, 3.0), (7, 30.0), (4, 1e3)):
        a = torch.randn(n, 6, generator=g, dtype=torch.float64) * spread
        b = torch.randn(n, 4, generator=g, dtype=torch.float64) * spread
        m1, m2 = a.amax(-1), b.amax(-1)
        l1 = torch.exp(a - m1[:, None]).sum(-1)
        l2 = torch.exp(b - m2[:, None]).sum(-1)
        cases.append((m1, l1, m2, l2))
    # the second block was fully masked: its maximum is -inf and its sum 0
    m1, l1 = torch.tensor([0.5, -2.0], dtype=torch.float64), torch.tensor([1.7, 3.0], dtype=torch.float64)
    cases.append((m1, l1, torch.full((2,), -math.inf, dtype=torch.float64), torch.zeros(2, dtype=torch.float64)))
    return cases


register(FunctionExercise(
    id="efficient/merge-sums",
    title="Merging two partial softmax sums",
    reference=_merge,
    cases=_merge_cases,
    rtol=1e-9,
    atol=1e-12,
    mistakes=(
        Mistake(_merge_no_rescale, "Each l_k is a sum of exp(s - m_k), measured from its own maximum. "
                                   "Before adding them, express both from the common maximum m: "
                                   "exp(s - m) = exp(s - m_k) exp(m_k - m)."),
        Mistake(_merge_upside_down, "The factor is exp(m_k - m), which is at most 1: moving the reference "
                                    "up to the larger maximum makes every term smaller, never larger."),
        Mistake(_merge_first_only, "Both partial sums need the factor exp(m_k - m); the one whose maximum "
                                   "is the larger gets exp(0) = 1, but you do not know in advance which "
                                   "one that is."),
    ),
    solution_text=r"""Block $k$ holds $Z_k = \sum_{j \in \mathcal{B}_k} e^{s_j - \mu_k}$. Over the union the
maximum is $\mu = \max(\mu_1, \mu_2)$ and each term must be measured from it:
$e^{s_j - \mu} = e^{s_j - \mu_k} e^{\mu_k - \mu}$. Summing over each block,

$$
Z = Z_1 e^{\mu_1 - \mu} + Z_2 e^{\mu_2 - \mu},
$$

where both factors are at most 1 and the block holding the maximum gets exactly 1. A fully masked
block has $\mu_k = -\infty$ and $Z_k = 0$: its factor is $e^{-\infty} = 0$, and it adds
nothing, as long as the other block is not empty too.""",
    solution='''def merge(mu1, Z1, mu2, Z2):
    mu = torch.maximum(mu1, mu2)
    return mu, Z1 * torch.exp(mu1 - mu) + Z2 * torch.exp(mu2 - mu)
''',
    solution_answer="merge",
))


# --- 2. one tiled step by hand ----------------------------------------------------------

# The state after the first block, for one query: maximum, sum and unnormalised output.
STEP_STATE = {"m": 1.0, "l": 2.0, "o": (4.0, 2.0)}
# The second block: two keys, both with score 3, and their values.
STEP_SCORES = (3.0, 3.0)
STEP_VALUES = ((1.0, 0.0), (0.0, 1.0))


def _tiled_step(rescale_old=True, rescale_block=True):
    m, l, o = STEP_STATE["m"], STEP_STATE["l"], torch.tensor(STEP_STATE["o"], dtype=torch.float64)
    s = torch.tensor(STEP_SCORES, dtype=torch.float64)
    v = torch.tensor(STEP_VALUES, dtype=torch.float64)
    m_new = max(m, float(s.max()))
    factor = math.exp(m - m_new) if rescale_old else 1.0
    p = torch.exp(s - m_new) if rescale_block else torch.exp(s)
    l_new = l * factor + float(p.sum())
    o_new = o * factor + p @ v
    return (torch.tensor(m_new, dtype=torch.float64), torch.tensor(l_new, dtype=torch.float64),
            o_new, o_new / l_new)


def _tiled_step_expected():
    return _tiled_step()


def _step_no_rescale():
    return _tiled_step(rescale_old=False)


def _step_unshifted():
    return _tiled_step(rescale_block=False, rescale_old=False)


def _step_normalised_old():
    """The old output normalised (o / l) before it was rescaled and added."""
    m_new, l_new, _, _ = _tiled_step()
    o = torch.tensor(STEP_STATE["o"], dtype=torch.float64) / STEP_STATE["l"]
    o_new = o * math.exp(STEP_STATE["m"] - 3.0) + torch.tensor((1.0, 1.0), dtype=torch.float64)
    return (m_new, l_new, o_new, o_new / l_new)


register(ValueExercise(
    id="efficient/tiled-step",
    title="One tiled step by hand",
    expected=_tiled_step_expected,
    rtol=1e-4,
    atol=1e-6,
    mistakes=(
        Mistake(_step_no_rescale(), "The old sum and output were measured from the old maximum 1; the new "
                                    "maximum is 3, so both must be multiplied by exp(1 - 3) before the "
                                    "new block is added."),
        Mistake(_step_unshifted(), "The new block's exponentials are exp(s - m_new), measured from the new "
                                   "maximum, like everything else in the state."),
        Mistake(_step_normalised_old(), "The running output is kept unnormalised (a sum of exp(s - m) v): "
                                        "rescale o itself, and divide by l only at the end."),
    ),
    solution_text=r"""The new maximum is $\mu' = \max(1, 3, 3) = 3$, so the old state is rescaled by
$e^{1 - 3} = e^{-2}$. The new block's exponentials are $e^{3 - 3} = 1$ each. Then
{eq}`eq-tiled-update` gives

$$
Z' = 2 e^{-2} + 1 + 1 \approx 2.2707, \qquad
\tilde{\mathbf{o}}' = e^{-2} (4, 2) + 1 \cdot (1, 0) + 1 \cdot (0, 1) \approx (1.5413, 1.2707),
$$

and, were this the last block, the output $\tilde{\mathbf{o}}' / Z' \approx (0.6788, 0.5596)$.""",
    solution='''m, l, o = 1.0, 2.0, torch.tensor([4.0, 2.0], dtype=torch.float64)
scores = torch.tensor([3.0, 3.0], dtype=torch.float64)
values = torch.tensor([[1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
m_new = max(m, scores.max().item())
rescale = math.exp(m - m_new)
p = torch.exp(scores - m_new)
l_new = l * rescale + p.sum().item()
o_new = o * rescale + p @ values
answer = (m_new, l_new, o_new, o_new / l_new)
''',
))


# --- 3. causal linear attention as a recurrence -----------------------------------------


def _phi(x):
    return torch.nn.functional.elu(x) + 1


def _causal_linear(query, key, value):
    """Quadratic reference: weights phi(q_i).phi(k_j) for j <= i, normalised."""
    w = _phi(query) @ _phi(key).T  # (L, L)
    w = w * torch.ones_like(w).tril()
    return (w @ value) / w.sum(-1, keepdim=True)


def _linear_not_causal(query, key, value):
    w = _phi(query) @ _phi(key).T
    return (w @ value) / w.sum(-1, keepdim=True)


def _linear_no_denominator(query, key, value):
    w = _phi(query) @ _phi(key).T
    return (w * torch.ones_like(w).tril()) @ value


def _linear_strictly_before(query, key, value):
    L = query.shape[0]
    phi_q, phi_k = _phi(query), _phi(key)
    S = torch.zeros(phi_k.shape[1], value.shape[1], dtype=value.dtype)
    z = torch.zeros(phi_k.shape[1], dtype=value.dtype)
    out = torch.zeros(L, value.shape[1], dtype=value.dtype)
    for i in range(L):
        if i > 0:
            out[i] = (phi_q[i] @ S) / (phi_q[i] @ z)
        S = S + torch.outer(phi_k[i], value[i])
        z = z + phi_k[i]
    return out


def _linear_raw_features(query, key, value):
    w = query @ key.T
    w = w * torch.ones_like(w).tril()
    return (w @ value) / w.sum(-1, keepdim=True)


def _causal_linear_cases():
    g = torch.Generator().manual_seed(14)
    cases = []
    for L, d_k, d_v in ((1, 3, 2), (5, 4, 3), (9, 2, 5), (16, 8, 4)):
        cases.append((torch.randn(L, d_k, generator=g, dtype=torch.float64),
                      torch.randn(L, d_k, generator=g, dtype=torch.float64),
                      torch.randn(L, d_v, generator=g, dtype=torch.float64)))
    return cases


register(FunctionExercise(
    id="efficient/causal-linear",
    title="Causal linear attention as a recurrence",
    reference=_causal_linear,
    cases=_causal_linear_cases,
    rtol=1e-7,
    atol=1e-9,
    mistakes=(
        Mistake(_linear_not_causal, "Query i may see keys j <= i only: add key i to the running sums and "
                                    "read them before key i + 1 arrives."),
        Mistake(_linear_no_denominator, "Divide by the running normaliser z_i^T phi(q_i), the sum of the "
                                        "kernel values, so that the weights sum to one."),
        Mistake(_linear_strictly_before, "Query i sees key i too (j <= i): update S and z with key i before "
                                         "reading them for query i."),
        Mistake(_linear_raw_features, "Apply the feature map phi(x) = elu(x) + 1 to queries and keys: raw "
                                      "dot products can be negative and do not make weights."),
    ),
    solution_text=r"""Write the causal weights $\phi(\mathbf{q}_i)^\top \phi(\mathbf{k}_j)$ for $j \le i$
and pull $\phi(\mathbf{q}_i)$ out of both sums:

$$
\mathbf{o}_i = \frac{\sum_{j \le i} \mathbf{v}_j \phi(\mathbf{k}_j)^\top \phi(\mathbf{q}_i)}
{\sum_{j \le i} \phi(\mathbf{k}_j)^\top \phi(\mathbf{q}_i)}
= \frac{\mathbf{U}_i^\top \phi(\mathbf{q}_i)}{\mathbf{u}_i^\top \phi(\mathbf{q}_i)},
\qquad \mathbf{U}_i = \mathbf{U}_{i-1} + \phi(\mathbf{k}_i) \mathbf{v}_i^\top,
\quad \mathbf{u}_i = \mathbf{u}_{i-1} + \phi(\mathbf{k}_i).
$$

The state $(\mathbf{U}_i, \mathbf{u}_i)$ has a fixed size, $d_\phi \times d_v$ plus $d_\phi$,
whatever the length: a recurrent network whose step reads one key and value.""",
    solution='''def causal_linear(query, key, value):
    phi_q = F.elu(query) + 1
    phi_k = F.elu(key) + 1
    S = torch.zeros(phi_k.shape[1], value.shape[1], dtype=value.dtype)
    z = torch.zeros(phi_k.shape[1], dtype=value.dtype)
    outputs = []
    for i in range(len(query)):
        S = S + torch.outer(phi_k[i], value[i])
        z = z + phi_k[i]
        outputs.append(phi_q[i] @ S / (phi_q[i] @ z))
    return torch.stack(outputs)
''',
    solution_answer="causal_linear",
))


# --- 4. the key-value cache of a model with grouped-query attention -----------------------

# A decoder with the shape of a 7-8 billion parameter model.
KV_MODEL = {"layers": 32, "d": 4096, "query_heads": 32, "kv_heads": 8, "head_dim": 128}
KV_LENGTH, KV_BATCH, KV_BYTES = 8192, 4, 2  # tokens per sequence, sequences, bytes per number (16-bit)


def _kv_bytes(kv_heads=KV_MODEL["kv_heads"], both=True, bytes_per=KV_BYTES):
    per_token = (2 if both else 1) * KV_MODEL["layers"] * kv_heads * KV_MODEL["head_dim"]
    return float(per_token * KV_LENGTH * KV_BATCH * bytes_per)


register(ValueExercise(
    id="efficient/kv-cache-bytes",
    title="The key-value cache of a grouped-query model",
    expected=_kv_bytes,
    rtol=1e-9,
    atol=0.5,
    mistakes=(
        Mistake(_kv_bytes(kv_heads=KV_MODEL["query_heads"]), "With grouped-query attention only the key-value "
                                                             "heads are cached: 8 of them, each shared by "
                                                             "4 query heads."),
        Mistake(_kv_bytes(both=False), "A factor of 2 is missing: the cache holds a key and a value for "
                                       "every token, layer and key-value head, and each number takes "
                                       "2 bytes in 16-bit precision. Which one did you leave out?"),
        Mistake(_kv_bytes(both=False, bytes_per=1), "That counts the keys alone, in numbers: the cache holds "
                                                    "a value next to every key, and each number takes 2 bytes."),
        Mistake(_kv_bytes(kv_heads=1), "That is multi-query attention's cache, with a single key-value head; "
                                       "this model has 8."),
    ),
    solution_text=r"""Each layer caches, for every token of every sequence, one key and one value per
key-value head, each of $d_k = 128$ numbers: $2 \cdot 8 \cdot 128 = 2048$ numbers per token and
layer. Times 32 layers, 8192 tokens, 4 sequences and 2 bytes per number,

$$
2 \cdot 32 \cdot 8 \cdot 128 \cdot 8192 \cdot 4 \cdot 2 = 4\,294\,967\,296 \text{ bytes} = 4 \text{ GiB}.
$$

With 32 key-value heads (multi-head attention) it would be 16 GiB, with one (multi-query) 0.5 GiB.""",
    solution='''layers, kv_heads, head_dim = 32, 8, 128
length, batch, bytes_per_number = 8192, 4, 2
answer = 2 * layers * kv_heads * head_dim * length * batch * bytes_per_number
print(answer, "bytes =", answer / 2**30, "GiB")
''',
))
