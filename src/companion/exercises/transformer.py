"""Exercises of the chapter on the Transformer: one encoder block from its weights, the causal
mask of cached decoding, label smoothing's optimum and the logit gap it leaves (derivations),
the parameter count of a configuration, and the peak of the warm-up schedule (a derivation)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .checker import FunctionExercise, Mistake, ValueExercise, register

# --- 1. one encoder block (post-norm, as in the paper) ---------------------------------

_PARAMS = ("W_q", "b_q", "W_k", "b_k", "W_v", "b_v", "W_o", "b_o", "W_1", "b_1", "W_2", "b_2",
           "ln1_weight", "ln1_bias", "ln2_weight", "ln2_bias")


def _block_params(d, f, generator):
    """Random weights in float64; a linear layer is x @ W.T + b, as torch's nn.Linear."""
    def randn(*shape, scale):
        return torch.randn(*shape, generator=generator, dtype=torch.float64) * scale

    p = {}
    for name in ("q", "k", "v", "o"):
        p[f"W_{name}"] = randn(d, d, scale=d**-0.5)
        p[f"b_{name}"] = randn(d, scale=0.1)
    p["W_1"], p["b_1"] = randn(f, d, scale=d**-0.5), randn(f, scale=0.1)
    p["W_2"], p["b_2"] = randn(d, f, scale=f**-0.5), randn(d, scale=0.1)
    for n in ("ln1", "ln2"):
        p[f"{n}_weight"] = 1 + randn(d, scale=0.2)
        p[f"{n}_bias"] = randn(d, scale=0.1)
    return p


def _torch_encoder_layer(p, num_heads, norm_first=False):
    """torch.nn.TransformerEncoderLayer holding the weights ``p`` (the independent reference)."""
    d, f = p["W_1"].shape[1], p["W_1"].shape[0]
    layer = nn.TransformerEncoderLayer(d, num_heads, f, dropout=0.0, batch_first=True,
                                       norm_first=norm_first, dtype=torch.float64)
    with torch.no_grad():
        layer.self_attn.in_proj_weight.copy_(torch.cat([p["W_q"], p["W_k"], p["W_v"]]))
        layer.self_attn.in_proj_bias.copy_(torch.cat([p["b_q"], p["b_k"], p["b_v"]]))
        layer.self_attn.out_proj.weight.copy_(p["W_o"])
        layer.self_attn.out_proj.bias.copy_(p["b_o"])
        layer.linear1.weight.copy_(p["W_1"])
        layer.linear1.bias.copy_(p["b_1"])
        layer.linear2.weight.copy_(p["W_2"])
        layer.linear2.bias.copy_(p["b_2"])
        for ours, theirs in (("ln1", layer.norm1), ("ln2", layer.norm2)):
            theirs.weight.copy_(p[f"{ours}_weight"])
            theirs.bias.copy_(p[f"{ours}_bias"])
    return layer.eval()


def _encoder_block(x, p, num_heads):
    with torch.no_grad():
        return _torch_encoder_layer(p, num_heads)(x)


def _pre_norm_block(x, p, num_heads):
    with torch.no_grad():
        return _torch_encoder_layer(p, num_heads, norm_first=True)(x)


def _written_block(x, p, num_heads, scale_by_dim=False, ffn_residual=True):
    """The post-norm block written out; the switches give two typical mistakes."""
    B, L, d = x.shape
    d_k = d // num_heads

    def heads(t):
        return t.view(B, L, num_heads, d_k).transpose(1, 2)  # (B, h, L, d_k)

    q = heads(x @ p["W_q"].T + p["b_q"])
    k = heads(x @ p["W_k"].T + p["b_k"])
    v = heads(x @ p["W_v"].T + p["b_v"])
    scores = q @ k.transpose(-2, -1) / math.sqrt(d if scale_by_dim else d_k)  # (B, h, L, L)
    o = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, L, d)  # (B, L, d)
    a = F.layer_norm(x + o @ p["W_o"].T + p["b_o"], (d,), p["ln1_weight"], p["ln1_bias"])
    hidden = torch.relu(a @ p["W_1"].T + p["b_1"]) @ p["W_2"].T + p["b_2"]  # (B, L, d)
    return F.layer_norm((a if ffn_residual else 0) + hidden, (d,), p["ln2_weight"], p["ln2_bias"])


def _encoder_cases():
    g = torch.Generator().manual_seed(81)
    cases = []
    for B, L, d, h, f in ((2, 5, 8, 2, 16), (1, 7, 12, 3, 20), (3, 4, 6, 1, 10), (2, 6, 16, 4, 24)):
        x = torch.randn(B, L, d, generator=g, dtype=torch.float64)
        cases.append((x, _block_params(d, f, g), h))
    return cases


