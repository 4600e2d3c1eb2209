"""Local attention experiments: local-p reaches the 0.95 exact-match bar on the reversal task;
local-m, whose window sits at p_t = t on an anti-diagonal alignment, is measured and falls short,
with its window missing the right word most of the time.

Measured (default configs, one thread, a loaded 2-core machine): local-p exact match 0.992 in
71 s; local-m 0.552 (window hits 0.33) in 81 s. With local-m's weights the plain windowed softmax
(no Gaussian, as in Luong et al.): local-p 0.988, local-m 0.622 (window hits 0.33), under a load
of about 20 (325 s and 672 s).
"""

import pytest
import torch

from companion import experiments
from companion.experiments.local_attention import LocalConfig, build, window_statistics
from companion.local_seq2seq import LocalSeq2Seq, LocalSeq2SeqConfig
from companion.tasks.toy_translation import encode


@pytest.fixture(scope="module")
def runs(private_cache):
    return {name: experiments.run(name, progress=False) for name in ("local-p", "local-m")}


def test_local_p_reaches_the_bar(runs):
    m = runs["local-p"].metrics
    assert m["exact_match"] >= 0.95, m
    assert m["window_hits"] >= 0.95, m
    assert m["positions_per_step"] <= 5  # 2D + 1 with D = 2
    assert m["positions_per_step"] < m["mean_source_length"]


def test_local_m_is_measured_and_misses_the_anti_diagonal(runs):
    m, p = runs["local-m"].metrics, runs["local-p"].metrics
    assert m["window_hits"] < 0.6, m  # p_t = t holds word L-1-t only near the middle
    assert m["exact_match"] < p["exact_match"] - 0.2, (m, p)
    by_length = runs["local-m"].history["exact_match_by_length"]
    assert by_length[0] > by_length[-1]  # short sentences fit in the window, long ones do not


def test_window_statistics_count_the_window():
    torch.manual_seed(0)
    model = LocalSeq2Seq(LocalSeq2SeqConfig(kind="local-m", half_width=1))
    split = encode([[1, 2, 3, 4, 5, 6, 7]])
    stats = window_statistics(model, split, "monotonic")
    assert stats["window_hits"] == 1.0  # p_t = t always holds word t
    assert stats["positions_per_step"] == pytest.approx((2 + 3 * 5 + 2) / 7)
    reversal = window_statistics(model, split, "reversal")
    assert reversal["window_hits"] == pytest.approx(1 / 7)  # |6 - 2t| <= 1 only at t = 3
    two = encode([[1, 2, 3, 4, 5, 6, 7], [3, 2, 1]])
    assert window_statistics(model, two, "monotonic")["window_hits"] == 1.0


def test_bad_settings():
    with pytest.raises(ValueError, match="task"):
        build(LocalConfig(task="copy"))
    with pytest.raises(ValueError, match="kind"):
        build(LocalConfig(kind="global"))
    with pytest.raises(ValueError, match="half_width"):
        build(LocalConfig(half_width=0))
