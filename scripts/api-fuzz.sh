#!/usr/bin/env bash
# API fuzzing: schemathesis against the OpenAPI document (/openapi.json) of a running server,
# once per enrollment mode. Every response must be a documented status with a documented
# content type and body, and none may be a 5xx. See docs/api-fuzzing.md.
#
#   scripts/api-fuzz.sh            long form: API_FUZZ_EXAMPLES (default 300) examples per operation
#   scripts/api-fuzz.sh --short    short form for CI (also API_FUZZ_SHORT=1): 25 examples
#
# Environment: API_FUZZ_MODES (default "dynamic otp static"), API_FUZZ_EXAMPLES,
# API_FUZZ_SEED (default: random, printed), API_FUZZ_REPORT_DIR (keep JUnit reports and
# server logs there), CARGO_TARGET_DIR (where cargo builds), MOAT_FUZZ_PYTHON (a Python that
# already has tests/requirements-apifuzz.txt; default: .venv-apifuzz, created on first use).
# Exits non-zero when any mode finds a failure or the server cannot be run.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

short=${API_FUZZ_SHORT:-0}
for arg in "$@"; do
    case "$arg" in
        --short) short=1 ;;
        -h | --help)
            sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'
            exit 0
            ;;
        *)
            echo "api-fuzz: unknown argument $arg" >&2
            exit 2
            ;;
    esac
done
if [ "$short" = 1 ]; then
    examples=${API_FUZZ_EXAMPLES:-25}
    form=short
else
    examples=${API_FUZZ_EXAMPLES:-300}
    form=long
fi
modes=${API_FUZZ_MODES:-dynamic otp static}
seed=${API_FUZZ_SEED:-$((RANDOM * 32768 + RANDOM))}

# Python peers, pinned.
python=${MOAT_FUZZ_PYTHON:-}
if [ -z "$python" ]; then
    venv="$repo/.venv-apifuzz"
    python="$venv/bin/python"
    if ! "$python" -c "import schemathesis, jwt, cryptography" 2>/dev/null ||
        [ "$("$python" -c 'import importlib.metadata as m; print(m.version("schemathesis"))' 2>/dev/null)" != \
          "$(sed -n 's/^schemathesis==//p' tests/requirements-apifuzz.txt)" ]; then
        python3 -m venv "$venv"
        "$python" -m pip install --quiet --disable-pip-version-check -r tests/requirements-apifuzz.txt
    fi
fi
st="$(dirname "$python")/schemathesis"

echo "api-fuzz: building the server" >&2
cargo build --locked --quiet -p moat-cli
target=${CARGO_TARGET_DIR:-$repo/target}
moat="$target/debug/moat"

work=$(mktemp -d)
server_pid=
stop_server() {
    if [ -n "$server_pid" ]; then
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=
    fi
}
cleanup() {
    stop_server
    if [ -n "${API_FUZZ_REPORT_DIR:-}" ]; then
        mkdir -p "$API_FUZZ_REPORT_DIR"
        cp -r "$work"/. "$API_FUZZ_REPORT_DIR"/ 2>/dev/null || true
    fi
    if [ "${failed:-0}" != 0 ] && [ -z "${API_FUZZ_REPORT_DIR:-}" ]; then
        # Keep the evidence of a failure: reports, schemathesis output, server logs.
        echo "api-fuzz: reports and server logs kept in $work" >&2
    else
        rm -rf "$work"
    fi
}
trap cleanup EXIT

