#!/usr/bin/env bash
# Find a Chromium or Chrome for the browser tests (tests/test_book_html.py), or install Debian's.
# Looks at $CHROMIUM, then chromium, chromium-browser, google-chrome, google-chrome-stable on
# PATH (tests/conftest.py looks in the same order). Only when none is found does it install
# Debian's chromium with apt-get, which needs root; otherwise it says what to run.
# Prints the browser it found on its last line.
set -euo pipefail

NAMES="chromium chromium-browser google-chrome google-chrome-stable"

find_browser() {
    if [ -n "${CHROMIUM:-}" ]; then
        if [ -x "$CHROMIUM" ] || command -v "$CHROMIUM" >/dev/null 2>&1; then
            command -v "$CHROMIUM"
            return 0
        fi
        echo "ensure_chromium: CHROMIUM=$CHROMIUM is not an executable; looking for another browser" >&2
    fi
    for name in $NAMES; do
        if command -v "$name" >/dev/null 2>&1; then
            command -v "$name"
            return 0
        fi
    done
    return 1
}

if browser=$(find_browser); then
    echo "$browser"
    exit 0
fi

how="apt-get update && apt-get install -y chromium"
if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: no Chromium or Chrome found (looked for \$CHROMIUM, then $NAMES on PATH)." >&2
    echo "ensure_chromium: install one with your system's package manager, or point CHROMIUM at it:" >&2
    echo "ensure_chromium:     CHROMIUM=/path/to/chrome make test" >&2
    exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=sudo
    else
        echo "ensure_chromium: no Chromium or Chrome found (looked for \$CHROMIUM, then $NAMES on PATH)," >&2
        echo "ensure_chromium: and installing one needs root. Run:" >&2
        echo "ensure_chromium:     sudo sh -c '$how'" >&2
        echo "ensure_chromium: or, with a browser installed elsewhere: CHROMIUM=/path/to/chrome make test" >&2
        exit 1
    fi
else
    SUDO=
fi

echo "ensure_chromium: installing Debian's chromium with apt-get (about 20 s)" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null

if ! browser=$(find_browser); then
    echo "ensure_chromium: apt-get finished but no chromium is on PATH." >&2
    exit 1
fi
echo "$browser"
