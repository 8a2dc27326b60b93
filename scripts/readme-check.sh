#!/usr/bin/env bash
# Runs the README's quick start and walkthrough as written, so they cannot silently break.
#
# The README marks the blocks it promises work with an HTML comment before the fenced block
# (invisible on the rendered page, so the text a reader copies is the text that runs):
#
#   <!-- ci: serve -->      a command that runs the server: any server started by an earlier
#                           block is stopped, this one starts in the background, and the
#                           script waits for its /healthz
#   <!-- ci: run -->        commands run in order by bash with `set -e`: each must succeed
#   <!-- ci: expect TEXT --> (after `run`, repeatable) TEXT must appear in what the block
#                           printed, standard output or error
#   <!-- ci: test -->       the test command: not run here (.ci/run runs it first), but it
#                           must be the command .ci/run runs
#
# Everything runs in the repository root, as on a fresh clone: the walkthrough writes
# moat-data/ and moat-device.json there, so the script refuses to start if they exist (they
# would be someone's data) and removes what it wrote when it ends. The server listens where
# the README says (127.0.0.1:8080 and 9091); those ports must be free.
# Finally, `moat doctor --config moat.example.toml` must pass on the shipped sample.
#
# Prints "readme-check: ok" or "readme-check: FAILED" last; exits 0 or 1.
set -euo pipefail
cd "$(dirname "$0")/.."

BASE=${README_CHECK_URL:-http://127.0.0.1:8080}
WAIT=${README_CHECK_WAIT:-600} # seconds for a server to answer /healthz (cargo may build first)
written=(moat-data moat-device.json moat-device.session.json otp-device.json otp-device.session.json)

fail() {
    echo "readme-check: $*" >&2
    echo "readme-check: FAILED"
    exit 1
}

for f in "${written[@]}"; do
    [ -e "$f" ] && fail "$f exists: the walkthrough writes it; run this on a fresh clone (or move it away)"
done
hostport=${BASE#http://}
for port in "${hostport##*:}" 9091; do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        fail "port $port is in use; the README's server listens there"
    fi
done

work=$(mktemp -d)
server_pid=
stop_server() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        # The server runs in its own process group (setsid): cargo and moat stop together.
        kill -TERM -- "-$server_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
    fi
    server_pid=
}
cleanup() {
    stop_server
    rm -rf "$work" "${written[@]}"
}
trap cleanup EXIT

healthy() {
    # In a subshell: a refused connection must not end this script.
    (
        exec 3<>"/dev/tcp/127.0.0.1/${hostport##*:}" || exit 1
        printf 'GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$hostport" >&3
        IFS= read -r -t 5 line <&3 || exit 1
        [[ "$line" == *" 200 "* ]]
    ) 2>/dev/null
}

# Split the README into its marked blocks: NN.kind, NN.sh, NN.expect, NN.line.
awk -v dir="$work" '
    function flush_kind() { printf "%s\n", kind > (dir "/" id ".kind"); close(dir "/" id ".kind") }
    /^<!-- ci: (serve|run|test) -->$/ { n++; id = sprintf("%02d", n); kind = $3; expect = dir "/" id ".expect"; printf "" > expect; flush_kind(); pending = 1; next }
    /^<!-- ci: expect .* -->$/ && pending { t = $0; sub(/^<!-- ci: expect /, "", t); sub(/ -->$/, "", t); print t >> expect; next }
    /^```/ && pending == 1 { pending = 2; print NR + 1 > (dir "/" id ".line"); printf "" > (dir "/" id ".sh"); next }
    /^```/ && pending == 2 { pending = 0; close(dir "/" id ".sh"); close(expect); next }
    pending == 2 { print >> (dir "/" id ".sh") }
' README.md

blocks=$(find "$work" -name '*.kind' | sort)
[ -n "$blocks" ] || fail "README.md has no <!-- ci: ... --> blocks"
serves=0
runs=0
for kindfile in $blocks; do
    id=$(basename "$kindfile" .kind)
    kind=$(cat "$kindfile")
    line=$(cat "$work/$id.line" 2>/dev/null || echo '?')
    [ -f "$work/$id.sh" ] || fail "README.md:$line: the ci: $kind marker is not followed by a fenced block"
    case "$kind" in
    test)
        cmd=$(grep -v '^#' "$work/$id.sh" | sed '/^$/d')
        grep -qF -- "$cmd" .ci/run || fail "README.md:$line: the test command \`$cmd\` is not what .ci/run runs"
        echo "readme-check: README.md:$line: the test command is the one .ci/run runs"
        ;;
    serve)
        stop_server
        log="$work/$id.server.log"
        echo "readme-check: README.md:$line: starting: $(cat "$work/$id.sh")"
        setsid bash -c "$(cat "$work/$id.sh")" >"$log" 2>&1 </dev/null &
        server_pid=$!
        deadline=$((SECONDS + WAIT))
        until healthy; do
            if ! kill -0 "$server_pid" 2>/dev/null; then
                tail -n 30 "$log" >&2
                fail "README.md:$line: the server exited before answering /healthz"
            fi
            if [ "$SECONDS" -ge "$deadline" ]; then
                tail -n 30 "$log" >&2
                fail "README.md:$line: no answer from $BASE/healthz in ${WAIT}s"
            fi
            sleep 0.5
        done
        serves=$((serves + 1))
        ;;
    run)
        out="$work/$id.out"
        echo "readme-check: README.md:$line: running"
        if ! bash -e -o pipefail "$work/$id.sh" >"$out" 2>&1; then
            cat "$out" >&2
            fail "README.md:$line: a command of this block failed"
        fi
        while IFS= read -r want; do
            [ -n "$want" ] || continue
            if ! grep -qF -- "$want" "$out"; then
                cat "$out" >&2
                fail "README.md:$line: the output does not show: $want"
            fi
        done <"$work/$id.expect"
        runs=$((runs + 1))
        ;;
    esac
done
stop_server
[ "$serves" -gt 0 ] && [ "$runs" -gt 0 ] || fail "README.md must mark at least one serve and one run block"

# The shipped sample configuration is valid and everything it names is usable.
if ! cargo run --bin moat -- doctor --config moat.example.toml >"$work/doctor.out" 2>&1; then
    cat "$work/doctor.out" >&2
    fail "moat doctor --config moat.example.toml failed"
fi
echo "readme-check: $serves servers, $runs command blocks and moat.example.toml checked"
echo "readme-check: ok"
