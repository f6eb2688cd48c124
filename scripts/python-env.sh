#!/usr/bin/env bash
# Creates target/py, a Python virtual environment with the pinned packages of
# examples/python/requirements.txt (grpcio, grpcio-tools), from PyPI. The
# integration test `python_integration` (tests/it/push.rs) runs the README's
# Python example with it; without it the test is skipped locally and fails
# in CI (CI=true). Needs python3 with venv (Debian: apt-get install
# python3-venv). Run again after the requirements change; it is quick when
# nothing did.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=target/py
req=examples/python/requirements.txt
stamp="$venv/.requirements"
if [ -x "$venv/bin/python" ] && cmp -s "$req" "$stamp"; then
  echo "$venv is up to date"
  exit 0
fi
python3 -m venv "$venv"
"$venv/bin/python" -m pip install --quiet --disable-pip-version-check --requirement "$req"
cp "$req" "$stamp"
echo "$venv ready: $("$venv/bin/python" -c 'import grpc, grpc_tools; print("grpcio", grpc.__version__)')"
