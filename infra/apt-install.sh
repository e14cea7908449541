#!/usr/bin/env bash
# Install a Debian package the project can do without, once: opencv-doc carries the real sample
# videos (box.mp4, cup.mp4, vtest.avi), chromium renders the Data Docs in a test. Where apt or
# root rights are missing, say what happens instead and succeed.
#   infra/apt-install.sh PACKAGE "what happens without it"
set -euo pipefail
package="$1"
without="$2"

if dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: cannot install $package; $without" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "no root rights: run 'sudo apt-get install $package'; $without" >&2
    exit 0
fi
echo "installing Debian's $package..." >&2
if ! { "${SUDO[@]}" apt-get update -qq && \
       DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq "$package" >/dev/null; }; then
    echo "apt-get could not install $package; $without" >&2
fi
