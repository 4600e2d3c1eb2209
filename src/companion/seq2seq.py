"""RNN encoder-decoders: without attention, with Bahdanau's, with Luong's (book, "Global attention").

Notation of the book: source words ``x_1..x_S``, target words ``y_1..y_T``; the encoder's
annotation of source word ``j`` is ``h_j`` (size ``d_h``), the decoder's state at step ``t`` is
``z_t`` (size ``d_h``), the score of step ``t`` against word ``j`` is ``s_tj`` and its weight
``alpha_tj``.

One encoder serves all three decoders: a bidirectional GRU with ``d_h / 2`` units a direction
(``config.hidden``), whose annotation ``h_j = [h_j^fwd; h_j^bwd]`` stacks the two (eq-annotation).
The decoders differ in what they read of it:

- :class:`PlainDecoder` (Cho et al. 2014; Sutskever et al. 2014): one fixed vector
  ``c = tanh(W_0 [h_S^fwd; h_1^bwd] + b_0)`` starts the decoder and is fed to every step
  (eq-plain-decoder).
- :class:`BahdanauDecoder` (Bahdanau et al. 2015): before step ``t`` the previous state
  ``z_{t-1}`` scores every annotation with the additive score, the weights average the
  annotations into ``c_t``, and ``c_t`` enters the recurrence (eq-bahdanau-energy to
  eq-bahdanau-state).
- :class:`LuongDecoder` (Luong et al. 2015): the step runs first; its new state ``z_t`` scores
  the annotations (dot, general, concat, or the location score, which ignores them,
  eq-luong-scores), and the context is combined with ``z_t`` into the attentional state
  ``z~_t = tanh(W_c [c_t; z_t])`` that predicts the word and, with input feeding, enters the
  next step (eq-luong-state, eq-luong-attentional).

Shapes: ``src (B, S)`` ids, ``src_lengths (B,)``, ``tgt_in (B, T)`` ids; annotations
``(B, S, d_h)``; decoder state ``(B, d_h)``; logits ``(B, T, V)``; alignment weights
``(B, T, S)``, zero on padded source positions.

Two tools measure the models: :func:`input_gradient_norms` (how strongly one output's loss
depends on each source word) and :func:`encoder_jacobians` with :func:`chain_bound` (the
factors of eq-plain-gradient, for one sentence). ``Seq2Seq.forward(..., weights=...)`` runs a
decoder with attention weights imposed from outside, to ask what the weights explain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import _validate
from .attention import attend
from .masks import padding_mask
from .scoring import AdditiveScore, GeneralScore, dot_score
from .tasks.toy_translation import BOS, EOS, PAD, Split

KINDS = ("plain", "bahdanau", "luong")
LUONG_SCORES = ("dot", "general", "concat", "location")


@dataclass(frozen=True)
class Seq2SeqConfig:
    kind: str = "bahdanau"  # "plain", "bahdanau" or "luong"
    src_vocab: int = 11
    tgt_vocab: int = 13
    embed_dim: int = 32
    hidden: int = 64  # units per direction of the encoder, d_h / 2; the decoder has d_h
    attn_dim: int = 64  # d_a, the width of the additive (concat) score's hidden layer
    luong_score: str = "general"  # "dot", "general", "concat" or "location"
    input_feeding: bool = True
    max_source: int = 64  # longest source the location score can address


def check_config(config: Seq2SeqConfig) -> None:
    if not isinstance(config, Seq2SeqConfig):
        raise TypeError(f"config must be a Seq2SeqConfig, got {type(config).__name__}")
    if config.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {config.kind!r}")
    if config.luong_score not in LUONG_SCORES:
        raise ValueError(f"luong_score must be one of {LUONG_SCORES}, got {config.luong_score!r}")
    for name in ("src_vocab", "tgt_vocab", "embed_dim", "hidden", "attn_dim", "max_source"):
        _validate.positive_int(getattr(config, name), name)
    if not isinstance(config.input_feeding, bool):
        raise TypeError(f"input_feeding must be True or False, got {config.input_feeding!r}")


class Encoder(nn.Module):
    """Bidirectional GRU over embedded source words: annotations ``(B, S, d_h)`` and the
    summary ``[h_S^fwd; h_1^bwd]`` ``(B, d_h)`` of the last real word of each direction
    (eq-annotation)."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.embed = nn.Embedding(config.src_vocab, config.embed_dim, padding_idx=0)
        self.rnn = nn.GRU(config.embed_dim, config.hidden, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, src_lengths: torch.Tensor):
        """``x``: embedded source ``(B, S, E)``."""
        packed = nn.utils.rnn.pack_padded_sequence(x, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, last = self.rnn(packed)  # last: (2, B, d_h/2), the final state of each direction
        annotations, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return annotations, torch.cat([last[0], last[1]], dim=-1)  # (B, S, d_h), (B, d_h)


def _context(alpha, annotations):
    """``c = alpha H`` for weights imposed from outside: ``(B, 1, d_h)``, ``(B, 1, S)``."""
    alpha = alpha.unsqueeze(1).to(annotations.dtype)  # (B, 1, S)
    return alpha @ annotations, alpha


class PlainDecoder(nn.Module):
    """No attention: the fixed context ``c`` starts the GRU and is an input of every step
    (eq-plain-decoder)."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        D, E = 2 * config.hidden, config.embed_dim
        self.embed = nn.Embedding(config.tgt_vocab, E, padding_idx=0)
        self.init = nn.Linear(D, D)  # W_0, b_0
        self.cell = nn.GRUCell(E + D, D)
        self.out = nn.Linear(D + D + E, config.tgt_vocab)  # W_o, b_o

    def start(self, annotations, summary, mask):
        c = torch.tanh(self.init(summary))  # (B, d_h)
        return (c, c)  # state z_0 = c, and the context that stays fixed

    def step(self, y_prev, carry, annotations, mask, alpha=None):
        if alpha is not None:
            raise ValueError("the plain decoder has no attention weights to replace")
        z, c = carry
        e = self.embed(y_prev)  # (B, E)
        z = self.cell(torch.cat([e, c], -1), z)  # z_t (B, d_h)
        logits = self.out(torch.cat([z, c, e], -1))  # (B, V)
        return logits, (z, c), None


class BahdanauDecoder(nn.Module):
    """Additive attention *before* the step: ``z_{t-1}`` chooses the context ``c_t``."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        D, E = 2 * config.hidden, config.embed_dim
        self.embed = nn.Embedding(config.tgt_vocab, E, padding_idx=0)
        self.init = nn.Linear(D, D)  # W_0, b_0
        self.score = AdditiveScore(D, D, config.attn_dim)  # query z_{t-1}, keys h_j
        self.cell = nn.GRUCell(E + D, D)
        self.out = nn.Linear(D + D + E, config.tgt_vocab)  # W_o, b_o

    def start(self, annotations, summary, mask):
        keys = self.score.W_k(annotations)  # (B, S, d_a): U_a h_j does not depend on t, so once
        return torch.tanh(self.init(summary)), keys  # z_0 (B, d_h)

    def energies(self, z, keys):
        """``s_tj = v_a^T tanh(W_a z_{t-1} + U_a h_j)`` with ``U_a h_j`` precomputed: ``(B, 1, S)``
        (eq-bahdanau-energy). Equal to ``self.score(z.unsqueeze(1), annotations)``."""
        return self.score.w_v(torch.tanh(self.score.W_q(z).unsqueeze(1) + keys)).squeeze(-1).unsqueeze(1)

    def step(self, y_prev, carry, annotations, mask, alpha=None):
        z, keys = carry
        e = self.embed(y_prev)  # (B, E)
        if alpha is None:
            scores = self.energies(z, keys)  # (B, 1, S): s_tj
            c, alpha = attend(scores, annotations, mask)  # (B, 1, d_h), (B, 1, S)
        else:
            c, alpha = _context(alpha, annotations)  # weights imposed from outside
        c = c.squeeze(1)
        z = self.cell(torch.cat([e, c], -1), z)  # z_t (B, d_h)
        logits = self.out(torch.cat([z, c, e], -1))  # (B, V)
        return logits, (z, keys), alpha.squeeze(1)


class LocationScore(nn.Module):
    """Luong's *location* score ``s_t = W_a z_t`` (eq-luong-scores): one score per source
    position, computed from the decoder state alone; the annotations are not looked at.

    ``W_a`` has ``max_source`` rows, one per position; a sentence of ``S`` words uses the
    first ``S``. Returns ``(B, 1, S)`` for a query ``(B, 1, d_h)``.
    """

    def __init__(self, query_dim: int, max_source: int):
        super().__init__()
        _validate.positive_int(query_dim, "query_dim")
        _validate.positive_int(max_source, "max_source")
        self.W_a = nn.Linear(query_dim, max_source, bias=False)

    def forward(self, query: torch.Tensor, length: int) -> torch.Tensor:
        _validate.tensor(query, "query", min_dim=2)
        if query.shape[-1] != self.W_a.in_features:
            raise ValueError(f"LocationScore expects query (..., {self.W_a.in_features}), "
                             f"got {tuple(query.shape)}")
        if not 1 <= length <= self.W_a.out_features:
            raise ValueError(f"the location score addresses at most max_source={self.W_a.out_features} "
                             f"positions, got a source of length {length}")
        return self.W_a(query)[..., :length]  # (B, 1, S)


class LuongDecoder(nn.Module):
    """Global attention *after* the step: ``z_t`` chooses ``c_t``; ``z~_t = tanh(W_c[c_t; z_t])``
    (eq-luong-state, eq-luong-scores, eq-luong-attentional)."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        D, E = 2 * config.hidden, config.embed_dim
        self.feeding = config.input_feeding
        self.kind = config.luong_score
        self.embed = nn.Embedding(config.tgt_vocab, E, padding_idx=0)
        self.init = nn.Linear(D, D)  # W_0, b_0
        self.cell = nn.GRUCell(E + D if self.feeding else E, D)
        if self.kind == "general":
            self.score = GeneralScore(D, D)
        elif self.kind == "concat":
            self.score = AdditiveScore(D, D, config.attn_dim)
        elif self.kind == "location":
            self.score = LocationScore(D, config.max_source)
        self.W_c = nn.Linear(2 * D, D, bias=False)
        self.out = nn.Linear(D, config.tgt_vocab)  # W_o, b_o

    def start(self, annotations, summary, mask):
        if self.kind == "location" and annotations.shape[1] > self.score.W_a.out_features:
            raise ValueError(f"the location score addresses at most max_source="
                             f"{self.score.W_a.out_features} positions, got S={annotations.shape[1]}")
        z = torch.tanh(self.init(summary))  # z_0 (B, d_h)
        return (z, torch.zeros_like(z))  # and z~_0 = 0 for input feeding

    def scores(self, z, annotations):
        """``s_tj`` for the query ``z_t`` ``(B, d_h)``: ``(B, 1, S)`` (eq-luong-scores)."""
        q = z.unsqueeze(1)  # (B, 1, d_h)
        if self.kind == "dot":
            return dot_score(q, annotations)
        if self.kind == "location":
            return self.score(q, annotations.shape[1])
        return self.score(q, annotations)

    def step(self, y_prev, carry, annotations, mask, alpha=None):
        z, z_tilde = carry
        e = self.embed(y_prev)  # (B, E)
        z = self.cell(torch.cat([e, z_tilde], -1) if self.feeding else e, z)  # z_t (B, d_h)
        if alpha is None:
            c, alpha = attend(self.scores(z, annotations), annotations, mask)  # (B, 1, d_h), (B, 1, S)
        else:
            c, alpha = _context(alpha, annotations)  # weights imposed from outside
        z_tilde = torch.tanh(self.W_c(torch.cat([c.squeeze(1), z], -1)))  # (B, d_h)
        return self.out(z_tilde), (z, z_tilde), alpha.squeeze(1)


DECODERS = {"plain": PlainDecoder, "bahdanau": BahdanauDecoder, "luong": LuongDecoder}


def _check_inputs(src, src_lengths, tgt_in=None):
    for t, name in ((src, "src"), (src_lengths, "src_lengths"), (tgt_in, "tgt_in")):
        if t is None:
            continue
        _validate.tensor(t, name, float_=False)
        if t.dtype != torch.long:
            raise TypeError(f"{name} must hold token ids (torch.long), got dtype {t.dtype}")
    if src.dim() != 2 or src_lengths.dim() != 1 or src_lengths.shape[0] != src.shape[0]:
        raise ValueError(f"src must be (B, S) and src_lengths (B,), got src {tuple(src.shape)} "
                         f"and src_lengths {tuple(src_lengths.shape)}")
    if (src_lengths < 1).any() or (src_lengths > src.shape[1]).any():
        raise ValueError(f"src_lengths must lie in [1, {src.shape[1]}], got {src_lengths.tolist()}")
    if tgt_in is not None and (tgt_in.dim() != 2 or tgt_in.shape[0] != src.shape[0]):
        raise ValueError(f"tgt_in must be (B, T) with B={src.shape[0]}, got {tuple(tgt_in.shape)}")


def _check_weights(weights, src_lengths, S: int, T: int) -> None:
    """Imposed weights must be ``(B, T, S)`` distributions over each sentence's real words."""
    _validate.tensor(weights, "weights", min_dim=3)
    B = src_lengths.shape[0]
    if weights.shape != (B, T, S):
        raise ValueError(f"weights must be (B, T, S) = {(B, T, S)}, got {tuple(weights.shape)}")
    if torch.isnan(weights).any() or (weights < 0).any():
        raise ValueError("weights must be non-negative numbers (no NaN)")
    padded = ~padding_mask(src_lengths, S)  # (B, 1, S)
    if (weights.masked_fill(~padded, 0) != 0).any():
        raise ValueError("weights must be exactly zero on padded source positions")
    sums = weights.sum(-1)  # (B, T)
    if not torch.allclose(sums, torch.ones_like(sums), atol=1e-4):
        raise ValueError(f"each row of weights must sum to one, got sums in "
                         f"[{sums.min().item():.4g}, {sums.max().item():.4g}]")


class Seq2Seq(nn.Module):
    """Encoder plus one of the three decoders, chosen by ``config.kind``."""

    def __init__(self, config: Seq2SeqConfig = Seq2SeqConfig()):
        super().__init__()
        check_config(config)
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = DECODERS[config.kind](config)

    def forward(self, src, src_lengths, tgt_in, src_embedded=None, weights=None):
        """Teacher forcing: ``(logits (B, T, V), weights (B, T, S) or None)``.

        ``src_embedded`` ``(B, S, E)`` replaces the source embeddings, so that gradients
        with respect to the inputs can be taken (section "gradient paths").
        ``weights`` ``(B, T, S)``, each row a distribution over the sentence's real words,
        replaces the weights the decoder would compute at every step (section "what attention
        weights explain"); the scores are then not computed at all.
        """
        _check_inputs(src, src_lengths, tgt_in)
        if weights is not None:
            if self.config.kind == "plain":
                raise ValueError("the plain model has no attention weights to replace")
            _check_weights(weights, src_lengths, src.shape[1], tgt_in.shape[1])
        x = self.encoder.embed(src) if src_embedded is None else src_embedded  # (B, S, E)
        annotations, summary = self.encoder(x, src_lengths)  # (B, S, d_h), (B, d_h)
        mask = padding_mask(src_lengths, src.shape[1])  # (B, 1, S)
        carry = self.decoder.start(annotations, summary, mask)
        logits, alphas = [], []
        for t in range(tgt_in.shape[1]):
            imposed = None if weights is None else weights[:, t]  # (B, S)
            step_logits, carry, alpha = self.decoder.step(tgt_in[:, t], carry, annotations, mask, imposed)
            logits.append(step_logits)
            alphas.append(alpha)
        alphas = None if alphas[0] is None else torch.stack(alphas, 1)  # (B, T, S)
        return torch.stack(logits, 1), alphas  # (B, T, V)

    @torch.no_grad()
    def greedy(self, src, src_lengths, max_steps: int | None = None):
        """Greedy decoding: ``(ids (B, T'), weights (B, T', S) or None)``; stops at ``<eos>``."""
        _check_inputs(src, src_lengths)
        max_steps = src.shape[1] + 1 if max_steps is None else _validate.positive_int(max_steps, "max_steps")
        annotations, summary = self.encoder(self.encoder.embed(src), src_lengths)
        mask = padding_mask(src_lengths, src.shape[1])
        carry = self.decoder.start(annotations, summary, mask)
        y = torch.full((src.shape[0],), BOS, dtype=torch.long, device=src.device)  # (B,)
        done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)  # (B,)
        ids, weights = [], []
        for _ in range(max_steps):
            logits, carry, alpha = self.decoder.step(y, carry, annotations, mask)
            y = logits.argmax(-1)  # (B,)
            ids.append(y)
            weights.append(alpha)
            done |= y == EOS
            if done.all():
                break
        alphas = None if weights[0] is None else torch.stack(weights, 1)
        return torch.stack(ids, 1), alphas



