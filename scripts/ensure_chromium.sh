#!/usr/bin/env bash
# The end-to-end tests drive Debian's Chromium with Playwright. A browser download by
# Playwright fails offline, so install the distribution's package where it is missing,
# with a CJK font so that the 简体中文 pages render as text, not boxes, in screenshots.
# The tests prefer its headless shell (same engine, less CPU per tab: README); where the
# distribution has none, they drive the full browser (tests/browser_harness.py).
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
fc-list :lang=zh 2>/dev/null | grep -q . || need+=(fonts-wqy-zenhei)
want_shell=0
command -v chromium-headless-shell >/dev/null 2>&1 || want_shell=1
[ ${#need[@]} -eq 0 ] && [ $want_shell -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing ${need[*]} $([ $want_shell -eq 1 ] && echo chromium-headless-shell) for the browser tests..." >&2
$SUDO apt-get update -qq
if [ ${#need[@]} -gt 0 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
fi
if [ $want_shell -eq 1 ]; then
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium-headless-shell >/dev/null \
        || echo "chromium-headless-shell is not available here: the tests drive chromium" >&2
fi
