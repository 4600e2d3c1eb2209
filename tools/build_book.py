"""Build the book: re-execute the chapters whose companion code changed, then ``jupyter-book build``.

Three steps: ``tools/refresh_notebooks.py`` forgets the execution of every chapter whose companion
code changed; ``tools/execute_chapters.py`` executes the chapters without a cached execution, two
at a time (the build itself would run them one after another on one core); ``jupyter-book build``
then renders the book from the cache (and executes, reporting the error, any chapter that failed).

    python tools/build_book.py                      # output on the terminal (make book)
    python tools/build_book.py --log L --result R   # output to L; R gets {"returncode", "log", "reports"}

Exits with jupyter-book's exit status. ``tests/conftest.py`` (the ``built_book`` fixture) reads
the ``--result`` file that ``make test`` has this script write, or runs it itself.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
JB_FLAGS = ["-W", "-n", "--keep-going"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--log", type=Path, help="write the build's output to this file")
    parser.add_argument("--result", type=Path, help="write the outcome to this JSON file")
    args = parser.parse_args(argv)
    bin_dir = Path(sys.executable).parent
    refresh = [sys.executable, str(ROOT / "tools" / "refresh_notebooks.py")]
    execute = [sys.executable, str(ROOT / "tools" / "execute_chapters.py")]
    build = [str(bin_dir / "jupyter-book"), "build", ".", *JB_FLAGS]
    if args.log:
        args.log.parent.mkdir(parents=True, exist_ok=True)
        with open(args.log, "w") as log:
            for command in (refresh, execute, build):
                log.write("$ " + " ".join(command) + "\n")
                log.flush()
                returncode = subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT).returncode
                if returncode:
                    break
    else:
        returncode = 0
        for command in (refresh, execute, build):
            returncode = subprocess.run(command, cwd=ROOT).returncode
            if returncode:
                break
    if args.result:
        reports = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "_build" / "html" / "reports").rglob("*.log"))
        args.result.parent.mkdir(parents=True, exist_ok=True)
        args.result.write_text(json.dumps({"returncode": returncode, "log": str(args.log or ""), "reports": reports}))
    return returncode


if __name__ == "__main__":
    sys.exit(main())
