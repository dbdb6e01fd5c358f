#!/usr/bin/env bash
# System packages the test suite needs beyond Python (run by ./dev test): Debian's chromium for
# tests/test_browser.py (Playwright drives it; no browser is ever downloaded).
# Idempotent: does nothing when /usr/bin/chromium is already there.
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
  exit 0
fi
sudo=""
if [ "$(id -u)" != 0 ]; then
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends chromium fonts-dejavu-core
