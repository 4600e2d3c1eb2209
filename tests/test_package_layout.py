"""The companion's layout: no import cycles, one import path per name, equation references
that resolve, exercise and experiment modules named by topic, and chapters that import only
from concept modules.

These are the rules that let a chapter be inserted without renaming a module, an exercise id
or an equation reference (see CONTRIBUTING.md).
"""

from __future__ import annotations

import ast
import importlib
import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "src" / "companion"
CHAPTERS = sorted((ROOT / "chapters").glob("*.ipynb"))
LABEL_DEF = re.compile(r"\$\$\s*\((eq-[a-z0-9][a-z0-9-]*)\)")
LABEL_REF = re.compile(r"(?<![\w{`-])(eq-[a-z0-9][a-z0-9-]*[a-z0-9])")
IMPORT_FROM = re.compile(r"^\s*from (companion[\w.]*) import (\([^)]*\)|[^\n]+)", re.M)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(p): p for p in PACKAGE.rglob("*.py")}


def imported_modules(name: str) -> set[str]:
    """The companion modules that module ``name`` imports anywhere in its source (top level or
    inside functions), resolved to module names; ``from pkg import sub`` counts ``pkg.sub``."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return {m for m in found if m in MODULES and m != name}


def notebook_sources(path: Path, kind: str) -> list[str]:
    cells = json.loads(path.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == kind]


def test_no_import_cycles():
    graph = {name: imported_modules(name) for name in MODULES}
    # A package's __init__ importing its own submodules is how it registers them; a submodule
    # importing its parent package is the cycle we look for, so keep both kinds of edge.
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycle = stack[stack.index(nxt):] + [nxt]
                # The parent package of a module is imported before it by Python itself; an
                # edge from a package to its own submodule does not close a cycle on its own.
                pytest.fail("import cycle: " + " -> ".join(cycle))
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name)


@pytest.mark.parametrize("notebook", CHAPTERS, ids=lambda p: p.stem)
def test_chapters_import_each_name_from_where_it_is_defined(notebook):
    problems = []
    for source in notebook_sources(notebook, "code"):
        for match in IMPORT_FROM.finditer(source):
            module = match.group(1)
            if module.startswith("companion.experiments."):
                problems.append(f"imports from the experiment module {module}: import models from "
                                "concept modules and tasks from companion.tasks")
                continue
            loaded = importlib.import_module(module)
            for item in match.group(2).strip("()").replace("\n", ",").split(","):
                name = item.split(" as ")[0].strip()
                if not name:
                    continue
                obj = getattr(loaded, name, None)
                if obj is None:
                    try:
                        obj = importlib.import_module(f"{module}.{name}")
                    except ImportError:
                        pass
                if obj is None:
                    problems.append(f"{module} has no {name}")
                    continue
                home = getattr(obj, "__module__", None)
                if home is None or home == module or not callable(obj):
                    continue
                # A package may offer its own submodules' names (companion.exercises.check).
                if not (loaded.__file__.endswith("__init__.py") and home.startswith(module + ".")):
                    problems.append(f"{name} is imported from {module} but defined in {home}")
    assert not problems, f"{notebook.name}:\n" + "\n".join(problems)


def test_equation_references_in_the_companion_resolve():
    labels = set()
    for path in [*CHAPTERS, *(ROOT / "book").glob("*.md")]:
        labels.update(LABEL_DEF.findall(path.read_text()))
    assert labels, "no equation labels found in the chapters"
    missing = []
    for path in [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.js")]:
        for ref in sorted(set(LABEL_REF.findall(path.read_text()))):
            if ref not in labels:
                missing.append(f"{path.relative_to(ROOT)}: {ref}")
    assert not missing, "equation references with no label in any chapter:\n" + "\n".join(missing)


def test_equation_labels_are_unique_and_named_not_numbered():
    seen: dict[str, str] = {}
    for path in CHAPTERS:
        for label in LABEL_DEF.findall(path.read_text()):
            assert label not in seen, f"{label} is defined in {seen[label]} and {path.name}"
            assert not re.match(r"eq-ch\d", label), f"{path.name}: {label} names a chapter number"
            seen[label] = path.name


@pytest.mark.parametrize("package", ["experiments", "exercises", "tasks"])
def test_modules_are_named_by_topic(package):
    numbered = [p.name for p in (PACKAGE / package).glob("*.py") if re.match(r"(chapter|ch)\d", p.name)]
    assert not numbered, f"companion/{package} has modules named by chapter number: {numbered}"


def test_every_exercise_a_chapter_checks_exists():
    from companion.exercises import load_all

    registry = load_all()
    used = set()
    for path in CHAPTERS:
        for source in notebook_sources(path, "code"):
            used.update(re.findall(r"check\(\s*\"([^\"]+)\"", source))
    assert used, "the chapters check no exercise"
    unknown = sorted(used - set(registry))
    assert not unknown, f"chapters check exercises that are not registered: {unknown}"
    for exercise_id in registry:
        module = exercise_id.split("/")[0]
        assert (PACKAGE / "exercises" / f"{module}.py").exists(), exercise_id


def test_a_broken_exercise_module_breaks_only_its_own_exercises(tmp_path, monkeypatch):
    from companion.exercises import check, checker

    folder = Path(checker.__file__).parent
    broken = folder / "zz_broken_for_test.py"
    broken.write_text("raise RuntimeError('deliberately broken')\n")
    try:
        feedback = check("zz_broken_for_test/anything", 1)
        assert not feedback and "could not be loaded" in feedback.message
        assert "RuntimeError" in feedback.message
        feedback = check("kernel_regression/width-limits", "not an option")
        assert "could not be loaded" not in feedback.message
    finally:
        broken.unlink()
    assert "there is no exercise module" in check("no_such_module/x", 1).message
    assert "module/slug" in check("no-slash", 1).message
