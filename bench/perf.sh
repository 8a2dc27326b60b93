#!/usr/bin/env bash
# Performance benchmark (one command): on loopback, in one run, against baselines measured in
# the same run.
#   (a) nginx as a bare reverse proxy to a trivial upstream
#   (b) Moat proxying to it with full checks: RFC 9421 HMAC signature with a fresh nonce per
#       request + replay cache, integrity token, user access token, rate limit
#   (c) Moat proxying with only a device key
#   (d) Node/Express (cluster on every core) verifying an HS256 JWT and an HMAC itself
#   (e) a bare proxy on Moat's own HTTP stack (hyper server + hyper-util client, no checks):
#       the floor under Moat's cost, so b/e shows what the checks and plumbing add
# Prints requests/s, p50/p99 latency, CPU per request, and the ratios b/a and b/d; then p99 at
# half of saturation for (a) and (b). Installs nginx (apt) and the Node packages (npm) if
# missing.
#   bench/perf.sh                 # 10 s per run
#   RUN_SECONDS=20 bench/perf.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_SECONDS=${RUN_SECONDS:-10}
CONC=${CONC:-32}

# shellcheck source=bench/lib.sh
. bench/lib.sh
[ -d bench/node/node_modules ] || (cd bench/node && npm ci --no-audit --no-fund --silent)
start_nginx

SECRET=bench-shared-secret-0123456789abcdef PORT=18083 node bench/node/server.js > "$WORK/node.log" &
NODE_PID=$!
PIDS+=("$NODE_PID")
wait_port 18083

RESULTS=$WORK/results.jsonl
measure() { # name pids... -- loadgen args...
    # The load generator reads the server's CPU time (its processes and their children) at
    # the start and end of the measured window, so setup requests are not counted.
    local name=$1; shift
    local pids=()
    while [ "$1" != "--" ]; do pids+=(--server-pid "$1"); shift; done
    shift
    "$LG" --name "$name" "${pids[@]}" "$@" | tee -a "$RESULTS"
}

echo "# (a) nginx bare proxy"
measure a "$NGINX_PID" -- raw --url http://127.0.0.1:18082/x --concurrency "$CONC" --seconds "$RUN_SECONDS"

echo "# (e) bare hyper proxy (Moat's HTTP stack, no checks)"
"$LG" proxy --listen 127.0.0.1:18084 --upstream http://127.0.0.1:18081 &
PROXY_PID=$!
PIDS+=("$PROXY_PID")
wait_port 18084
measure e "$PROXY_PID" -- raw --url http://127.0.0.1:18084/x --concurrency "$CONC" --seconds "$RUN_SECONDS"
kill "$PROXY_PID"

echo "# (d) Node/Express verifying an HS256 JWT and an HMAC"
NODE_HEADERS=$(cd bench/node && SECRET=bench-shared-secret-0123456789abcdef node sign.js /x)
mapfile -t HDR < <(echo "$NODE_HEADERS" | python3 -c "import json,sys; [print(h) for h in json.load(sys.stdin)]")
measure d "$NODE_PID" -- raw --url http://127.0.0.1:18083/x --header "${HDR[0]}" --header "${HDR[1]}" --header "${HDR[2]}" --concurrency "$CONC" --seconds "$RUN_SECONDS"

echo "# (b) Moat, full checks (otp mode: HMAC signatures)"
moat_start otp
measure b "$MOAT_PID" -- full --server http://127.0.0.1:18080 --admin http://127.0.0.1:19091 --concurrency "$CONC" --seconds "$RUN_SECONDS" --settle
moat_stop

echo "# (c) Moat, device key only"
moat_start dynamic
KEY=$("$LG" full --server http://127.0.0.1:18080 --admin http://127.0.0.1:19091 --print-key | python3 -c "import json,sys; print(json.load(sys.stdin)['key'])")
measure c "$MOAT_PID" -- raw --url http://127.0.0.1:18080/key/x --header "Moat-Device-Key: $KEY" --concurrency "$CONC" --seconds "$RUN_SECONDS"
moat_stop

echo "# latency at half of saturation"
A_RATE=$(python3 -c "import json; r=[json.loads(l) for l in open('$RESULTS')]; print(int(next(x for x in r if x['run']=='a')['rps']/2))")
B_RATE=$(python3 -c "import json; r=[json.loads(l) for l in open('$RESULTS')]; print(int(next(x for x in r if x['run']=='b')['rps']/2))")
measure a-half "$NGINX_PID" -- raw --url http://127.0.0.1:18082/x --concurrency "$CONC" --seconds "$RUN_SECONDS" --rate "$B_RATE"
moat_start otp
measure b-half "$MOAT_PID" -- full --server http://127.0.0.1:18080 --admin http://127.0.0.1:19091 --concurrency "$CONC" --seconds "$RUN_SECONDS" --rate "$B_RATE" --settle
moat_stop

python3 - "$RESULTS" <<'PY'
import json, sys
r = {x["run"]: x for x in (json.loads(l) for l in open(sys.argv[1]) if l.strip())}
print("\n# summary (loopback, 2 cores shared by server and load generator)")
names = {"a": "(a) nginx bare proxy", "e": "(e) bare hyper proxy", "b": "(b) Moat full checks", "c": "(c) Moat device key", "d": "(d) Node/Express JWT+HMAC",
         "a-half": "(a) at b's half-saturation rate", "b-half": "(b) at half of its saturation"}
print(f'{"":<36} {"":>10}  {"":>14}  {"":>14}  {"server CPU":>14}  {"loadgen CPU":>14}')
for k in ["a", "e", "b", "c", "d", "a-half", "b-half"]:
    x = r[k]
    print(f'{names[k]:<36} {x["rps"]:>8.0f}/s  p50 {x["p50_ms"]:>6.2f} ms  p99 {x["p99_ms"]:>6.2f} ms  {x["cpu_us_per_req"]:>7.1f} µs/req  {x["loadgen_cpu_us_per_req"]:>7.1f} µs/req  errors {x["errors"]}')
print(f'\nb/a throughput: {r["b"]["rps"]/r["a"]["rps"]:.2f}   (target ≥ 0.8)')
print(f'b/d throughput: {r["b"]["rps"]/r["d"]["rps"]:.2f}   (target ≥ 3)')
print(f'c/a throughput: {r["c"]["rps"]/r["a"]["rps"]:.2f}')
print(f'e/a throughput: {r["e"]["rps"]/r["a"]["rps"]:.2f}   (the HTTP stack alone against nginx)')
print(f'b/e throughput: {r["b"]["rps"]/r["e"]["rps"]:.2f}   (full checks against the same stack checking nothing)')
print(f'p99 added at half saturation (b-half minus a at the same rate): {r["b-half"]["p99_ms"]-r["a-half"]["p99_ms"]:.2f} ms   (target < 1 ms)')
PY
