#!/usr/bin/env bash
# System packages Unmask needs on Debian/Ubuntu, installed only when missing:
# libGL/libglib for OpenCV (pulled in by MediaPipe), venv support for Python, and Node.js with npm
# (scripts/vendor.sh fetches the browser libraries from the npm registry).
# Chromium and qemu-user are only for the tests: pass --with-browser to install them too (Chromium
# for the pages; qemu-user runs the served model on an emulated x86 CPU without VNNI, where INT8
# sums could saturate: tests/test_graph.py).
set -euo pipefail
want=()
ldconfig -p 2>/dev/null | grep -q 'libGL.so.1' || want+=(libgl1)
ldconfig -p 2>/dev/null | grep -q 'libglib-2.0.so.0' || want+=(libglib2.0-0)
python3 -c 'import ensurepip, venv' 2>/dev/null || want+=(python3-venv)
command -v npm >/dev/null || want+=(nodejs npm)  # scripts/vendor.sh: the webcam's browser libraries
if [ "${1:-}" = "--with-browser" ] && [ ! -x /usr/bin/chromium ]; then want+=(chromium); fi
if [ "${1:-}" = "--with-browser" ] && [ "$(uname -m)" = "x86_64" ] && ! command -v qemu-x86_64 >/dev/null; then
  want+=(qemu-user)
fi
[ ${#want[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null; then
  echo "Please install these system packages: ${want[*]}" >&2
  exit 1
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then SUDO="sudo"; fi
echo "Installing system packages: ${want[*]}" >&2
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
