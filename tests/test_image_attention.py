"""companion.image_attention: the grid encoder, soft and hard attention over the cells
(against direct computations), and the input checks."""

import math

import pytest
import torch

from companion.hard import reinforce_surrogate
from companion.image_attention import GridEncoder, VQAModelConfig, build_model


def images_and_questions(M=3, N=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(M, 3, 32, 32, generator=g)
    questions = torch.rand(N, 11, generator=g)
    scene = torch.randint(0, M, (N,), generator=g)
    return images, questions, scene


def test_grid_encoder_cells_and_coordinates():
    torch.manual_seed(0)
    enc = GridEncoder(8)
    cells = enc(torch.rand(2, 3, 32, 32))
    assert cells.shape == (2, 64, 10)
    coords = cells[0, :, -2:]  # (64, 2) row-major: cell 9 is row 1, column 1
    torch.testing.assert_close(coords[9], torch.tensor([-1 + 2 / 7, -1 + 2 / 7]))
    torch.testing.assert_close(coords[7], torch.tensor([-1.0, 1.0]))
    with pytest.raises(ValueError, match="images"):
        enc(torch.rand(2, 3, 30, 30))


def test_grid_encoder_batch_norm():
    torch.manual_seed(0)
    images = torch.rand(4, 3, 32, 32)
    enc = GridEncoder(8)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in enc.modules()) == 3
    enc(images)  # training mode: standardised over the batch, running averages updated
    bn = next(m for m in enc.modules() if isinstance(m, torch.nn.BatchNorm2d))
    assert bn.num_batches_tracked == 1
    enc.eval()  # evaluation mode: an image's cells do not depend on the rest of the batch
    torch.testing.assert_close(enc(images)[1:2], enc(images[1:2]))
    plain = GridEncoder(8, batch_norm=False)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in plain.modules())
    with pytest.raises(TypeError, match="batch_norm"):
        GridEncoder(8, batch_norm=1)
    with pytest.raises(TypeError, match="batch_norm"):
        build_model(VQAModelConfig(batch_norm=None))


def test_soft_attention_is_the_weighted_average_of_the_cells():
    torch.manual_seed(0)
    model = build_model(VQAModelConfig(kind="soft", channels=8, key_dim=6, hidden=16)).eval()
    images, questions, scene = images_and_questions()
    logits, weights = model(images, questions, scene)
    assert logits.shape == (7, 9) and weights.shape == (7, 64)
    cells = model.encoder(images)[scene]  # (N, 64, 10)
    q = model.W_q(questions)  # (N, 6)
    scores = torch.einsum("nkd,nd->nk", model.W_k(cells), q) / math.sqrt(6)
    torch.testing.assert_close(weights, torch.softmax(scores, -1))
    glimpse = torch.einsum("nk,nkc->nc", weights, cells)
    torch.testing.assert_close(logits, model.answer(torch.cat([glimpse, questions], -1)))
    # without scene, one image per question gives the same
    torch.testing.assert_close(model(images[scene], questions)[0], logits)


def test_pooled_model_reads_the_mean_cell():
    torch.manual_seed(0)
    model = build_model(VQAModelConfig(kind="pooled", channels=8, hidden=16)).eval()
    images, questions, scene = images_and_questions()
    logits, weights = model(images, questions, scene)
    assert weights is None
    mean = model.encoder(images)[scene].mean(1)
    torch.testing.assert_close(logits, model.answer(torch.cat([mean, questions], -1)))


def test_hard_attention_reads_one_cell():
    torch.manual_seed(0)
    model = build_model(VQAModelConfig(kind="hard", channels=8, key_dim=6, hidden=16))
    images, questions, scene = images_and_questions()
    model.eval()  # the most probable cell
    cells = model.encoder(images)[scene]  # (batch normalisation reads the same statistics)
    logits, weights = model(images, questions, scene)
    best = cells[torch.arange(7), weights.argmax(-1)]
    torch.testing.assert_close(logits, model.answer(torch.cat([best, questions], -1)))
    model.train()  # K sampled cells per question, and their log-probabilities for REINFORCE
    cells = model.encoder(images)[scene]  # normalised by this batch's statistics
    logits, weights = model(images, questions, scene, generator=torch.Generator().manual_seed(0))
    K = model.config.samples
    log_prob = model.last_log_prob
    assert logits.shape == (7, K, 9) and log_prob.shape == (7, K) and (log_prob <= 0).all()
    chosen = torch.multinomial(weights.detach(), K, replacement=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(log_prob, torch.log(weights.gather(1, chosen)))
    read = cells[torch.arange(7)[:, None], chosen]  # (7, K, C + 2)
    torch.testing.assert_close(logits, model.answer(torch.cat([read, questions[:, None].expand(-1, K, -1)], -1)))
    reward = torch.randn(7, K)
    (-reinforce_surrogate(log_prob, reward)).backward()
    assert model.W_q[0].weight.grad.abs().sum() > 0


def test_expected_share_reads_the_expectation():
    torch.manual_seed(0)
    model = build_model(VQAModelConfig(kind="hard", channels=8, key_dim=6, hidden=16, expected_share=1.0))
    images, questions, scene = images_and_questions()
    logits, weights = model(images, questions, scene, generator=torch.Generator().manual_seed(0))
    glimpse = torch.einsum("nk,nkc->nc", weights, model.encoder(images)[scene])
    expected = model.answer(torch.cat([glimpse, questions], -1))
    torch.testing.assert_close(logits, expected[:, None].expand_as(logits))


def test_gumbel_hard_attention_passes_gradients_to_the_scores():
    torch.manual_seed(0)
    model = build_model(VQAModelConfig(kind="hard", estimator="gumbel", channels=8, key_dim=6, hidden=16))
    images, questions, scene = images_and_questions()
    logits, _ = model(images, questions, scene, generator=torch.Generator().manual_seed(0))
    logits.sum().backward()
    assert model.W_k.weight.grad.abs().sum() > 0 and model.W_q[0].weight.grad.abs().sum() > 0


def test_bad_inputs():
    model = build_model(VQAModelConfig(kind="soft", channels=8, key_dim=6, hidden=16))
    images, questions, scene = images_and_questions()
    with pytest.raises(ValueError, match="questions"):
        model(images, questions[:, :5], scene)
    with pytest.raises(ValueError, match="scene"):
        model(images, questions, scene + 5)
    with pytest.raises(ValueError, match="scene"):
        model(images, questions, scene[:3])
    with pytest.raises(ValueError, match="images"):
        model(images, questions)
    with pytest.raises(ValueError, match="kind"):
        build_model(VQAModelConfig(kind="glimpse"))
    with pytest.raises(ValueError, match="tau"):
        build_model(VQAModelConfig(kind="hard", tau=0.0))
