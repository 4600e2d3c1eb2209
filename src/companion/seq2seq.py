"""RNN encoder-decoders for chapter 3: without attention, with Bahdanau's, with Luong's.

One encoder serves all three: a bidirectional GRU whose annotation of source word ``j`` is
``h_j = [h_j^fwd; h_j^bwd]`` (size ``2H``, eq-annotation). The decoders differ in what
they read of it:

- :class:`PlainDecoder` (Cho et al. 2014; Sutskever et al. 2014): one fixed vector
  ``c = tanh(W_c [h_S^fwd; h_1^bwd])`` starts the decoder and is fed to every step (eq-plain-decoder).
- :class:`BahdanauDecoder` (Bahdanau et al. 2015): before step ``i`` the previous state
  ``s_{i-1}`` scores every annotation with the additive score, the weights average the
  annotations into ``c_i``, and ``c_i`` enters the recurrence (eqs. 3.energy-3.bahdanau-state).
- :class:`LuongDecoder` (Luong et al. 2015): the step runs first; its new state ``h_t``
  scores the annotations (dot, general or concat), and the context is combined with ``h_t``
  into the attentional state ``h~_t = tanh(W_c [c_t; h_t])`` that predicts the word and, with
  input feeding, enters the next step (eqs. 3.luong-state-3.input-feeding).

Shapes: ``src (B, S)`` ids, ``src_lengths (B,)``, ``tgt_in (B, T)`` ids; annotations
``(B, S, 2H)``; decoder state ``(B, D)`` with ``D = 2H``; logits ``(B, T, V)``; alignment
weights ``(B, T, S)``, zero on padded source positions.
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
LUONG_SCORES = ("dot", "general", "concat")


@dataclass(frozen=True)
class Seq2SeqConfig:
    kind: str = "bahdanau"  # "plain", "bahdanau" or "luong"
    src_vocab: int = 11
    tgt_vocab: int = 13
    embed_dim: int = 32
    hidden: int = 64  # H, per direction of the encoder; the decoder has D = 2H
    attn_dim: int = 64  # width of the additive (concat) score's hidden layer
    luong_score: str = "general"
    input_feeding: bool = True


def check_config(config: Seq2SeqConfig) -> None:
    if not isinstance(config, Seq2SeqConfig):
        raise TypeError(f"config must be a Seq2SeqConfig, got {type(config).__name__}")
    if config.kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {config.kind!r}")
    if config.luong_score not in LUONG_SCORES:
        raise ValueError(f"luong_score must be one of {LUONG_SCORES}, got {config.luong_score!r}")
    for name in ("src_vocab", "tgt_vocab", "embed_dim", "hidden", "attn_dim"):
        _validate.positive_int(getattr(config, name), name)
    if not isinstance(config.input_feeding, bool):
        raise TypeError(f"input_feeding must be True or False, got {config.input_feeding!r}")


class Encoder(nn.Module):
    """Bidirectional GRU over embedded source words: annotations ``(B, S, 2H)`` and the
    summary ``[h_S^fwd; h_1^bwd]`` ``(B, 2H)`` of the last real word of each direction."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        self.embed = nn.Embedding(config.src_vocab, config.embed_dim, padding_idx=0)
        self.rnn = nn.GRU(config.embed_dim, config.hidden, batch_first=True, bidirectional=True)

    def forward(self, x: torch.Tensor, src_lengths: torch.Tensor):
        """``x``: embedded source ``(B, S, E)``."""
        packed = nn.utils.rnn.pack_padded_sequence(x, src_lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, last = self.rnn(packed)  # last: (2, B, H), the final state of each direction
        annotations, _ = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=x.shape[1])
        return annotations, torch.cat([last[0], last[1]], dim=-1)  # (B, S, 2H), (B, 2H)


class PlainDecoder(nn.Module):
    """No attention: the fixed context ``c`` starts the GRU and is an input of every step."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        D, E = 2 * config.hidden, config.embed_dim
        self.embed = nn.Embedding(config.tgt_vocab, E, padding_idx=0)
        self.init = nn.Linear(D, D)
        self.cell = nn.GRUCell(E + D, D)
        self.out = nn.Linear(D + D + E, config.tgt_vocab)

    def start(self, annotations, summary, mask):
        c = torch.tanh(self.init(summary))  # (B, D)
        return (c, c)  # state s_0 = c, and the context that stays fixed

    def step(self, y_prev, carry, annotations, mask):
        s, c = carry
        e = self.embed(y_prev)  # (B, E)
        s = self.cell(torch.cat([e, c], -1), s)  # (B, D)
        logits = self.out(torch.cat([s, c, e], -1))  # (B, V)
        return logits, (s, c), None


class BahdanauDecoder(nn.Module):
    """Additive attention *before* the step: ``s_{i-1}`` chooses the context ``c_i``."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        D, E = 2 * config.hidden, config.embed_dim
        self.embed = nn.Embedding(config.tgt_vocab, E, padding_idx=0)
        self.init = nn.Linear(D, D)
        self.score = AdditiveScore(D, D, config.attn_dim)  # query s_{i-1}, keys h_j
        self.cell = nn.GRUCell(E + D, D)
        self.out = nn.Linear(D + D + E, config.tgt_vocab)

    def start(self, annotations, summary, mask):
        keys = self.score.W_k(annotations)  # (B, S, A): U_a h_j does not depend on i, so once
        return torch.tanh(self.init(summary)), keys  # s_0 (B, D)

    def energies(self, s, keys):
        """``e_ij = v_a^T tanh(W_a s_{i-1} + U_a h_j)`` with ``U_a h_j`` precomputed: ``(B, 1, S)``.
        Equal to ``self.score(s.unsqueeze(1), annotations)``."""
        return self.score.w_v(torch.tanh(self.score.W_q(s).unsqueeze(1) + keys)).squeeze(-1).unsqueeze(1)

    def step(self, y_prev, carry, annotations, mask):
        s, keys = carry
        e = self.embed(y_prev)  # (B, E)
        scores = self.energies(s, keys)  # (B, 1, S): e_ij
        c, alpha = attend(scores, annotations, mask)  # (B, 1, D), (B, 1, S)
        c = c.squeeze(1)
        s = self.cell(torch.cat([e, c], -1), s)  # s_i (B, D)
        logits = self.out(torch.cat([s, c, e], -1))  # (B, V)
        return logits, (s, keys), alpha.squeeze(1)