ready() {
    "$python" -c 'import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + "/readyz", timeout=2)' "$1" 2>/dev/null
}
free_port() {
    "$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

declare -a summary=()
failed=0
started=$(date +%s)
for mode in $modes; do
    dir="$work/$mode"
    mkdir -p "$dir/report"
    mkdir -m 700 "$dir/data"
    port=$(free_port)
    admin_port=$(free_port)
    base="http://127.0.0.1:$port"
    # SMS budgets far above the defaults, so the fuzzed account requests reach the logic behind
    # the pumping guard instead of stopping at 429 (which stays documented and checked).
    MOAT_SERVER__LISTEN="127.0.0.1:$port" \
        MOAT_SERVER__PUBLIC_BASE_URL="$base" \
        MOAT_ADMIN__LISTEN="127.0.0.1:$admin_port" \
        MOAT_SERVER__DATA_DIR="$dir/data" \
        MOAT_ENROLLMENT__MODE="$mode" \
        MOAT_SMS__PER_PHONE_HOUR=100000 MOAT_SMS__PER_DEVICE_HOUR=100000 \
        MOAT_SMS__PER_IP_HOUR=100000 MOAT_SMS__PER_COUNTRY_HOUR=100000 \
        MOAT_SMS__GLOBAL_HOUR=100000 MOAT_SMS__COOLDOWN=1 \
        RUST_LOG="${RUST_LOG:-warn}" \
        "$moat" serve >"$dir/server.log" 2>&1 &
    server_pid=$!
    for _ in $(seq 100); do
        ready "$base" && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if ! ready "$base"; then
        echo "api-fuzz: [$mode] the server did not start:" >&2
        cat "$dir/server.log" >&2
        summary+=("$mode: server did not start")
        failed=1
        stop_server
        continue
    fi

    # A device credential, so the protected operations get past their policy. The otp mode
    # issues a client credential (request signatures) instead of an API key: there the
    # protected operations are fuzzed unauthenticated (they must answer 401).
    headers=()
    key=
    if (cd "$dir" && "$moat" device enroll --server "$base" >enroll.out 2>&1); then
        key=$("$python" -c 'import json, sys; c = json.load(open(sys.argv[1])).get("credential") or {}; print(c.get("key", ""))' "$dir/moat-device.json" 2>/dev/null || true)
        [ -n "$key" ] && headers=(-H "Moat-Device-Key: $key")
    else
        echo "api-fuzz: [$mode] enrolling a device failed:" >&2
        cat "$dir/enroll.out" >&2
        summary+=("$mode: enrollment failed")
        failed=1
        stop_server
        continue
    fi

    echo "api-fuzz: [$mode] $examples examples per operation, seed $seed, device key: $([ -n "$key" ] && echo yes || echo no)" >&2
    t0=$(date +%s)
    status=0
    # Run from the mode's directory: schemathesis keeps a crash cache in the working directory.
    (cd "$dir" && PYTHONPATH="$repo/tests/apifuzz" SCHEMATHESIS_HOOKS=hooks MOAT_FUZZ_BASE="$base" \
        "$st" --config-file "$repo/tests/apifuzz/schemathesis.toml" --no-color run "$base/openapi.json" \
        --checks all \
        --phases examples,coverage,fuzzing,stateful \
        --max-examples "$examples" \
        --seed "$seed" \
        --workers 1 \
        --request-timeout 20 \
        --report junit --report-dir "$dir/report" \
        "${headers[@]}") | tee "$dir/schemathesis.out" || status=$?
    t1=$(date +%s)
    # A server that died during the run (schemathesis reports "server stopped responding"):
    # say how, with its last words.
    if ! kill -0 "$server_pid" 2>/dev/null; then
        code=0
        wait "$server_pid" || code=$?
        server_pid=
        echo "api-fuzz: [$mode] the server exited during the run (status $code); its log ends:" >&2
        tail -n 30 "$dir/server.log" >&2
        status=1
    fi
    stop_server
    if [ "$status" != 0 ] && [ -s "$dir/server.log" ]; then
        echo "api-fuzz: [$mode] server log (last 30 lines):" >&2
        tail -n 30 "$dir/server.log" >&2
    fi
    # A panic is caught and answered 500 (which schemathesis reports), but say so plainly.
    if grep -q "panicked" "$dir/server.log"; then
        echo "api-fuzz: [$mode] the server panicked:" >&2
        grep -A5 "panicked" "$dir/server.log" >&2
        status=1
    fi
    # Schemathesis's own figures: operations tested, test cases, links exercised.
    out="$dir/schemathesis.out"
    ops=$(sed -n 's/^ *Tested: *//p' "$out" | tail -1)
    cases=$(grep -E "^ *[0-9]+ generated" "$out" | tail -1 | sed 's/^ *//')
    links=$(sed -n 's/^ *API Links: *//p' "$out" | tail -1)
    summary+=("$mode: $([ "$status" = 0 ] && echo ok || echo FAILED) in $((t1 - t0))s; ${ops:-?} operations; ${cases:-no test cases}; links ${links:-none}")
    [ "$status" = 0 ] || failed=1
done

echo
echo "api-fuzz ($form form, $examples examples per operation, seed $seed, $(($(date +%s) - started))s):"
for s in "${summary[@]}"; do
    echo "  $s"
done
if [ "$failed" = 0 ]; then
    echo "api-fuzz: ok"
else
    echo "api-fuzz: FAILED"
fi
exit "$failed"
