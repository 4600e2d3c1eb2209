"""Attention over images: a question looks at the cells of a CNN's feature grid.

A small CNN turns an image into a ``G x G`` grid of feature vectors, one per cell (each sees a
patch of the image); two channels with the cell's coordinates are appended, so that a vector
says *what* is in its cell and *where* the cell is. Flattened row-major, the grid is a set of
``m = G^2`` keys and values, and the question is the query (Xu et al. 2015 did the same for
captions, with the decoder state as the query):

- :class:`PooledVQA`: no attention; the mean of the cells, with the question, predicts the answer;
- :class:`SoftVQA`: the weights ``alpha = softmax(k_j . q / sqrt(d_k))`` over the cells, the
  glimpse ``sum_j alpha_j v_j``, then the answer (eq-image-soft);
- :class:`HardVQA`: one cell ``j ~ Categorical(alpha)`` is read, ``v_j`` alone; trained with
  REINFORCE (eq-reinforce) or, with ``estimator="gumbel"``, with the straight-through
  Gumbel-softmax (eq-gumbel-softmax). At evaluation it reads the most probable cell.

``images (M, 3, H, W)``, ``questions (N, Q)``, ``scene (N,)`` the image of each question
(questions about one scene share its CNN pass); logits ``(N, A)``, weights ``(N, G*G)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from . import _validate
from .hard import gumbel_softmax

VQA_KINDS = ("pooled", "soft", "hard")
CELL_SIZES = (4, 8)
ESTIMATORS = ("reinforce", "gumbel")


@dataclass(frozen=True)
class VQAModelConfig:
    kind: str = "soft"
    question_dim: int = 11
    answers: int = 9
    channels: int = 32  # CNN feature channels
    cell: int = 4  # pixels per cell side: a 32-pixel image gives an 8 x 8 (or 4 x 4) grid
    key_dim: int = 32  # d_k: width of queries and keys
    hidden: int = 128  # the answer MLP
    estimator: str = "reinforce"  # hard attention only
    tau: float = 1.0  # the Gumbel-softmax's temperature (estimator="gumbel")
    samples: int = 8  # hard attention: cells drawn per question in training
    expected_share: float = 0.0  # hard attention: share of questions that read the expectation
    batch_norm: bool = True  # the CNN normalises each convolution's output (GridEncoder)


def check_config(config: VQAModelConfig) -> None:
    if not isinstance(config, VQAModelConfig):
        raise TypeError(f"config must be a VQAModelConfig, got {type(config).__name__}")
    if config.kind not in VQA_KINDS:
        raise ValueError(f"kind must be one of {VQA_KINDS}, got {config.kind!r}")
    if config.estimator not in ESTIMATORS:
        raise ValueError(f"estimator must be one of {ESTIMATORS}, got {config.estimator!r}")
    for name in ("question_dim", "answers", "channels", "key_dim", "hidden", "samples"):
        _validate.positive_int(getattr(config, name), name)
    if config.cell not in CELL_SIZES:
        raise ValueError(f"cell must be one of {CELL_SIZES} pixels, got {config.cell!r}")
    if not isinstance(config.batch_norm, bool):
        raise TypeError(f"batch_norm must be a bool, got {type(config.batch_norm).__name__}")
    if not (isinstance(config.expected_share, (int, float)) and 0 <= config.expected_share <= 1):
        raise ValueError(f"expected_share must lie in [0, 1], got {config.expected_share!r}")
    if not (isinstance(config.tau, (int, float)) and math.isfinite(config.tau) and config.tau > 0):
        raise ValueError(f"tau must be a positive number, got {config.tau!r}")


class GridEncoder(nn.Module):
    """Image ``(M, 3, H, W)`` -> cells ``(M, G*G, C + 2)``, ``G = H / cell``, row-major, with
    each cell's (row, column) coordinates in [-1, 1] as the last two features. ``cell`` (4 or 8
    pixels) is reached by stride-2 convolutions; a last stride-1 convolution widens the view.

    With ``batch_norm`` (the default) each convolution is followed by batch normalisation
    (Ioffe & Szegedy 2015) before its ReLU: in training mode a feature is standardised over the
    batch's images and positions, in evaluation mode by running averages, so a cell's features
    do not depend on the other images of the batch. Without it, whether the CNN learned to tell
    the shapes apart depended on the seed (see :mod:`companion.experiments.vqa`)."""

    def __init__(self, channels: int, cell: int = 4, batch_norm: bool = True):
        super().__init__()
        if cell not in CELL_SIZES:
            raise ValueError(f"cell must be one of {CELL_SIZES} pixels, got {cell!r}")
        if not isinstance(batch_norm, bool):
            raise TypeError(f"batch_norm must be a bool, got {type(batch_norm).__name__}")
        self.cell = cell
        norm = (lambda: nn.BatchNorm2d(channels)) if batch_norm else nn.Identity
        layers, width = [], 3
        for _ in range(cell.bit_length() - 1):
            layers += [nn.Conv2d(width, channels, 3, stride=2, padding=1), norm(), nn.ReLU()]  # halves H, W
            width = channels
        layers += [nn.Conv2d(channels, channels, 3, padding=1), norm(), nn.ReLU()]  # (M, C, G, G)
        self.conv = nn.Sequential(*layers)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        _validate.tensor(images, "images", min_dim=4)
        c = self.cell
        if images.dim() != 4 or images.shape[1] != 3 or images.shape[-1] % c or images.shape[-2] % c:
            raise ValueError(f"images must be (M, 3, H, W) with H and W multiples of {c}, got {tuple(images.shape)}")
        x = self.conv(images)  # (M, C, G, G)
        M, C, G, G2 = x.shape
        rows = torch.linspace(-1, 1, G).view(G, 1).expand(G, G2)
        cols = torch.linspace(-1, 1, G2).view(1, G2).expand(G, G2)
        coords = torch.stack([rows, cols]).expand(M, 2, G, G2)  # (M, 2, G, G)
        return torch.cat([x, coords], 1).flatten(2).transpose(1, 2)  # (M, G*G, C + 2)


class VQAModel(nn.Module):
    """The shared parts: the grid encoder, the question's embedding, the answer MLP."""

    def __init__(self, config: VQAModelConfig):
        super().__init__()
        check_config(config)
        self.config = config
        C = config.channels + 2
        self.encoder = GridEncoder(config.channels, config.cell, config.batch_norm)
        self.answer = nn.Sequential(nn.Linear(C + config.question_dim, config.hidden), nn.ReLU(),
                                    nn.Linear(config.hidden, config.hidden), nn.ReLU(),
                                    nn.Linear(config.hidden, config.answers))

    def cells(self, images, questions, scene):
        """Each question's cells ``(N, G*G, C + 2)``, checking the inputs."""
        _validate.tensor(questions, "questions", min_dim=2)
        if questions.dim() != 2 or questions.shape[1] != self.config.question_dim:
            raise ValueError(f"questions must be (N, {self.config.question_dim}), got {tuple(questions.shape)}")
        grid = self.encoder(images)  # (M, G*G, C + 2)
        if scene is None:
            if images.shape[0] != questions.shape[0]:
                raise ValueError(f"without scene, images {tuple(images.shape)} and questions "
                                 f"{tuple(questions.shape)} must have one row each per question")
            return grid
        if not isinstance(scene, torch.Tensor) or scene.dtype != torch.long or scene.shape != questions.shape[:1]:
            raise ValueError(f"scene must be a long tensor of shape ({questions.shape[0]},), got "
                             f"{getattr(scene, 'dtype', type(scene))} {tuple(getattr(scene, 'shape', ()))}")
        if len(scene) and (scene.min() < 0 or scene.max() >= images.shape[0]):
            raise ValueError(f"scene indexes {images.shape[0]} images, got values in "
                             f"[{int(scene.min())}, {int(scene.max())}]")
        return grid[scene]  # (N, G*G, C + 2)

    def predict(self, glimpse, questions):
        """Answer logits ``(..., A)`` from what was read ``(..., C + 2)`` and the question."""
        return self.answer(torch.cat([glimpse, questions], -1))  # (..., A)


