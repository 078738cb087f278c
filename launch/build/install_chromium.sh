#!/usr/bin/env bash
# Installs Debian's chromium when it is missing: the headless browser that the TensorBoard
# Profile-tab test (tests/launch/test_tensorboard_profile.py) drives. `make test` runs this first.
# Needs root (or sudo); about a minute on a fresh machine.
set -euo pipefail

if ! command -v chromium >/dev/null 2>&1; then
  bash "$(dirname "$0")/apt_install.sh" browser "the TensorBoard test needs it" chromium
fi
echo "browser: $(chromium --version 2>/dev/null | head -n 1)"
