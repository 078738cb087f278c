#!/usr/bin/env bash
# Installs Debian's openssh-server when sshd is missing: the multi-host test
# (tests/launch/test_multihost.py) runs two key-only sshd "hosts" on 127.0.0.2 and 127.0.0.3 and
# launches horovodrun over ssh to them. `make test` runs this first. Needs root (or sudo). The
# package's own sshd service is not started: the test runs its own daemons and stops them.
set -euo pipefail

if ! { [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null 2>&1 \
       && command -v unshare >/dev/null 2>&1; }; then
  bash "$(dirname "$0")/apt_install.sh" sshd "the multi-host test needs it" \
    openssh-server openssh-client util-linux
fi
echo "sshd: $(/usr/sbin/sshd -V 2>&1 | head -n 1)"
