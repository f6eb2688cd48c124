#!/usr/bin/env bash
# What the tests need beyond Rust, for a local run and for .ci/run:
# - Debian packages (the list below): the real Prometheus and PostgreSQL the
#   metric-source tests start on loopback ports in temporary folders
#   (tests/it/realdeps.rs); never started here, and never as services.
# - Chromium and its WebDriver for the browser tests (tests/it/browser.rs),
#   and axe-core (their accessibility scan; pinned, from npm, into
#   target/axe).
# - target/py, the Python environment of the README's integration example
#   (scripts/python-env.sh; python3-venv for it).
# Installs with apt-get (through sudo when not root) only what is missing,
# so it is quick when everything is there. Without these the tests are
# skipped with the reason locally, and fail under CI=true.
set -euo pipefail
cd "$(dirname "$0")/.."

# One package a line.
packages=(
  prometheus
  postgresql
  chromium
  chromium-driver
  python3-venv
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

echo "browser: $(chromium --version 2>/dev/null || echo missing); driver: $(chromedriver --version 2>/dev/null | cut -d' ' -f1-2 || echo missing)"

# axe-core: npm checks the tarball against the registry's integrity hash.
axe_version=4.11.0
if [ "$(cat target/axe/.version 2>/dev/null)" != "$axe_version" ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && npm pack --silent "axe-core@$axe_version" >/dev/null && tar -xzf "axe-core-$axe_version.tgz" package/axe.min.js)
  mkdir -p target/axe
  cp "$tmp/package/axe.min.js" target/axe/axe.min.js
  echo "$axe_version" > target/axe/.version
  rm -rf "$tmp"
fi
echo "axe-core $(cat target/axe/.version) in target/axe"

bash scripts/python-env.sh
