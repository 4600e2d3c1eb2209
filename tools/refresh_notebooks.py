"""Make the book build re-execute exactly the chapters whose companion code changed.

Jupyter Book's execution cache re-executes a notebook only when the notebook itself changes.
This script, run before every build (``make book``, ``make test``), computes for each chapter
notebook a fingerprint of the companion modules it imports, transitively (the same walk as the
experiment cache, :mod:`companion._fingerprint`; docstrings and comments do not count), and
compares it with the one stored in ``_build/.notebook-fingerprints.json``. For each notebook
whose fingerprint changed (or is new) it removes the notebook's record from the execution cache
(``_build/.jupyter_cache``) and touches the notebook, so that Sphinx reads it again.

``companion.experiments`` and ``companion.exercises`` import all their modules; a chapter
depends only on the experiments and exercises it names (their names appear as string literals
in its code, f-strings included, e.g. ``experiments.run(f"seq2seq-{name}")``), and on the
experiments those run in turn (named in their own code). When a notebook names an exercise
that no exercise module holds as a literal, it depends on every exercise module.

    python tools/refresh_notebooks.py [--dry-run] [--build-dir _build]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path

from companion import _fingerprint

ROOT = Path(__file__).resolve().parent.parent


def notebooks(folder: Path = ROOT / "chapters") -> list[Path]:
    return sorted(folder.glob("*.ipynb"))


def _named(names, patterns) -> set[str]:
    return {name for name in names if any(p.fullmatch(name) for p in patterns)}


def _literals(path: Path) -> set[str]:
    return {p.pattern for p in _fingerprint.string_patterns([path.read_text()])}


def narrowing(sources: list[str]) -> dict[str, set[str]]:
    """The modules of ``companion.experiments`` and ``companion.exercises`` a notebook uses."""
    from companion import exercises, experiments
    from companion.experiments import registry

    patterns = _fingerprint.string_patterns(sources)
    used, todo = set(), sorted(_named(experiments.REGISTRY, patterns))
    while todo:  # the experiments named, and those their own code names (a fit that runs another)
        name = todo.pop()
        used.add(name)
        exp = experiments.get(name)
        inner = _fingerprint.string_patterns(path.read_text() for path in registry.code_files(exp).values())
        todo += sorted(_named(experiments.REGISTRY, inner) - used - set(todo))
    narrow = {"companion.experiments": {m for n in used for m in (experiments.get(n).build.__module__,
                                                                   experiments.get(n).fit.__module__)}}
    # the exercise modules that define (hold as a literal) the exercise ids the notebook names
    package = Path(exercises.__file__).parent
    literals = {f"companion.exercises.{path.stem}": _literals(path)
                for path in package.glob("*.py") if path.name != "__init__.py"}
    modules = {i: {m for m, text in literals.items() if re.escape(i) in text}
               for i in _named(exercises.REGISTRY, patterns)}
    if all(modules.values()):
        narrow["companion.exercises"] = set().union(*modules.values())
    return narrow


def dependencies(notebook: Path) -> dict[str, Path]:
    """The companion modules the notebook depends on (``{module: file}``)."""
    return _fingerprint.notebook_dependencies(notebook, narrow=narrowing(_fingerprint.notebook_sources(notebook)))


def fingerprints(folder: Path = ROOT / "chapters") -> dict[str, str]:
    """``{notebook name: fingerprint}`` for the notebooks in ``folder``."""
    return {nb.name: _fingerprint.fingerprint(dependencies(nb)) for nb in notebooks(folder)}


def forget_execution(notebook: Path, cache_path: Path) -> int:
    """Remove the notebook's records from the jupyter cache; return how many were removed."""
    if not cache_path.exists():
        return 0
    from jupyter_cache import get_cache

    cache = get_cache(cache_path)
    removed = 0
    for record in cache.list_cache_records():
        if record.uri and Path(record.uri).resolve() == notebook.resolve():
            cache.remove_cache(record.pk)
            removed += 1
    return removed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--build-dir", type=Path, default=ROOT / "_build")
    parser.add_argument("--chapters", type=Path, default=ROOT / "chapters")
    parser.add_argument("--dry-run", action="store_true", help="only print which notebooks would re-execute")
    parser.add_argument("--show", action="store_true", help="print the companion modules each notebook depends on")
    args = parser.parse_args(argv)
    stored_path = args.build_dir / ".notebook-fingerprints.json"
    stored = json.loads(stored_path.read_text()) if stored_path.exists() else {}
    current = fingerprints(args.chapters)
    if args.show:
        for nb in notebooks(args.chapters):
            print(nb.name, " ".join(sorted(dependencies(nb))))
    changed = [name for name, value in current.items() if stored.get(name) != value]
    for name in changed:
        why = "new" if name not in stored else "its companion code changed"
        print(f"refresh_notebooks: {name}: {why}; it will re-execute")
    if not changed:
        print(f"refresh_notebooks: no chapter's companion code changed ({len(current)} notebooks)")
    if args.dry_run:
        return 0
    for name in changed:
        notebook = args.chapters / name
        forget_execution(notebook, args.build_dir / ".jupyter_cache")
        os.utime(notebook)  # newer than Sphinx's saved doctree: read again
    args.build_dir.mkdir(parents=True, exist_ok=True)
    stored_path.write_text(json.dumps(current, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
