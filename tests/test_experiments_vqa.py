"""Visual question answering experiments: with the chapter's configurations the soft-attention
model reaches its bars (non-relational accuracy >= 0.95, attention mass on the named object >= 0.5)
and the hard-attention model reaches its own (non-relational accuracy >= 0.85), with seed 0 (the
chapter's runs, cached, so the book build and these tests train each model once) and with seeds 1
and 2 (other initial weights and batch order, the same scenes); the settings are checked.

Measured on one thread of an idle 2-core machine (two runs at a time), held-out non-relational
accuracy / attention on target / relational accuracy, train seconds:

- vqa-soft (curriculum: 450 non-relational steps of 1200): seed 0 0.999 / 0.898 / 0.778 (27 s);
  seed 1 0.999 / 0.868 / 0.783; seed 2 0.999 / 0.914 / 0.777.
- vqa-hard (450 soft warm-up steps, then REINFORCE, 900 in all): seed 0 0.999 / 0.984 / 0.469
  (25 s); seed 1 0.999 / 0.931 / 0.483; seed 2 0.999 / 0.912 / 0.477.
- vqa-hard-gumbel: seeds 0 and 1 1.000 / 0.976 and 0.999 / 0.949.
- vqa-no-attention: 0.565 non-relational, 0.699 relational (13 s).
- without batch normalisation in the CNN (batch_norm=False; the chapter's earlier models): seed 0
  passed (soft 0.998 / 0.975, hard 0.895 / 0.800), seeds 1 and 2 failed both bars (soft 0.829 /
  0.027 and 0.804 / 0.029, hard 0.571 and 0.607): their attention sat beside the object, left/top
  ~0.98, shape at chance. Tried then without success: no gradient clipping, a longer curriculum,
  lr=1e-3, cell colours or pixels as keys, pooled values.
- without the curriculum (first_steps_nonrelational=0), with batch normalisation: soft seeds 0 / 1 /
  2 0.886 / 0.253, 0.711 / 0.172, 0.999 / 0.849 (two of three fail); hard (also soft_warmup=0)
  0.581 / 0.005, 0.602 / 0.166, 0.666 / 0.242 (all fail).
"""

import pytest
import torch

from companion import experiments
from companion.experiments.vqa import VQAExperimentConfig, build, evaluate, loss_on, scene_batch, task_config
from companion.tasks.shapes_vqa import KINDS, RELATIONAL, attention_profile, generate, make_split, make_splits


@pytest.fixture(scope="module")
def soft():
    return experiments.run("vqa-soft", progress=False)


@pytest.fixture(scope="module")
def hard():
    return experiments.run("vqa-hard", progress=False)


def test_soft_attention_reaches_the_bars(soft):
    m = soft.metrics
    assert m["accuracy_nonrelational"] >= 0.95, m
    assert m["attention_on_target"] >= 0.5, m
    assert 0 <= m["accuracy_relational"] <= 1
    assert len(soft.history["loss"]) == soft.config.steps


def test_hard_attention_reaches_its_bar(hard):
    m = hard.metrics
    assert m["accuracy_nonrelational"] >= 0.85, m
    # it reads one cell: most questions must be answered from a cell on the named object
    assert m["choice_on_target"] >= 0.5, m
    config = hard.config
    assert config.kind == "hard" and config.estimator == "reinforce" and config.expected_share == 0
    assert 0 < config.soft_warmup < config.steps  # the warm start ends: most steps sample cells


@pytest.mark.parametrize("seed", [1, 2])
def test_other_seeds_reach_the_bars(seed):
    soft = experiments.run("vqa-soft", seed=seed, progress=False).metrics
    assert soft["accuracy_nonrelational"] >= 0.95, soft
    assert soft["attention_on_target"] >= 0.5, soft
    hard = experiments.run("vqa-hard", seed=seed, progress=False).metrics
    assert hard["accuracy_nonrelational"] >= 0.85, hard
    assert hard["choice_on_target"] >= 0.5, hard


def test_the_soft_model_looks_sharply_at_one_object_and_broadly_to_count(soft):
    m = soft.metrics
    looks = {k: {name: m[f"attention_{name}_kind_{k}"] for name in ("named", "objects", "cells")}
             for k in range(len(KINDS))}
    for k in range(len(KINDS)):
        if not RELATIONAL[k]:  # a few cells, mostly on the named object
            assert looks[k]["cells"] < 8 and looks[k]["named"] > 0.5, looks[k]
    count = looks[KINDS.index("count same shape")]
    assert count["cells"] > 8 and count["objects"] > 0.6, count
    # the metrics are the cached model's: recompute them on the held-out scenes
    test = make_split(task_config(soft.config), "test")
    images, questions, scene, _ = scene_batch(test, torch.arange(len(test.images)))
    with torch.no_grad():
        _, weights = soft.model(images, questions, scene)
    again = attention_profile(weights, test)
    for k, row in again.items():
        for name, value in row.items():
            assert value == pytest.approx(looks[k][name], rel=1e-4), (k, name)