def input_gradient_norms(model: Seq2Seq, src, src_lengths, tgt_in, tgt_out, step: int) -> torch.Tensor:
    """``||d loss_t / d x_j||`` for every source position ``j``: ``(B, S)`` (section "gradient paths").

    ``loss_t`` is the cross-entropy of output ``step`` (counted from 0) summed over the batch;
    ``x_j`` is the embedding of source word ``j``. Padded positions get exactly zero.
    """
    _check_inputs(src, src_lengths, tgt_in)
    if tgt_out.shape != tgt_in.shape:
        raise ValueError(f"tgt_out must have the shape of tgt_in {tuple(tgt_in.shape)}, got {tuple(tgt_out.shape)}")
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < tgt_in.shape[1]:
        raise ValueError(f"step must be an integer in [0, {tgt_in.shape[1]}), got {step!r}")
    x = model.encoder.embed(src).detach().requires_grad_(True)  # (B, S, E)
    logits, _ = model(src, src_lengths, tgt_in[:, : step + 1], src_embedded=x)  # (B, step+1, V)
    loss = torch.nn.functional.cross_entropy(logits[:, step], tgt_out[:, step], reduction="sum")
    (grad,) = torch.autograd.grad(loss, x)  # (B, S, E)
    return grad.norm(dim=-1)  # (B, S)


