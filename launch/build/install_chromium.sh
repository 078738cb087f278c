#!/usr/bin/env bash
# Installs Debian's chromium when it is missing: the headless browser that the TensorBoard
# Profile-tab test (tests/launch/test_tensorboard_profile.py) drives. `make test` runs this first.
# Needs root (or sudo); about a minute on a fresh machine.
set -euo pipefail

if command -v chromium >/dev/null 2>&1; then
  echo "browser: $(chromium --version 2>/dev/null | head -n 1)"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "browser: chromium is missing and installing it needs root: run" \
       "'apt-get install chromium' as root (the TensorBoard test needs it)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "browser: installing chromium with apt-get"
"${as_root[@]}" apt-get install -y -q chromium >/dev/null 2>&1 || {
  "${as_root[@]}" apt-get update -q >/dev/null
  "${as_root[@]}" apt-get install -y -q chromium >/dev/null
}
echo "browser: $(chromium --version 2>/dev/null | head -n 1)"
