#!/usr/bin/env bash
# A third-party gRPC client (buf curl, from npm) discovers the API through
# server reflection, calls RankItems and the health check, then the sidecar is
# stopped with SIGTERM and must exit cleanly. Loopback only.
set -euo pipefail
cd "$(dirname "$0")/.."

BUF="npx --yes @bufbuild/buf@1.75.0"
BIN="${CARGO_TARGET_DIR:-target}/debug/plumbline"
cargo build --locked --quiet

out=$(mktemp)
"$BIN" demo --keep-serving --listen 127.0.0.1:0 >"$out" 2>&1 &
pid=$!
trap 'kill -9 $pid 2>/dev/null || true; rm -f "$out"' EXIT

url=""
for _ in $(seq 1 100); do
  url=$(grep -o 'Still serving on http://127\.0\.0\.1:[0-9]*' "$out" | awk '{print $4}' || true)
  [ -n "$url" ] && break
  kill -0 $pid 2>/dev/null || { cat "$out"; echo "smoke: demo exited early"; exit 1; }
  sleep 0.2
done
[ -n "$url" ] || { cat "$out"; echo "smoke: demo did not start"; exit 1; }

fail() { echo "smoke: $*"; exit 1; }

methods=$($BUF curl --protocol grpc --http2-prior-knowledge --list-methods "$url" 2>/dev/null)
for svc in SourceService BacklogService ValueModelService ScoringService SyncService RollupService SplitService ValidationService TokenService ModelFileService; do
  grep -q "plumbline.v1.$svc/" <<<"$methods" || fail "reflection does not list $svc"
done
grep -q "grpc.health.v1.Health/Check" <<<"$methods" || fail "reflection does not list the health service"

ranked=$($BUF curl --protocol grpc --http2-prior-knowledge -d '{"page_size": 3}' \
  "$url/plumbline.v1.ScoringService/RankItems" 2>/dev/null)
[ "$(grep -c '"rank":' <<<"$ranked")" -eq 3 ] || fail "RankItems through buf curl did not return 3 ranked items: $ranked"

health=$($BUF curl --protocol grpc --http2-prior-knowledge "$url/grpc.health.v1.Health/Check" 2>/dev/null)
grep -q '"SERVING"' <<<"$health" || fail "health check did not answer SERVING: $health"

kill -TERM $pid
for _ in $(seq 1 50); do
  kill -0 $pid 2>/dev/null || break
  sleep 0.1
done
kill -0 $pid 2>/dev/null && fail "the sidecar did not stop within 5 s of SIGTERM"
wait $pid || fail "the sidecar exited with an error after SIGTERM"
echo "smoke: buf curl listed the services through reflection, ranked 3 items, health SERVING, SIGTERM clean"
