"""Exercises of the chapter on local and hard attention: local-p's weights, the REINFORCE
estimate and the variance-optimal baseline (two derivations), a Gumbel-max sampler, and soft
attention pooling over an image grid."""

from __future__ import annotations

import math

import torch

from .checker import FunctionExercise, Mistake, _describe, register

# --- 1. local-p's weights ---------------------------------------------------------------


def _local_p(scores, p, D):
    """eq-local-weights for one step: softmax over |j - p| <= D, times the Gaussian."""
    j = torch.arange(len(scores), dtype=scores.dtype)
    inside = (j - p).abs() <= D
    soft = torch.softmax(scores.masked_fill(~inside, float("-inf")), 0)
    return soft * torch.exp(-(j - p) ** 2 / (2 * (D / 2) ** 2))


def _local_p_renormalised(scores, p, D):
    w = _local_p(scores, p, D)
    return w / w.sum()


def _local_p_global_softmax(scores, p, D):
    j = torch.arange(len(scores), dtype=scores.dtype)
    inside = ((j - p).abs() <= D).to(scores.dtype)
    return torch.softmax(scores, 0) * inside * torch.exp(-(j - p) ** 2 / (2 * (D / 2) ** 2))


def _local_p_sigma_d(scores, p, D):
    j = torch.arange(len(scores), dtype=scores.dtype)
    inside = (j - p).abs() <= D
    soft = torch.softmax(scores.masked_fill(~inside, float("-inf")), 0)
    return soft * torch.exp(-(j - p) ** 2 / (2 * D**2))


def _local_p_rounded(scores, p, D):
    return _local_p(scores, float(round(p)), D)


def _local_p_cases():
    g = torch.Generator().manual_seed(11)
    cases = []
    # (11, 5.0, 2): an integer centre puts positions exactly at |j - p| = D, inside the window
    for S, p, D in ((9, 3.4, 2), (12, 7.75, 3), (6, 0.3, 1), (10, 9.6, 2), (15, 6.5, 4),
                    (11, 5.0, 2)):
        cases.append((torch.randn(S, generator=g, dtype=torch.float64) * 2, p, D))
    return cases


register(FunctionExercise(
    id="local_hard/local-p-weights",
    title="local-p's weights",
    reference=_local_p,
    cases=_local_p_cases,
    rtol=1e-6,
    atol=1e-9,
    mistakes=(
        Mistake(_local_p_renormalised, "Luong et al. do not renormalise after the Gaussian: the weights "
                                       "inside the window sum to less than one, and that is intended."),
        Mistake(_local_p_global_softmax, "Normalise over the window only: the softmax's denominator sums "
                                         "exp(s_j) over |j - p_t| <= D, not over every position."),
        Mistake(_local_p_sigma_d, "The Gaussian's width is sigma = D / 2, so its exponent is "
                                  "-(j - p_t)^2 / (2 (D/2)^2) = -2 (j - p_t)^2 / D^2."),
        Mistake(_local_p_rounded, "Keep p_t real-valued: the window is |j - p_t| <= D with the real "
                                  "p_t, and the Gaussian is centred at it too (that is what gives p_t "
                                  "a gradient)."),
    ),
    solution_text=r"""Mask the scores outside $|j - p_t| \le D$ with $-\infty$, take the softmax (it now
normalises over the window only), and multiply by the Gaussian with $\sigma = D/2$, whose
exponent is $-(j - p_t)^2 / (2\sigma^2) = -2 (j - p_t)^2 / D^2$. No renormalisation.""",
    solution='''def local_p_weights(scores, p, D):
    j = torch.arange(len(scores), dtype=scores.dtype)
    inside = (j - p).abs() <= D
    soft = torch.softmax(scores.masked_fill(~inside, float("-inf")), 0)
    return soft * torch.exp(-2 * (j - p) ** 2 / D**2)
''',
    solution_answer="local_p_weights",
))


# --- 2. the REINFORCE estimate for a categorical distribution ---------------------------

def _reinforce(theta, reward, j):
    """The one-sample score-function estimate R_j (e_j - softmax(theta)) of grad E[R]."""
    p = torch.softmax(theta, 0)
    e = torch.zeros_like(theta)
    e[j] = 1.0
    return reward[j] * (e - p)


def _reinforce_no_normaliser(theta, reward, j):
    e = torch.zeros_like(theta)
    e[j] = 1.0
    return reward[j] * e


