"""Tests of companion.interactive: precomputed frames, determinism, size budget, validation,
and the live (ipywidgets) interface."""

from __future__ import annotations

import base64
import io
import json
import re

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

from companion.attention_view import AttentionView  # noqa: E402
from companion.interactive import (  # noqa: E402
    MAX_BYTES,
    Buttons,
    Choice,
    Explorable,
    Slider,
    Text,
    Toggle,
    explore,
)


def line_plot(freq, kind="sin"):
    fig, ax = plt.subplots(figsize=(4, 2.5))
    x = np.linspace(0, 5, 200)
    ax.plot(x, np.sin(freq * x) if kind == "sin" else np.cos(freq * x))
    ax.set_title(f"{kind}({freq:g} x)")
    return fig


def pixels(part) -> np.ndarray:
    assert part["t"] == "png" and part["src"].startswith("data:image/png;base64,")
    data = base64.b64decode(part["src"].split(",", 1)[1])
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def reference_pixels(fig, dpi=72) -> np.ndarray:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, facecolor="white")
    plt.close(fig)
    return np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB")).astype(int)


def embedded_data(page_html: str) -> dict:
    match = re.search(r"companionExplorable\(box,(\{.*\})(?:,companionAttentionView)?\);\n\}\)\(\);</script>", page_html, re.S)
    assert match, "no data in the explorable's HTML"
    return json.loads(match.group(1))


# ---- frames ------------------------------------------------------------------------------


def test_each_frame_is_the_functions_figure_for_its_grid_point():
    freqs = [0.5, 1.0, 2.0]
    ex = explore(line_plot, freq=Slider(freqs), kind=Choice(["sin", "cos"]), mode="static")
    assert ex.n_frames == 6 and ex.shape == (3, 2)
    for f in freqs:
        for kind in ("sin", "cos"):
            (part,) = ex.frame(freq=f, kind=kind)
            shown = pixels(part).astype(int)
            expected = reference_pixels(line_plot(f, kind))
            assert shown.shape == expected.shape
            # palette quantisation changes colours slightly, never the drawing
            assert np.abs(shown - expected).mean() < 2.0
    # distinct frames differ from each other
    assert not np.array_equal(pixels(ex.frame(freq=0.5, kind="sin")[0]), pixels(ex.frame(freq=2.0, kind="sin")[0]))


def test_frames_follow_row_major_order_in_the_page():
    ex = explore(lambda a, b: f"{a}-{b}", a=Slider([1, 2, 3]), b=Buttons(["x", "y"]), mode="static")
    data = embedded_data(ex.to_html())
    shown = [data["parts"][f[0]]["s"] for f in data["frames"]]
    assert shown == ["1-x", "1-y", "2-x", "2-y", "3-x", "3-y"]
    assert [c["kind"] for c in data["controls"]] == ["slider", "buttons"]


def test_identical_frames_are_stored_once():
    ex = explore(lambda a, b: line_plot(1.0) if b else f"a = {a}", a=Slider([1, 2, 3, 4]), b=Toggle(), mode="static")
    assert ex.n_frames == 8
    assert ex.n_distinct == 5  # four texts and one figure shared by the four frames with b=True
    data = embedded_data(ex.to_html())
    assert len(data["parts"]) == 5
    assert len({tuple(f) for f in data["frames"][1::2]}) == 1


def test_text_html_view_and_tuples():
    from IPython.display import HTML

    w = torch.softmax(torch.randn(3, 3, generator=torch.Generator().manual_seed(0)), -1)

    def fn(T, what):
        if what == "view":
            return AttentionView(torch.softmax(torch.log(w) / T, -1), ["a", "b", "c"], png=False)
        if what == "html":
            return HTML(f"<b>T = {T}</b>")
        return f"T = {T}", line_plot(T)

    ex = explore(fn, T=Slider([0.5, 2.0]), what=Choice(["view", "html", "both"]), mode="static")
    view = ex.frame(T=0.5, what="view")[0]
    assert view["t"] == "view"
    assert view["d"] == AttentionView(torch.softmax(torch.log(w) / 0.5, -1), ["a", "b", "c"]).data
    assert ex.frame(T=2.0, what="html") == [{"t": "html", "s": "<b>T = 2.0</b>"}]
    text, fig = ex.frame(T=2.0, what="both")
    assert text == {"t": "text", "s": "T = 2.0"} and fig["t"] == "png"
    page = ex.to_html()
    assert "function companionAttentionView" in page and ",companionAttentionView);" in page


