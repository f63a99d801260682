#!/usr/bin/env bash
# Debian's chromium and chromedriver for the web page's browser tests (tests/browser): installed from the
# distribution's packages when missing (as root, or with passwordless sudo); nothing is downloaded by a test
# tool. Without them the browser tests skip locally and fail under CI=true.
set -u
if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "scripts/browser.sh: no apt-get here; install chromium and chromedriver for the browser tests" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if sudo -n true 2>/dev/null; then SUDO="sudo -n"; else
        echo "scripts/browser.sh: not root; run: sudo apt-get install chromium chromium-driver" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null \
    || { $SUDO apt-get update -q >/dev/null && $SUDO apt-get install -y -q --no-install-recommends chromium chromium-driver >/dev/null; } \
    || echo "scripts/browser.sh: could not install chromium and chromium-driver" >&2
exit 0