def test_make_split_is_one_half_of_make_splits():
    config = task_config(VQAExperimentConfig(train_scenes=5, test_scenes=3))
    train, test = make_splits(config)
    assert torch.equal(make_split(config, "test").images, test.images)
    assert torch.equal(make_split(config, "train").answers, train.answers)
    with pytest.raises(ValueError, match="name"):
        make_split(config, "validation")


def test_the_curriculum_shows_only_nonrelational_questions():
    data = generate(4, seed=3)
    torch.manual_seed(0)
    model = build(VQAExperimentConfig(kind="soft"))
    scenes = torch.tensor([0, 2])
    _, questions, _, rows = scene_batch(data, scenes)
    everything = loss_on(model, data, scenes)
    first = loss_on(model, data, scenes, nonrelational_only=True)
    logits, _ = model(data.images[scenes], questions, torch.arange(2).repeat_interleave(30))
    keep = ~data.relational[rows]
    nll = torch.nn.functional.cross_entropy(logits, data.answers[rows], reduction="none")  # (60,)
    torch.testing.assert_close(first, nll[keep].mean())
    torch.testing.assert_close(everything, nll.mean())


def test_the_hard_model_warm_starts_on_the_expected_cell():
    data = generate(2, seed=4)
    torch.manual_seed(0)
    model = build(VQAExperimentConfig(kind="hard"))
    soft = build(VQAExperimentConfig(kind="soft"))
    soft.load_state_dict(model.state_dict())  # the same parameters, read softly
    images, questions, scene, _ = scene_batch(data, torch.arange(2))
    expected, w = model(images, questions, scene, expected=True)
    want, w_soft = soft(images, questions, scene)
    torch.testing.assert_close(expected, want)
    torch.testing.assert_close(w, w_soft)


def test_scene_batch_keeps_questions_with_their_scene():
    data = generate(3, seed=0)
    images, questions, scene, rows = scene_batch(data, torch.tensor([2, 0]))
    assert images.shape[0] == 2 and len(rows) == 60
    assert torch.equal(data.scene[rows], torch.tensor([2, 0]).repeat_interleave(30))
    assert torch.equal(questions, data.questions[rows])
    assert torch.equal(scene, torch.arange(2).repeat_interleave(30))


def test_evaluate_measures_attention_on_the_target():
    data = generate(2, seed=1)

    class Oracle(torch.nn.Module):  # looks exactly at the named object and answers right
        config = None

        def forward(self, images, questions, scene):
            rows = torch.arange(len(questions)) + 30 * int(self.offset)
            w = data.object_pixels[data.scene[rows], data.about[rows]]  # (n, 32, 32)
            w = w.view(-1, 8, 4, 8, 4).any(-1).any(-2).flatten(1).float()
            w = w / w.sum(-1, keepdim=True)
            return torch.nn.functional.one_hot(data.answers[rows], 9).float(), w

    oracle = Oracle()
    oracle.offset = 0
    result = evaluate(oracle, generate(1, seed=1), batch_scenes=1)
    assert result["accuracy"] == 1.0 and result["attention_on_target"] == pytest.approx(1.0)


def test_bad_settings():
    with pytest.raises(ValueError, match="kind"):
        build(VQAExperimentConfig(kind="glimpses"))
    with pytest.raises(ValueError, match="samples"):
        build(VQAExperimentConfig(kind="hard", samples=1))
    with pytest.raises(ValueError, match="cell"):
        build(VQAExperimentConfig(cell=6))
    with pytest.raises(ValueError, match="lr"):
        build(VQAExperimentConfig(lr=-1.0))
    with pytest.raises(ValueError, match="expected_share"):
        build(VQAExperimentConfig(kind="hard", expected_share=1.5))
    with pytest.raises(ValueError, match="soft_warmup"):
        build(VQAExperimentConfig(kind="hard", soft_warmup=-1))
    with pytest.raises(ValueError, match="first_steps_nonrelational"):
        build(VQAExperimentConfig(first_steps_nonrelational=1.5))
    with pytest.raises(TypeError, match="batch_norm"):
        build(VQAExperimentConfig(batch_norm="yes"))
