"""Shared fixtures for the tests of the built book.

* ``built_book``: the book built into ``_build/html`` by ``tools/build_book.py`` (refresh the
  chapters whose code changed, then ``jupyter-book build . -W -n --keep-going``). ``make test``
  builds it in a stage of its own before pytest and passes the outcome in
  ``BOOK_BUILD_RESULT=<json>``; without it, the first xdist worker to ask builds (a file lock
  makes the others wait and reuse the build, or fail with the same log).
  ``BOOK_HTML=/path/to/html`` tests another build.
* ``serve_directory``: serves a folder over ``http://127.0.0.1:<free port>`` from a thread.
* ``chromium``: an installed Chromium or Chrome driven by Playwright (never ``playwright
  install``), one per test module: ``$CHROMIUM``, else the first of chromium, chromium-browser,
  google-chrome, google-chrome-stable on PATH (the order of ``tools/ensure_chromium.sh``).

The trained models come from the shared experiment cache (``companion.experiments.cache_dir()``):
the book build trains them once, and nbval and the experiment tests load them.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BUILD_DIR = ROOT / "_build"
HTML_DIR = BUILD_DIR / "html"
JB_FLAGS = ["-W", "-n", "--keep-going"]
CHROMIUM_NAMES = ["chromium", "chromium-browser", "google-chrome", "google-chrome-stable"]
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PAGE_SUMMARY = "book-pages.txt"  # written next to the HTML folder by test_book_html.py
SESSION_START = time.time()
# One id for the whole run, shared by the xdist workers (xdist sets it in each worker).
RUN_ID = os.environ.get("PYTEST_XDIST_TESTRUNUID") or uuid.uuid4().hex


@pytest.fixture(scope="module")
def private_cache(tmp_path_factory) -> Path:
    """Point the experiments' cache at a fresh folder for one test module: for tests of the cache
    itself, or of runs with settings the book never uses, which need not be kept."""
    with pytest.MonkeyPatch.context() as mp:
        folder = tmp_path_factory.mktemp("experiments-cache")
        mp.setenv("COMPANION_CACHE_DIR", str(folder))
        yield folder


def jupyter_book_executable() -> Path:
    exe = Path(sys.executable).parent / "jupyter-book"
    if not exe.exists():
        pytest.fail(f"{exe} not found: run the tests with the virtual environment (`make test`).")
    return exe


def log_tail(path: Path, lines: int = 60) -> str:
    text = path.read_text(errors="replace").splitlines() if path.exists() else []
    return "\n".join(text[-lines:])


def build_book(log_path: Path, result_path: Path) -> dict:
    """Run ``tools/build_book.py``; return {"returncode", "log", "reports"}."""
    jupyter_book_executable()
    command = [sys.executable, str(ROOT / "tools" / "build_book.py"), "--log", str(log_path), "--result", str(result_path)]
    subprocess.run(command, cwd=ROOT)
    return json.loads(result_path.read_text())


@pytest.fixture(scope="session")
def built_book() -> Path:
    """``_build/html``, built in this test run (by ``make test``'s build stage, or else once,
    whichever xdist worker asks first).

    ``BOOK_HTML=/path/to/html`` uses a book built elsewhere instead (a preview under /tmp).
    """
    if os.environ.get("BOOK_HTML"):
        html = Path(os.environ["BOOK_HTML"])
        if not (html / "index.html").exists():
            pytest.fail(f"BOOK_HTML={html} holds no index.html", pytrace=False)
        return html
    BUILD_DIR.mkdir(exist_ok=True)
    if os.environ.get("BOOK_BUILD_RESULT"):
        result = Path(os.environ["BOOK_BUILD_RESULT"])
        if not result.exists():
            pytest.fail(f"BOOK_BUILD_RESULT={result} is missing: the build stage did not finish", pytrace=False)
        done = json.loads(result.read_text())
    else:
        stamp = BUILD_DIR / ".book-build-run.json"
        with open(BUILD_DIR / ".book-build.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                done = json.loads(stamp.read_text()) if stamp.exists() else {}
                if done.get("run") != RUN_ID:
                    done = {"run": RUN_ID, **build_book(BUILD_DIR / "book-build.log", BUILD_DIR / ".book-build.json")}
                    stamp.write_text(json.dumps(done))
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
    if done["returncode"] != 0:
        reports = "".join(f"\n  {r}" for r in done["reports"]) or " none"
        pytest.fail(
            f"`jupyter-book build . {' '.join(JB_FLAGS)}` exited with {done['returncode']}.\n"
            f"Execution reports:{reports}\nLast lines of {done['log']}:\n{log_tail(Path(done['log']))}",
            pytrace=False,
        )
    if not (HTML_DIR / "index.html").exists():
        pytest.fail(f"the build succeeded but {HTML_DIR / 'index.html'} is missing", pytrace=False)
    return HTML_DIR


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format, *args):  # noqa: A002 - the base class's signature
        pass


@contextlib.contextmanager
def serving(directory: Path):
    """Serve ``directory`` on 127.0.0.1 (a free port) from a thread; yield the base URL."""
    handler = functools.partial(_QuietHandler, directory=str(directory))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="book-server", daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.fixture(scope="session")
def serve_directory():
    """A function ``serve(directory) -> base URL``; servers stop at the end of the session."""
    with contextlib.ExitStack() as stack:
        yield lambda directory: stack.enter_context(serving(Path(directory)))


def find_chromium() -> str | None:
    """``$CHROMIUM``, else the first Chromium or Chrome on PATH (as tools/ensure_chromium.sh)."""
    names = [os.environ["CHROMIUM"]] if os.environ.get("CHROMIUM") else []
    return next((shutil.which(name) for name in names + CHROMIUM_NAMES if shutil.which(name)), None)


@pytest.fixture(scope="module")
def chromium():
    """A headless Debian Chromium driven by Playwright, one per test module.

    Module scope, not session: Playwright's sync API refuses to start while another instance
    runs in the same process, and other test modules on the same xdist worker start their own.
    """
    executable = find_chromium()
    if executable is None:
        pytest.fail(
            f"no Chromium or Chrome: neither $CHROMIUM nor any of {', '.join(CHROMIUM_NAMES)} on PATH. Run `bash tools/ensure_chromium.sh` (it installs Debian's "
            "chromium when run as root, or says what to run), or set CHROMIUM=/path/to/chrome.",
            pytrace=False,
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def pytest_terminal_summary(terminalreporter):
    """Show the built pages' sizes and what the browser checks saw, when this run made them."""
    html = Path(os.environ["BOOK_HTML"]) if os.environ.get("BOOK_HTML") else HTML_DIR
    summary = html.parent / PAGE_SUMMARY
    if summary.exists() and summary.stat().st_mtime >= SESSION_START:
        terminalreporter.write_sep("-", "built book pages checked in Chromium")
        terminalreporter.write(summary.read_text())
