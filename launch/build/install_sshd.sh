#!/usr/bin/env bash
# Installs Debian's openssh-server when sshd is missing: the multi-host test
# (tests/launch/test_multihost.py) runs two key-only sshd "hosts" on 127.0.0.2 and 127.0.0.3 and
# launches horovodrun over ssh to them. `make test` runs this first. Needs root (or sudo). The
# package's own sshd service is not started: the test runs its own daemons and stops them.
set -euo pipefail

if [ -x /usr/sbin/sshd ] && command -v ssh >/dev/null 2>&1 && command -v unshare >/dev/null 2>&1; then
  echo "sshd: $(/usr/sbin/sshd -V 2>&1 | head -n 1)"
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "sshd: openssh-server is missing and installing it needs root: run" \
       "'apt-get install openssh-server' as root (the multi-host test needs it)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "sshd: installing openssh-server with apt-get"
# policy-rc.d 101: the package's post-install must not start (or enable) the system's sshd.
policy=/usr/sbin/policy-rc.d
created_policy=0
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod +x "$policy"
  created_policy=1
fi
install() { "${as_root[@]}" apt-get install -y -q --no-install-recommends openssh-server openssh-client util-linux >/dev/null 2>&1; }
install || { "${as_root[@]}" apt-get update -q >/dev/null; install; }
[ "$created_policy" = 1 ] && "${as_root[@]}" rm -f "$policy"
echo "sshd: $(/usr/sbin/sshd -V 2>&1 | head -n 1)"
