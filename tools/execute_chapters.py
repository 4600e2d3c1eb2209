"""Execute the chapters that the book build would execute, two at a time, into its cache.

Jupyter Book 1.x (myst-nb's ``execute_notebooks: cache``) executes the notebooks one after
another. Most of a chapter's time is training on one CPU thread, so on a machine with two cores
one of them idles through the whole build. This script, run by ``tools/build_book.py`` after
``refresh_notebooks.py`` and before ``jupyter-book build``, finds every chapter that has no
match in the execution cache (``_build/.jupyter_cache``), executes those in parallel (one kernel
each, in the notebook's own folder, with the build's timeout) and stores each successful result
in the cache exactly as myst-nb does. The build then finds them there and executes nothing.

A chapter that fails here is not cached: the build executes it again and reports the error the
usual way, so a failure is never hidden. The build's result does not depend on this script; it
only moves the work onto both cores.

    python tools/execute_chapters.py [--workers 2] [--build-dir _build]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIMEOUT = 300  # the book's execute.timeout in _config.yml


def _execute(path: str) -> tuple[str, object, float, str | None]:
    """Execute one notebook in its folder; return (path, executed notebook, seconds, error)."""
    import nbformat
    from jupyter_cache.executors.utils import single_nb_execution

    notebook = nbformat.read(path, as_version=4)
    result = single_nb_execution(notebook, cwd=str(Path(path).parent), allow_errors=False,
                                 timeout=TIMEOUT, meta_override=True)
    error = None if result.err is None else f"{type(result.err).__name__}: {result.err}"
    return path, notebook, result.time, error


def stale(chapters: list[Path], cache) -> list[Path]:
    """The chapters whose current code has no executed match in the cache."""
    import nbformat

    missing = []
    for path in chapters:
        try:
            cache.match_cache_notebook(nbformat.read(path, as_version=4))
        except KeyError:
            missing.append(path)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "_build")
    parser.add_argument("--chapters", type=Path, default=ROOT / "chapters")
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    args = parser.parse_args(argv)
    from jupyter_cache import get_cache
    from jupyter_cache.base import CacheBundleIn

    cache = get_cache(args.build_dir / ".jupyter_cache")
    todo = stale(sorted(args.chapters.glob("*.ipynb")), cache)
    if not todo:
        print("execute_chapters: every chapter's execution is cached")
        return 0
    print(f"execute_chapters: executing {len(todo)} chapters, {args.workers} at a time", flush=True)
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(_execute, str(path)) for path in todo]
        for future in as_completed(futures):
            try:
                path, notebook, seconds, error = future.result()
            except Exception as crash:  # a worker that died: the build executes that chapter itself
                print(f"execute_chapters: a worker failed ({type(crash).__name__}: {crash})", flush=True)
                continue
            name = Path(path).name
            if error is not None:
                print(f"execute_chapters: {name} failed after {seconds:.1f} s ({error.splitlines()[0]}); "
                      "the book build will execute it again and report the error", flush=True)
                continue
            cache.cache_notebook_bundle(CacheBundleIn(notebook, str(Path(path).resolve()),
                                                      data={"execution_seconds": seconds}),
                                        check_validity=False, overwrite=True)
            print(f"execute_chapters: {name} executed in {seconds:.1f} s", flush=True)
    print(f"execute_chapters: done in {time.perf_counter() - start:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
