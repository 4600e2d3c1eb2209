"""The built book, page by page, in headless Chromium with the network cut off.

The book is built once (``built_book`` in conftest.py) and served on 127.0.0.1; every request
to any other host is aborted and recorded. Each page listed in ``_toc.yml`` is loaded once and
the tests below check, each for every page:

* it loads with no console error (apart from the theme's known noise, matched exactly) and
  requests nothing from outside 127.0.0.1, and nothing it asks the server for is missing;
* MathJax has typeset every equation: each ``.math`` element holds an ``mjx-container``, no
  TeX error (``mjx-merror``) is shown and no raw ``$$``, ``\\(``, ``\\[`` or ``\\begin{`` is
  left in the text outside code;
* every ``<img>`` has loaded (``naturalWidth > 0``);
* every dropdown (hints: admonitions with the ``dropdown`` class) and every exercise solution is
  hidden until its title is clicked and visible after the click;
* every widget output is rendered as DOM from the saved widget state, and pages without
  widgets do not load the widget renderer;
* chapter pages (notebooks) carry Binder and Colab launch buttons for their own notebook;
* the status page lists every chapter notebook as executed successfully.

A last test builds a one-page probe book (a notebook with an ``IntSlider`` whose label is TeX)
with the book's own configuration, so that the offline widget renderer is checked even while
no chapter has a widget.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

from conftest import JB_FLAGS, PAGE_SUMMARY, ROOT, jupyter_book_executable, log_tail

CONFIG = yaml.safe_load((ROOT / "_config.yml").read_text())
TOC = yaml.safe_load((ROOT / "_toc.yml").read_text())

# Console messages seen on every page of this theme that say nothing about the book (see
# TOOLCHAIN.md), as (kind, exact text). "pageerror" is an uncaught exception.
KNOWN_NOISE = {
    ("pageerror", "Identifier 'THEBE_JS_URL' has already been declared"),
    ("error", "Got invalid theme mode: . Resetting to auto."),
}
FAVICON_404 = "Failed to load resource: the server responded with a status of 404 (File not found)"

WIDGET_VIEW = 'script[type="application/vnd.jupyter.widget-view+json"]'
WIDGET_STATE = 'script[type="application/vnd.jupyter.widget-state+json"]'
WIDGET_RENDERER = "html-manager/embed.js"


def toc_files(entry) -> list[str]:
    """Every ``file:`` of the table of contents, in reading order."""
    found: list[str] = []
    if isinstance(entry, dict):
        if "file" in entry:
            found.append(entry["file"])
        if "root" in entry:
            found.append(entry["root"])
        for key in ("parts", "chapters", "sections"):
            for child in entry.get(key, []) or []:
                found.extend(toc_files(child))
    elif isinstance(entry, list):
        for child in entry:
            found.extend(toc_files(child))
    return found


def page_name(toc_file: str) -> str:
    for suffix in (".ipynb", ".md", ".rst"):
        if toc_file.endswith(suffix):
            return toc_file[: -len(suffix)]
    return toc_file


PAGES = [page_name(f) for f in toc_files(TOC)]
NOTEBOOK_PAGES = [p for p in PAGES if (ROOT / f"{p}.ipynb").exists()]
STATUS_PAGES = [
    p for p in PAGES if (ROOT / f"{p}.md").exists() and "nb-exec-table" in (ROOT / f"{p}.md").read_text()
]


def test_toc_lists_pages_that_exist():
    assert PAGES, "_toc.yml lists no page"
    missing = [p for p in PAGES if not any((ROOT / f"{p}{s}").exists() for s in (".md", ".ipynb"))]
    assert not missing, f"_toc.yml lists pages without a source file: {missing}"
    assert NOTEBOOK_PAGES, "no chapter notebook in _toc.yml"


# ---- visiting a page ----------------------------------------------------------------------

JS_STATE = """
() => {
  const codeLike = "pre, code, script, style, textarea, mjx-container, .highlight";
  const raw = [];
  const walker = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  while (walker.nextNode()) {
    const node = walker.currentNode;
    if (node.parentElement && node.parentElement.closest(codeLike)) continue;
    const text = node.textContent;
    for (const mark of ["$$", "\\\\(", "\\\\[", "\\\\begin{"]) {
      const at = text.indexOf(mark);
      if (at >= 0) raw.push(text.slice(Math.max(0, at - 30), at + 50).trim());
    }
  }
  const maths = Array.from(document.querySelectorAll(".math"));
  const widgetViews = Array.from(document.querySelectorAll('WIDGET_VIEW'));
  return {
    status: document.readyState,
    mathElements: maths.length,
    mjxContainers: document.querySelectorAll("mjx-container").length,
    untypeset: maths.filter(m => !m.querySelector("mjx-container")).map(m => m.textContent.slice(0, 80)),
    texErrors: Array.from(document.querySelectorAll("mjx-merror")).map(e => e.getAttribute("data-mjx-error") || e.textContent),
    rawTex: raw,
    images: Array.from(document.images).map(i => ({src: i.currentSrc || i.src, ok: i.complete && i.naturalWidth > 0})),
    widgetViews: widgetViews.length,
    widgetState: document.querySelectorAll('WIDGET_STATE').length,
    widgetsRendered: widgetViews.filter(t => {
      const box = t.previousElementSibling;
      return box && box.classList.contains("widget-subarea") && box.querySelector(".jupyter-widgets");
    }).length,
    widgetDom: document.querySelectorAll(".jupyter-widgets").length,
    scripts: Array.from(document.scripts).map(s => s.getAttribute("src")).filter(Boolean),
    links: Array.from(document.querySelectorAll("a[href]")).map(a => a.href),
    tableRows: Array.from(document.querySelectorAll("tr")).map(tr => Array.from(tr.cells).map(c => c.innerText.trim())),
  };
}
""".replace("WIDGET_VIEW", WIDGET_VIEW.replace("'", "\\'")).replace(
    "WIDGET_STATE", WIDGET_STATE.replace("'", "\\'")
)

JS_WAIT_IMAGES = """
async () => {
  const images = Array.from(document.images);
  images.forEach(i => { if (i.loading === "lazy") i.loading = "eager"; });
  await Promise.all(images.map(i => i.complete ? null : new Promise(done => {
    i.addEventListener("load", done, {once: true});
    i.addEventListener("error", done, {once: true});
  })));
}
"""

JS_WAIT_MATHJAX = """
async () => {
  if (window.MathJax && window.MathJax.startup && window.MathJax.startup.promise) {
    try {
      await window.MathJax.startup.promise;
    } catch (error) {
      return String(error && error.message || error);
    }
  }
  return null;
}
"""

JS_WIDGETS_DONE = """
() => Array.from(document.querySelectorAll('WIDGET_VIEW')).every(t => {
  const box = t.previousElementSibling;
  return box && box.classList.contains("widget-subarea") && box.querySelector(".jupyter-widgets");
})
""".replace("WIDGET_VIEW", WIDGET_VIEW.replace("'", "\\'"))


@dataclass
class Dropdown:
    kind: str  # "solution" or "dropdown"
    title: str
    body_parts: int
    visible_before: bool
    visible_after: bool
    note: str = ""


@dataclass
class PageReport:
    name: str
    url: str
    http_status: int | None
    console_errors: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    failed_local: list[str] = field(default_factory=list)
    state: dict = field(default_factory=dict)
    dropdowns: list[Dropdown] = field(default_factory=list)
    html_bytes: int = 0


def check_dropdowns(page) -> list[Dropdown]:
    """Each hint dropdown and solution: is its body hidden, and shown after a click on the title?"""
    found = []
    boxes = page.locator("div.admonition.dropdown, div.solution")
    for i in range(boxes.count()):
        box = boxes.nth(i)
        classes = (box.get_attribute("class") or "").split()
        title = box.locator(":scope > .admonition-title")
        body = box.locator(":scope > :not(.admonition-title)")
        n = body.count()
        title_text = title.first.inner_text().strip() if title.count() else "(no title)"
        before = any(body.nth(j).is_visible() for j in range(n))
        note = ""
        button = box.locator(":scope > .admonition-title .toggle-button")
        if button.count():
            button.first.click()
        elif title.count():
            title.first.click()
            note = "no toggle button"
        else:
            note = "no title to click"
        after = False
        if n:
            try:
                body.first.wait_for(state="visible", timeout=5_000)
                after = True
            except Exception:  # playwright's TimeoutError
                after = any(body.nth(j).is_visible() for j in range(n))
        kind = "solution" if "solution" in classes else "dropdown"
        found.append(Dropdown(kind, title_text, n, before, after, note))
    return found


class BookBrowser:
    """Loads pages of one served folder with every non-127.0.0.1 request aborted."""

    def __init__(self, browser, base_url: str, html_dir: Path):
        self.context = browser.new_context()
        self.base_url = base_url
        self.html_dir = html_dir
        self.cache: dict[str, PageReport] = {}

    def report(self, name: str) -> PageReport:
        if name not in self.cache:
            self.cache[name] = self.visit(name)
        return self.cache[name]

    def visit(self, name: str) -> PageReport:
        url = f"{self.base_url}/{name}.html"
        page = self.context.new_page()
        report = PageReport(name, url, None)
        html_file = self.html_dir / f"{name}.html"
        report.html_bytes = html_file.stat().st_size if html_file.exists() else 0

        def route(route_):
            request_url = route_.request.url
            if request_url.startswith(self.base_url + "/") or request_url == self.base_url:
                route_.continue_()
            else:
                report.blocked.append(request_url)
                route_.abort()

        def on_console(message):
            if message.type != "error":
                return
            if ("error", message.text) in KNOWN_NOISE:
                return
            location = (message.location or {}).get("url", "")
            if message.text == FAVICON_404 and location.endswith("/favicon.ico"):
                return
            where = f" ({location})" if location else ""
            report.console_errors.append(f"console.error: {message.text}{where}")

        def on_page_error(error):
            text = getattr(error, "message", None) or str(error)
            if ("pageerror", text) not in KNOWN_NOISE:
                report.console_errors.append(f"uncaught: {text}")

        def on_response(response):
            if response.status >= 400 and not response.url.endswith("/favicon.ico"):
                report.failed_local.append(f"{response.status} {response.url}")

        page.route("**/*", route)
        page.on("console", on_console)
        page.on("pageerror", on_page_error)
        page.on("response", on_response)
        try:
            response = page.goto(url, wait_until="load", timeout=60_000)
            report.http_status = response.status if response else None
            mathjax_error = page.evaluate(JS_WAIT_MATHJAX)
            if mathjax_error:
                report.console_errors.append(f"MathJax failed: {mathjax_error}")
            page.evaluate(JS_WAIT_IMAGES)
            try:
                page.wait_for_function(JS_WIDGETS_DONE, timeout=20_000)
            except Exception:  # playwright's TimeoutError: reported by the widget test
                pass
            page.wait_for_load_state("networkidle", timeout=20_000)
            report.state = page.evaluate(JS_STATE)
            report.dropdowns = check_dropdowns(page)
        finally:
            page.close()
        return report

    def close(self):
        self.context.close()


@pytest.fixture(scope="module")
def book(built_book, serve_directory, chromium):
    browser = BookBrowser(chromium, serve_directory(built_book), built_book)
    yield browser
    browser.close()


# ---- one test per check and page --------------------------------------------------------


@pytest.mark.parametrize("name", PAGES)
def test_page_loads_offline_without_errors(book, name, record_property):
    report = book.report(name)
    record_property("html_bytes", report.html_bytes)
    assert report.http_status == 200, f"{report.url} answered {report.http_status}"
    assert report.blocked == [], f"{name} asked for outside resources (blocked): {report.blocked}"
    assert report.failed_local == [], f"{name} asked the server for missing files: {report.failed_local}"
    assert report.console_errors == [], f"{name} logged errors:\n" + "\n".join(report.console_errors)


def first(items: list, n: int = 8) -> str:
    more = f" ... and {len(items) - n} more" if len(items) > n else ""
    return f"{len(items)}: {items[:n]}{more}"


@pytest.mark.parametrize("name", PAGES)
def test_math_is_typeset(book, name):
    state = book.report(name).state
    assert state["rawTex"] == [], f"{name}: raw TeX left in the text, {first(state['rawTex'])}"
    assert state["untypeset"] == [], f"{name}: equations MathJax did not typeset, {first(state['untypeset'])}"
    assert state["texErrors"] == [], f"{name}: MathJax shows TeX errors, {first(state['texErrors'])}"
    if state["mathElements"]:
        assert state["mjxContainers"] >= state["mathElements"], (
            f"{name}: {state['mathElements']} equations but {state['mjxContainers']} typeset"
        )


@pytest.mark.parametrize("name", PAGES)
def test_images_load(book, name):
    images = book.report(name).state["images"]
    broken = [i["src"] for i in images if not i["ok"]]
    assert broken == [], f"{name}: images that did not load: {broken}"


@pytest.mark.parametrize("name", PAGES)
def test_hints_and_solutions_hidden_until_clicked(book, name):
    dropdowns = book.report(name).dropdowns
    shown_early = [d.title for d in dropdowns if d.visible_before]
    assert shown_early == [], f"{name}: hints or solutions visible before a click: {shown_early}"
    empty = [d.title for d in dropdowns if d.body_parts == 0]
    assert empty == [], f"{name}: dropdowns with nothing inside: {empty}"
    stuck = [f"{d.title} {d.note}".strip() for d in dropdowns if not d.visible_after]
    assert stuck == [], f"{name}: hints or solutions that a click did not open: {stuck}"


@pytest.mark.parametrize("name", PAGES)
def test_widgets_render_from_saved_state(book, name):
    state = book.report(name).state
    loads_renderer = any(src.split("?")[0].endswith(WIDGET_RENDERER) for src in state["scripts"])
    if state["widgetViews"] == 0:
        assert not loads_renderer, f"{name} has no widget but loads the widget renderer"
        return
    assert state["widgetState"] == 1, f"{name}: widget outputs but no saved widget state"
    assert loads_renderer, f"{name}: widget outputs but the widget renderer is not loaded"
    assert state["widgetsRendered"] == state["widgetViews"], (
        f"{name}: {state['widgetViews'] - state['widgetsRendered']} of {state['widgetViews']} "
        "widget outputs were not rendered"
    )
    assert state["widgetDom"] > 0


def launch_urls(notebook: str) -> tuple[str, str]:
    """The Binder (prefix) and Colab (full) URLs the launch buttons should carry."""
    owner_repo = CONFIG["repository"]["url"].rstrip("/").split("github.com/")[1]
    branch = CONFIG["repository"].get("branch", "main")
    binder = CONFIG["launch_buttons"]["binderhub_url"].rstrip("/")
    colab = CONFIG["launch_buttons"]["colab_url"].rstrip("/")
    return (
        f"{binder}/v2/gh/{owner_repo}/{branch}?",
        f"{colab}/github/{owner_repo}/blob/{branch}/{notebook}",
    )


@pytest.mark.parametrize("name", NOTEBOOK_PAGES)
def test_chapter_has_binder_and_colab_buttons(book, name):
    links = book.report(name).state["links"]
    binder_prefix, colab_url = launch_urls(f"{name}.ipynb")
    binder = [u for u in links if u.startswith(binder_prefix) and u.endswith(f"/{name}.ipynb")]
    assert binder, f"{name}: no Binder launch button for {name}.ipynb (want {binder_prefix}...)"
    assert colab_url in links, f"{name}: no Colab launch button {colab_url}"


@pytest.mark.parametrize("name", STATUS_PAGES or ["(no page with nb-exec-table)"])
def test_status_page_lists_every_notebook_as_passed(book, name):
    assert STATUS_PAGES, "no page of _toc.yml holds the {nb-exec-table} directive"
    rows = {row[0]: row for row in book.report(name).state["tableRows"] if row}
    for notebook in NOTEBOOK_PAGES:
        assert notebook in rows, f"{name}: no execution row for {notebook}"
        # book/status.md's script writes myst-nb's emoji marks as words (no emoji font needed)
        assert rows[notebook][-1] == "passed", f"{name}: {notebook} did not execute cleanly: {rows[notebook]}"
    marks = [cell for row in rows.values() for cell in row if cell in ("\u2705", "\u274c")]
    assert not marks, f"{name}: emoji status marks left, which need an emoji font: {marks}"


def test_every_page_is_built_and_summary(book, capsys):
    """Every toc page exists in the build; prints each page's size and what the checks saw."""
    reports = {name: book.report(name) for name in PAGES}
    lines = ["   HTML kB  equations  images  dropdowns  widgets  page"]
    for name, r in reports.items():
        s = r.state
        lines.append(
            f"  {r.html_bytes / 1e3:8.1f}  {s['mathElements']:9d}  {len(s['images']):6d}  "
            f"{len(r.dropdowns):9d}  {s['widgetViews']:7d}  {name}"
        )
    # conftest.py prints this file at the end of the run (xdist workers' output is not shown).
    (book.html_dir.parent / PAGE_SUMMARY).write_text("\n".join(lines) + "\n")
    with capsys.disabled():
        print("\n" + "\n".join(lines))
    missing = [name for name, r in reports.items() if r.html_bytes == 0]
    assert missing == [], f"pages of _toc.yml missing from the build: {missing}"


