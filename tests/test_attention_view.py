"""Unit tests of companion.attention_view.AttentionView: the mime bundle, its data, validation, the widget."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import numpy as np
import pytest
import torch

from companion import attention_view as av
from companion.attention_view import AttentionView

TOKS = ["the", "cat", "sat", "down"]


def weights(*shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.softmax(torch.randn(*shape, generator=g) * 2, dim=-1)


def embedded_json(html: str) -> dict:
    m = re.search(r"companionAttentionView\(box,(\{.*\})\);\n\}\)\(\);</script>", html, re.S)
    assert m, "no data call found in the HTML"
    return json.loads(m.group(1))


# ---- the bundle ------------------------------------------------------------------------

def test_bundle_has_html_png_and_one_line_text():
    view = AttentionView(weights(2, 4, 4), TOKS)
    bundle = view._repr_mimebundle_()
    assert set(bundle) == {"text/html", "image/png", "text/plain"}
    assert bundle["image/png"][:8] == b"\x89PNG\r\n\x1a\n"
    assert "\n" not in bundle["text/plain"]
    assert "2 heads" in bundle["text/plain"] and "4 queries x 4 keys" in bundle["text/plain"]
    assert "image/png" not in AttentionView(weights(4, 4), TOKS, png=False)._repr_mimebundle_()


def test_html_is_one_container_with_one_inline_classic_script():
    html = AttentionView(weights(3, 2, 4, 4), TOKS).to_html()
    assert html.count("<script>") == 1 and html.count("</script>") == 1
    assert html.startswith('<div class="companion-attention-view" id="cav-')
    assert html.endswith("</script></div>")
    assert "function companionAttentionView" in html  # the package's JS, inlined
    # nothing external: no src/href attributes, no module loaders; the only URL is the SVG namespace
    assert not re.search(r"\b(src|href)\s*=", html)
    assert "require(" not in html and "import(" not in html and "d3." not in html
    assert set(re.findall(r"https?://[^\s\"']+", html)) == {"http://www.w3.org/2000/svg"}


def test_embedded_json_round_trips_the_rounded_weights():
    w = weights(2, 3, 4, 5)
    view = AttentionView(w, TOKS, ["a", "b", "c", "d", "e"], decimals=3)
    data = embedded_json(view.to_html())
    assert data == view.data
    assert data["shape"] == [2, 3, 4, 5]
    got = np.array(data["w"]).reshape(2, 3, 4, 5) / data["scale"]
    np.testing.assert_allclose(got, w.numpy(), atol=0.5e-3 + 1e-12)
    assert data["q"] == TOKS and data["k"] == ["a", "b", "c", "d", "e"]
    assert len(data["cmap"]) >= 16 and data["cmap"][0] == "#440154"  # viridis, the book's map
    assert data["vmax"] == pytest.approx(round(float(w.max()), 3))


def test_numpy_and_torch_give_the_same_data():
    w = weights(4, 4)
    assert AttentionView(w, TOKS).data == AttentionView(w.numpy(), TOKS).data


def test_leading_axes_are_added():
    assert AttentionView(weights(4, 4), TOKS).shape == (1, 1, 4, 4)
    assert AttentionView(weights(3, 4, 4), TOKS).shape == (1, 3, 4, 4)
    assert AttentionView(weights(2, 3, 4, 4), TOKS).shape == (2, 3, 4, 4)


def test_tokens_cannot_break_out_of_the_script():
    toks = ["</script><b>x", "<!--", "a&b", "\u2028"]
    html = AttentionView(weights(4, 4), toks).to_html()
    assert html.count("</script>") == 1 and "<!--" not in html and "<b>" not in html
    assert embedded_json(html)["q"] == toks


# ---- ids -------------------------------------------------------------------------------

ID_RE = re.compile(r'id="([^"]+)"')


def test_same_data_twice_gets_distinct_ids_with_a_common_stem():
    w = weights(4, 4, seed=11)
    a, b = AttentionView(w, TOKS), AttentionView(w, TOKS)
    id_a, id_b = ID_RE.search(a.to_html()).group(1), ID_RE.search(b.to_html()).group(1)
    assert id_a != id_b
    assert id_b.startswith(id_a.split("-2")[0][:16])
    assert a.content_hash == b.content_hash
    assert AttentionView(weights(4, 4, seed=12), TOKS).content_hash != a.content_hash
    assert AttentionView(w, TOKS, mode="heatmap").content_hash != a.content_hash


def test_explicit_id_is_used_and_validated():
    view = AttentionView(weights(4, 4), TOKS, id="fig-ch2-heads")
    assert ID_RE.search(view.to_html()).group(1) == "fig-ch2-heads"
    assert ID_RE.search(view.to_html()).group(1) == "fig-ch2-heads"
    for bad in ("2abc", "a b", 'x"><script>', ""):
        with pytest.raises(ValueError, match="id must"):
            AttentionView(weights(4, 4), TOKS, id=bad)


_RUN = (
    "import torch, hashlib\n"
    "from companion.attention_view import AttentionView\n"
    "torch.manual_seed(0)\n"
    "w = torch.softmax(torch.randn(2, 3, 5, 5), -1)\n"
    "t = 'a b c d e'.split()\n"
    "out = AttentionView(w, t).to_html() + AttentionView(w, t).to_html()\n"
    "out += AttentionView(w[0], t, head='all', mode='heatmap').to_html()\n"
    "print(hashlib.sha256(out.encode()).hexdigest())\n"
)


def test_html_is_identical_across_python_sessions():
    runs = [subprocess.run([sys.executable, "-c", _RUN], capture_output=True, text=True, check=True)
            for _ in range(2)]
    assert runs[0].stdout == runs[1].stdout and len(runs[0].stdout.strip()) == 64


# ---- validation ------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4,), (1, 1, 1, 4, 4)])
def test_wrong_number_of_axes_is_rejected(shape):
    with pytest.raises(ValueError, match=r"weights must have shape .*got shape"):
        AttentionView(torch.full(shape, 0.25))


def test_bad_values_are_rejected():
    w = weights(4, 4)
    with pytest.raises(ValueError, match="NaN"):
        AttentionView(w.masked_fill(torch.eye(4, dtype=torch.bool), float("nan")), TOKS)
    with pytest.raises(ValueError, match="infinite"):
        AttentionView(w.masked_fill(torch.eye(4, dtype=torch.bool), float("inf")), TOKS)
    with pytest.raises(ValueError, match="non-negative"):
        AttentionView(w - 0.5, TOKS)
    with pytest.raises(ValueError, match="empty axis"):
        AttentionView(torch.zeros(2, 0, 4))
    with pytest.raises(TypeError, match="torch.Tensor or numpy array"):
        AttentionView([[0.5, 0.5], [0.5, 0.5]])
    with pytest.raises(TypeError, match="real"):
        AttentionView(torch.ones(2, 2, dtype=torch.complex64))


def test_token_lengths_must_match_and_name_the_argument():
    with pytest.raises(ValueError, match=r"query_tokens has 3 tokens but weights of shape \(2, 4, 4\)"):
        AttentionView(weights(2, 4, 4), TOKS[:3])
    with pytest.raises(ValueError, match=r"key_tokens has 4 tokens .*\(4, 5\)"):
        AttentionView(weights(4, 5), TOKS, TOKS)
    with pytest.raises(TypeError, match="not one string"):
        AttentionView(weights(4, 4), "the cat sat down")


def test_key_tokens_default_to_queries_only_when_square():
    assert AttentionView(weights(4, 4), TOKS).key_tokens == TOKS
    with pytest.raises(ValueError, match="key_tokens are required .* 4 queries and 5 keys"):
        AttentionView(weights(4, 5), TOKS)
    # without any tokens both sides are numbered
    view = AttentionView(weights(4, 5))
    assert view.query_tokens == ["0", "1", "2", "3"] and view.key_tokens[-1] == "4"


def test_rows_of_zeros_and_unnormalised_rows_are_shown_as_given():
    w = weights(4, 4)
    w[2] = 0.0  # a masked query
    w[3] *= 2.0  # a row summing to 2
    view = AttentionView(w, TOKS)
    got = np.array(view.data["w"]).reshape(4, 4) / view.data["scale"]
    assert (got[2] == 0).all()
    assert got[3].sum() == pytest.approx(2.0, abs=3e-3)
    assert view.data["vmax"] == pytest.approx(round(float(w.max()), 3))
    assert AttentionView(torch.zeros(3, 3)).data["vmax"] == 1.0  # all masked: still a scale


def test_options_are_validated():
    w = weights(2, 4, 4)
    cases = [
        (dict(mode="bars"), "mode must be one of"),
        (dict(head=2), r"head must be 'all' or an integer in \[0, 2\)"),
        (dict(layer=1), r"layer must be an integer in \[0, 1\)"),
        (dict(vmax=0), "vmax must be a positive"),
        (dict(vmax=float("nan")), "vmax must be a positive"),
        (dict(decimals=7), "decimals must be"),
        (dict(max_cells=0), "max_cells must be"),
        (dict(head_names=["a"]), "head_names must be a list of 2"),
    ]
    for kwargs, msg in cases:
        with pytest.raises(ValueError, match=msg):
            AttentionView(w, TOKS, **kwargs)
    with pytest.raises(TypeError, match="head_label must be a string"):
        AttentionView(w, TOKS, head_label=3)
    labelled = AttentionView(w, TOKS, head_label="Sequence", head_names=["s1", "s2"]).data
    assert (labelled["hlabel"], labelled["llabel"], labelled["heads"]) == ("Sequence", "Layer", ["s1", "s2"])
    assert AttentionView(w, TOKS, head="all").data["head"] == -1
    assert AttentionView(w, TOKS, head=-1).data["head"] == 1
    assert AttentionView(weights(4, 4), TOKS, head="all").data["head"] == 0  # one head: no grid


# ---- size --------------------------------------------------------------------------------

def test_size_guard_refuses_huge_tensors_with_advice():
    big = torch.full((4, 8, 64, 64), 1 / 64)  # 131,072 weights
    with pytest.raises(ValueError, match=r"131,072 values.*max_cells=100,000.*weights\[-1\]"):
        AttentionView(big)
    assert AttentionView(big, max_cells=200_000).shape == (4, 8, 64, 64)


def test_html_size_at_the_default_limit_stays_well_under_a_page_budget():
    w = torch.softmax(torch.randn(4, 4, 125, 50), -1)  # exactly 100,000 weights
    html = AttentionView(w, max_cells=100_000, png=False).to_html()
    assert len(html.encode()) < 600_000


# ---- book integration -------------------------------------------------------------------

def test_myst_nb_prefers_html_over_png_in_the_html_builder():
    from myst_nb.core.render import base_render_priority

    html_priority = base_render_priority()["html"]
    assert html_priority["text/html"] < html_priority["image/png"]  # lower = preferred
    # and the bundle has no mime type that myst-nb would prefer to text/html
    preferred = {m for m, p in html_priority.items() if p is not None and p < html_priority["text/html"]}
    assert not preferred & set(AttentionView(weights(4, 4), TOKS)._repr_mimebundle_())


def test_standalone_page_holds_every_view():
    views = [AttentionView(weights(4, 4, seed=s), TOKS) for s in range(3)]
    page = av.standalone_page(views, title="T <1>")
    assert page.startswith("<!DOCTYPE html>") and "T &lt;1&gt;" in page
    assert page.count('class="companion-attention-view"') == 3
    with pytest.raises(TypeError):
        av.standalone_page([])


# ---- live kernel widget (Python side only) -------------------------------------------------

def test_widget_shares_the_javascript_and_state():
    pytest.importorskip("anywidget")
    view = AttentionView(weights(2, 4, 4), TOKS, title="w")
    widget = view.widget()
    assert widget.data == view.data
    esm = widget._esm if isinstance(widget._esm, str) else str(widget._esm)
    assert av._script_source() in esm and "export default" in esm


def test_widget_update_redraws_and_keeps_state_on_bad_input():
    pytest.importorskip("anywidget")
    widget = AttentionView(weights(2, 4, 4), TOKS).widget()
    seen = []
    widget.observe(lambda change: seen.append(change["new"]), names="data")
    new = weights(2, 3, 3, seed=5)
    widget.update(weights=new, query_tokens=["a", "b", "c"])
    assert widget.data["shape"] == [1, 2, 3, 3] and widget.data["k"] == ["a", "b", "c"]
    assert len(seen) == 1
    before = widget.data
    with pytest.raises(ValueError, match="query_tokens has 3 tokens"):
        widget.update(weights=weights(5, 5))  # the old tokens no longer fit
    with pytest.raises(TypeError, match="unknown argument"):
        widget.update(temperature=2.0)
    assert widget.data == before and len(seen) == 1
    widget.update(title="after", mode="heatmap")
    assert widget.data["title"] == "after" and widget.data["mode"] == "heatmap"


def test_output_updater_holds_the_current_view_without_png():
    out = AttentionView(weights(2, 4, 4), TOKS, title="first").output()
    (shown,) = out.outputs
    assert set(shown["data"]) == {"text/plain", "text/html"}  # no PNG in the widget state
    assert embedded_json(shown["data"]["text/html"])["title"] == "first"
    out.update(weights=weights(3, 3, seed=2), query_tokens=["a", "b", "c"], title="second")
    (shown,) = out.outputs
    data = embedded_json(shown["data"]["text/html"])
    assert data["title"] == "second" and data["shape"] == [1, 1, 3, 3]
    with pytest.raises(ValueError, match="key_tokens are required"):
        out.update(weights=weights(3, 5))
    assert out.outputs == (shown,) and out.view.data == data
