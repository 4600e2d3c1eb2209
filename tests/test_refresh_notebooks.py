"""tools/refresh_notebooks.py: a chapter re-executes when, and only when, companion code it uses
changes: its record leaves the jupyter cache and the notebook is touched (for Sphinx)."""

import importlib.util
import json
import os
import shutil
from pathlib import Path

import nbformat
import pytest
from jupyter_cache import get_cache
from jupyter_cache.base import CacheBundleIn

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("refresh_notebooks", ROOT / "tools" / "refresh_notebooks.py")
refresh = importlib.util.module_from_spec(spec)
spec.loader.exec_module(refresh)


def test_a_chapter_depends_on_the_experiments_it_runs_not_all():
    from companion import experiments

    every = {exp.fit.__module__ for exp in experiments.REGISTRY.values()}
    for nb in refresh.notebooks():
        deps = set(refresh.dependencies(nb))
        used = {m for m in deps if m in every}
        assert used, f"{nb.name} runs no experiment?"
        assert used != every or len(every) == 1, f"{nb.name} depends on every experiment module"
        assert "companion.training" in deps and "companion" in deps


def cache_as_executed(cache, notebooks):
    """Record each notebook in the jupyter cache under its path, as myst-nb does after running it,
    and date it in the past."""
    for nb in notebooks:
        cache.cache_notebook_bundle(CacheBundleIn(nbformat.read(nb, 4), str(nb)), check_validity=False)
        os.utime(nb, (1_000_000, 1_000_000))


def test_a_changed_fingerprint_forgets_the_execution_and_touches_the_notebook(tmp_path, capsys):
    chapters = tmp_path / "chapters"
    shutil.copytree(ROOT / "chapters", chapters, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    build = tmp_path / "_build"
    cache = get_cache(build / ".jupyter_cache")
    notebooks = refresh.notebooks(chapters)
    cache_as_executed(cache, notebooks)
    assert refresh.main(["--build-dir", str(build), "--chapters", str(chapters)]) == 0  # first run: all new
    assert cache.list_cache_records() == []
    assert all(nb.stat().st_mtime > 1_000_000 for nb in notebooks)

    stored = json.loads((build / ".notebook-fingerprints.json").read_text())
    assert set(stored) == {nb.name for nb in notebooks}
    first, *rest = notebooks
    stored[first.name] = "0" * 16  # as if its companion code had changed since
    (build / ".notebook-fingerprints.json").write_text(json.dumps(stored))
    cache_as_executed(cache, notebooks)
    capsys.readouterr()
    assert refresh.main(["--build-dir", str(build), "--chapters", str(chapters)]) == 0
    assert f"{first.name}: its companion code changed" in capsys.readouterr().out
    assert sorted(Path(r.uri).name for r in cache.list_cache_records()) == sorted(nb.name for nb in rest)
    assert first.stat().st_mtime > 1_000_000 and all(nb.stat().st_mtime == 1_000_000 for nb in rest)
    assert refresh.main(["--build-dir", str(build), "--chapters", str(chapters)]) == 0  # nothing changed now
    assert len(cache.list_cache_records()) == len(rest)


@pytest.mark.parametrize("source, found", [
    ('run("bottleneck")', True), ('run(f"seq2seq-{name}")', False), ('x = f"{a}-{b}"', False),
])
def test_string_patterns_name_experiments(source, found):
    from companion import _fingerprint

    patterns = _fingerprint.string_patterns([source])
    assert any(p.fullmatch("bottleneck") for p in patterns) is found
    assert any(p.fullmatch("seq2seq-luong") for p in patterns) is ("seq2seq" in source)
