"""companion.tasks.shapes_vqa: the generated scenes, questions and answers are right, checked
against the drawn pixels (not against the generator's own bookkeeping)."""

import numpy as np
import pytest
import torch

from companion.tasks.shapes_vqa import (
    ANSWERS, COLOURS, KINDS, QUESTION_DIM, RGB, SHAPES, VQAConfig, attention_profile, cell_pixels, generate,
    make_splits, question_vector, target_cells,
)


@pytest.fixture(scope="module")
def data():
    return generate(60, seed=3)


def test_shapes_and_sizes(data):
    M, n = 60, len(COLOURS)
    assert data.images.shape == (M, 3, 32, 32) and data.images.dtype == torch.float32
    assert data.object_pixels.shape == (M, n, 32, 32)
    assert len(data) == M * n * len(KINDS)
    assert data.questions.shape == (len(data), QUESTION_DIM)
    assert data.relational.sum() == len(data) // 2


def test_objects_do_not_overlap_and_have_their_colour(data):
    assert (data.object_pixels.sum(1) <= 1).all()  # no pixel belongs to two objects
    for m in range(5):
        for k in range(len(COLOURS)):
            px = data.object_pixels[m, k]
            assert px.sum() >= 25  # a 7-pixel-wide circle has 29 pixels, a square 49
            colour = data.images[m][:, px]  # (3, P)
            torch.testing.assert_close(colour, torch.tensor(RGB[k]).view(3, 1).expand_as(colour))
        background = ~data.object_pixels[m].any(0)
        assert (data.images[m][:, background] == 0).all()


def shape_from_pixels(px):
    return "square" if px.sum() == 49 else "circle"


def centre_from_pixels(px):
    rows, cols = px.nonzero(as_tuple=True)
    return np.array([rows.float().mean().item(), cols.float().mean().item()])


def test_answers_follow_from_the_pixels(data):
    """Recompute every answer from the drawn pixels alone."""
    for i in range(0, len(data), 7):
        m, c, kind = int(data.scene[i]), int(data.about[i]), int(data.kind[i])
        pxs = data.object_pixels[m]
        shapes = [shape_from_pixels(p) for p in pxs]
        centres = np.stack([centre_from_pixels(p) for p in pxs])
        d = np.linalg.norm(centres - centres[c], axis=1)
        if kind == 0:
            want = shapes[c]
        elif kind == 1:
            want = "yes" if centres[c, 1] < 16 else "no"
        elif kind == 2:
            want = "yes" if centres[c, 0] < 16 else "no"
        elif kind == 3:
            d[c] = np.inf
            want = shapes[int(d.argmin())]
        elif kind == 4:
            want = shapes[int(d.argmax())]
        else:
            want = str(shapes.count(shapes[c]))
        assert data.answer_text(i) == want, (i, data.text(i))


def test_question_vectors_and_text(data):
    q = question_vector(2, 4)
    assert q.tolist() == [0, 0, 1, 0, 0] + [0, 0, 0, 0, 1, 0]
    for i in (0, 13, 29):
        torch.testing.assert_close(data.questions[i], question_vector(int(data.about[i]), int(data.kind[i])))
    assert COLOURS[int(data.about[13])] in data.text(13)
    with pytest.raises(ValueError, match="colour"):
        question_vector(5, 0)


def test_answer_vocabulary_is_fixed_and_used(data):
    assert set(data.answers.tolist()) <= set(range(len(ANSWERS)))
    shape_q = data.kind == 0
    assert set(data.answers[shape_q].tolist()) == {ANSWERS.index(s) for s in SHAPES}
    # the answer object of a non-relational question is the object it is about
    nonrel = ~data.relational
    assert torch.equal(data.answer_object[nonrel], data.about[nonrel])
    assert (data.answer_object[data.kind == 5] == -1).all()


def test_seeded_and_splits_differ():
    a, b = generate(5, seed=1), generate(5, seed=1)
    assert torch.equal(a.images, b.images) and torch.equal(a.answers, b.answers)
    train, test = make_splits(VQAConfig(train_scenes=20, test_scenes=10))
    assert len(train) == 20 * 30 and len(test) == 10 * 30
    assert not any(torch.equal(train.images[i], test.images[j]) for i in range(20) for j in range(10))


def test_target_cells(data):
    px = torch.zeros(8, 8, dtype=torch.bool)
    px[3:5, 0:2] = True  # rows 3 and 4 fall in two cell rows of a 2x2 (and a 4x4) grid
    assert cell_pixels(px, 2).tolist() == [True, False, True, False]
    assert cell_pixels(px, 4).tolist() == [False] * 4 + [True] + [False] * 3 + [True] + [False] * 7
    cells = target_cells(data, 8)
    assert cells.shape == (len(data), 64)
    assert cells.any(1).all() and (cells.sum(1) <= 9).all()  # a 7-pixel object touches 2 to 3 cells a side
    with pytest.raises(ValueError, match="grid"):
        cell_pixels(px, 3)


def test_bad_config():
    with pytest.raises(ValueError, match="size"):
        make_splits(VQAConfig(size=12))
    with pytest.raises(ValueError, match="train_scenes"):
        make_splits(VQAConfig(train_scenes=0))
    with pytest.raises(TypeError, match="config"):
        make_splits({"size": 32})


def test_attention_profile_of_an_oracle_and_a_uniform_look():
    data = generate(3, seed=5)
    named = target_cells(data, 8).float()  # (90, 64)
    oracle = attention_profile(named / named.sum(-1, keepdim=True), data)
    assert sorted(oracle) == list(range(len(KINDS)))
    for row in oracle.values():  # all weight on the named object: on an object, a few cells
        assert row["named"] == pytest.approx(1.0) and row["objects"] == pytest.approx(1.0)
        assert 1 <= row["cells"] <= 9
    uniform = attention_profile(torch.full((len(data), 64), 1 / 64), data)
    on_objects = cell_pixels(data.object_pixels, 8).any(1).float().mean().item()  # share of object cells
    for row in uniform.values():
        assert row["cells"] == pytest.approx(64.0) and row["objects"] == pytest.approx(on_objects)
    one = torch.zeros(len(data), 64)
    one[:, 0] = 1.0  # one cell each: e^0 = 1 effective cell
    assert all(row["cells"] == pytest.approx(1.0) for row in attention_profile(one, data).values())
    with pytest.raises(ValueError, match="weights"):
        attention_profile(torch.ones(5, 64), data)
    with pytest.raises(ValueError, match="square"):
        attention_profile(torch.ones(len(data), 60), data)
    with pytest.raises(TypeError, match="data"):
        attention_profile(torch.ones(len(data), 64), "scenes")