# ---- the widget renderer on a probe book --------------------------------------------------

PROBE_SLIDER_VALUE = 7


def write_probe_book(folder: Path) -> None:
    """A one-notebook book with the book's own _config.yml (paths made absolute)."""
    import nbformat

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config["title"] = "Widget probe"
    config["only_build_toc_files"] = True
    config["bibtex_bibfiles"] = ["refs.bib"]
    sphinx_config = config.setdefault("sphinx", {}).setdefault("config", {})
    sphinx_config["html_static_path"] = [
        str(ROOT / p) for p in sphinx_config.get("html_static_path", [])
    ]
    (folder / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    (folder / "_toc.yml").write_text("format: jb-book\nroot: probe\n")
    (folder / "refs.bib").write_text("")
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# Widget probe\n\nA slider for $\\alpha$."),
        nbformat.v4.new_code_cell(
            "import ipywidgets\n"
            f"ipywidgets.IntSlider(value={PROBE_SLIDER_VALUE}, min=0, max=10, description=r'\\(\\alpha\\)')"
        ),
    ]
    nbformat.write(notebook, folder / "probe.ipynb")


def test_widget_renderer_works_offline_on_a_probe_book(tmp_path_factory, serve_directory, chromium):
    folder = tmp_path_factory.mktemp("widget-probe")
    write_probe_book(folder)
    log = folder / "build.log"
    with open(log, "w") as out:
        result = subprocess.run(
            [str(jupyter_book_executable()), "build", str(folder), *JB_FLAGS],
            cwd=folder, stdout=out, stderr=subprocess.STDOUT,
        )
    assert result.returncode == 0, f"probe book build failed:\n{log_tail(log)}"
    html = folder / "_build" / "html"
    page_html = (html / "probe.html").read_text()
    assert WIDGET_RENDERER in page_html and "require.js" not in page_html

    probe = BookBrowser(chromium, serve_directory(html), html)
    try:
        report = probe.report("probe")
        assert report.blocked == [], f"the widget renderer asked for outside resources: {report.blocked}"
        assert report.failed_local == [], f"missing files: {report.failed_local}"
        assert report.console_errors == [], "\n".join(report.console_errors)
        state = report.state
        assert state["widgetViews"] == 1 and state["widgetsRendered"] == 1, state
        page = probe.context.new_page()
        page.route("**/*", lambda r: r.continue_() if r.request.url.startswith(probe.base_url) else r.abort())
        page.goto(report.url, wait_until="load")
        slider = page.locator(".widget-slider")
        slider.first.wait_for(state="visible", timeout=20_000)
        readout = page.locator(".widget-slider .widget-readout").first.inner_text().strip()
        assert readout == str(PROBE_SLIDER_VALUE), f"slider shows {readout!r}"
        # The TeX label is typeset by MathJax 3 through book/assets/js/widgets-mathjax3.js.
        page.locator(".widget-slider .widget-label mjx-container").first.wait_for(timeout=20_000)
        page.close()
    finally:
        probe.close()
