"""Every control of every chapter page works in the built book, with no kernel and no network.

For each chapter notebook listed in ``_toc.yml``, the built page is loaded in headless Chromium
(served on 127.0.0.1, every other request aborted). Every control inside a cell's output (an
``input``, ``select``, ``textarea``, ``button`` or ARIA slider, which covers the explorables of
``companion.interactive``, the attention viewer and any ipywidgets control) is operated: another
option is chosen, a slider is moved with the keyboard, a checkbox or button is pressed, a text box
is filled. What the cell output shows (its HTML without the controls themselves, their readouts,
pressed states and image descriptions) must change; a dead control fails the test, named by page,
cell and label. Each control is then put back, so the next one starts from the page as loaded.

A second test checks each chapter page's weight: its HTML plus every image file it shows stays
under ``PAGE_BUDGET`` (3 MB). Sizes and control counts are printed.

``BOOK_HTML=/path/to/html`` tests a book built elsewhere (see conftest.py).
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from companion.interactive import PAGE_BUDGET
from test_book_html import JS_WAIT_MATHJAX, JS_WIDGETS_DONE, NOTEBOOK_PAGES

# The theme's copy buttons on text outputs copy, they do not control anything.
CONTROLS = ".cell_output :is(input, select, textarea, button, [role=slider]):not(.copybtn)"

# What a cell output shows, without the controls and what only reflects their own state.
JS_SHOWN = """
(control) => {
  const cell = control.closest(".cell_output");
  const copy = cell.cloneNode(true);
  copy.querySelectorAll("input, select, textarea, output, script, style, .widget-readout, [role=slider]")
      .forEach(e => e.remove());
  copy.querySelectorAll("*").forEach(e => {
    for (const a of ["aria-pressed", "alt", "data-frame", "aria-valuetext", "aria-valuenow"]) e.removeAttribute(a);
    if (e.matches("button")) { e.removeAttribute("style"); e.removeAttribute("class"); }  // pressed look
  });
  return copy.innerHTML;
}
"""

JS_DESCRIBE = """
(control) => {
  const cells = Array.from(document.querySelectorAll(".cell_output"));
  const cell = control.closest(".cell_output");
  const around = control.closest("label") && control.closest("label").cloneNode(true);
  if (around) around.querySelectorAll("select, output").forEach(e => e.remove());
  const label = control.getAttribute("aria-label") || control.getAttribute("data-control")
    || (around && around.textContent.trim())
    || control.textContent.trim() || control.getAttribute("title") || "";
  const tag = control.tagName.toLowerCase() + (control.type ? "[type=" + control.type + "]" : "");
  return {where: "cell output " + (cells.indexOf(cell) + 1), tag: tag, label: label.slice(0, 60),
          kind: control.getAttribute("role") === "slider" && control.tagName !== "INPUT" ? "aria-slider"
                : control.tagName === "INPUT" ? (control.type || "text") : control.tagName.toLowerCase(),
          pressed: control.getAttribute("aria-pressed"),
          disabled: control.disabled === true || control.getAttribute("aria-disabled") === "true",
          visible: !!(control.offsetWidth || control.offsetHeight || control.getClientRects().length)};
}
"""


def open_page(browser, base_url: str, name: str):
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    blocked: list[str] = []

    def route(r):
        url = r.request.url
        if url.startswith(base_url + "/") or url.startswith(("data:", "blob:")):
            r.continue_()
        else:
            blocked.append(url)
            r.abort()

    page.route("**/*", route)
    page.goto(f"{base_url}/{name}.html", wait_until="load", timeout=60_000)
    page.evaluate(JS_WAIT_MATHJAX)
    try:
        page.wait_for_function(JS_WIDGETS_DONE, timeout=20_000)
    except Exception:  # playwright's TimeoutError: test_book_html reports unrendered widgets
        pass
    return page, blocked


def operate(page, control, info: dict) -> tuple[str, str]:
    """Operate one control; return (shown before, shown after), then put it back."""
    before = control.evaluate(JS_SHOWN)
    kind = info["kind"]
    undo = None
    if kind == "select":
        options = control.evaluate("s => Array.from(s.options).map(o => o.value)")
        current = control.evaluate("s => s.value")
        other = next((o for o in options if o != current), None)
        if other is None:
            return before, before
        control.select_option(other)
        undo = lambda: control.select_option(current)  # noqa: E731
    elif kind in ("range", "aria-slider"):
        control.focus()
        at_end = control.evaluate(
            "e => e.tagName === 'INPUT' ? +e.value >= +e.max : "
            "+e.getAttribute('aria-valuenow') >= +e.getAttribute('aria-valuemax')")
        key, back = ("ArrowLeft", "ArrowRight") if at_end else ("ArrowRight", "ArrowLeft")
        page.keyboard.press(key)
        undo = lambda: (control.focus(), page.keyboard.press(back))  # noqa: E731
    elif kind in ("checkbox", "radio"):
        control.click()
        undo = (lambda: control.click()) if kind == "checkbox" else None
    elif kind in ("text", "search", "number", "textarea", "email", "url"):
        current = control.input_value()
        control.fill("three one four" if kind != "number" else "3")
        control.press("Enter")
        undo = lambda: (control.fill(current), control.press("Enter"))  # noqa: E731
    elif info["tag"].startswith("button") or kind == "button":
        if info["pressed"] == "true":
            # already chosen: choose a sibling first, then this one again
            sibling = control.locator("xpath=../*[self::button][@aria-pressed='false']").first
            if sibling.count() == 0:
                return before, before
            sibling.click()
            before = control.evaluate(JS_SHOWN)
            control.click()
        else:
            group = control.locator("xpath=../*[self::button][@aria-pressed='true']")
            pressed = group.first.element_handle() if group.count() else None  # resolved now
            control.click()
            undo = (lambda: pressed.click()) if pressed else None
    else:
        control.click()
    page.wait_for_timeout(50)
    after = control.evaluate(JS_SHOWN)
    if undo is not None:
        undo()
    return before, after


@pytest.fixture(scope="module")
def book_url(built_book, serve_directory):
    return serve_directory(built_book)


def check_controls(page, name: str) -> tuple[int, list[str], list[str]]:
    """Operate every control of a loaded page: (how many operated, dead ones, skipped ones)."""
    controls = page.locator(CONTROLS)
    n = controls.count()
    dead, operated, skipped = [], 0, []
    for i in range(n):
        assert controls.count() == n, f"{name}: operating controls changed their number ({n} -> {controls.count()})"
        control = controls.nth(i)
        info = control.evaluate(JS_DESCRIBE)
        what = f"{info['where']}: {info['tag']} {info['label']!r}"
        if info["disabled"] or not info["visible"]:
            skipped.append(what)
            continue
        before, after = operate(page, control, info)
        operated += 1
        if before == after:
            dead.append(what)
    return operated, dead, skipped


def test_a_dead_control_is_caught(chromium, serve_directory, tmp_path):
    """The check itself, on a page shaped like the book's: three dead controls (the saved state
    of a widget with no kernel behind it) and a working explorable."""
    from companion.interactive import Choice, Slider, explore

    explorable = explore(lambda a, b: f"{a} {b}", a=Slider([1, 2, 3]), b=Choice(["x", "y"]), mode="static")
    dead_cell = (
        '<div class="cell_output"><label>kernel <select><option>gaussian</option><option>boxcar</option>'
        '</select></label><input type="range" min="0" max="4" value="2" aria-label="width">'
        '<button type="button">plain</button><img alt="fit" src="data:,"></div>'
    )
    (tmp_path / "page.html").write_text(
        f'<!DOCTYPE html><html><head><meta charset="utf-8"><link rel="icon" href="data:,"></head><body>'
        f'{dead_cell}<div class="cell_output">{explorable.to_html()}</div></body></html>'
    )
    page, blocked = open_page(chromium, serve_directory(tmp_path), "page")
    try:
        operated, dead, skipped = check_controls(page, "page")
    finally:
        page.close()
    assert operated == 5 and skipped == [] and blocked == []
    assert dead == ["cell output 1: select[type=select-one] 'kernel'",
                    "cell output 1: input[type=range] 'width'",
                    "cell output 1: button[type=button] 'plain'"], dead


@pytest.mark.parametrize("name", NOTEBOOK_PAGES)
def test_every_control_changes_its_cell(chromium, book_url, name, capsys):
    page, blocked = open_page(chromium, book_url, name)
    try:
        operated, dead, skipped = check_controls(page, name)
        with capsys.disabled():
            print(f"\n  {name}: {operated} controls operated, {len(dead)} dead, {len(skipped)} hidden or disabled")
        assert blocked == [], f"{name} asked for outside resources: {blocked}"
        assert dead == [], f"{name}: controls that change nothing in the static page:\n  " + "\n  ".join(dead)
    finally:
        page.close()


def page_bytes(html_dir: Path, name: str, image_urls: list[str]) -> tuple[int, int]:
    """(bytes of the page's HTML, bytes of the image files it shows)."""
    html_bytes = (html_dir / f"{name}.html").stat().st_size
    files = set()
    for url in image_urls:
        if url.startswith("data:"):
            continue  # inline, already counted in the HTML
        path = (html_dir / unquote(urlparse(url).path).lstrip("/")).resolve()
        if path.is_file():
            files.add(path)
    return html_bytes, sum(p.stat().st_size for p in files)


@pytest.mark.parametrize("name", NOTEBOOK_PAGES)
def test_chapter_page_stays_under_its_budget(chromium, book_url, built_book, name, capsys):
    page, _ = open_page(chromium, book_url, name)
    try:
        images = page.evaluate("() => Array.from(document.images).map(i => i.currentSrc || i.src)")
        explorables = page.locator(".companion-explorable").count()
    finally:
        page.close()
    base = urlparse(book_url)
    local = [u for u in images if u.startswith("data:") or urlparse(u).netloc == base.netloc]
    html_bytes, image_bytes = page_bytes(Path(built_book), name, local)
    total = html_bytes + image_bytes
    with capsys.disabled():
        print(f"\n  {name}: HTML {html_bytes / 1e6:.2f} MB + images {image_bytes / 1e6:.2f} MB = "
              f"{total / 1e6:.2f} MB ({explorables} explorables)")
    assert total < PAGE_BUDGET, (
        f"{name} weighs {total / 1e6:.2f} MB (HTML {html_bytes / 1e6:.2f} MB, images "
        f"{image_bytes / 1e6:.2f} MB), over the {PAGE_BUDGET / 1e6:.0f} MB budget: use coarser grids"
    )
