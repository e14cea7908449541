#!/usr/bin/env bash
# Install Debian's opencv-doc package, which carries the real sample videos (box.mp4, cup.mp4,
# vtest.avi). Where apt or root rights are missing, say so and succeed: `denoise samples` then
# renders a clearly labelled synthetic video instead.
set -euo pipefail

if [ -e /usr/share/doc/opencv-doc/opencv4/html/box.mp4.gz ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "apt-get not found: cannot install opencv-doc; a synthetic sample video will be used" >&2
    exit 0
fi
if [ "$(id -u)" -eq 0 ]; then
    SUDO=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    SUDO=(sudo -n)
else
    echo "no root rights: run 'sudo apt-get install opencv-doc' for the real sample videos;" \
         "a synthetic sample video will be used" >&2
    exit 0
fi
echo "installing Debian's opencv-doc (sample videos)..." >&2
if ! { "${SUDO[@]}" apt-get update -qq && \
       DEBIAN_FRONTEND=noninteractive "${SUDO[@]}" apt-get install -y -qq opencv-doc >/dev/null; }; then
    echo "apt-get could not install opencv-doc; a synthetic sample video will be used" >&2
fi
