#!/usr/bin/env bash
# Installs Debian packages that a test needs, as root (or with password-less sudo), with
# apt-get; refreshes the package lists once if the first try fails. No service the packages
# bring is started (policy-rc.d 101 while they install).
#
#   launch/build/apt_install.sh WHAT "why it is needed" PACKAGE...
set -euo pipefail

what=${1:?usage: apt_install.sh WHAT WHY PACKAGE...}
why=${2:?usage: apt_install.sh WHAT WHY PACKAGE...}
shift 2
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "$what: $* missing and installing needs root: run 'apt-get install $*' as root ($why)" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
echo "$what: installing $* with apt-get"
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | "${as_root[@]}" tee "$policy" >/dev/null
  "${as_root[@]}" chmod +x "$policy"
  trap '"${as_root[@]}" rm -f "$policy"' EXIT
fi
install_packages() {
  "${as_root[@]}" apt-get install -y -q "$@" >/dev/null 2>&1
}
install_packages "$@" || {
  "${as_root[@]}" apt-get update -q >/dev/null
  install_packages "$@"
}
