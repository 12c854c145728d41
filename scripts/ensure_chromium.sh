#!/usr/bin/env bash
# The end-to-end tests drive Debian's Chromium with Playwright. A browser download by
# Playwright fails offline, so install the distribution's package where it is missing,
# with a CJK font so that the 简体中文 pages render as text, not boxes, in screenshots.
set -euo pipefail
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# The tests drive its headless shell (same engine, less CPU per tab); benchmarks the full browser.
command -v chromium-headless-shell >/dev/null 2>&1 || need+=(chromium-headless-shell)
fc-list :lang=zh 2>/dev/null | grep -q . || need+=(fonts-wqy-zenhei)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "Installing ${need[*]} for the browser tests..." >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need[@]}" >/dev/null
