#!/usr/bin/env bash
# install-tools.sh CMD:PACKAGE...: installs the Debian packages whose
# commands are missing; CMD written pc=NAME is a library pkg-config must
# find instead (a -dev package). Runs apt-get as root, or through sudo.
set -euo pipefail
missing=()
for pair in "$@"; do
  cmd=${pair%%:*} pkg=${pair#*:}
  case $cmd in
  pc=*) pkg-config --exists "${cmd#pc=}" 2>/dev/null || missing+=("$pkg") ;;
  *) command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg") ;;
  esac
done
[ ${#missing[@]} -eq 0 ] && exit 0
echo "installing: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null 2>&1 || { echo "need root (or sudo) to install: ${missing[*]}" >&2; exit 1; }
  sudo=sudo
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -q
$sudo apt-get install -y -q --no-install-recommends "${missing[@]}"
