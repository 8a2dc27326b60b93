# Shared set-up of bench/perf.sh and bench/profile.sh (sourced from the repository root):
# installs nginx if missing, builds the release binaries, and starts on loopback a trivial
# upstream (nginx, 18081), nginx as a bare proxy to it (18082) and Moat (18080, admin 19091)
# with a full-check route `/full` and a device-key route `/key` in front of it. Everything
# started is stopped on exit.

if ! command -v nginx >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx-light >/dev/null || \
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nginx >/dev/null
fi
cargo build --release --locked -q -p moat-cli -p moat-loadgen
MOAT=$PWD/target/release/moat
LG=$PWD/target/release/moat-loadgen

WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { for _ in $(seq 200); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 not up" >&2; exit 1; }

# nginx: trivial upstream on 18081, bare proxy on 18082.
start_nginx() {
    mkdir -p "$WORK/nginx"
    cat > "$WORK/nginx.conf" <<CONF
worker_processes 2;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
    access_log off;
    # No connection is closed for having served too many requests (nginx closes at 1000 by
    # default), so no run pays reconnections the others do not.
    keepalive_requests 10000000;
    upstream up { server 127.0.0.1:18081; keepalive 64; keepalive_requests 10000000; }
    server { listen 127.0.0.1:18081; location / { return 200 "ok\n"; } }
    server { listen 127.0.0.1:18082; location / { proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection ""; } }
}
CONF
    nginx -p "$WORK/nginx" -c "$WORK/nginx.conf"
    wait_port 18081; wait_port 18082
    NGINX_PID=$(cat "$WORK/nginx.pid")
}

ADMIN_TOKEN=bench-admin-token-0123456789abcdefghijkl
export MOAT_BENCH_ADMIN_TOKEN=$ADMIN_TOKEN
STARTS=0
# moat_start MODE: Moat in enrollment mode MODE (otp for HMAC signatures, dynamic for keys).
moat_start() {
    STARTS=$((STARTS + 1))
    cat > "$WORK/moat.toml" <<CONF
[server]
listen = "127.0.0.1:18080"
public_base_url = "http://127.0.0.1:18080"
data_dir = "$WORK/moat-data-$1-$STARTS"
[admin]
listen = "127.0.0.1:19091"
token = "$ADMIN_TOKEN"
[enrollment]
mode = "$1"
[sms]
per_ip_hour = 1000000
per_device_hour = 1000
global_hour = 1000000
cooldown = 1
[[route]]
prefix = "/full"
upstream = "http://127.0.0.1:18081"
require = ["signature", "integrity", "user"]
rate_limit = { key = "device", per_second = 1000000, burst = 1000000 }
[[route]]
prefix = "/key"
upstream = "http://127.0.0.1:18081"
require = ["device"]
CONF
    RUST_LOG=warn "$MOAT" serve --config "$WORK/moat.toml" 2>"$WORK/moat-$1.log" &
    MOAT_PID=$!
    PIDS+=("$MOAT_PID")
    wait_port 18080
}
moat_stop() { kill "$MOAT_PID"; wait "$MOAT_PID" 2>/dev/null || true; }
