"""Visual question answering on generated scenes, in the spirit of Sort-of-CLEVR.

Santoro et al. (2017) drew a few coloured squares and circles on a blank image and asked
questions about them, some about one object (*non-relational*) and some about how objects
relate (*relational*). This module generates such scenes in code, small enough for a CPU:

- a ``size x size`` RGB image (32 pixels by default) on a black background;
- ``len(COLOURS)`` objects, one of each colour, each a square or a circle of ``2r + 1``
  pixels across, at random places that never overlap;
- six kinds of question about the object of a given colour ``c``:

  ======  =============  ===============================================  ============
  kind    relational?    question                                          answers
  ======  =============  ===============================================  ============
  0       no             what shape is the ``c`` object?                  square/circle
  1       no             is the ``c`` object on the left half?            yes/no
  2       no             is the ``c`` object in the top half?             yes/no
  3       yes            what shape is the object nearest to ``c``?       square/circle
  4       yes            what shape is the object farthest from ``c``?    square/circle
  5       yes            how many objects have ``c``'s shape?             1 ... n
  ======  =============  ===============================================  ============

A question is the fixed-size vector ``[one-hot colour; one-hot kind]``; answers are ids into
the fixed vocabulary :data:`ANSWERS`. Because the generator draws the scene, it knows, for
every question, the object it is about (``about``), the object whose property is the answer
(``answer_object``, -1 for counting) and that object's pixels, so a chapter can measure where
a model looks (:func:`target_cells`). Everything is generated from a seed.

Shapes: ``images (M, 3, size, size)``, ``object_pixels (M, n_objects, size, size)``; for the
``N`` questions ``scene (N,)``, ``questions (N, n_colours + 6)``, ``answers (N,)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from .. import _validate

COLOURS = ("red", "green", "blue", "yellow", "magenta")
RGB = ((1.0, 0.1, 0.1), (0.1, 0.8, 0.1), (0.2, 0.3, 1.0), (1.0, 0.9, 0.1), (0.9, 0.2, 0.9))
SHAPES = ("square", "circle")
KINDS = ("shape", "left", "top", "nearest shape", "farthest shape", "count same shape")
RELATIONAL = (False, False, False, True, True, True)
ANSWERS = ("square", "circle", "yes", "no") + tuple(str(k) for k in range(1, len(COLOURS) + 1))
QUESTION_DIM = len(COLOURS) + len(KINDS)


@dataclass(frozen=True)
class VQAConfig:
    size: int = 32  # image side, pixels
    radius: int = 3  # an object is 2 * radius + 1 pixels across
    train_scenes: int = 4000
    test_scenes: int = 500
    seed: int = 0


def _check(config: VQAConfig) -> None:
    if not isinstance(config, VQAConfig):
        raise TypeError(f"config must be a VQAConfig, got {type(config).__name__}")
    for name in ("size", "radius", "train_scenes", "test_scenes"):
        _validate.positive_int(getattr(config, name), name)
    if isinstance(config.seed, bool) or not isinstance(config.seed, int) or config.seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {config.seed!r}")
    room = (config.size // (2 * config.radius + 2)) ** 2
    if room < 2 * len(COLOURS):
        raise ValueError(f"size={config.size} is too small for {len(COLOURS)} objects of radius "
                         f"{config.radius} at random places; use size >= {4 * (config.radius + 1) * 2}")


@dataclass
class VQAData:
    """Scenes and every question about them."""

    images: torch.Tensor  # (M, 3, H, W) float in [0, 1]
    object_pixels: torch.Tensor  # (M, n_objects, H, W) bool; object k has colour COLOURS[k]
    centers: torch.Tensor  # (M, n_objects, 2) (row, column) of each object's centre
    shapes: torch.Tensor  # (M, n_objects) index into SHAPES
    scene: torch.Tensor  # (N,) the scene each question is about
    questions: torch.Tensor  # (N, QUESTION_DIM) float: [one-hot colour; one-hot kind]
    kind: torch.Tensor  # (N,) index into KINDS
    answers: torch.Tensor  # (N,) index into ANSWERS
    about: torch.Tensor  # (N,) the object the question names (its colour)
    answer_object: torch.Tensor  # (N,) the object whose shape is the answer; -1 for counting

    def __len__(self) -> int:
        return len(self.answers)

    @property
    def relational(self) -> torch.Tensor:
        return torch.tensor(RELATIONAL)[self.kind]  # (N,) bool

    def text(self, n: int) -> str:
        """Question ``n`` in words, with its answer."""
        colour, kind = COLOURS[int(self.about[n])], int(self.kind[n])
        words = {
            0: f"What shape is the {colour} object?",
            1: f"Is the {colour} object on the left?",
            2: f"Is the {colour} object at the top?",
            3: f"What shape is the object nearest to the {colour} one?",
            4: f"What shape is the object farthest from the {colour} one?",
            5: f"How many objects have the {colour} one's shape?",
        }[kind]
        return words

    def answer_text(self, n: int) -> str:
        return ANSWERS[int(self.answers[n])]


def question_vector(colour: int, kind: int) -> torch.Tensor:
    """The encoding of one question: ``(QUESTION_DIM,)``."""
    if not 0 <= colour < len(COLOURS) or not 0 <= kind < len(KINDS):
        raise ValueError(f"colour must lie in [0, {len(COLOURS)}) and kind in [0, {len(KINDS)}), "
                         f"got colour={colour}, kind={kind}")
    q = torch.zeros(QUESTION_DIM)
    q[colour] = 1.0
    q[len(COLOURS) + kind] = 1.0
    return q


def _place(rng: np.random.Generator, n: int, size: int, radius: int) -> np.ndarray:
    """``n`` integer centres ``(row, col)`` whose squares of side 2r+1 keep a one-pixel gap."""
    while True:
        centres = []
        for _ in range(200):
            c = rng.integers(radius, size - radius, size=2)
            if all(np.abs(c - other).max() >= 2 * radius + 2 for other in centres):
                centres.append(c)
                if len(centres) == n:
                    return np.stack(centres)


def _draw(centres: np.ndarray, shapes: np.ndarray, size: int, radius: int):
    rows, cols = np.mgrid[0:size, 0:size]
    image = np.zeros((3, size, size), dtype=np.float32)
    pixels = np.zeros((len(centres), size, size), dtype=bool)
    for k, ((r, c), shape) in enumerate(zip(centres, shapes)):
        if SHAPES[shape] == "square":
            inside = (np.abs(rows - r) <= radius) & (np.abs(cols - c) <= radius)
        else:
            inside = (rows - r) ** 2 + (cols - c) ** 2 <= radius**2 + radius
        pixels[k] = inside
        image[:, inside] = np.asarray(RGB[k], dtype=np.float32)[:, None]
    return image, pixels


def _answers(centres: np.ndarray, shapes: np.ndarray, size: int):
    """For each (colour, kind): (answer id, answer object)."""
    out = {}
    n = len(centres)
    dist = np.linalg.norm(centres[:, None, :] - centres[None, :, :], axis=-1)  # (n, n)
    for c in range(n):
        out[c, 0] = (shapes[c], c)
        out[c, 1] = (ANSWERS.index("yes" if centres[c, 1] < size / 2 else "no"), c)
        out[c, 2] = (ANSWERS.index("yes" if centres[c, 0] < size / 2 else "no"), c)
        others = dist[c].copy()
        others[c] = np.inf
        near = int(others.argmin())
        others[c] = -np.inf
        far = int(others.argmax())
        out[c, 3] = (shapes[near], near)
        out[c, 4] = (shapes[far], far)
        count = int((shapes == shapes[c]).sum())
        out[c, 5] = (ANSWERS.index(str(count)), -1)
    return out


def generate(scenes: int, *, size: int = 32, radius: int = 3, seed: int = 0) -> VQAData:
    """``scenes`` random scenes and all ``len(COLOURS) * len(KINDS)`` questions about each."""
    _check(VQAConfig(size=size, radius=radius, train_scenes=scenes, test_scenes=1, seed=seed))
    rng = np.random.default_rng(seed)
    n = len(COLOURS)
    images, pixels, centres_all, shapes_all = [], [], [], []
    scene, kind, answers, about, answer_object = [], [], [], [], []
    for m in range(scenes):
        centres = _place(rng, n, size, radius)
        shapes = rng.integers(0, len(SHAPES), size=n)
        image, px = _draw(centres, shapes, size, radius)
        images.append(image)
        pixels.append(px)
        centres_all.append(centres)
        shapes_all.append(shapes)
        for (c, k), (answer, obj) in _answers(centres, shapes, size).items():
            scene.append(m)
            kind.append(k)
            answers.append(answer)
            about.append(c)
            answer_object.append(obj)
    kind_t, about_t = torch.tensor(kind), torch.tensor(about)
    questions = torch.cat([torch.eye(n)[about_t], torch.eye(len(KINDS))[kind_t]], 1)  # (N, Q)
    return VQAData(
        images=torch.from_numpy(np.stack(images)),
        object_pixels=torch.from_numpy(np.stack(pixels)),
        centers=torch.from_numpy(np.stack(centres_all)).float(),
        shapes=torch.from_numpy(np.stack(shapes_all)).long(),
        scene=torch.tensor(scene),
        questions=questions,
        kind=kind_t,
        answers=torch.tensor(answers),
        about=about_t,
        answer_object=torch.tensor(answer_object),
    )


def make_split(config: VQAConfig, name: str) -> VQAData:
    """The ``"train"`` or the ``"test"`` scenes of ``config``, drawn from two different seeds."""
    _check(config)
    if name not in ("train", "test"):
        raise ValueError(f"name must be 'train' or 'test', got {name!r}")
    scenes = config.train_scenes if name == "train" else config.test_scenes
    return generate(scenes, size=config.size, radius=config.radius, seed=2 * config.seed + (name == "test"))


def make_splits(config: VQAConfig = VQAConfig()) -> tuple[VQAData, VQAData]:
    """``(train, test)``: scenes drawn from two different seeds, so the test scenes are new."""
    return make_split(config, "train"), make_split(config, "test")


def cell_pixels(pixels: torch.Tensor, grid: int) -> torch.Tensor:
    """Which cells of a ``grid x grid`` partition of the image hold any of the pixels.

    ``pixels (..., H, W)`` bool with ``H`` and ``W`` multiples of ``grid`` -> ``(..., grid * grid)``
    bool, cells in row-major order (the order of a CNN's feature map flattened).
    """
    if not isinstance(pixels, torch.Tensor) or pixels.dtype != torch.bool or pixels.dim() < 2:
        raise TypeError(f"pixels must be a boolean tensor (..., H, W), got {getattr(pixels, 'shape', pixels)}")
    _validate.positive_int(grid, "grid")
    H, W = pixels.shape[-2:]
    if H % grid or W % grid:
        raise ValueError(f"grid={grid} must divide the image's height and width, got {H}x{W}")
    blocks = pixels.reshape(*pixels.shape[:-2], grid, H // grid, grid, W // grid)
    return blocks.any(-1).any(-2).flatten(-2)  # (..., grid * grid)


def target_cells(data: VQAData, grid: int) -> torch.Tensor:
    """For each question, the cells of the object it is about: ``(N, grid * grid)`` bool."""
    if not isinstance(data, VQAData):
        raise TypeError(f"data must be a VQAData, got {type(data).__name__}")
    pixels = data.object_pixels[data.scene, data.about]  # (N, H, W)
    return cell_pixels(pixels, grid)


def attention_profile(weights: torch.Tensor, data: VQAData) -> dict[int, dict[str, float]]:
    """Where attention weights over a ``G x G`` grid go, per kind of question (index into ``KINDS``).

    ``weights (N, G*G)``, one row per question of ``data`` in its order. For each kind:

    - ``named``: the mean weight on the cells of the object the question names;
    - ``objects``: the mean weight on the cells of any object (the rest is empty background);
    - ``cells``: the effective number of cells read, ``exp`` of the weights' entropy (1 for one
      cell, ``G*G`` for uniform weights), averaged over the questions.
    """
    if not isinstance(data, VQAData):
        raise TypeError(f"data must be a VQAData, got {type(data).__name__}")
    if not isinstance(weights, torch.Tensor) or not weights.is_floating_point() or weights.dim() != 2 \
            or weights.shape[0] != len(data):
        raise ValueError(f"weights must be a float tensor (N, G*G) with N = {len(data)} questions, got "
                         f"{getattr(weights, 'dtype', type(weights))} {tuple(getattr(weights, 'shape', ()))}")
    grid = int(round(weights.shape[1] ** 0.5))
    if grid * grid != weights.shape[1]:
        raise ValueError(f"weights must cover a square grid of cells, got {weights.shape[1]} cells")
    every = cell_pixels(data.object_pixels, grid).any(1)[data.scene]  # (N, G*G) any object
    named = target_cells(data, grid)  # (N, G*G)
    entropy = -(weights * torch.log(weights.clamp_min(1e-12))).sum(-1)  # (N,)
    out = {}
    for k in data.kind.unique().tolist():
        rows = data.kind == k
        out[k] = {"named": (weights * named)[rows].sum(-1).mean().item(),
                  "objects": (weights * every)[rows].sum(-1).mean().item(),
                  "cells": entropy[rows].exp().mean().item()}
    return out
