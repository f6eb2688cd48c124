#!/usr/bin/env bash
# What the tests need beyond Rust, for a local run and for .ci/run:
# - Debian packages (the list below): the real Prometheus and PostgreSQL the
#   metric-source tests start on loopback ports in temporary folders
#   (tests/it/realdeps.rs); never started here, and never as services.
# - target/py, the Python environment of the README's integration example
#   (scripts/python-env.sh).
# Installs with apt-get (through sudo when not root) only what is missing,
# so it is quick when everything is there. Without these the tests are
# skipped with the reason locally, and fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

# One package a line.
packages=(
  prometheus
  postgresql
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=()
  [ "$(id -u)" -eq 0 ] || sudo=(sudo)
  # The packages' own services (where the system starts them) are not what
  # the tests use: they start their own servers.
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
else
  echo "packages present: ${packages[*]}"
fi

bash scripts/python-env.sh
