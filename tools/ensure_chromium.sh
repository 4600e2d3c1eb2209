#!/usr/bin/env bash
# Make sure Debian's chromium is at /usr/bin/chromium for the browser test (tests/test_book_html.py).
# Quiet and quick when it is already there; otherwise installs it with apt-get (needs root).
set -euo pipefail

CHROMIUM=/usr/bin/chromium

if [ -x "$CHROMIUM" ]; then
    exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
    echo "ensure_chromium: $CHROMIUM is missing and apt-get is not available." >&2
    echo "ensure_chromium: install Chromium so that $CHROMIUM exists, then rerun." >&2
    exit 1
fi

if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
        SUDO=sudo
    else
        echo "ensure_chromium: $CHROMIUM is missing; installing it needs root." >&2
        echo "ensure_chromium: run as root: apt-get update && apt-get install -y chromium" >&2
        exit 1
    fi
else
    SUDO=
fi

echo "ensure_chromium: installing Debian's chromium with apt-get (about 20 s)"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq chromium >/dev/null

if [ ! -x "$CHROMIUM" ]; then
    echo "ensure_chromium: apt-get finished but $CHROMIUM is still missing." >&2
    exit 1
fi
echo "ensure_chromium: $("$CHROMIUM" --version 2>/dev/null || echo chromium) installed"
