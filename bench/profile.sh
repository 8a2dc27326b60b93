#!/usr/bin/env bash
# CPU profile of Moat's full-check path: the (b) load of bench/perf.sh (a fresh RFC 9421 HMAC
# signature and nonce per request, access token, integrity token, rate limit, forwarded to a
# trivial upstream), recorded with `perf record` on the server only, once set-up is over.
# Prints where the server's CPU goes, by crate (self time of the sampled function) and by
# function, and the share of the main stages; writes folded stacks for any flamegraph tool.
#   bench/profile.sh                      # 15 s of samples
#   RUN_SECONDS=30 OUT=/tmp/p bench/profile.sh
# Installs linux-perf (apt) if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_SECONDS=${RUN_SECONDS:-15}
OUT=${OUT:-bench/out}
mkdir -p "$OUT"
if ! command -v perf >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq linux-perf >/dev/null
fi
# shellcheck source=bench/lib.sh
. bench/lib.sh
start_nginx
moat_start otp

"$LG" --name profile --server-pid "$MOAT_PID" --started-file "$WORK/started" full --settle \
    --server http://127.0.0.1:18080 --admin http://127.0.0.1:19091 --concurrency 32 \
    --seconds $((RUN_SECONDS + 2)) > "$OUT/load.json" &
LOAD=$!
PIDS+=("$LOAD")
for _ in $(seq 1200); do [ -f "$WORK/started" ] && break; sleep 0.1; done
[ -f "$WORK/started" ] || { echo "the load never started" >&2; exit 1; }
sleep 1
perf record -q -F 999 -g --call-graph dwarf,16384 -p "$MOAT_PID" -o "$OUT/perf.data" -- sleep "$RUN_SECONDS" 2>/dev/null
wait "$LOAD"
cat "$OUT/load.json"
perf script -i "$OUT/perf.data" 2>/dev/null | python3 bench/stacks.py "$OUT/full-checks.folded"
echo "folded stacks: $OUT/full-checks.folded (flamegraph.pl or inferno-flamegraph draw them)"
