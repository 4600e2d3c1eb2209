"""Visual question answering on generated scenes, with and without attention over the image.

``vqa-no-attention``, ``vqa-soft`` and ``vqa-hard`` (REINFORCE with a leave-one-out baseline;
``vqa-hard-gumbel`` trains the same model with the straight-through Gumbel-softmax) train a
model of :mod:`companion.image_attention` on :mod:`companion.tasks.shapes_vqa`. A batch is a
few scenes with every question about them (one CNN pass per scene).

The attention models follow a curriculum (Bengio et al. 2009). For their first
``first_steps_nonrelational`` steps they see only the non-relational questions: each is about
one object and can only be answered by finding it. Trained on all six kinds at once, the soft
model can settle on nearly uniform attention, because the average of the cells answers the
counting questions well. The hard model also starts as a soft one: for its first
``soft_warmup`` steps it reads the expected cell (the soft glimpse of the same weights), so that
the CNN and the answer network learn what a cell holds before REINFORCE has to find the right
cell by sampling. After that it draws ``samples`` cells per question in training and reads its
most probable cell at evaluation, the same single-cell read in both. The CNN normalises its
features (``batch_norm``): without it, seeds 1 and 2 never learned the shapes (their attention sat
beside the object) and missed both models' bars; with it seeds 0, 1 and 2 all reach them (the
figures are in ``tests/test_experiments_vqa.py``). Metrics, on held-out scenes:

- ``accuracy``, ``accuracy_nonrelational``, ``accuracy_relational``;
- for the attention models, ``attention_on_target``: the mean attention mass on the cells of
  the object a non-relational question is about (for the hard model: the probability it gives
  those cells; ``choice_on_target`` is how often the cell it reads is one of them);
- for the attention models, per kind ``k`` of question, ``attention_named_kind_k``,
  ``attention_objects_kind_k`` and ``attention_cells_kind_k``: the weight on the named object, on
  any object, and the effective number of cells read (:func:`~companion.tasks.shapes_vqa.attention_profile`).
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import _validate
from ..hard import reinforce_surrogate
from ..image_attention import ESTIMATORS, VQA_KINDS, VQAModel, VQAModelConfig, build_model, check_config
from ..tasks.shapes_vqa import (
    ANSWERS,
    QUESTION_DIM,
    VQAConfig,
    VQAData,
    attention_profile,
    make_splits,
    target_cells,
)
from ..training import train
from .registry import register


@dataclass(frozen=True)
class VQAExperimentConfig:
    seed: int = 0
    kind: str = "soft"
    estimator: str = "reinforce"
    tau: float = 1.0
    channels: int = 32
    cell: int = 4
    batch_norm: bool = True  # batch normalisation in the CNN
    key_dim: int = 32
    hidden: int = 128
    size: int = 32
    train_scenes: int = 3000
    test_scenes: int = 300
    steps: int = 900
    scenes_per_batch: int = 16
    lr: float = 3e-3
    entropy: float = 0.0  # hard attention: weight of the policy's entropy bonus
    samples: int = 8  # hard attention: cells drawn per question in training (at least 2)
    expected_share: float = 0.0  # hard attention: questions that read the expected cell instead
    soft_warmup: int = 0  # hard attention: the first steps read the expected cell (soft), then sample
    first_steps_nonrelational: int = 0  # a curriculum: the first steps see only non-relational questions


def model_config(config: VQAExperimentConfig) -> VQAModelConfig:
    return VQAModelConfig(kind=config.kind, question_dim=QUESTION_DIM, answers=len(ANSWERS),
                          channels=config.channels, cell=config.cell, batch_norm=config.batch_norm,
                          key_dim=config.key_dim, hidden=config.hidden,
                          estimator=config.estimator, tau=config.tau, samples=config.samples,
                          expected_share=config.expected_share)


def _check(config: VQAExperimentConfig) -> None:
    if not isinstance(config, VQAExperimentConfig):
        raise TypeError(f"config must be a VQAExperimentConfig, got {type(config).__name__}")
    check_config(model_config(config))
    for name in ("size", "train_scenes", "test_scenes", "scenes_per_batch"):
        _validate.positive_int(getattr(config, name), name)
    if config.kind == "hard" and config.estimator == "reinforce" and config.samples < 2:
        raise ValueError(f"samples must be at least 2 for the leave-one-out baseline, got {config.samples}")
    _validate.non_negative_int(config.steps, "steps")
    _validate.non_negative_int(config.soft_warmup, "soft_warmup")
    _validate.non_negative_int(config.first_steps_nonrelational, "first_steps_nonrelational")
    _validate.positive_number(config.lr, "lr")
    if not (isinstance(config.entropy, (int, float)) and math.isfinite(config.entropy) and config.entropy >= 0):
        raise ValueError(f"entropy must be a non-negative number, got {config.entropy!r}")


def task_config(config: VQAExperimentConfig) -> VQAConfig:
    """The data settings (the data seed is fixed: every model sees the same scenes)."""
    return VQAConfig(size=config.size, train_scenes=config.train_scenes, test_scenes=config.test_scenes, seed=0)


def build(config: VQAExperimentConfig) -> VQAModel:
    _check(config)
    return build_model(model_config(config))


def scene_batch(data: VQAData, scenes: torch.Tensor):
    """Every question about ``scenes``: ``(images (b, 3, H, W), questions, scene (n,), rows (n,))``."""
    per_scene = len(data) // len(data.images)
    rows = (scenes[:, None] * per_scene + torch.arange(per_scene)).flatten()  # (n,)
    local = torch.arange(len(scenes)).repeat_interleave(per_scene)  # (n,) index into the batch's images
    return data.images[scenes], data.questions[rows], local, rows


def loss_on(model: VQAModel, data: VQAData, scenes: torch.Tensor, entropy: float = 0.0,
            generator: torch.Generator | None = None, expected: bool = False,
            nonrelational_only: bool = False) -> torch.Tensor:
    """Cross-entropy of the answers; for hard attention trained with REINFORCE, minus the
    surrogate of eq-reinforce, whose reward is the log-likelihood of the right answer and whose
    baseline, for each of the cells drawn, is the mean reward of the others (it does not
    depend on that cell's choice), and minus an entropy bonus."""
    images, questions, scene, rows = scene_batch(data, scenes)
    if nonrelational_only:
        keep = ~data.relational[rows]  # (n,)
        questions, scene, rows = questions[keep], scene[keep], rows[keep]
    answers = data.answers[rows]  # (n,)
    if model.config.kind != "hard" or expected:
        logits, _ = model(images, questions, scene, **({"expected": True} if expected else {}))
        return F.cross_entropy(logits, answers)
    logits, weights = model(images, questions, scene, generator=generator)  # (n, draws, A), (n, G*G)
    draws = logits.shape[1]
    nll = F.cross_entropy(logits.flatten(0, 1), answers.repeat_interleave(draws), reduction="none").view(-1, draws)
    bonus = -(weights * torch.log(weights.clamp_min(1e-12))).sum(-1).mean()
    loss = nll.mean() - entropy * bonus
    if model.config.estimator == "reinforce":
        reward = -nll.detach()  # (n, draws)
        baseline = (reward.sum(1, keepdim=True) - reward) / (draws - 1)  # (n, draws) leave-one-out mean
        loss = loss - reinforce_surrogate(model.last_log_prob, reward, baseline)
    return loss


@torch.no_grad()
def evaluate(model: VQAModel, data: VQAData, batch_scenes: int = 100) -> dict:
    """Accuracies and, with attention, the attention mass on the target object's cells."""
    model.eval()
    correct, weights = [], []
    for start in range(0, len(data.images), batch_scenes):
        scenes = torch.arange(start, min(start + batch_scenes, len(data.images)))
        images, questions, scene, rows = scene_batch(data, scenes)
        logits, w = model(images, questions, scene)
        correct.append(logits.argmax(-1) == data.answers[rows])
        if w is not None:
            weights.append(w)
    correct = torch.cat(correct)  # (N,)
    rel = data.relational
    out = {"accuracy": correct.double().mean().item(),
           "accuracy_nonrelational": correct[~rel].double().mean().item(),
           "accuracy_relational": correct[rel].double().mean().item()}
    for k in range(6):
        out[f"accuracy_kind_{k}"] = correct[data.kind == k].double().mean().item()
    if weights:
        w = torch.cat(weights)  # (N, G*G)
        grid = int(round(math.sqrt(w.shape[1])))
        target = target_cells(data, grid)  # (N, G*G)
        on = (w * target).sum(-1)  # (N,)
        out["attention_on_target"] = on[~rel].double().mean().item()
        chosen = target.gather(1, w.argmax(-1, keepdim=True)).squeeze(1)  # (N,)
        out["choice_on_target"] = chosen[~rel].double().mean().item()
        for k, row in attention_profile(w, data).items():  # where the weights go, per kind
            for name, value in row.items():
                out[f"attention_{name}_kind_{k}"] = value
    return out


@functools.lru_cache(maxsize=1)
def _splits(config: VQAConfig) -> tuple[VQAData, VQAData]:
    """The scenes, generated once per process for the runs that share them (nothing writes to them)."""
    return make_splits(config)


def fit(model: VQAModel, config: VQAExperimentConfig, progress: bool = True):
    _check(config)
    train_data, test_data = _splits(task_config(config))
    order = torch.Generator().manual_seed(config.seed)
    noise = torch.Generator().manual_seed(config.seed + 1)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)

    def loss_fn(step: int) -> torch.Tensor:
        for group in optimizer.param_groups:  # constant for the first half, then linearly to zero
            group["lr"] = config.lr * min(1.0, 2.0 * (1.0 - step / config.steps))
        scenes = torch.randint(0, len(train_data.images), (config.scenes_per_batch,), generator=order)
        return loss_on(model, train_data, scenes, config.entropy, noise, expected=step < config.soft_warmup,
                       nonrelational_only=step < config.first_steps_nonrelational)

    log = train(model, loss_fn, steps=config.steps, optimizer=optimizer, progress=progress,
                desc=f"vqa ({config.kind})")
    metrics = {**evaluate(model, test_data), "steps": log.steps, "interrupted": log.interrupted}
    return metrics, {"loss": log.losses}


register("vqa-no-attention", "shapes VQA: CNN cells averaged, no attention",
         VQAExperimentConfig(kind="pooled"), build, fit)
register("vqa-soft", "shapes VQA: soft attention of the question over the CNN's cells",
         VQAExperimentConfig(kind="soft", steps=1200, first_steps_nonrelational=450), build, fit)
register("vqa-hard", "shapes VQA: hard attention (one cell), warm-started soft, then REINFORCE",
         VQAExperimentConfig(kind="hard", steps=900, soft_warmup=450, first_steps_nonrelational=450),
         build, fit)
register("vqa-hard-gumbel", "shapes VQA: hard attention (one cell), warm-started soft, then straight-through "
         "Gumbel-softmax",
         VQAExperimentConfig(kind="hard", estimator="gumbel", steps=900, soft_warmup=450,
                             first_steps_nonrelational=450), build, fit)
