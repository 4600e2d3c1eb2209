"""Which of the companion's source files a piece of code depends on, and a hash of them.

Used by the experiment cache (a model is retrained only when code it runs changed) and by
``tools/refresh_notebooks.py`` (a chapter re-executes only when code it imports changed).
The hash covers each file's syntax tree without docstrings and comments: rewording a docstring
retrains nothing and re-executes no chapter.

The walk is static: it reads ``import`` and ``from ... import`` statements with :mod:`ast`
(anywhere in a file, including inside functions), resolves relative imports, follows those
inside the ``companion`` package transitively and ignores everything else (torch, numpy...).
Importing a module also runs its parent packages' ``__init__.py``, so those are included. A
package whose ``__init__.py`` imports every module of itself through
``pkgutil.iter_modules(__path__)`` (``companion.experiments``, ``companion.exercises``) is
taken to import each of its modules.
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
from collections.abc import Iterable
from pathlib import Path

PACKAGE = "companion"
PACKAGE_DIR = Path(__file__).resolve().parent


def module_path(module: str, package_dir: Path = PACKAGE_DIR) -> Path | None:
    """The file of ``module`` (``companion.a.b``) under ``package_dir``, or None if there is none."""
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    base = package_dir.joinpath(*parts[1:])
    if (base / "__init__.py").is_file():
        return base / "__init__.py"
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py")
    return None


def _is_package(path: Path) -> bool:
    return path.name == "__init__.py"


def _imports_all_submodules(tree: ast.AST) -> bool:
    """True if the module calls ``pkgutil.iter_modules(__path__)`` (it imports its own modules)."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "iter_modules":
            if any(isinstance(arg, ast.Name) and arg.id == "__path__" for arg in node.args):
                return True
    return False


def imported_modules(tree: ast.AST, module: str, is_package: bool, package_dir: Path = PACKAGE_DIR) -> set[str]:
    """The ``companion`` modules that the code ``tree`` (of module ``module``) imports directly."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: from the module's package, up level - 1 packages
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)] if node.level > 1 else anchor
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            for alias in node.names:  # `from companion import viz` imports the module viz
                if module_path(f"{base}.{alias.name}", package_dir) is not None:
                    found.add(f"{base}.{alias.name}")
    return {name for name in found if name.split(".")[0] == PACKAGE and module_path(name, package_dir)}


def _with_parents(module: str) -> list[str]:
    parts = module.split(".")
    return [".".join(parts[: i + 1]) for i in range(len(parts))]


def dependencies(roots: Iterable[str], *, package_dir: Path = PACKAGE_DIR, ignore: Iterable[str] = (),
                 code: Iterable[str] = (), narrow: dict[str, set[str]] | None = None) -> dict[str, Path]:
    """Every ``companion`` module reachable from the modules ``roots`` and the source texts ``code``.

    Returns ``{module name: file}``. Modules named in ``ignore`` are neither included nor followed.
    ``narrow`` maps a package that imports all its modules to the ones that matter here (the
    experiments a chapter runs), which are taken instead of all.
    """
    ignore, narrow = set(ignore), narrow or {}
    todo = [m for root in roots for m in _with_parents(root)]
    for text in code:
        todo += [m for name in imported_modules(ast.parse(text), "__main__", False, package_dir)
                 for m in _with_parents(name)]
    seen: dict[str, Path] = {}
    while todo:
        module = todo.pop()
        if module in seen or module in ignore:
            continue
        path = module_path(module, package_dir)
        if path is None:
            continue
        seen[module] = path
        tree = ast.parse(path.read_text(), filename=str(path))
        found = imported_modules(tree, module, _is_package(path), package_dir)
        if module in narrow:
            found |= set(narrow[module])
        elif _is_package(path) and _imports_all_submodules(tree):
            found |= {f"{module}.{p.stem}" for p in path.parent.glob("*.py") if p.name not in ("__init__.py", "__main__.py")}
            found |= {f"{module}.{p.parent.name}" for p in path.parent.glob("*/__init__.py")}
        todo += [m for name in found for m in _with_parents(name)]
    return seen


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                node.body = body[1:] or [ast.Pass()]
    return tree


def code_text(path: Path) -> str:
    """What of a module's source can change its behaviour: its syntax tree without docstrings,
    comments, blank lines or formatting (so that fixing a docstring changes no fingerprint)."""
    return ast.dump(_without_docstrings(ast.parse(Path(path).read_text(), filename=str(path))))


def fingerprint(files: dict[str, Path], extra: object = None) -> str:
    """A 16-hex-digit hash of the modules' names and code (:func:`code_text`), and of ``extra``."""
    digest = hashlib.sha256(json.dumps(extra, sort_keys=True, default=str).encode())
    for module in sorted(files):
        digest.update(module.encode() + b"\0" + code_text(files[module]).encode() + b"\0")
    return digest.hexdigest()[:16]


def notebook_code(path: Path) -> list[str]:
    """The Python source of a notebook's code cells, IPython's ``%magic``/``!shell`` lines blanked."""
    cells = json.loads(Path(path).read_text())["cells"]
    sources = []
    for cell in cells:
        if cell.get("cell_type") != "code":
            continue
        text = "".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
        sources.append(_blank_magics(text))
    return sources


def _blank_magics(text: str) -> str:
    out = []
    for line in text.splitlines():
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[: len(line) - len(stripped)] + "pass"
        out.append(line)
    return "\n".join(out)


def notebook_sources(path: Path) -> list[str]:
    """The notebook's code cells as parseable Python (a cell that is not: its import lines)."""
    code = []
    for source in notebook_code(path):
        try:
            ast.parse(source)
        except SyntaxError:
            source = "\n".join(line.strip() for line in source.splitlines()
                               if line.strip().startswith(("import ", "from ")))
        code.append(source)
    return code


def string_patterns(sources: Iterable[str]) -> list[re.Pattern]:
    """The string literals of the code, as patterns: ``"bottleneck"`` matches itself, the f-string
    ``f"seq2seq-{name}"`` matches any ``seq2seq-...`` (an f-string without letters, ``f"{a}-{b}"``,
    is left out: it would match anything)."""
    patterns = set()
    for source in sources:
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value:
                patterns.add(re.escape(node.value))
            elif isinstance(node, ast.JoinedStr):  # kept if its literal part has a letter
                literal = "".join(part.value for part in node.values if isinstance(part, ast.Constant))
                if any(c.isalpha() for c in literal):
                    patterns.add("".join(re.escape(part.value) if isinstance(part, ast.Constant) else ".+"
                                         for part in node.values))
    return [re.compile(p) for p in sorted(patterns)]


def notebook_dependencies(path: Path, package_dir: Path = PACKAGE_DIR,
                          narrow: dict[str, set[str]] | None = None) -> dict[str, Path]:
    """The ``companion`` modules a notebook imports, transitively (``narrow``: see :func:`dependencies`)."""
    return dependencies((), package_dir=package_dir, code=notebook_sources(path), narrow=narrow)
