#!/usr/bin/env bash
# Install Debian's chromium, which tests/test_checks.py uses headless to render the data
# validation report (Data Docs) and read the page as a user would. Safe to run again: it does
# nothing when chromium is present. Where apt or root rights are missing, say so and succeed;
# that one test then skips with the reason.
set -euo pipefail

if command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: cannot install chromium; the Data Docs browser test will skip" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "no root rights: run 'sudo apt-get install chromium' for the Data Docs browser test" >&2
    exit 0
fi
echo "installing Debian's chromium (headless browser for the Data Docs test)..." >&2
if ! { "${SUDO[@]}" apt-get update -qq && \
       DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq chromium >/dev/null; }; then
    echo "apt-get could not install chromium; the Data Docs browser test will skip" >&2
fi