def _reinforce_prob_not_log(theta, reward, j):
    p = torch.softmax(theta, 0)
    e = torch.zeros_like(theta)
    e[j] = 1.0
    return reward[j] * p[j] * (e - p)


def _reinforce_exact(theta, reward, j):
    p = torch.softmax(theta, 0)
    return p * (reward - p @ reward)


def _reinforce_cases():
    g = torch.Generator().manual_seed(12)
    cases = []
    for K, j in ((4, 2), (3, 0), (6, 5), (5, 1)):
        cases.append((torch.randn(K, generator=g, dtype=torch.float64),
                      torch.randn(K, generator=g, dtype=torch.float64) * 3, j))
    return cases


register(FunctionExercise(
    id="local_hard/reinforce-estimate",
    title="The REINFORCE estimate",
    reference=_reinforce,
    cases=_reinforce_cases,
    rtol=1e-6,
    atol=1e-9,
    forbid=("autograd",),
    mistakes=(
        Mistake(_reinforce_no_normaliser, "You differentiated theta_j only. log p_j = theta_j - log sum_k "
                                          "exp(theta_k) also depends on every theta_k through the "
                                          "normaliser: its gradient is e_j - p."),
        Mistake(_reinforce_prob_not_log, "The estimator uses the gradient of log p_j, not of p_j: "
                                         "grad p_j = p_j grad log p_j, and the p_j cancels against "
                                         "sampling j with probability p_j."),
        Mistake(_reinforce_exact, "That is the exact gradient, the expectation over j. The exercise asks "
                                  "for the estimate from the one sampled j."),
    ),
    solution_text=r"""With $p = \operatorname{softmax}(\theta)$, $\log p_j = \theta_j - \log\sum_k e^{\theta_k}$, so
$\partial \log p_j / \partial \theta_k = \mathbb{1}[k = j] - p_k$, the vector $\mathbf{e}_j - \mathbf{p}$.
{eq}`eq-reinforce` with $b = 0$ and one sample gives $R_j(\mathbf{e}_j - \mathbf{p})$. Its expectation,
$\sum_j p_j R_j (\mathbf{e}_j - \mathbf{p}) = \mathbf{p} \odot \mathbf{R} - \mathbf{p}\,(\mathbf{p}^\top \mathbf{R})$,
is the gradient of $\mathbf{p}^\top\mathbf{R}$, as the code checks.""",
    solution='''def reinforce_estimate(theta, reward, j):
    p = torch.exp(theta - theta.max())
    p = p / p.sum()
    e = torch.zeros_like(theta)
    e[j] = 1.0
    return reward[j] * (e - p)


theta_ = torch.tensor([0.2, -1.0, 0.7], dtype=torch.float64)
reward_ = torch.tensor([1.0, 3.0, -2.0], dtype=torch.float64)
p_ = torch.softmax(theta_, 0)
expected_ = sum(p_[j] * reinforce_estimate(theta_, reward_, j) for j in range(3))
torch.testing.assert_close(expected_, p_ * reward_ - p_ * (p_ @ reward_))
''',
    solution_answer="reinforce_estimate",
))


# --- 3. the variance-optimal constant baseline ------------------------------------------

def _optimal_baseline(theta, reward):
    """b* = E[R ||g||^2] / E[||g||^2], g = e_j - p, minimises the total variance."""
    p = torch.softmax(theta, 0)
    g2 = ((torch.eye(len(theta), dtype=theta.dtype) - p) ** 2).sum(1)  # ||e_j - p||^2, (K,)
    return (p * reward * g2).sum() / (p * g2).sum()


def _mean_reward(theta, reward):
    return torch.softmax(theta, 0) @ reward


def _plain_mean(theta, reward):
    return reward.mean()


def _baseline_cases():
    g = torch.Generator().manual_seed(13)
    return [(torch.randn(K, generator=g, dtype=torch.float64) * 1.5,
             torch.randn(K, generator=g, dtype=torch.float64) * 2 + 1) for K in (3, 4, 6, 2)]