class LuongDecoder(nn.Module):
    """Global attention *after* the step: ``h_t`` chooses ``c_t``; ``h~_t = tanh(W_c[c_t; h_t])``."""

    def __init__(self, config: Seq2SeqConfig):
        super().__init__()
        D, E = 2 * config.hidden, config.embed_dim
        self.feeding = config.input_feeding
        self.kind = config.luong_score
        self.embed = nn.Embedding(config.tgt_vocab, E, padding_idx=0)
        self.init = nn.Linear(D, D)
        self.cell = nn.GRUCell(E + D if self.feeding else E, D)
        if self.kind == "general":
            self.score = GeneralScore(D, D)
        elif self.kind == "concat":
            self.score = AdditiveScore(D, D, config.attn_dim)
        self.W_c = nn.Linear(2 * D, D, bias=False)
        self.out = nn.Linear(D, config.tgt_vocab)

    def start(self, annotations, summary, mask):
        h = torch.tanh(self.init(summary))  # h_0 (B, D)
        return (h, torch.zeros_like(h))  # and h~_0 = 0 for input feeding

    def step(self, y_prev, carry, annotations, mask):
        h, h_tilde = carry
        e = self.embed(y_prev)  # (B, E)
        h = self.cell(torch.cat([e, h_tilde], -1) if self.feeding else e, h)  # h_t (B, D)
        q = h.unsqueeze(1)  # (B, 1, D)
        scores = dot_score(q, annotations) if self.kind == "dot" else self.score(q, annotations)  # (B, 1, S)
        c, alpha = attend(scores, annotations, mask)  # (B, 1, D), (B, 1, S)
        h_tilde = torch.tanh(self.W_c(torch.cat([c.squeeze(1), h], -1)))  # (B, D)
        return self.out(h_tilde), (h, h_tilde), alpha.squeeze(1)


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


class Seq2Seq(nn.Module):
    """Encoder plus one of the three decoders, chosen by ``config.kind``."""

    def __init__(self, config: Seq2SeqConfig = Seq2SeqConfig()):
        super().__init__()
        check_config(config)
        self.config = config
        self.encoder = Encoder(config)
        self.decoder = DECODERS[config.kind](config)

    def forward(self, src, src_lengths, tgt_in, src_embedded=None):
        """Teacher forcing: ``(logits (B, T, V), weights (B, T, S) or None)``.

        ``src_embedded`` ``(B, S, E)`` replaces the source embeddings, so that gradients
        with respect to the inputs can be taken (section "gradient paths").
        """
        _check_inputs(src, src_lengths, tgt_in)
        x = self.encoder.embed(src) if src_embedded is None else src_embedded  # (B, S, E)
        annotations, summary = self.encoder(x, src_lengths)  # (B, S, D), (B, D)
        mask = padding_mask(src_lengths, src.shape[1])  # (B, 1, S)
        carry = self.decoder.start(annotations, summary, mask)
        logits, weights = [], []
        for t in range(tgt_in.shape[1]):
            step_logits, carry, alpha = self.decoder.step(tgt_in[:, t], carry, annotations, mask)
            logits.append(step_logits)
            weights.append(alpha)
        alphas = None if weights[0] is None else torch.stack(weights, 1)  # (B, T, S)
        return torch.stack(logits, 1), alphas  # (B, T, V)

    @torch.no_grad()
    def greedy(self, src, src_lengths, max_steps: int | None = None):
        """Greedy decoding: ``(ids (B, T'), weights (B, T', S) or None)``; stops at ``<eos>``."""
        _check_inputs(src, src_lengths)
        max_steps = src.shape[1] + 1 if max_steps is None else _validate.positive_int(max_steps, "max_steps")
        annotations, summary = self.encoder(self.encoder.embed(src), src_lengths)
        mask = padding_mask(src_lengths, src.shape[1])
        carry = self.decoder.start(annotations, summary, mask)
        y = torch.full((src.shape[0],), BOS, dtype=torch.long)
        done = torch.zeros(src.shape[0], dtype=torch.bool)
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

    ``loss_t`` is the cross-entropy of output ``step`` summed over the batch; ``x_j`` is the
    embedding of source word ``j``. Padded positions get exactly zero.
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
