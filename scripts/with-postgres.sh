#!/usr/bin/env bash
# Runs a command with a real PostgreSQL of its own, so that the integration
# suite runs on the PostgreSQL store:
#
#   bash scripts/with-postgres.sh cargo test --locked --test it
#
# Starts Debian's `postgresql` binaries (scripts/test-deps.sh installs them)
# on a free loopback port in a temporary folder (initdb; never the
# package's service), exports PLUMBLINE_TEST_POSTGRES (the DSN of its
# superuser, which the tests use to create one fresh database per server),
# runs the command, and stops the server and deletes the folder however
# the command ends. Durability is traded for speed (fsync off): the data
# lives as long as the command.
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "with-postgres: no PostgreSQL under /usr/lib/postgresql; run: bash scripts/test-deps.sh" >&2
  exit 1
fi

dir=$(mktemp -d /tmp/plumbline-pgstore.XXXXXX)
password="store-tests-$(od -An -N8 -tx8 /dev/urandom | tr -d ' ')"
# initdb and postgres refuse to run as root: as root they run as nobody.
as=()
if [ "$(id -u)" -eq 0 ]; then
  chown nobody:nogroup "$dir"
  as=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
fi
printf '%s' "$password" >"$dir/pw"
[ "$(id -u)" -ne 0 ] || chown nobody:nogroup "$dir/pw"

pid=""
stop() {
  if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
    kill -INT "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -rf "$dir"
}
trap stop EXIT

"${as[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth-local=trust --auth-host=scram-sha-256 \
  -E UTF8 --no-locale --no-sync --pwfile="$dir/pw" >"$dir/initdb.log" 2>&1 ||
  { cat "$dir/initdb.log" >&2; exit 1; }

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# Many test servers at once, each with a small pool: room for them.
"${as[@]}" "$bin/postgres" -D "$dir/data" -k "$dir" -p "$port" \
  -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
  -c full_page_writes=off -c max_connections=400 >"$dir/postgres.log" 2>&1 &
pid=$!
for _ in $(seq 1 300); do
  if "$bin/pg_isready" -q -h 127.0.0.1 -p "$port"; then break; fi
  kill -0 "$pid" 2>/dev/null || { cat "$dir/postgres.log" >&2; exit 1; }
  sleep 0.1
done
"$bin/pg_isready" -q -h 127.0.0.1 -p "$port" || { echo "with-postgres: not ready" >&2; cat "$dir/postgres.log" >&2; exit 1; }
echo "with-postgres: PostgreSQL $("$bin/postgres" --version | awk '{print $3}') on 127.0.0.1:$port"

export PLUMBLINE_TEST_POSTGRES="host=127.0.0.1 port=$port user=postgres password=$password dbname=postgres"
set +e
"$@"
status=$?
set -e
exit "$status"