register(FunctionExercise(
    id="local_hard/optimal-baseline",
    title="The variance-optimal constant baseline",
    reference=_optimal_baseline,
    cases=_baseline_cases,
    rtol=1e-6,
    atol=1e-9,
    mistakes=(
        Mistake(_mean_reward, "The mean reward E[R] is the usual, good choice, but not the minimiser: the "
                              "variance weighs each reward by ||grad log p_j||^2, so the optimum is a "
                              "weighted mean of the rewards."),
        Mistake(_plain_mean, "Average under the policy: the expectation is over j ~ p, and the variance "
                             "weighs each reward by ||grad log p_j||^2 as well."),
    ),
    solution_text=r"""Write $\mathbf{g}_j = \nabla \log p_j = \mathbf{e}_j - \mathbf{p}$. The estimate is
$(R_j - b)\mathbf{g}_j$; its mean does not depend on $b$ (because $\mathbb{E}[\mathbf{g}_j] = 0$), so
minimising the total variance means minimising the second moment
$\mathbb{E}[(R_j - b)^2 \lVert\mathbf{g}_j\rVert^2]$. Setting its derivative in $b$,
$-2\,\mathbb{E}[(R_j - b)\lVert\mathbf{g}_j\rVert^2]$, to zero gives
$b^* = \mathbb{E}[R_j \lVert\mathbf{g}_j\rVert^2] / \mathbb{E}[\lVert\mathbf{g}_j\rVert^2]$: the mean reward
weighted by the squared norm of the score.""",
    solution='''def optimal_baseline(theta, reward):
    p = torch.softmax(theta, 0)
    g = torch.eye(len(theta), dtype=theta.dtype) - p  # row j: e_j - p
    g2 = (g**2).sum(1)  # ||g_j||^2
    return (p * reward * g2).sum() / (p * g2).sum()
''',
    solution_answer="optimal_baseline",
))


# --- 4. a Gumbel-max sampler ------------------------------------------------------------

def _gumbel_max(logits, u):
    """argmax_k (l_k - log(-log u_k)) for each row: (N,) long."""
    return (logits - torch.log(-torch.log(u))).argmax(-1)


def _plus_log_u(logits, u):
    return (logits + torch.log(u)).argmax(-1)


def _plus_u(logits, u):
    return (logits + u).argmax(-1)


def _no_noise(logits, u):
    return logits.argmax(-1).expand(u.shape[:-1]).clone()


def _gumbel_cases():
    g = torch.Generator().manual_seed(14)
    cases = []
    for N, K in ((2000, 4), (500, 3), (3000, 6)):
        logits = (torch.randn(K, generator=g, dtype=torch.float64) * 1.5).expand(N, K).clone()
        u = torch.rand(N, K, generator=g, dtype=torch.float64).clamp_min(1e-300)
        cases.append((logits, u))
    return cases


def _frequency_problem(answer) -> str | None:
    """None when ``answer`` samples like softmax(logits); otherwise what is wrong.

    Any correct sampler passes (``-log(-log u)`` or ``-log(-log(1 - u))``, ...): the check runs
    it on 40 000 rows of uniforms for two logit vectors and compares the frequencies with the
    softmax (a standard error of at most 0.0025; the tolerance is 0.012). It must be a function
    of ``u``: the same ``u`` twice gives the same samples."""
    g = torch.Generator().manual_seed(15)
    for logits in (torch.tensor([1.0, -0.5, 0.3, 2.0], dtype=torch.float64),
                   torch.tensor([0.0, 0.0, -1.0, 1.5, 0.5, -2.0], dtype=torch.float64)):
        K = len(logits)
        many = logits.expand(40_000, K).clone()  # (N, K)
        u = torch.rand(40_000, K, generator=g, dtype=torch.float64).clamp_min(1e-300)  # (N, K)
        samples = torch.as_tensor(answer(many, u.clone()))
        if samples.shape != (40_000,) or samples.is_floating_point() or samples.dtype == torch.bool:
            return (f"for logits (40000, {K}) the function must return integer categories of shape "
                    f"(40000,), got {_describe(samples)}")
        if samples.min() < 0 or samples.max() >= K:
            return f"the categories must lie in [0, {K}), got values in [{int(samples.min())}, {int(samples.max())}]"
        again = torch.as_tensor(answer(many, u.clone()))
        if not torch.equal(samples, again):
            return "the samples must be a function of u: the same u twice gave different samples"
        frequencies = torch.bincount(samples.long(), minlength=K) / 40_000.0  # (K,)
        gap = (frequencies - torch.softmax(logits, 0)).abs().max().item()
        if gap > 0.012:
            return (f"over 40000 draws for logits {logits.tolist()} the frequencies of your samples "
                    f"are {[round(f, 3) for f in frequencies.tolist()]}, which do not match softmax(logits)")
    return None