@dataclass
class ChainFactors:
    """The factors of one encoder direction's chain rule, for one sentence (eq-plain-gradient).

    ``states[j]`` is ``h_j`` of that direction ``(S, n)``, ``n = d_h / 2``; ``steps[j]`` is the
    step Jacobian ``d h_j / d h_prev`` ``(S, n, n)``, where ``prev`` is ``j - 1`` for the
    forward direction and ``j + 1`` for the backward one (the first step's is taken at the
    zero initial state); ``inputs[j]`` is ``d h_j / d x_j`` ``(S, n, E)``.
    """

    direction: str
    states: torch.Tensor
    steps: torch.Tensor
    inputs: torch.Tensor


def encoder_jacobians(encoder: Encoder, x: torch.Tensor) -> dict[str, ChainFactors]:
    """Run each direction of ``encoder``'s GRU step by step on one embedded sentence ``x``
    ``(S, E)`` and return its :class:`ChainFactors`, keyed ``"forward"`` and ``"backward"``.

    The steps use the encoder's own weights through ``nn.GRUCell``, so ``states`` equal the
    two halves of the encoder's annotations.
    """
    if not isinstance(encoder, Encoder):
        raise TypeError(f"encoder must be a companion Encoder, got {type(encoder).__name__}")
    _validate.tensor(x, "x")
    rnn = encoder.rnn
    if x.dim() != 2 or x.shape[1] != rnn.input_size:
        raise ValueError(f"x must be one embedded sentence (S, {rnn.input_size}), got {tuple(x.shape)}")
    x = x.detach().to(rnn.weight_ih_l0.dtype)
    n, S = rnn.hidden_size, x.shape[0]
    jacobian = torch.autograd.functional.jacobian
    factors = {}
    for direction, suffix in (("forward", ""), ("backward", "_reverse")):
        cell = nn.GRUCell(rnn.input_size, n).to(x.dtype)
        with torch.no_grad():
            for name in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
                getattr(cell, name).copy_(getattr(rnn, f"{name}_l0{suffix}"))
        order = range(S) if direction == "forward" else range(S - 1, -1, -1)
        h = torch.zeros(n, dtype=x.dtype)
        states = torch.zeros(S, n, dtype=x.dtype)
        steps = torch.zeros(S, n, n, dtype=x.dtype)
        inputs = torch.zeros(S, n, x.shape[1], dtype=x.dtype)
        for j in order:
            steps[j] = jacobian(lambda prev: cell(x[j], prev), h)  # (n, n)
            inputs[j] = jacobian(lambda xj: cell(xj, h), x[j])  # (n, E)
            with torch.no_grad():
                h = cell(x[j], h)  # (n,)
            states[j] = h
        factors[direction] = ChainFactors(direction, states, steps, inputs)
    return factors


