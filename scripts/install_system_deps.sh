#!/usr/bin/env bash
# System packages lc_assets needs, from Debian's archive:
#  - the documentation packages that carry the embedded default corpus (see lc_assets/lib/corpus/embedded.py)
#  - chromium, for the headless screenshots of the Dagster UI
# Idempotent: skips apt entirely when everything is already installed.
set -euo pipefail

PACKAGES=(python3-doc postgresql-doc abs-guide jargon-text debian-handbook dict-devil debian-reference-en debian-policy
          chromium postgresql)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  echo "system packages: all present"
  exit 0
fi
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "system packages: installing ${missing[*]}"
$SUDO apt-get update -q
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