register(FunctionExercise(
    id="transformer/encoder-block",
    title="One encoder block from its weights",
    reference=_encoder_block,
    cases=_encoder_cases,
    rtol=1e-6,
    atol=1e-8,
    mistakes=(
        Mistake(_pre_norm_block, "That is the pre-norm block. The paper's block (post-norm) normalises "
                                 "after the residual sum: LayerNorm(x + Sublayer(x))."),
        Mistake(lambda x, p, h: _written_block(x, p, h, scale_by_dim=True),
                "Scale each head's scores by sqrt(d_k), the size of a head's query (d / h), not by "
                "sqrt(d)."),
        Mistake(lambda x, p, h: _written_block(x, p, h, ffn_residual=False),
                "The feed-forward sublayer has its own residual connection: the second layer norm "
                "takes a + FFN(a), not FFN(a) alone."),
    ),
    solution_text=r"""Follow {eq}`eq-transformer-encoder-block` literally: multi-head self-attention on
$\mathbf{X}$ (each head's scores divided by $\sqrt{d_k}$ with $d_k = d/h$), the residual sum and
the first layer norm {eq}`eq-layer-norm`, then the feed-forward network {eq}`eq-ffn`, its residual
sum and the second layer norm. A linear layer is `x @ W.T + b`, as torch stores it.""",
    solution='''def encoder_block(x, p, num_heads):
    B, L, d = x.shape
    d_k = d // num_heads

    def heads(t):  # (B, L, d) -> (B, h, L, d_k)
        return t.view(B, L, num_heads, d_k).transpose(1, 2)

    q = heads(x @ p["W_q"].T + p["b_q"])
    k = heads(x @ p["W_k"].T + p["b_k"])
    v = heads(x @ p["W_v"].T + p["b_v"])
    weights = torch.softmax(q @ k.transpose(-2, -1) / math.sqrt(d_k), -1)
    o = (weights @ v).transpose(1, 2).reshape(B, L, d)
    a = F.layer_norm(x + o @ p["W_o"].T + p["b_o"], (d,),
                     p["ln1_weight"], p["ln1_bias"])
    hidden = torch.relu(a @ p["W_1"].T + p["b_1"]) @ p["W_2"].T + p["b_2"]
    return F.layer_norm(a + hidden, (d,), p["ln2_weight"], p["ln2_bias"])
''',
    solution_answer="encoder_block",
))


def block_parameters(dim: int, ffn_dim: int, seed: int = 0) -> dict:
    """Random weights of one encoder block, as the exercise's hidden cases draw them (float64)."""
    return _block_params(dim, ffn_dim, torch.Generator().manual_seed(seed))


# --- 2. the causal mask of cached decoding ---------------------------------------------


def _cached_mask(len_q, len_k):
    """Queries are the last len_q of len_k positions: query i sits at position len_k - len_q + i."""
    return torch.ones(len_q, len_k, dtype=torch.bool).tril(len_k - len_q)


def _mask_cases():
    return [(1, 5), (3, 7), (4, 4), (2, 9), (5, 6), (1, 1)]


register(FunctionExercise(
    id="transformer/cached-causal-mask",
    title="The causal mask with a cache",
    reference=_cached_mask,
    cases=_mask_cases,
    mistakes=(
        Mistake(lambda q, k: torch.ones(q, k, dtype=torch.bool).tril(),
                "Without an offset, query 0 sees only key 0. But query 0 is the first *new* "
                "position, and every cached key precedes it."),
        Mistake(lambda q, k: torch.ones(q, k, dtype=torch.bool).tril(k - q - 1),
                "A position may attend to itself: its own key is the last one it sees "
                "(j <= i + offset, not j < i + offset)."),
        Mistake(lambda q, k: torch.ones(q, k, dtype=torch.bool).tril(q - k),
                "The offset has the wrong sign: the queries sit at the end of the keys, so the "
                "diagonal moves right by len_k - len_q."),
        Mistake(lambda q, k: torch.ones(q, k, dtype=torch.bool).triu(k - q),
                "True means 'may attend': a query sees the keys up to its own position, the lower "
                "triangle, not the ones after it."),
    ),
    solution_text=r"""With $m$ keys in the cache (the new ones included) and $n$ new queries, query $i$ is the
token at position $m - n + i$ of the sequence. It may see key $j$ when $j \le m - n + i$: the lower
triangle moved right by the offset $m - n$, {eq}`eq-kv-cache`'s mask. One new query ($n = 1$)
sees every key.""",
    solution='''def cached_causal_mask(len_q, len_k):
    i = torch.arange(len_q)[:, None] + (len_k - len_q)  # each query's position
    j = torch.arange(len_k)[None, :]
    return j <= i
''',
    solution_answer="cached_causal_mask",
))