class _GumbelExercise(FunctionExercise):
    """A sampler is right when it samples right: the check tests its frequencies (and that it
    runs on the hidden cases), not its formula, so every correct sampler passes."""

    def _first_problem(self, answer) -> str | None:
        if not callable(answer):
            return f"expected a function, got {_describe(answer)}"
        try:
            return _frequency_problem(answer)
        except NotImplementedError:
            return "the function is not written yet (it raises NotImplementedError)."
        except Exception as error:  # the reader's code may raise anything
            return f"on logits (40000, K) and u (40000, K) the function raised {type(error).__name__}: {error}"

    def check(self, answer):
        feedback = super().check(answer)
        if feedback:
            feedback.message = (f"{self.title}: over 40000 draws for each of two logit vectors, your "
                                "samples' frequencies match softmax(logits).")
        return feedback


register(_GumbelExercise(
    id="local_hard/gumbel-max",
    title="A Gumbel-max sampler",
    reference=_gumbel_max,
    cases=_gumbel_cases,
    rtol=0,
    atol=0,
    mistakes=(
        Mistake(_plus_log_u, "log u is not Gumbel noise (it is minus an exponential variable). A standard "
                             "Gumbel is -log(-log u)."),
        Mistake(_plus_u, "Uniform noise added to the logits does not give softmax frequencies; the noise "
                         "must be Gumbel, -log(-log u)."),
        Mistake(_no_noise, "Without noise the argmax is always the largest logit: add Gumbel noise "
                           "-log(-log u) to each logit first."),
    ),
    solution_text=r"""Turn each uniform into a standard Gumbel variable, $g = -\log(-\log u)$, add it to the
logits and take the argmax. The chance that category $k$ wins is
$\operatorname{softmax}(\mathbf{l})_k$, the Gumbel-max trick behind {eq}`eq-gumbel-softmax`.""",
    solution='''def gumbel_max(logits, u):
    g = -torch.log(-torch.log(u))  # standard Gumbel noise
    return (logits + g).argmax(-1)
''',
    solution_answer="gumbel_max",
))


# --- 5. soft attention pooling over an image grid ---------------------------------------

def _pool(features, query):
    """features (C, H, W), query (C,) -> (glimpse (C,), weights (H, W)), scaled dot product."""
    C, H, W = features.shape
    cells = features.reshape(C, H * W).T  # (H*W, C)
    weights = torch.softmax(cells @ query / math.sqrt(C), 0)  # (H*W,)
    return weights @ cells, weights.reshape(H, W)


def _pool_unscaled(features, query):
    C, H, W = features.shape
    cells = features.reshape(C, H * W).T
    weights = torch.softmax(cells @ query, 0)
    return weights @ cells, weights.reshape(H, W)


def _pool_over_channels(features, query):
    C, H, W = features.shape
    weights = torch.softmax(features * query[:, None, None] / math.sqrt(C), 0)  # over channels
    return (weights * features).sum((1, 2)), weights.sum(0)


def _pool_transposed(features, query):
    glimpse, weights = _pool(features, query)
    return glimpse, weights.T.reshape(features.shape[1], features.shape[2])


def _pool_cases():
    g = torch.Generator().manual_seed(16)
    return [(torch.randn(C, H, W, generator=g, dtype=torch.float64) * 2,
             torch.randn(C, generator=g, dtype=torch.float64)) for C, H, W in ((4, 3, 3), (6, 4, 5), (3, 5, 2))]


register(FunctionExercise(
    id="local_hard/soft-pooling",
    title="Soft attention pooling over an image grid",
    reference=_pool,
    cases=_pool_cases,
    rtol=1e-6,
    atol=1e-9,
    mistakes=(
        Mistake(_pool_unscaled, "Divide the dot products by sqrt(C), the scaled dot-product score."),
        Mistake(_pool_over_channels, "The softmax runs over the H * W cells (the keys), not over the "
                                     "channels: each cell gets one weight."),
        Mistake(_pool_transposed, "Flatten and unflatten the cells in the same (row-major) order: cell "
                                  "(r, c) is number r * W + c."),
    ),
    solution_text=r"""Each cell $(r, c)$ of the grid is a key and a value, the column
`features[:, r, c]`. Flatten the grid into $HW$ rows (row-major), score each row against the
query with $\mathbf{k}^\top\mathbf{q}/\sqrt{C}$, take the softmax over the $HW$ cells, and average the rows
with those weights.""",
    solution='''def soft_pool(features, query):
    C, H, W = features.shape
    cells = features.reshape(C, H * W).T  # (H*W, C), row-major cells
    weights = torch.softmax(cells @ query / math.sqrt(C), 0)  # (H*W,)
    return weights @ cells, weights.reshape(H, W)
''',
    solution_answer="soft_pool",
))
