"""An encoder-decoder with Luong's local attention (local-m and local-p).

The encoder is chapter 3's bidirectional GRU (:class:`companion.seq2seq.Encoder`). The decoder
is Luong's (the step first, then attention with the new state ``z_t`` as the query, the
attentional state ``z~_t = tanh(W_c [c_t; z_t])``, input feeding), with the global softmax
replaced by :func:`companion.local.local_weights`:

- ``local-m``: the window's centre is the decoder step, ``p_t = t`` (positions from 0), and the
  weights are the plain softmax inside the window (eq-local-m-weights), as in the paper;
- ``local-p``: ``p_t = S * sigmoid(v_p^T tanh(W_p z_t))`` (eq-local-p), ``S`` the source's real
  length, and the windowed softmax is multiplied by the Gaussian (eq-local-weights).

The score is Luong's *general* score ``z_t^T W_a h_j``. Shapes as in :mod:`companion.seq2seq`:
``src (B, S)``, annotations ``(B, S, D)``, weights ``(B, T, S)``, centres ``(B, T)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from . import _validate
from .local import PredictiveCenter, local_weights
from .scoring import GeneralScore
from .seq2seq import Encoder, Seq2Seq, Seq2SeqConfig, _check_inputs
from .tasks.toy_translation import BOS, EOS

LOCAL_KINDS = ("local-m", "local-p")


@dataclass(frozen=True)
class LocalSeq2SeqConfig:
    kind: str = "local-p"  # "local-m" or "local-p"
    half_width: int = 2  # D: the window holds 2D + 1 positions
    src_vocab: int = 11
    tgt_vocab: int = 13
    embed_dim: int = 32
    hidden: int = 32  # per direction of the encoder; the decoder state has 2 * hidden
    center_hidden: int = 32  # width of W_p in eq-local-p


def check_config(config: LocalSeq2SeqConfig) -> None:
    if not isinstance(config, LocalSeq2SeqConfig):
        raise TypeError(f"config must be a LocalSeq2SeqConfig, got {type(config).__name__}")
    if config.kind not in LOCAL_KINDS:
        raise ValueError(f"kind must be one of {LOCAL_KINDS}, got {config.kind!r}")
    for name in ("half_width", "src_vocab", "tgt_vocab", "embed_dim", "hidden", "center_hidden"):
        _validate.positive_int(getattr(config, name), name)


class LocalDecoder(nn.Module):
    """Luong's decoder with a window: ``step`` returns ``(logits, carry, weights)`` like the
    decoders of :mod:`companion.seq2seq`; the carry also holds the step ``t`` and the last
    centre ``p_t``, so that :func:`decode` can draw the window."""

    def __init__(self, config: LocalSeq2SeqConfig):
        super().__init__()
        D, E = 2 * config.hidden, config.embed_dim
        self.kind = config.kind
        self.half_width = config.half_width
        self.embed = nn.Embedding(config.tgt_vocab, E, padding_idx=0)
        self.init = nn.Linear(D, D)
        self.cell = nn.GRUCell(E + D, D)
        self.score = GeneralScore(D, D)
        self.center = PredictiveCenter(D, config.center_hidden) if config.kind == "local-p" else None
        self.W_c = nn.Linear(2 * D, D, bias=False)
        self.out = nn.Linear(D, config.tgt_vocab)

    def start(self, annotations, summary, mask):
        z = torch.tanh(self.init(summary))  # z_0 (B, D)
        t = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)  # (B,)
        return (z, torch.zeros_like(z), t, t)  # state, attentional state, step, centre

    def centre(self, z, t, mask):
        """``p_t`` ``(B,)``: the step itself (local-m) or eq-local-p (local-p)."""
        if self.center is None:
            return t
        lengths = mask.sum(-1).squeeze(-1)  # (B,) real source length
        return self.center(z, lengths)  # (B,)

    def step(self, y_prev, carry, annotations, mask, alpha=None):
        """One decoder step; ``alpha (B, S)``, when given, replaces the local weights (as in
        :meth:`companion.seq2seq.Seq2Seq.forward`'s ``weights=``)."""
        z, z_tilde, t, _ = carry
        e = self.embed(y_prev)  # (B, E)
        z = self.cell(torch.cat([e, z_tilde], -1), z)  # z_t (B, D)
        p = self.centre(z, t, mask)  # (B,)
        if alpha is None:
            scores = self.score(z.unsqueeze(1), annotations).squeeze(1)  # (B, S)
            alpha = local_weights(scores, p, self.half_width, mask=mask.squeeze(1),
                                  gaussian=self.kind == "local-p")  # (B, S): no Gaussian for local-m
        c = (alpha.unsqueeze(1) @ annotations).squeeze(1)  # (B, D)
        z_tilde = torch.tanh(self.W_c(torch.cat([c, z], -1)))  # (B, D)
        return self.out(z_tilde), (z, z_tilde, t + 1, p), alpha


class LocalSeq2Seq(Seq2Seq):
    """Chapter 3's encoder with a :class:`LocalDecoder`; ``forward``, ``greedy`` and the
    helpers of :mod:`companion.seq2seq` (``evaluate``, ``predict``) work unchanged."""

    def __init__(self, config: LocalSeq2SeqConfig = LocalSeq2SeqConfig()):
        nn.Module.__init__(self)
        check_config(config)
        self.config = config
        self.encoder = Encoder(Seq2SeqConfig(kind="luong", src_vocab=config.src_vocab, tgt_vocab=config.tgt_vocab,
                                             embed_dim=config.embed_dim, hidden=config.hidden))
        self.decoder = LocalDecoder(config)


@torch.no_grad()
def decode(model: LocalSeq2Seq, src: torch.Tensor, src_lengths: torch.Tensor, max_steps: int | None = None):
    """Greedy decoding that also returns the centres: ``(ids (B, T'), weights (B, T', S),
    centres (B, T'))``, for drawing the window ``p_t +- D`` step by step."""
    if not isinstance(model, LocalSeq2Seq):
        raise TypeError(f"model must be a LocalSeq2Seq, got {type(model).__name__}")
    _check_inputs(src, src_lengths)
    max_steps = src.shape[1] + 1 if max_steps is None else _validate.positive_int(max_steps, "max_steps")
    from .masks import padding_mask

    annotations, summary = model.encoder(model.encoder.embed(src), src_lengths)  # (B, S, D)
    mask = padding_mask(src_lengths, src.shape[1])  # (B, 1, S)
    carry = model.decoder.start(annotations, summary, mask)
    y = torch.full((src.shape[0],), BOS, dtype=torch.long, device=src.device)
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)
    ids, weights, centres = [], [], []
    for _ in range(max_steps):
        logits, carry, alpha = model.decoder.step(y, carry, annotations, mask)
        y = logits.argmax(-1)  # (B,)
        ids.append(y)
        weights.append(alpha)
        centres.append(carry[3])
        done |= y == EOS
        if done.all():
            break
    return torch.stack(ids, 1), torch.stack(weights, 1), torch.stack(centres, 1)
