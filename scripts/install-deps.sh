#!/usr/bin/env bash
# Install the system packages cvsmsg's tests and demo need (Debian/Ubuntu, as root).
# Installing prosody does not start a server we use: ours always run with their own --config.
set -euo pipefail
need=()
command -v prosody >/dev/null || need+=(prosody)
command -v cvs >/dev/null || need+=(cvs)
command -v openssl >/dev/null || need+=(openssl)
# The interpreter the Makefile makes its venv with ($PYTHON), Debian's python3 by default.
if ! "${PYTHON:-python3}" -c 'import venv, ensurepip' 2>/dev/null; then need+=(python3-venv); fi
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "install-deps: missing ${need[*]}; run as root or: sudo apt-get install ${need[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${need[@]}" >/dev/null
# The Debian package may have started the system-wide server on public ports: stop it.
if [ -x /etc/init.d/prosody ]; then /etc/init.d/prosody stop >/dev/null 2>&1 || true; fi
echo "install-deps: installed ${need[*]}"
