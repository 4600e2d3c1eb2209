"""The heatmap helper, the book style and the loss smoother.

(Where the experiment cache lives is tested in test_training_and_experiments.py.)
"""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from companion.style import BOOK_RC, WEIGHTS_CMAP, use_book_style  # noqa: E402
from companion.training import smoothed  # noqa: E402
from companion.viz import attention_heatmap  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def test_heatmap_draws_the_weights_with_labels():
    w = torch.softmax(torch.randn(3, 4), -1)
    ax = attention_heatmap(w, ["a", "b", "c"], ["w", "x", "y", "z"], title="t")
    image = ax.get_images()[0]
    np.testing.assert_allclose(image.get_array(), w.double().numpy())
    assert image.get_cmap().name == WEIGHTS_CMAP
    assert [t.get_text() for t in ax.get_yticklabels()] == ["a", "b", "c"]
    assert [t.get_text() for t in ax.get_xticklabels()] == ["w", "x", "y", "z"]
    cells = [t.get_text() for t in ax.texts]
    assert len(cells) == 12 and cells[0] == f"{w[0, 0].item():.2f}"  # annotated by default when small
    assert ax.get_title() == "t" and len(ax.figure.axes) == 2  # with a colour bar


def test_heatmap_options_and_numpy_input():
    w = np.full((20, 20), 0.05)
    _, ax = plt.subplots()
    out = attention_heatmap(w, ax=ax, colorbar=False)
    assert out is ax and len(ax.texts) == 0  # large matrices are not annotated
    assert len(ax.figure.axes) == 1


@pytest.mark.parametrize(
    "weights, kwargs, error, match",
    [
        (torch.rand(2, 3, 4), {}, ValueError, r"2-D matrix \(len_q, len_k\); got shape \(2, 3, 4\)"),
        (torch.tensor([[0.5, float("nan")]]), {}, ValueError, "NaN"),
        ([[0.5, 0.5]], {}, TypeError, "torch.Tensor or numpy array"),
        (torch.rand(2, 3), {"query_labels": ["a"]}, ValueError, r"query_labels has 1 entries but weights have shape \(2, 3\)"),
        (torch.rand(2, 3), {"key_labels": ["a", "b"]}, ValueError, "key_labels has 2 entries"),
    ],
)
def test_heatmap_rejects_bad_input(weights, kwargs, error, match):
    with pytest.raises(error, match=match):
        attention_heatmap(weights, **kwargs)


def test_book_style_sets_the_weights_colour_map():
    with matplotlib.rc_context():
        matplotlib.rcParams["image.cmap"] = "gray"
        use_book_style()
        assert matplotlib.rcParams["image.cmap"] == WEIGHTS_CMAP
        for key, value in BOOK_RC.items():
            if key != "axes.prop_cycle":
                got = matplotlib.rcParams[key]
                assert (list(got) if isinstance(value, tuple) else got) == (list(value) if isinstance(value, tuple) else value), key


def test_smoothed_is_a_running_mean():
    losses = [float(v) for v in np.random.default_rng(0).random(40)]
    got = smoothed(losses, window=5)
    expected = [np.mean(losses[max(0, i - 4) : i + 1]) for i in range(40)]
    np.testing.assert_allclose(got, expected)
