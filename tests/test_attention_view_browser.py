"""AttentionView in headless Chromium, with every request off 127.0.0.1 blocked.

1. A standalone page written by the companion (five viewers, two of them with the same data,
   and one more inside an iframe as Colab shows outputs): every viewer renders, choosing another
   head changes what is drawn, hovering and the keyboard change the highlighted weights, one
   viewer's controls leave the others alone, no console error, no request leaves the page.
2. The built book: every page of ``_build/html`` that holds a viewer gets the same checks, and
   its size is printed and written to ``attention-view-pages.txt`` beside the HTML folder
   (budget 2 MB). When the book is not built or no page has a viewer yet,
   the test is skipped with a message saying so, never passed.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlparse

import pytest
import torch

from companion.attention_view import AttentionView, standalone_page

ROOT = Path(__file__).resolve().parents[1]
PAGE_BUDGET = 2_000_000  # bytes of HTML a chapter page may weigh with its viewers
# Console noise of the book's theme that has nothing to do with the viewer (see TOOLCHAIN.md).
BOOK_NOISE = re.compile(r"THEBE_JS_URL|invalid theme mode|favicon", re.I)
# Chromium, the local server and the shared book build come from conftest.py's fixtures
# (`chromium`, `serve_directory`, `built_book`).


class Watched:
    """A page that records console errors, page errors and requests that would leave it."""

    def __init__(self, browser, base: str):
        self.page = browser.new_page(viewport={"width": 1100, "height": 900})
        self.errors: list[str] = []
        self.outside: list[str] = []
        host = urlparse(base).netloc
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(m.text))
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror: {e}"))

        def route(r):
            if urlparse(r.request.url).netloc == host or r.request.url.startswith(("data:", "blob:")):
                r.continue_()
            else:
                self.outside.append(r.request.url)
                r.abort()

        self.page.route("**/*", route)

    def close(self):
        self.page.close()


def drawn(view) -> list[str]:
    """What a viewer currently draws: the weight of every visible line or cell."""
    return view.evaluate(
        "v => Array.from(v.querySelectorAll('.cav-stage [data-w]'))"
        ".filter(e => e.closest('[style*=\"display: none\"]') === null)"
        ".map(e => e.getAttribute('data-w') + '@' + (e.getAttribute('x1') || e.getAttribute('x')))")


def highlighted(view) -> str:
    """What a hovered query shows: the status line, the values beside the keys, the row outline."""
    return view.evaluate(
        "v => v.querySelector('.cav-status').textContent + '|' + "
        "Array.from(v.querySelectorAll('.cav-val')).map(e => e.textContent).join(',') + '|' + "
        "Array.from(v.querySelectorAll('rect[stroke=\"#e9a03b\"]'))"
        ".map(e => e.getAttribute('display') + e.getAttribute('y')).join(',')")


def check_viewers(page, expect_at_least: int = 1) -> int:
    """Check every viewer on the page; return how many there are."""
    views = page.locator(".companion-attention-view")
    n = views.count()
    assert n >= expect_at_least, f"expected at least {expect_at_least} viewers, found {n}"
    ids = [views.nth(i).get_attribute("id") for i in range(n)]
    assert len(set(ids)) == n, f"viewer ids are not unique: {ids}"
    for i in range(n):
        v = views.nth(i)
        v.scroll_into_view_if_needed()
        assert v.get_attribute("data-rendered") == "1", f"viewer {ids[i]} did not render"
        assert v.locator(".cav-fallback").count() == 0
        assert len(drawn(v)) > 0, f"viewer {ids[i]} draws nothing"

        # another head (or, with one head, the other view) changes what is drawn
        before = drawn(v)
        head = v.locator("select[data-role=head]")
        if head.count():
            values = head.locator("option").evaluate_all("os => os.map(o => o.value)")
            current = head.input_value()
            other = next(x for x in values if x != current and x != "-1")
            head.select_option(other)
        else:
            v.locator(".cav-seg button[aria-pressed=false]").click()
        after = drawn(v)
        assert after and after != before, f"viewer {ids[i]}: choosing another head changed nothing"

        # hovering a query token changes the highlighted weights
        toks = v.locator(".cav-tok")
        assert toks.count() >= 2
        assert highlighted(v).startswith("|")  # nothing highlighted yet
        toks.nth(0).hover()
        first = highlighted(v)
        q0 = toks.nth(0).get_attribute("aria-label").split(": ", 1)[1]
        assert first.startswith(f"\u201c{q0}\u201d attends most to"), first
        toks.nth(1).hover()
        second = highlighted(v)
        assert second != first and second.split("|")[0], "hovering another token changed nothing"
        page.mouse.move(0, 0)
    return n


# ---- 1. the standalone page ------------------------------------------------------------

@pytest.fixture(scope="module")
def test_site(tmp_path_factory):
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("views")
    toks = "the cat sat on the mat because it was tired".split()
    heads = torch.softmax(torch.randn(4, 10, 10) * 2, -1)
    cross = torch.softmax(torch.randn(3, 4) * 2, -1)
    layers = torch.softmax(torch.randn(2, 3, 6, 6) * 2, -1)
    masked = heads[0].clone()
    masked[3] = 0.0
    views = [
        AttentionView(heads, toks, title="Self-attention, four heads"),
        AttentionView(cross, "the cat sits".split(), "le chat est assis".split(),
                      title="Cross-attention", mode="heatmap", query_label="target",
                      key_label="source"),
        AttentionView(layers, toks[:6], head="all", title="Two layers, three heads"),
        AttentionView(heads, toks, title="Self-attention, four heads (again)"),
        AttentionView(masked, toks, title="A masked query"),
    ]
    (out / "index.html").write_text(standalone_page(views, "AttentionView test page"), "utf-8")
    (out / "inner.html").write_text(standalone_page([AttentionView(cross, "the cat sits".split(),
                                    "le chat est assis".split(), mode="heatmap")], "inner"), "utf-8")
    (out / "framed.html").write_text(
        "<!DOCTYPE html><html><head><meta charset='utf-8'><link rel='icon' href='data:,'></head>"
        "<body><iframe src='inner.html' width='800' height='400'></iframe>"
        "<img src='https://cdn.example.org/should-be-blocked.png' alt=''></body></html>", "utf-8")
    return out


@pytest.fixture(scope="module")
def site_url(serve_directory, test_site) -> str:
    return serve_directory(test_site)


@pytest.fixture
def open_page(chromium, site_url):
    """``open_page(name)``: a watched page of the test site, loaded; closed after the test."""
    opened = []

    def open_(name: str) -> Watched:
        w = Watched(chromium, site_url)
        opened.append(w)
        w.page.goto(f"{site_url}/{name}", wait_until="load")
        return w

    yield open_
    for w in opened:
        w.close()


def test_standalone_page_viewers_work_offline(open_page):
    w = open_page("index.html")
    assert check_viewers(w.page, expect_at_least=5) == 5
    assert w.errors == [] and w.outside == []


def test_viewers_on_one_page_are_independent(open_page):
    w = open_page("index.html")
    views = w.page.locator(".companion-attention-view")
    first, twin = views.nth(0), views.nth(3)  # same weights, same tokens
    assert drawn(first) == drawn(twin)
    twin.locator("select[data-role=head]").select_option("2")
    twin.locator(".cav-seg button[data-mode=heatmap]").click()
    assert first.locator("select[data-role=head]").input_value() == "0"
    assert first.locator(".cav-seg button[data-mode=lines]").get_attribute("aria-pressed") == "true"
    assert drawn(first) != drawn(twin)
    twin.locator(".cav-tok").nth(2).hover()
    assert highlighted(first).startswith("|") and not highlighted(twin).startswith("|")
    assert w.errors == []


def test_all_heads_grid_and_tile_choice(open_page):
    w = open_page("index.html")
    grid = w.page.locator(".companion-attention-view").nth(2)
    assert grid.locator(".cav-tile").count() == 3
    grid.locator(".cav-tok").nth(1).hover()
    outlines = grid.evaluate(
        "v => Array.from(v.querySelectorAll('.cav-tile rect[stroke=\"#e9a03b\"]')).length")
    status = grid.locator(".cav-status").text_content()
    assert status.count("head ") == 3, status  # one answer per head
    assert outlines == 0  # lines mode: mini line panels, no heatmap outlines
    before = drawn(grid)
    grid.locator("select[data-role=layer]").select_option("1")
    assert drawn(grid) != before
    grid.locator(".cav-tile").nth(2).click()
    assert grid.locator("select[data-role=head]").input_value() == "2"
    assert grid.locator(".cav-tile").count() == 0
    assert w.errors == []


def test_keyboard_moves_between_query_tokens_and_pins(open_page):
    w = open_page("index.html")
    v = w.page.locator(".companion-attention-view").nth(0)
    v.locator(".cav-tok").nth(0).focus()
    assert v.locator(".cav-status").text_content().startswith("\u201cthe\u201d")
    w.page.keyboard.press("ArrowDown")
    assert v.locator(".cav-status").text_content().startswith("\u201ccat\u201d")
    w.page.keyboard.press("Enter")
    assert "pinned" in v.locator(".cav-status").text_content()
    w.page.keyboard.press("Escape")
    assert v.locator(".cav-status").text_content() == ""
    # a masked query (row of zeros) is reported as such
    m = w.page.locator(".companion-attention-view").nth(4)
    m.locator(".cav-tok").nth(3).hover()
    assert "masked" in m.locator(".cav-status").text_content()
    assert w.errors == []


def test_viewer_in_an_iframe_and_outside_requests_are_blocked(open_page):
    w = open_page("framed.html")
    frame = w.page.frame_locator("iframe")
    assert frame.locator(".companion-attention-view").get_attribute("data-rendered") == "1"
    assert frame.locator(".companion-attention-view rect[data-w]").count() == 12
    # the guard itself works: the deliberate CDN image was stopped and recorded
    assert w.outside == ["https://cdn.example.org/should-be-blocked.png"]


# ---- 2. the built book -----------------------------------------------------------------

@pytest.fixture(scope="module")
def book_html(request) -> Path:
    """The built book: conftest.py's shared ``built_book`` (which honours ``BOOK_HTML=...``);
    without that fixture, ``_build/html``, built here into ``_build`` only when it is missing."""
    try:
        return Path(request.getfixturevalue("built_book"))
    except pytest.FixtureLookupError:
        pass
    html = ROOT / "_build" / "html"
    if not (html / "index.html").exists():
        jb = Path(sys.executable).with_name("jupyter-book")
        subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(ROOT / "_build")],
                       check=True, cwd=ROOT)
    return html


def test_built_book_pages_with_viewers(chromium, serve_directory, book_html, capsys):
    pages = sorted(p for p in book_html.rglob("*.html")
                   if "_sources" not in p.parts and 'class="companion-attention-view"' in p.read_text("utf-8", "ignore"))
    if not pages:
        pytest.skip(f"no page of the built book at {book_html} holds an AttentionView yet: "
                    "nothing was checked in the book (the standalone-page tests still ran)")
    sizes = {}
    base = serve_directory(book_html)
    for path in pages:
        rel = path.relative_to(book_html).as_posix()
        sizes[rel] = path.stat().st_size
        w = Watched(chromium, base)
        w.page.goto(f"{base}/{rel}", wait_until="load")
        n = check_viewers(w.page)
        errors = [e for e in w.errors if not BOOK_NOISE.search(e)]
        assert errors == [], f"{rel}: console errors {errors}"
        assert w.outside == [], f"{rel}: requests left the page: {w.outside}"
        w.close()
        with capsys.disabled():
            print(f"\n  {rel}: {n} viewer(s), {sizes[rel] / 1e6:.2f} MB of HTML")
    # the sizes, also for runs under xdist (whose workers' prints are not shown)
    (book_html.parent / "attention-view-pages.txt").write_text(
        "".join(f"{k}\t{v}\n" for k, v in sizes.items()), "utf-8")
    too_big = {k: v for k, v in sizes.items() if v >= PAGE_BUDGET}
    assert not too_big, f"pages over the {PAGE_BUDGET / 1e6:.0f} MB budget: {too_big}"
