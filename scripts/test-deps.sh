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
  # The packages' own services are not what the tests use (they start their
  # own servers on loopback ports), and must not run: Debian's
  # policy-rc.d (exit 101) tells the packages' install scripts not to start
  # them. Docker images have one; elsewhere one is put in place for the
  # install and taken away after.
  policy=/usr/sbin/policy-rc.d
  placed=no
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\n# plumbline scripts/test-deps.sh: no services during this install\nexit 101\n' |
      "${sudo[@]}" tee "$policy" >/dev/null
    "${sudo[@]}" chmod 755 "$policy"
    placed=yes
  fi
  remove_policy() { if [ "$placed" = yes ]; then "${sudo[@]}" rm -f "$policy"; fi; }
  trap remove_policy EXIT
  "${sudo[@]}" apt-get update -qq
  DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
  remove_policy
  placed=no
else
  echo "packages present: ${packages[*]}"
fi

bash scripts/python-env.sh
