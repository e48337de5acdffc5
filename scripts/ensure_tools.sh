#!/bin/bash
# Installs the command-line tools the interoperability tests and the
# benchmarks run against (Debian's age, zstd, pigz, restic), and the chromium the
# console's browser tests drive, when they are missing.
set -euo pipefail
log() { echo "[tools] $*" >&2; }

missing=()
for tool in age age-keygen zstd pigz tar gzip sha256sum restic; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
# The console's browser tests drive Debian's chromium through playwright
# (executable_path=/usr/bin/chromium; playwright never downloads a browser).
[ -x /usr/bin/chromium ] || missing+=(chromium)
[ ${#missing[@]} -eq 0 ] && exit 0

# Tool name -> Debian package (age-keygen ships with age, sha256sum with coreutils).
packages=()
for tool in "${missing[@]}"; do
  case "$tool" in
    age-keygen) packages+=(age) ;;
    sha256sum) packages+=(coreutils) ;;
    *) packages+=("$tool") ;;
  esac
done
log "installing ${packages[*]} from Debian"
apt-get update -q >/dev/null
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}" >/dev/null