def chain_bound(factors: ChainFactors, j: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The chain from source word ``j`` to the last state of one direction (eq-plain-gradient).

    Returns ``(jacobian, gammas, bound)``: the exact product ``d h_end / d x_j`` ``(n, E)`` of
    the step Jacobians and the input Jacobian (``h_end`` is ``h_S`` forward, ``h_1`` backward),
    the spectral norms ``gamma_k`` of the step Jacobians on the chain (``S - 1 - j`` of them
    forward, ``j`` backward, positions counted from 0), and the bound
    ``prod_k gamma_k * ||d h_j / d x_j||`` on the spectral norm of the product.
    """
    if not isinstance(factors, ChainFactors):
        raise TypeError(f"factors must be ChainFactors, got {type(factors).__name__}")
    S = factors.states.shape[0]
    if isinstance(j, bool) or not isinstance(j, int) or not 0 <= j < S:
        raise ValueError(f"j must be an integer in [0, {S}), got {j!r}")
    chain = range(j + 1, S) if factors.direction == "forward" else range(j - 1, -1, -1)
    product = factors.inputs[j]  # (n, E)
    gammas = []
    for k in chain:  # multiply on the left, from the step after j to the last step
        product = factors.steps[k] @ product
        gammas.append(torch.linalg.matrix_norm(factors.steps[k], ord=2))
    gammas = torch.stack(gammas) if gammas else torch.zeros(0, dtype=product.dtype)
    bound = gammas.prod() * torch.linalg.matrix_norm(factors.inputs[j], ord=2)
    return product, gammas, bound


def predict(model: Seq2Seq, split: Split) -> torch.Tensor:
    """Greedy translations as ids ``(N, T)`` aligned with ``split.tgt_out``; PAD after ``<eos>``."""
    ids, _ = model.greedy(split.src, split.src_lengths)  # (N, T')
    T = split.tgt_out.shape[1]
    pred = torch.full((len(split), T), PAD, dtype=torch.long, device=ids.device)
    k = min(T, ids.shape[1])
    pred[:, :k] = ids[:, :k]
    is_eos = (pred == EOS).long()
    pred[(is_eos.cumsum(1) - is_eos) > 0] = PAD  # drop everything after the first <eos>
    return pred


@torch.no_grad()
def evaluate(model: Seq2Seq, split: Split) -> dict:
    """``exact_match``, ``token_accuracy`` and exact match by source length (``by_length``)."""
    model.eval()
    pred = predict(model, split)  # (N, T)
    ref = split.tgt_out  # (N, T)
    real = ref != PAD
    exact = ((pred == ref) | ~real).all(1)  # (N,); a prediction longer than ref fails at ref's <eos>
    lengths = sorted(set(split.src_lengths.tolist()))
    by_length = {L: exact[split.src_lengths == L].double().mean().item() for L in lengths}
    return {
        "exact_match": exact.double().mean().item(),
        "token_accuracy": (((pred == ref) & real).sum() / real.sum()).item(),
        "by_length": by_length,
    }
