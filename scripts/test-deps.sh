#!/usr/bin/env bash
# Installs what the whole test suite needs beyond a Rust toolchain, on
# Debian: Chromium and its WebDriver (the browser tests, tests/it/browser.rs),
# axe-core (their accessibility scan; pinned, from npm, into target/axe) and
# Python's venv (then scripts/python-env.sh makes target/py for the README's
# Python integration example). Without them those tests are skipped with a
# note locally and fail in CI (CI=true). Needs root (or sudo) for apt-get
# and npm (Node.js) for axe-core; quick when everything is there already.
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need+=(chromium-driver)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}"
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