# --- 3. label smoothing's optimal output distribution ---------------------------------


def _smoothed_optimum(targets, vocab_size, epsilon):
    """The minimiser of eq-label-smoothing: p = (1 - eps) one_hot(y) + eps / V."""
    one_hot = F.one_hot(targets, vocab_size).to(torch.float64)  # (N, V)
    return (1 - epsilon) * one_hot + epsilon / vocab_size


def _smoothed_over_others(targets, vocab_size, epsilon):
    one_hot = F.one_hot(targets, vocab_size).to(torch.float64)
    return (1 - epsilon) * one_hot + epsilon / (vocab_size - 1) * (1 - one_hot)


def _unsmoothed(targets, vocab_size, epsilon):
    return F.one_hot(targets, vocab_size).to(torch.float64)


def _smoothing_cases():
    g = torch.Generator().manual_seed(83)
    return [(torch.randint(0, V, (N,), generator=g), V, eps)
            for N, V, eps in ((3, 5, 0.1), (4, 10, 0.2), (2, 3, 0.5), (5, 7, 0.05))]


register(FunctionExercise(
    id="transformer/label-smoothing-optimum",
    title="Label smoothing's optimal output",
    reference=_smoothed_optimum,
    cases=_smoothing_cases,
    rtol=1e-6,
    atol=1e-9,
    mistakes=(
        Mistake(_smoothed_over_others, "In eq-label-smoothing the mass epsilon is spread uniformly over "
                                       "all V tokens, the target included (as F.cross_entropy's "
                                       "label_smoothing does), not over the V - 1 others."),
        Mistake(_unsmoothed, "The one-hot target is the optimum of the plain cross-entropy. With label "
                             "smoothing the loss also charges -log p_k for every k, with weight "
                             "epsilon / V."),
    ),
    solution_text=r"""Write the smoothed loss as a cross-entropy against a target distribution:
$\mathcal{L} = -\sum_k q_k \log p_k$ with $q_k = (1 - \varepsilon)\,\mathbb{1}[k = y] + \varepsilon/V$
(the weights of {eq}`eq-label-smoothing` add up to one). Minimise over $\mathbf{p}$ with
$\sum_k p_k = 1$: the Lagrangian's derivative $-q_k/p_k + \lambda = 0$ gives $p_k \propto q_k$, so
$\mathbf{p} = \mathbf{q}$ (Gibbs' inequality says the same: $\mathcal{L} = H(\mathbf{q}) +
\mathrm{KL}(\mathbf{q}\,\|\,\mathbf{p}) \ge H(\mathbf{q})$). The best model puts $1 - \varepsilon +
\varepsilon/V$ on the target and $\varepsilon/V$ on every other token.""",
    solution='''def smoothed_optimum(targets, vocab_size, epsilon):
    one_hot = F.one_hot(targets, vocab_size).to(torch.float64)
    return (1 - epsilon) * one_hot + epsilon / vocab_size


# check: no other distribution does better on the smoothed loss
q = smoothed_optimum(torch.tensor([2]), 5, 0.1)
logits = torch.zeros(1, 5, dtype=torch.float64, requires_grad=True)
opt = torch.optim.LBFGS([logits], max_iter=200)


def closure():
    opt.zero_grad()
    loss = F.cross_entropy(logits, torch.tensor([2]), label_smoothing=0.1)
    loss.backward()
    return loss


opt.step(closure)
torch.testing.assert_close(logits.softmax(-1).detach(), q, atol=1e-6, rtol=0)
''',
    solution_answer="smoothed_optimum",
))


# --- 4. the logit gap label smoothing leaves -------------------------------------------

GAP_VOCAB, GAP_EPSILON = 10, 0.1


register(ValueExercise(
    id="transformer/smoothed-logit-gap",
    title="The logit gap at the optimum",
    expected=lambda: math.log((1 - GAP_EPSILON + GAP_EPSILON / GAP_VOCAB) / (GAP_EPSILON / GAP_VOCAB)),
    rtol=1e-4,
    atol=1e-6,
    mistakes=(
        Mistake(math.log((1 - GAP_EPSILON) / (GAP_EPSILON / GAP_VOCAB)),
                "The target also receives its share epsilon / V of the smoothing mass: it gets "
                "1 - epsilon + epsilon / V."),
        Mistake(math.log((1 - GAP_EPSILON) / (GAP_EPSILON / (GAP_VOCAB - 1))),
                "Spread epsilon over all V tokens, as eq-label-smoothing does, not over the V - 1 "
                "others."),
        Mistake(math.inf, "Without smoothing the gap would grow without bound; with it the optimum "
                          "is a finite distribution, so the gap is finite."),
    ),
    solution_text=r"""At the optimum the softmax equals the smoothed target (previous exercise), so for the
target $y$ and any other token $k$, $p_y / p_k = e^{z_y - z_k}$, and
$z_y - z_k = \log\frac{1 - \varepsilon + \varepsilon/V}{\varepsilon/V} = \log 91 \approx 4.51$ for
$V = 10$, $\varepsilon = 0.1$. Without smoothing the loss keeps falling as the gap grows; with it,
logits beyond this gap are penalised.""",
    solution='''V, eps = 10, 0.1
answer = math.log((1 - eps + eps / V) / (eps / V))
print(round(answer, 4))
''',
))


