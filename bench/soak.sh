#!/usr/bin/env bash
# Soak and connection-load check, on loopback, release build.
#
# 1. Saturation: HMAC-signed GET /v1/device (otp mode, fresh nonce per request) as fast as
#    possible for 10 s.
# 2. Soak: the same at half of that rate for SOAK_SECONDS (default 600), sampling the server's
#    resident memory (VmRSS) every 10 s. The replay cache holds each nonce for the 300 s
#    signature window and the cleanup job (every 60 s here) drops expired ones, so memory
#    reaches its steady state after about 6 minutes; the check compares the samples after
#    that warm-up: flat means max/min within 10 %.
# 3. Connections: 5,000 keep-alive connections opened at once, each making a request, held
#    20 s, then each making a second request on the same connection; all must be answered.
#
#   bench/soak.sh                       # 10-minute soak
#   SOAK_SECONDS=120 WARMUP=60 bench/soak.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SOAK_SECONDS=${SOAK_SECONDS:-600}
WARMUP=${WARMUP:-360}
PORT=${PORT:-18280}
ADMIN_PORT=${ADMIN_PORT:-18281}
CONNECTIONS=${CONNECTIONS:-5000}

cargo build --release --locked -q -p moat-cli -p moat-loadgen
MOAT=$PWD/target/release/moat
LOADGEN=$PWD/target/release/moat-loadgen
WORK=$(mktemp -d)
PID=""
cleanup() { [ -n "$PID" ] && kill "$PID" 2>/dev/null; wait 2>/dev/null || true; rm -rf "$WORK"; }
trap cleanup EXIT

# Each connection needs a descriptor on both ends.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
(cd "$WORK" && MOAT_ENROLLMENT__MODE=otp MOAT_SERVER__LISTEN="127.0.0.1:$PORT" \
    MOAT_ADMIN__LISTEN="127.0.0.1:$ADMIN_PORT" MOAT_CLEANUP__INTERVAL=60 RUST_LOG=warn \
    exec "$MOAT" serve) &
PID=$!
for _ in $(seq 100); do
    curl -fsS "http://127.0.0.1:$PORT/healthz" >/dev/null 2>&1 && break
    sleep 0.1
done
URL="http://127.0.0.1:$PORT"
rss() { awk '/VmRSS/ {print $2}' "/proc/$PID/status"; }

echo "# saturation (10 s)"
SAT=$("$LOADGEN" --name saturation call --server "$URL" --devices 16 --concurrency 32 --seconds 10)
echo "$SAT"
RATE=$(python3 -c "import json,sys; print(int(json.loads(sys.argv[1])['rps'] / 2))" "$SAT")
echo "# soak at $RATE/s for $SOAK_SECONDS s; RSS (KiB) every 10 s"
SAMPLES="$WORK/rss.txt"
(
    for _ in $(seq $((SOAK_SECONDS / 10))); do
        sleep 10
        rss >> "$SAMPLES"
    done
) &
SAMPLER=$!
"$LOADGEN" --name soak call --server "$URL" --devices 16 --concurrency 32 --seconds "$SOAK_SECONDS" --rate "$RATE"
wait "$SAMPLER" || true
python3 - "$SAMPLES" "$WARMUP" <<'PY'
import sys
samples = [int(l) for l in open(sys.argv[1]) if l.strip()]
warm = int(sys.argv[2]) // 10
print("rss_kib", samples)
after = samples[warm:]
if not after:
    sys.exit("soak too short for the warm-up")
lo, hi = min(after), max(after)
spread = (hi - lo) / lo
print(f"after {warm * 10} s of warm-up: min {lo} KiB, max {hi} KiB, spread {spread:.1%} "
      f"({'flat' if spread <= 0.10 else 'NOT flat'}, threshold 10%)")
PY

echo "# $CONNECTIONS keep-alive connections"
python3 - "$PORT" "$CONNECTIONS" <<'PY'
import asyncio, sys, time
port, n = int(sys.argv[1]), int(sys.argv[2])
REQ = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"

async def one_request(reader, writer):
    writer.write(REQ)
    await writer.drain()
    head = await reader.readuntil(b"\r\n\r\n")
    length = next(int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length"))
    await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200")

async def main():
    conns = []
    for _ in range(n):
        conns.append(await asyncio.open_connection("127.0.0.1", port))
    first = await asyncio.gather(*(one_request(r, w) for r, w in conns), return_exceptions=True)
    ok1 = sum(1 for x in first if x is True)
    print(f"opened {len(conns)} connections, first request answered on {ok1}")
    await asyncio.sleep(20)
    second = await asyncio.gather(*(one_request(r, w) for r, w in conns), return_exceptions=True)
    ok2 = sum(1 for x in second if x is True)
    print(f"after 20 s held: second request on the same connections answered on {ok2}")
    for _, w in conns:
        w.close()
    sys.exit(0 if ok1 == n and ok2 == n else 1)

asyncio.run(main())
PY
echo "server RSS with the connections closed: $(rss) KiB"
