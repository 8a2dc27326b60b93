#!/usr/bin/env bash
# Scale-out benchmark, on loopback: Moat on PostgreSQL + Redis, behind nginx as the load
# balancer, with 1 and with 2 instances, and with 1 thousand and 1 million enrolled devices.
#
# Every request is an HMAC-signed GET /v1/device (otp-mode client credentials of 64 devices
# enrolled through the real protocol) with a fresh nonce, so each one costs a Redis SET NX.
# The device-count runs are made twice: with the default 1 s verified-credential cache, and
# with the cache off (cache.device_ttl_ms = 0), so that every request also looks its device up
# in PostgreSQL among 1 thousand or 1 million rows. Filler devices are inserted with SQL.
#
# Prints one JSON line per run, then a summary with ratios against the first run.
#   bench/scale.sh                  # 10 s per run
#   RUN_SECONDS=5 bench/scale.sh
# Everything shares this machine's cores (2 on CI-class machines): read the 2-instance figure
# as "what a second process on the same cores buys", not as cluster capacity.
set -euo pipefail
cd "$(dirname "$0")/.."
RUN_SECONDS=${RUN_SECONDS:-10}
PORT=${PORT:-18180}
LB_PORT=${LB_PORT:-18190}

need=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v redis-server >/dev/null || need+=(redis-server)
command -v nginx >/dev/null || need+=(nginx)
if [ "${#need[@]}" -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}"
fi
PG_BIN=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)

cargo build --release --locked -q -p moat-cli -p moat-loadgen
MOAT=$PWD/target/release/moat
LOADGEN=$PWD/target/release/moat-loadgen
WORK=$(mktemp -d)
chmod 755 "$WORK"
PIDS=()
as_pg() { if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
MOAT_PIDS=()
cleanup() {
    for p in "${MOAT_PIDS[@]}" "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -m immediate stop >/dev/null 2>&1 || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

PG_PORT=$((PORT + 1)); REDIS_PORT=$((PORT + 2))
mkdir -p "$WORK/pg" && [ "$(id -u)" = 0 ] && chown postgres "$WORK/pg"
as_pg "$PG_BIN/initdb" -D "$WORK/pg" -A trust -U postgres -N >/dev/null
as_pg "$PG_BIN/pg_ctl" -D "$WORK/pg" -l "$WORK/pg/log" -w \
    -o "-c listen_addresses=127.0.0.1 -p $PG_PORT -k $WORK/pg -c max_connections=200" start >/dev/null
redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no >/dev/null &
PIDS+=($!)
PGURL="postgres://postgres@127.0.0.1:$PG_PORT/postgres"
psql() { command psql -q -v ON_ERROR_STOP=1 "$PGURL" "$@"; }

URL="http://127.0.0.1:$LB_PORT"
cat > "$WORK/moat.toml" <<EOF
[server]
public_base_url = "$URL"
data_dir = "$WORK/data"
trusted_proxies = ["127.0.0.1"]
[store]
url = "$PGURL"
[redis]
url = "redis://127.0.0.1:$REDIS_PORT/"
[enrollment]
mode = "otp"
EOF

start_moat() { # count ttl_ms
    for p in "${MOAT_PIDS[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null || true; done
    MOAT_PIDS=()
    local servers=""
    for i in $(seq 1 "$1"); do
        MOAT_CACHE__DEVICE_TTL_MS=$2 MOAT_SERVER__LISTEN="127.0.0.$i:$PORT" \
            MOAT_ADMIN__LISTEN="127.0.0.1:$((PORT + 10 + i))" RUST_LOG=warn \
            "$MOAT" serve --config "$WORK/moat.toml" &
        MOAT_PIDS+=($!)
        servers+="server 127.0.0.$i:$PORT;"
        for _ in $(seq 100); do
            curl -fsS "http://127.0.0.1:$((PORT + 10 + i))/readyz" >/dev/null 2>&1 && break
            sleep 0.1
        done
    done
    [ -f "$WORK/nginx.pid" ] && { kill "$(cat "$WORK/nginx.pid")"; sleep 0.3; }
    cat > "$WORK/nginx.conf" <<EOF
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx.err;
events { worker_connections 4096; }
http {
    access_log off;
    upstream moat { $servers keepalive 128; }
    server {
        listen 127.0.0.1:$LB_PORT;
        location / {
            proxy_pass http://moat;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$http_host;
            proxy_set_header X-Forwarded-For \$remote_addr;
        }
    }
}
EOF
    nginx -c "$WORK/nginx.conf" -p "$WORK"
    sleep 0.3
}

fill() { # total filler devices wanted
    psql -c "INSERT INTO devices (id, identity, device_id, mode, status, client_id, created_at, rotated_at, last_used_at)
             SELECT md5(g::text)::uuid::text, 'inst:filler' || g, 'd', 'otp', 'active', 'filler_' || g,
                    extract(epoch from now())::bigint, extract(epoch from now())::bigint, extract(epoch from now())::bigint
             FROM generate_series((SELECT COUNT(*) FROM devices WHERE identity LIKE 'inst:filler%') + 1, $1) g;
             ANALYZE devices;"
}

RESULTS="$WORK/results.jsonl"
run() { "$LOADGEN" "$@" | tee -a "$RESULTS"; }
call() { run --name "$1" call --server "$URL" --path /v1/device --devices 64 --concurrency 32 --seconds "$RUN_SECONDS"; }

start_moat 1 1000   # the first start applies the migrations
fill 1000
call "1 instance, 1k devices"
start_moat 2 1000
call "2 instances, 1k devices"
start_moat 1 0
call "1 instance, 1k devices, no cache"
fill 1000000
start_moat 1 1000
call "1 instance, 1M devices"
start_moat 1 0
call "1 instance, 1M devices, no cache"
psql -At -c "SELECT 'devices in the store: ' || COUNT(*) FROM devices"

python3 - "$RESULTS" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
print("\n# summary (ratio against the first run)")
base = rows[0]
for r in rows:
    ratio = r["rps"] / base["rps"] if base["rps"] else 0
    print(f'{r["run"]:<36} {r["rps"]:>8.0f}/s  p50 {r["p50_ms"]:>6.2f} ms  p99 {r["p99_ms"]:>6.2f} ms  errors {r["errors"]:>4}  ratio {ratio:5.2f}')
PY
