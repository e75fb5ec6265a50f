#!/usr/bin/env bash
# Make sure Debian's Chromium (and its driver) is installed for the dashboard's browser tests (tests/ui/).
# Playwright drives this binary; `playwright install` and its downloads are never used. Idempotent.
set -euo pipefail

if [ -x /usr/bin/chromium ]; then echo "browser: Chromium is installed"; exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "browser: installing Chromium"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium chromium-driver >/dev/null
