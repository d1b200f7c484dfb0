#!/usr/bin/env bash
# Installs Debian's OpenSSH server, which the remote launcher's tests start as test "hosts".
# Idempotent: does nothing when sshd is already there. Needs root and apt (Debian/Ubuntu).
set -euo pipefail
if [ -x /usr/sbin/sshd ]; then
  exit 0
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends openssh-server >/dev/null
test -x /usr/sbin/sshd