class PooledVQA(VQAModel):
    """No attention: the mean over the cells."""

    def forward(self, images, questions, scene=None):
        cells = self.cells(images, questions, scene)  # (N, G*G, C + 2)
        return self.predict(cells.mean(1), questions), None  # (N, A)


class AttentionVQA(VQAModel):
    """Scores of every cell against the question: ``k_j . q / sqrt(d_k)`` ``(N, G*G)``."""

    def __init__(self, config: VQAModelConfig):
        super().__init__(config)
        self.W_q = nn.Sequential(nn.Linear(config.question_dim, config.key_dim), nn.ReLU(),
                                 nn.Linear(config.key_dim, config.key_dim))
        self.W_k = nn.Linear(config.channels + 2, config.key_dim)

    def scores(self, cells, questions):
        q = self.W_q(questions).unsqueeze(-1)  # (N, d, 1)
        return (self.W_k(cells) @ q).squeeze(-1) / math.sqrt(self.config.key_dim)  # (N, G*G)


class SoftVQA(AttentionVQA):
    """Soft attention: the expected cell under the weights."""

    def forward(self, images, questions, scene=None):
        cells = self.cells(images, questions, scene)  # (N, G*G, C + 2)
        weights = torch.softmax(self.scores(cells, questions), -1)  # (N, G*G)
        glimpse = (weights.unsqueeze(1) @ cells).squeeze(1)  # (N, C + 2)
        return self.predict(glimpse, questions), weights


