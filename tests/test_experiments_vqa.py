"""Visual question answering experiments: the soft-attention model reaches the chapter's bars
(non-relational accuracy >= 0.95, attention mass on the named object >= 0.5); the pooled model
and the hard-attention model are measured, and their settings are checked.

The hard model's own bar (non-relational accuracy >= 0.85) is NOT met within the two-minute budget
(see the chapter and the branch report), so it is not asserted here.

Measured (default configs, one thread, 2 loaded cores): vqa-soft seed 0 non-relational 0.998,
relational 0.542, attention on target 0.935 in 29-48 s; seed 2 0.998 / 0.525 / 0.937; seed 1 FAILS
the bars (0.678 / 0.699 / 0.109: it settles in a pooling solution). vqa-no-attention 0.566 / 0.699;
vqa-hard 0.504 / 0.447 with uniform attention (0.089).
"""

import pytest
import torch

from companion import experiments
from companion.experiments.vqa import VQAExperimentConfig, build, evaluate, scene_batch
from companion.tasks.shapes_vqa import generate


@pytest.fixture(scope="module")
def soft(private_cache):
    return experiments.run("vqa-soft", progress=False)


def test_soft_attention_reaches_the_bars(soft):
    m = soft.metrics
    assert m["accuracy_nonrelational"] >= 0.95, m
    assert m["attention_on_target"] >= 0.5, m
    assert 0 <= m["accuracy_relational"] <= 1
    assert len(soft.history["loss"]) == soft.config.steps


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