def test_precomputing_leaves_no_pyplot_figure_open():
    before = plt.get_fignums()
    explore(line_plot, freq=Slider([1.0, 2.0]), mode="static")
    assert plt.get_fignums() == before


# ---- determinism and ids -----------------------------------------------------------------


def test_same_content_gives_the_same_bytes():
    a = explore(line_plot, freq=Slider([1.0, 2.0]), kind=Choice(["sin", "cos"]), mode="static")
    b = explore(line_plot, freq=Slider([1.0, 2.0]), kind=Choice(["sin", "cos"]), mode="static")
    assert a.to_html(id="fixed") == b.to_html(id="fixed")
    assert a.content_hash == b.content_hash
    first, second = a.to_html(), a.to_html()  # one page showing it twice: distinct ids
    ids = [re.search(r'id="([^"]+)"', h).group(1) for h in (first, second)]
    assert ids[0] != ids[1] and all(i.startswith("cex-" + a.content_hash) for i in ids)
    c = explore(line_plot, freq=Slider([1.0, 3.0]), kind=Choice(["sin", "cos"]), mode="static")
    assert c.content_hash != a.content_hash


def test_page_html_has_no_external_resource_and_no_script_break():
    ex = explore(lambda s: s, s=Text(["</script><script>alert(1)</script>", "a & b"]), mode="static")
    page = ex.to_html()
    assert page.count("</script>") == 1 and "<!--" not in page
    assert not re.search(r"(src|href)=\"https?:", page) and "http://" not in page.replace("http://www.w3.org", "")
    assert embedded_data(page)["parts"][0]["s"] == "</script><script>alert(1)</script>"


def test_mimebundle_static():
    ex = explore(line_plot, freq=Slider([1.0, 2.0], value=2.0), mode="static")
    bundle = ex._repr_mimebundle_()
    assert set(bundle) == {"text/plain", "text/html", "image/png"}
    assert "2 freq = 2 frames" in bundle["text/plain"] and "kB of HTML" in bundle["text/plain"]
    assert base64.b64decode(bundle["image/png"])[:8] == b"\x89PNG\r\n\x1a\n"
    assert embedded_data(bundle["text/html"])["controls"][0]["value"] == 1


# ---- size ----------------------------------------------------------------------------------


def test_nbytes_is_the_size_of_the_html():
    ex = explore(line_plot, freq=Slider([1.0, 2.0, 3.0]), mode="static")
    assert ex.nbytes == len(ex.to_html(id="cex-" + ex.content_hash).encode("utf-8"))
    assert ex.nbytes > 3 * 1000  # three PNGs
    assert f"{ex.nbytes / 1e3:.0f} kB" in repr(ex)


def test_budget_refuses_a_grid_that_is_too_heavy():
    with pytest.raises(ValueError, match=r"would add 0\.\d\d MB to the page \(grid 6 freq.*max_bytes=0\.01 MB.*coarser grid"):
        explore(line_plot, freq=Slider([1, 2, 3, 4, 5, 6]), mode="static", max_bytes=10_000)
    assert MAX_BYTES == 1_500_000


def test_too_many_combinations_are_refused_before_drawing():
    calls = []
    with pytest.raises(ValueError, match=r"1000 combinations \(10 a x 100 b\).*max_frames=400"):
        explore(lambda a, b: calls.append(1) or "x", a=Slider(list(range(10))), b=Slider(list(range(100))),
                mode="static")
    assert calls == []