class HardVQA(AttentionVQA):
    """Hard attention: one cell. In training mode ``config.samples`` cells are drawn for each
    question, logits ``(N, draws, A)``, and (REINFORCE) their log-probabilities ``(N, draws)`` are kept
    in ``self.last_log_prob``; in evaluation mode the most probable cell is read, ``(N, A)``."""

    def forward(self, images, questions, scene=None, generator: torch.Generator | None = None,
                expected: bool = False):
        cells = self.cells(images, questions, scene)  # (N, G*G, C + 2)
        scores = self.scores(cells, questions)  # (N, G*G)
        weights = torch.softmax(scores, -1)  # (N, G*G)
        if expected:  # the warm-up: read the expected cell, as soft attention does
            glimpse = (weights.unsqueeze(1) @ cells).squeeze(1)  # (N, C + 2)
            return self.predict(glimpse, questions), weights  # (N, A)
        if not self.training:
            choice = F.one_hot(scores.argmax(-1), scores.shape[-1]).to(cells.dtype)  # (N, G*G)
            return self.predict((choice.unsqueeze(1) @ cells).squeeze(1), questions), weights
        draws = self.config.samples
        if self.config.estimator == "gumbel":
            many = scores.unsqueeze(1).expand(-1, draws, -1)  # (N, draws, G*G)
            choice = gumbel_softmax(many, self.config.tau, hard=True, generator=generator)  # (N, draws, G*G)
        else:
            index = torch.multinomial(weights.detach(), draws, replacement=True, generator=generator)  # (N, draws)
            self.last_log_prob = torch.log_softmax(scores, -1).gather(1, index)  # (N, draws)
            choice = F.one_hot(index, scores.shape[-1]).to(cells.dtype)  # (N, draws, G*G)
        if self.config.expected_share > 0:  # Xu et al.'s variance trick: some rows read alpha
            u = torch.rand(scores.shape[0], generator=generator)  # (N,)
            expected = (u < self.config.expected_share).to(cells.dtype).view(-1, 1, 1)  # (N, 1, 1)
            choice = expected * weights.unsqueeze(1) + (1 - expected) * choice  # (N, draws, G*G)
        glimpses = choice @ cells  # (N, draws, C + 2): the chosen cells
        return self.predict(glimpses, questions.unsqueeze(1).expand(-1, draws, -1)), weights  # (N, draws, A)


MODELS = {"pooled": PooledVQA, "soft": SoftVQA, "hard": HardVQA}


def build_model(config: VQAModelConfig) -> VQAModel:
    check_config(config)
    return MODELS[config.kind](config)
