"""tools/execute_chapters.py: the chapters without a cached execution are executed into the
jupyter cache (where the book build finds them); a failing one is left for the build to report."""

import importlib.util
import sys
from pathlib import Path

import nbformat
from jupyter_cache import get_cache

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("execute_chapters", ROOT / "tools" / "execute_chapters.py")
execute_chapters = importlib.util.module_from_spec(spec)
sys.modules["execute_chapters"] = execute_chapters  # the worker processes find it by name
spec.loader.exec_module(execute_chapters)


def write_notebook(path: Path, source: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_markdown_cell("# A chapter"), nbformat.v4.new_code_cell(source)]
    nbformat.write(nb, path)
    return path


def test_stale_chapters_are_executed_into_the_cache_and_failures_are_not(tmp_path):
    chapters = tmp_path / "chapters"
    chapters.mkdir()
    good = write_notebook(chapters / "01_good.ipynb", "print(6 * 7)")
    bad = write_notebook(chapters / "02_bad.ipynb", "raise RuntimeError('broken chapter')")
    build = tmp_path / "_build"
    cache = get_cache(build / ".jupyter_cache")
    assert execute_chapters.stale([good, bad], cache) == [good, bad]

    assert execute_chapters.main(["--build-dir", str(build), "--chapters", str(chapters), "--workers", "2"]) == 0

    assert execute_chapters.stale([good, bad], cache) == [bad]  # the failure is the build's to report
    _, executed = cache.merge_match_into_notebook(nbformat.read(good, 4))  # what the build shows
    assert executed.cells[1].outputs[0]["text"] == "42\n"
    # an edited chapter no longer matches its cached execution
    write_notebook(good, "print(6 * 8)")
    assert execute_chapters.stale([good], cache) == [good]