# --- 5. the parameter count of a configuration ------------------------------------------


def _torch_count(vocab_size, dim, num_layers, ffn_dim):
    """Count by building the model from torch modules: a tied embedding, pre-norm blocks
    (attention and FFN with biases, two layer norms each), a final layer norm."""
    modules = [nn.Embedding(vocab_size, dim), nn.LayerNorm(dim)]
    modules += [nn.TransformerEncoderLayer(dim, 1, ffn_dim, dropout=0.0, norm_first=True)
                for _ in range(num_layers)]
    return sum(p.numel() for m in modules for p in m.parameters())


def _count_untied(V, d, L, f):
    return _torch_count(V, d, L, f) + V * d


def _count_no_bias(V, d, L, f):
    return V * d + L * (4 * d * d + 2 * d * f)


def _count_no_norm(V, d, L, f):
    return _torch_count(V, d, L, f) - 4 * d * L - 2 * d


def _count_output_bias(V, d, L, f):
    return _torch_count(V, d, L, f) + V


def _count_cases():
    return [(11, 8, 1, 16), (50, 16, 2, 64), (7, 4, 3, 12), (100, 32, 4, 48)]


register(FunctionExercise(
    id="transformer/parameter-count",
    title="The parameter count of a configuration",
    reference=_torch_count,
    cases=_count_cases,
    rtol=0,
    atol=0.5,
    mistakes=(
        Mistake(_count_untied, "The output projection is tied to the embedding: it is the same V x d "
                               "matrix, counted once."),
        Mistake(_count_no_bias, "Count the biases too: the four projections of attention and the two "
                                "layers of the FFN each have one."),
        Mistake(_count_no_norm, "Each layer norm has a gain and a bias of d entries: two norms a block, "
                                "and one after the last block."),
        Mistake(_count_output_bias, "The tied output projection has no bias in this configuration."),
    ),
    solution_text=r"""Attention: four $d \times d$ projections and their biases, $4d^2 + 4d$. FFN {eq}`eq-ffn`:
$d f + f$ and $f d + d$. Two layer norms {eq}`eq-layer-norm`: $4d$. A block has $4d^2 + 2df + 9d + f$
parameters, the number of heads changes nothing (the heads split $d$). Add the tied embedding $Vd$
and the final layer norm's $2d$.""",
    solution='''def parameter_count(vocab_size, dim, num_layers, ffn_dim):
    d, f = dim, ffn_dim
    block = (4 * d * d + 4 * d) + (2 * d * f + f + d) + 4 * d
    return vocab_size * d + num_layers * block + 2 * d
''',
    solution_answer="parameter_count",
))


# --- 6. the peak of the warm-up schedule -------------------------------------------------


def _warmup_peak(dim, warmup):
    """eq-warmup peaks where its two branches meet, at step = warmup."""
    return (warmup, dim**-0.5 * warmup**-0.5)


def _peak_cases():
    return [(512, 4000), (64, 400), (128, 1000), (32, 50)]


register(FunctionExercise(
    id="transformer/warmup-peak",
    title="The peak of the warm-up schedule",
    reference=_warmup_peak,
    cases=_peak_cases,
    rtol=1e-6,
    atol=1e-12,
    mistakes=(
        Mistake(lambda d, w: (w, w**-0.5), "Keep the factor d^-1/2 in front of the minimum."),
        Mistake(lambda d, w: (w, d**-0.5 * w**-1.5), "At step s = w the rising branch is "
                                                     "s w^-3/2 = w^-1/2: multiply by the step."),
    ),
    solution_text=r"""The first branch of {eq}`eq-warmup`, $s^{-1/2}$, falls with the step and the second,
$s\,w^{-3/2}$, rises, so the minimum of the two is largest where they meet:
$s^{-1/2} = s\,w^{-3/2} \iff s = w$. The peak is then $d^{-1/2}\,w^{-1/2}$; for the paper's
$d = 512$, $w = 4000$ about $7.0 \times 10^{-4}$.""",
    solution='''def warmup_peak(dim, warmup):
    step = warmup
    return (step, dim**-0.5 * min(step**-0.5, step * warmup**-1.5))
''',
    solution_answer="warmup_peak",
))
