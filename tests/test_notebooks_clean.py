"""Chapter notebooks are committed clean: no outputs, no execution counts, kernel `python3`.

Outputs belong to the build (`_build/`), not to the repository: they bloat diffs, go stale
and hide whether the code still runs. Clear them with
`.venv/bin/jupyter nbconvert --clear-output --inplace chapters/*.ipynb`.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = sorted(
    p for p in (ROOT / "chapters").rglob("*.ipynb") if ".ipynb_checkpoints" not in p.parts
)
IDS = [str(p.relative_to(ROOT)) for p in NOTEBOOKS]


def test_there_are_chapter_notebooks():
    assert NOTEBOOKS, "no notebook under chapters/"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_has_no_outputs_or_execution_counts(path: Path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    dirty = []
    for index, cell in enumerate(notebook["cells"]):
        if cell.get("cell_type") != "code":
            continue
        if cell.get("outputs"):
            dirty.append(f"cell {index}: {len(cell['outputs'])} output(s)")
        if cell.get("execution_count") is not None:
            dirty.append(f"cell {index}: execution_count {cell['execution_count']}")
    if notebook.get("metadata", {}).get("widgets"):
        dirty.append("notebook metadata: saved widget state")
    assert not dirty, (
        f"{path.name} is committed with outputs; clear them with "
        f"`jupyter nbconvert --clear-output --inplace {path.relative_to(ROOT)}`:\n  " + "\n  ".join(dirty)
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_kernel_is_python3(path: Path):
    notebook = json.loads(path.read_text(encoding="utf-8"))
    kernelspec = notebook.get("metadata", {}).get("kernelspec", {})
    assert kernelspec.get("name") == "python3", (
        f"{path.name}: kernelspec name is {kernelspec.get('name')!r}, want 'python3'"
    )


def repository_url() -> str:
    import yaml

    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    return config["repository"]["url"].rstrip("/")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_notebook_installs_the_companion_on_colab(path: Path):
    """The Colab launch button opens the bare notebook: its first code cell (hidden from the
    book, tag `remove-cell`) installs the companion from the repository when it is missing."""
    notebook = json.loads(path.read_text(encoding="utf-8"))
    code = [c for c in notebook["cells"] if c.get("cell_type") == "code"]
    assert code, f"{path.name} has no code cell"
    first = code[0]
    source = "".join(first.get("source", ""))
    assert "remove-cell" in first.get("metadata", {}).get("tags", []), (
        f"{path.name}: the first code cell (the Colab install cell) is not tagged remove-cell"
    )
    assert "import companion" in source and "except ImportError" in source, (
        f"{path.name}: the first code cell does not try `import companion` first"
    )
    assert f"git+{repository_url()}" in source and "pip install" in source, (
        f"{path.name}: the first code cell does not pip-install the companion from "
        f"git+{repository_url()}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=IDS)
def test_chapter_reads_in_the_html_column(path: Path):
    """Code lines fit the HTML book's column (about 80 characters on a laptop screen; longer
    lines are cut), and the chapter's title comes before its hidden set-up cells, so that the
    page does not open on a "Show code cell source" bar."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    long = []
    for index, cell in enumerate(cells):
        if cell.get("cell_type") != "code":
            continue
        for number, line in enumerate("".join(cell["source"]).splitlines(), start=1):
            if len(line) > 80:
                long.append(f"cell {index} line {number}: {len(line)} characters")
    assert not long, f"{path.name} has code lines over 80 characters:\n" + "\n".join(long)
    first = cells[0]
    assert first["cell_type"] == "markdown" and "".join(first["source"]).lstrip().startswith("# "), (
        f"{path.name}: the first cell must be the chapter's title (# ...)"
    )