# ---- validation ---------------------------------------------------------------------------


def test_argument_validation():
    with pytest.raises(TypeError, match="fn must be callable"):
        Explorable("not a function", a=Slider([1]))
    with pytest.raises(ValueError, match="at least one control"):
        Explorable(lambda: "x")
    with pytest.raises(TypeError, match="control 'a' must be a Slider, Choice"):
        Explorable(lambda a: "x", a=[1, 2, 3])
    with pytest.raises(ValueError, match="Slider values must not be empty"):
        Slider([])
    with pytest.raises(TypeError, match="Slider values must be a sequence"):
        Slider(3.0)
    with pytest.raises(ValueError, match="Choice options must not be empty"):
        Choice([])
    with pytest.raises(ValueError, match="duplicate labels"):
        Choice(["a", "a"])
    with pytest.raises(ValueError, match="must differ as shown"):
        Slider([0.1001, 0.1002], format=".2f")
    with pytest.raises(ValueError, match=r"initial value 5 is not one of the options \['1', '2'\]"):
        Slider([1, 2], value=5)
    with pytest.raises(TypeError, match="Text examples must all be strings"):
        Text(["a", 2])
    with pytest.raises(TypeError, match="Toggle value must be True or False"):
        Toggle(value=1)
    with pytest.raises(ValueError, match="mode must be"):
        Explorable(lambda a: "x", a=Slider([1]), mode="both")
    with pytest.raises(ValueError, match="dpi must be an integer from 20 to 300"):
        Explorable(lambda a: "x", a=Slider([1]), dpi=1000, mode="static")
    with pytest.raises(ValueError, match="give a value for each control"):
        Explorable(lambda a: "x", a=Slider([1]), mode="static").frame(b=1)


def test_slider_accepts_arrays_and_tensors_as_grids():
    ex = explore(lambda a: f"{a:.2f}", a=Slider(np.geomspace(0.1, 10, 3), format=".2g"), mode="static")
    assert ex.frame(a=1.0) == [{"t": "text", "s": "1.00"}]
    assert type(ex.controls["a"].values[0]) is float
    ex = explore(lambda a: str(a), a=Slider(torch.arange(3)), mode="static")
    assert ex.frame(a=2) == [{"t": "text", "s": "2"}]


def test_a_failing_grid_point_is_named():
    def fn(kernel, width):
        if kernel == "boxcar" and width < 0.1:
            raise ValueError("empty window")
        return f"{kernel} {width}"

    with pytest.raises(RuntimeError, match=r"fn\(kernel='boxcar', width=0\.05\) failed: ValueError: empty window"):
        explore(fn, kernel=Choice(["gaussian", "boxcar"]), width=Slider([0.05, 0.5]), mode="static")


def test_a_function_returning_none_is_explained():
    def draws_and_shows(a):
        plt.subplots()

    before = plt.get_fignums()
    with pytest.raises(RuntimeError, match=r"returned None: return the matplotlib Figure \(do not call plt.show\(\)\)"):
        explore(draws_and_shows, a=Slider([1]), mode="static")
    assert plt.get_fignums() == before
    with pytest.raises(RuntimeError, match="returned a dict"):
        explore(lambda a: {"a": a}, a=Slider([1]), mode="static")


def test_mode_follows_the_environment_variable(monkeypatch):
    monkeypatch.setenv("COMPANION_EXPLORABLE", "live")
    assert Explorable(lambda a: "x", a=Slider([1])).mode == "live"
    monkeypatch.setenv("COMPANION_EXPLORABLE", "static")
    assert Explorable(lambda a: "x", a=Slider([1])).mode == "static"
    monkeypatch.delenv("COMPANION_EXPLORABLE")
    assert Explorable(lambda a: "x", a=Slider([1])).mode == "static"  # no kernel here


