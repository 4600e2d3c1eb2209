"""Command line: ``python -m companion.experiments NAME [--set key=value ...] [--retrain]``.

Trains the experiment unless the cache the chapters read already holds it (so training from the
shell warms the book), says where its cache entry is, and prints, as its last line, one JSON
object ``{"experiment": ..., "metrics": {...}, "seconds": ..., "cached": ..., "cache": ...}``.
``--retrain`` trains even when cached and replaces the entry.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from . import cache_dir, config_of, get, names, run


def _parse_setting(name: str, text: str):
    if "=" not in text:
        raise SystemExit(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    default = config_of(name)
    fields = {f.name: f for f in dataclasses.fields(default)}
    if key not in fields:
        raise SystemExit(f"{name}: unknown setting {key!r}; settings are {sorted(fields)}")
    kind = type(getattr(default, key))
    try:
        value = json.loads(raw) if kind in (list, tuple, dict, bool) else kind(raw)
    except (ValueError, json.JSONDecodeError) as error:
        raise SystemExit(f"{name}: cannot read {key}={raw!r} as {kind.__name__}: {error}")
    return key, tuple(value) if kind is tuple else value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m companion.experiments", description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", help="the experiment to run")
    parser.add_argument("--list", action="store_true", help="list the experiments and exit")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a setting")
    parser.add_argument("--retrain", action="store_true", help="train even if cached, and replace the cached entry")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        for name in names():
            print(f"{name:24s} {get(name).description}")
        print(f"\ncache: {cache_dir()}  (set COMPANION_CACHE_DIR to move it; delete it to retrain everything)")
        return 0
    if args.name not in names():
        print(f"unknown experiment {args.name!r}; known: {', '.join(names())}", file=sys.stderr)
        return 2
    overrides = dict(_parse_setting(args.name, s) for s in args.set)
    result = run(args.name, retrain=args.retrain, progress=not args.no_progress, **overrides)
    how = "loaded from" if result.cached else "trained in {:.1f} s, saved to".format(result.seconds)
    if result.folder is None:
        how = "trained but interrupted, not saved; the cache is"
    print(f"{args.name}: {how} {result.folder or cache_dir()}")
    print(json.dumps(result.summary()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
