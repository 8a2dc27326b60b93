#!/usr/bin/env bash
# Foundation benchmark, on loopback, on this machine (server and load generator share the
# cores, as they would on a 2-core CI box). Prints one JSON line per run, then ratios against
# the baseline measured in the same run: an unprotected GET /healthz on the same server with
# the same load generator.
#
#   bench/foundation.sh            # 10 s per run
#   RUN_SECONDS=30 bench/foundation.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_SECONDS=${RUN_SECONDS:-10}
PORT=${PORT:-18080}
ADMIN_PORT=${ADMIN_PORT:-19091}

cargo build --release --locked -q -p moat-cli -p moat-loadgen
MOAT=$PWD/target/release/moat
LOADGEN=$PWD/target/release/moat-loadgen
WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

start() {
    [ -n "$PID" ] && { kill "$PID"; wait "$PID" 2>/dev/null || true; }
    rm -rf "$WORK/moat-data"
    (cd "$WORK" && MOAT_ENROLLMENT__MODE="$1" MOAT_SERVER__LISTEN="127.0.0.1:$PORT" \
        MOAT_ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" RUST_LOG=warn exec "$MOAT" serve) &
    PID=$!
    for _ in $(seq 100); do
        curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "server did not start" >&2; exit 1
}

URL="http://127.0.0.1:$PORT"
RESULTS="$WORK/results.jsonl"
run() { "$LOADGEN" "$@" | tee -a "$RESULTS"; }

echo "# RSA-2048 key generation (what the otp-mode key pool pays per device)"
run keygen --count 30

echo "# dynamic mode"
start dynamic
run --name "baseline GET /healthz" call --server "$URL" --path /healthz --auth none --concurrency 32 --seconds "$RUN_SECONDS"
run --name "enroll (dynamic)" enroll --server "$URL" --concurrency 16 --seconds "$RUN_SECONDS"
run --name "GET /v1/device, API key" call --server "$URL" --path /v1/device --devices 64 --concurrency 32 --seconds "$RUN_SECONDS"
run --name "GET /v1/device, ECDSA-signed" call --server "$URL" --path /v1/device --devices 64 --concurrency 32 --seconds "$RUN_SECONDS" --auth installation

echo "# otp mode"
start otp
run --name "enroll (otp)" enroll --server "$URL" --concurrency 16 --seconds "$RUN_SECONDS"
run --name "GET /v1/device, HMAC-signed" call --server "$URL" --path /v1/device --devices 64 --concurrency 32 --seconds "$RUN_SECONDS"

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\n# summary (ratios against the /healthz baseline of the same run)")
base = next(r for r in rows if r["run"].startswith("baseline"))
for r in rows:
    ratio = r["rps"] / base["rps"] if base["rps"] else 0
    print(f'{r["run"]:<34} {r["rps"]:>9.0f}/s  p50 {r["p50_ms"]:>7.2f} ms  p99 {r["p99_ms"]:>7.2f} ms  errors {r["errors"]:>4}  ratio {ratio:5.2f}')
PY