def test_mode_guess_live_only_when_the_frontend_allows_stdin(monkeypatch):
    import types

    import IPython

    monkeypatch.delenv("COMPANION_EXPLORABLE", raising=False)
    for allow_stdin, expected in ((True, "live"), (False, "static")):
        shell = types.SimpleNamespace(kernel=types.SimpleNamespace(_allow_stdin=allow_stdin))
        monkeypatch.setattr(IPython, "get_ipython", lambda shell=shell: shell)
        assert Explorable(lambda a: "x", a=Slider([1])).mode == expected
    monkeypatch.setattr(IPython, "get_ipython", lambda: types.SimpleNamespace())  # terminal IPython
    assert Explorable(lambda a: "x", a=Slider([1])).mode == "static"


# ---- live ----------------------------------------------------------------------------------


def test_live_mode_computes_on_demand_with_the_chosen_values():
    import ipywidgets

    calls = []

    def fn(width, kernel, sentence, flag):
        calls.append((width, kernel, sentence, flag))
        return f"{kernel} {width} {sentence} {flag}"

    ex = explore(fn, width=Slider([0.1, 1.0], live=[0.1, 0.2, 0.5, 1.0]), kernel=Buttons(["a", "b"]),
                 sentence=Text(["one two"], placeholder="type"), flag=Toggle(value=True), mode="live")
    assert calls == [] and ex.data is None  # nothing precomputed
    box = ex.widget()
    controls = box.controls
    assert isinstance(controls["width"], ipywidgets.SelectionSlider)
    assert [v for _, v in controls["width"].options] == [0.1, 0.2, 0.5, 1.0]
    assert isinstance(controls["kernel"], ipywidgets.ToggleButtons)
    assert isinstance(controls["sentence"], ipywidgets.Combobox) and controls["sentence"].value == "one two"
    assert isinstance(controls["flag"], ipywidgets.Checkbox) and controls["flag"].value is True
    assert calls[-1] == (0.1, "a", "one two", True)  # drawn once with the initial values
    controls["width"].value = 0.5  # a value of the finer live grid
    assert calls[-1] == (0.5, "a", "one two", True)
    controls["kernel"].value = "b"
    controls["sentence"].value = "three four five"  # free text, not an example
    assert calls[-1] == (0.5, "b", "three four five", True)
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    with pytest.raises(RuntimeError, match="mode='static'"):
        ex.to_html()


CELL = (
    "from companion.interactive import Slider, explore\n"
    "explore(lambda a: f'a = {a}', a=Slider([1, 2, 3]))\n"
)


def test_a_headless_run_shows_the_static_explorer_and_a_frontend_the_live_widget(monkeypatch):
    """The mode guess in real kernels: nbclient (how the book executes) never allows stdin and
    gets the precomputed explorer; a frontend's execute request allows stdin and gets widgets."""
    import nbformat
    from jupyter_client.manager import start_new_kernel
    from nbclient import NotebookClient

    monkeypatch.delenv("COMPANION_EXPLORABLE", raising=False)
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(CELL)])
    NotebookClient(nb, kernel_name="python3", timeout=120).execute()
    (output,) = nb.cells[0].outputs
    assert 'class="companion-explorable"' in output["data"]["text/html"]
    assert "application/vnd.jupyter.widget-view+json" not in output["data"]

    manager, client = start_new_kernel(kernel_name="python3")
    try:
        msg_id = client.execute(CELL, allow_stdin=True)
        bundles = []
        while True:
            msg = client.get_iopub_msg(timeout=120)
            if msg["parent_header"].get("msg_id") != msg_id:
                continue
            if msg["msg_type"] in ("execute_result", "display_data"):
                bundles.append(msg["content"]["data"])
            if msg["msg_type"] == "status" and msg["content"]["execution_state"] == "idle":
                break
        assert any("application/vnd.jupyter.widget-view+json" in b for b in bundles), bundles
        assert not any("text/html" in b for b in bundles)
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)
