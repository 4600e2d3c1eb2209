"""Explorables (companion.interactive) in headless Chromium, with every request off 127.0.0.1
blocked: a standalone page with one explorable of each control kind; each control is operated
(mouse and keyboard) and what the explorable shows must change, and change back; an attention
view inside the frames stays interactive; no console error, no request leaves the page."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from companion.attention_view import AttentionView  # noqa: E402
from companion.interactive import Buttons, Choice, Slider, Text, Toggle, explore  # noqa: E402
from test_attention_view_browser import Watched  # noqa: E402


def curve(freq, kind, grid):
    fig, ax = plt.subplots(figsize=(4, 2.2))
    x = np.linspace(0, 5, 100)
    ax.plot(x, np.sin(freq * x) if kind == "sin" else np.cos(freq * x))
    ax.grid(grid)
    return fig


def heat(T):
    s = torch.tensor([[2.0, 1.0, 0.0], [0.0, 1.0, 3.0], [1.0, 1.0, 1.0]])
    return AttentionView(torch.softmax(s / T, -1), ["a", "b", "c"], png=False, title=f"T = {T}")


@pytest.fixture(scope="module")
def page_url(tmp_path_factory, serve_directory):
    explorables = [
        explore(curve, title="A curve, frequency $f$", mode="static",
                freq=Slider([0.5, 1.0, 2.0], label="frequency $f$"), kind=Choice(["sin", "cos"]),
                grid=Toggle(label="grid")),
        explore(lambda sentence, model: f"{model}: {sentence.upper()}", mode="static",
                sentence=Text(["one two", "three four"]), model=Buttons(["luong", "bahdanau"])),
        explore(heat, T=Slider([0.5, 1.0, 2.0], value=1.0, label="temperature"), mode="static"),
    ]
    body = "\n".join(f"<section>{e.to_html()}</section>" for e in explorables)
    folder = tmp_path_factory.mktemp("explorables")
    (folder / "index.html").write_text(
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><link rel="icon" href="data:,">'
        f"<title>Explorables</title></head><body>{body}</body></html>\n"
    )
    return serve_directory(folder) + "/index.html"


def shown(box) -> str:
    return box.evaluate("b => b.getAttribute('data-frame') + '|' + b.querySelector('.cex-frame').innerHTML")


def test_every_control_changes_what_is_shown(chromium, page_url):
    watched = Watched(chromium, page_url.rsplit("/", 1)[0])
    page = watched.page
    try:
        page.goto(page_url, wait_until="load")
        boxes = page.locator(".companion-explorable")
        assert boxes.count() == 3
        first, second, third = (boxes.nth(i) for i in range(3))
        assert first.locator(".cex-frame img").count() == 1
        assert first.locator(".cex-fallback").count() == 0  # replaced by the script

        # slider by keyboard: focus, arrow right
        before = shown(first)
        slider = first.locator("input[type=range]")
        slider.focus()
        page.keyboard.press("ArrowRight")
        assert first.locator("output").inner_text() == "1"
        assert shown(first) != before
        page.keyboard.press("ArrowLeft")
        assert shown(first) == before
        # menu
        first.locator("select").select_option("1")
        after_select = shown(first)
        assert after_select != before
        # checkbox by keyboard
        first.locator("input[type=checkbox]").focus()
        page.keyboard.press("Space")
        assert shown(first) != after_select
        # the other explorables did not change with the first
        before2 = shown(second)
        assert "luong: ONE TWO" in before2
        second.locator("button", has_text="bahdanau").click()
        assert "bahdanau: ONE TWO" in shown(second)
        assert second.locator("button[aria-pressed=true]").inner_text() == "bahdanau"
        second.locator("select").select_option(label="three four")
        assert "bahdanau: THREE FOUR" in shown(second)
        # a view inside the frames is drawn and stays interactive
        view = third.locator(".companion-attention-view")
        assert view.locator(".cav-title").inner_text() == "T = 1.0"
        third.locator("input[type=range]").fill("2")
        assert view.locator(".cav-title").inner_text() == "T = 2.0"
        # the reader's choice of heatmap survives a change of frame
        view.locator("button[data-mode=heatmap]").click()
        third.locator("input[type=range]").fill("0")
        assert view.locator(".cav-title").inner_text() == "T = 0.5"
        assert view.locator("button[data-mode=heatmap]").get_attribute("aria-pressed") == "true"
        token = view.locator(".cav-tok").first
        token.hover()
        assert view.locator(".cav-status").inner_text().strip() != ""
        assert watched.errors == [] and watched.outside == []
    finally:
        watched.close()
