#!/usr/bin/env bash
# End-to-end check of the Firebase test peers, as the Rust tests use them:
#   auth/start-emulator.js + auth/sign-in.mjs + the emulator's REST API,
#   rtdb/serve.js over REST, rtdb/rules-test.js on good and bad rules.
# Needs only loopback networking. Prints one line per check and, last,
# "N passed, M failed"; exits 1 if any check failed.
#
# Usage: tests/firebase/smoke.sh   (runs setup.sh first)
set -uo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
"$here/setup.sh" >/dev/null || { echo "setup.sh failed" >&2; exit 1; }

work="$(mktemp -d "${TMPDIR:-/tmp}/moat-fb-smoke-XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.5
  for p in "${pids[@]}"; do kill -KILL "$p" 2>/dev/null; done
  rm -rf "$work"
}
trap cleanup EXIT

passed=0
failed=0
ok() { echo "ok   - $1"; passed=$((passed + 1)); }
bad() { echo "FAIL - $1"; failed=$((failed + 1)); }
check() { local name="$1"; shift; if "$@"; then ok "$name"; else bad "$name"; fi; }

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}
now() { date +%s.%N; }
elapsed() { node -e "console.log((Number(process.argv[1])-Number(process.argv[2])).toFixed(2))" "$(now)" "$1"; }

# wait_ready FILE PID TIMEOUT_S: wait for a READY line in FILE while PID lives.
wait_ready() {
  local file="$1" pid="$2" deadline=$(( $(date +%s) + $3 ))
  while ! grep -q '^READY ' "$file" 2>/dev/null; do
    kill -0 "$pid" 2>/dev/null || return 1
    [ "$(date +%s)" -lt "$deadline" ] || return 1
    sleep 0.1
  done
}

# ---------------------------------------------------------------- auth
project=demo-moat
port="$(free_port)"
t0="$(now)"
node "$here/auth/start-emulator.js" --port "$port" --project "$project" \
  >"$work/emu.out" 2>"$work/emu.err" &
emu=$!
pids+=("$emu")
if wait_ready "$work/emu.out" "$emu" 90; then
  ok "auth emulator READY on $port in $(elapsed "$t0") s"
else
  bad "auth emulator did not become ready"; tail -20 "$work/emu.err"
fi
check "READY line is exactly 'READY $port'" test "$(cat "$work/emu.out")" = "READY $port"
emu_children="$(pgrep -P "$emu" | tr '\n' ' ')"

t0="$(now)"
if node "$here/auth/sign-in.mjs" --port "$port" --project "$project" >"$work/signin.json" 2>"$work/signin.err"; then
  ok "sign-in.mjs (Firebase JS SDK, signInAnonymously) in $(elapsed "$t0") s"
else
  bad "sign-in.mjs failed: $(cat "$work/signin.err")"
fi
check "idToken: alg none, iss/aud/sub/provider as expected" node -e '
  const fs = require("fs");
  const { uid, idToken } = JSON.parse(fs.readFileSync(process.argv[1], "utf8"));
  const [h, p, s] = idToken.split(".");
  const dec = (x) => JSON.parse(Buffer.from(x, "base64url").toString("utf8"));
  const H = dec(h), P = dec(p), proj = process.argv[2];
  const ok = H.alg === "none" && s === "" &&
    P.iss === `https://securetoken.google.com/${proj}` && P.aud === proj &&
    P.sub === uid && P.user_id === uid && P.firebase.sign_in_provider === "anonymous" &&
    P.exp - P.iat === 3600;
  if (!ok) { console.error(JSON.stringify({ H, P })); process.exit(1); }
' "$work/signin.json" "$project"

base="http://127.0.0.1:$port"
check "REST accounts:signUp returns localId/idToken/refreshToken/expiresIn" bash -c '
  curl -sf -X POST "$1/identitytoolkit.googleapis.com/v1/accounts:signUp?key=any" \
    -H "content-type: application/json" -d "{\"returnSecureToken\":true}" |
  node -e "let s=\"\";process.stdin.on(\"data\",c=>s+=c).on(\"end\",()=>{const r=JSON.parse(s);process.exit(r.localId&&r.idToken&&r.refreshToken&&r.expiresIn===\"3600\"?0:1)})"
' _ "$base"
check "REST accounts:signUp without ?key= is refused (403)" test \
  "$(curl -s -o /dev/null -w '%{http_code}' -X POST "$base/identitytoolkit.googleapis.com/v1/accounts:signUp" \
     -H 'content-type: application/json' -d '{"returnSecureToken":true}')" = 403
check "DELETE /emulator/v1/projects/$project/accounts (reset) -> 200" test \
  "$(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$base/emulator/v1/projects/$project/accounts")" = 200

t0="$(now)"
kill -TERM "$emu"
wait "$emu"; rc=$?
check "launcher exits 0 on SIGTERM ($(elapsed "$t0") s)" test "$rc" = 0
lingering=""
for c in $emu_children; do kill -0 "$c" 2>/dev/null && lingering+="$c "; done
check "no emulator process lingers (children were: ${emu_children:-none})" test -z "$lingering"
check "port $port is closed" bash -c "! (exec 3<>/dev/tcp/127.0.0.1/$port) 2>/dev/null"

# Launcher killed with SIGKILL (Rust's Child::kill): the guard stops the emulator.
port2="$(free_port)"
node "$here/auth/start-emulator.js" --port "$port2" --project "$project" >"$work/emu2.out" 2>"$work/emu2.err" &
emu2=$!
pids+=("$emu2")
if wait_ready "$work/emu2.out" "$emu2" 90; then
  kids="$(pgrep -P "$emu2" | tr '\n' ' ')"
  kill -KILL "$emu2"; wait "$emu2" 2>/dev/null
  for _ in $(seq 1 50); do
    alive=""; for c in $kids; do kill -0 "$c" 2>/dev/null && alive+="$c "; done
    [ -z "$alive" ] && break; sleep 0.1
  done
  check "emulator stops by itself after its launcher is SIGKILLed" test -z "$alive"
else
  bad "second auth emulator did not become ready"
fi

# ---------------------------------------------------------------- rtdb REST
rport="$(free_port)"
t0="$(now)"
node "$here/rtdb/serve.js" --port "$rport" >"$work/rtdb.out" 2>"$work/rtdb.err" &
rtdb=$!
pids+=("$rtdb")
if wait_ready "$work/rtdb.out" "$rtdb" 30; then ok "serve.js READY on $rport in $(elapsed "$t0") s"; else bad "serve.js not ready"; fi
r="http://127.0.0.1:$rport"
expect() { # name expected-body curl-args...
  local name="$1" want="$2"; shift 2
  local got; got="$(curl -s "$@")"
  if [ "$got" = "$want" ]; then ok "$name"; else bad "$name: got '$got', want '$want'"; fi
}
expect "PUT /moat/mailbox/u1/m1.json" '{"body":"hi"}' -X PUT "$r/moat/mailbox/u1/m1.json" -d '{"body":"hi"}'
expect "PUT /moat/mailbox/u1/m2.json (auth= and ns= ignored)" '{"body":"yo"}' -X PUT "$r/moat/mailbox/u1/m2.json?auth=x&ns=demo-moat" -d '{"body":"yo"}'
expect "GET /moat/mailbox/u1.json" '{"m1":{"body":"hi"},"m2":{"body":"yo"}}' "$r/moat/mailbox/u1.json"
expect "GET /.json?shallow=true" '{"moat":true}' "$r/.json?shallow=true"
expect "GET /moat/mailbox/u1.json?shallow=true" '{"m1":true,"m2":true}' "$r/moat/mailbox/u1.json?shallow=true"
expect "DELETE /moat/mailbox/u1/m1.json" 'null' -X DELETE "$r/moat/mailbox/u1/m1.json"
expect "GET after DELETE" '{"m2":{"body":"yo"}}' "$r/moat/mailbox/u1.json"
expect "GET missing path -> null" 'null' "$r/moat/mailbox/nobody.json"
expect "PUT non-JSON body -> 400 error" '{"error":"Invalid data; couldn'"'"'t parse JSON object, array, or value."}' -X PUT "$r/moat/x.json" -d 'not json'
kill -TERM "$rtdb"; wait "$rtdb"; rc=$?
check "serve.js exits 0 on SIGTERM" test "$rc" = 0

# ---------------------------------------------------------------- rules
fx="$here/rtdb/fixtures"
check "rules-test: mailbox.rules.json passes (exit 0)" \
  bash -c 'node "$1" --rules "$2" --root moat/mailbox >/dev/null' _ "$here/rtdb/rules-test.js" "$fx/mailbox.rules.json"
for f in bad-root-readable bad-owner-writable bad-any-user; do
  check "rules-test: $f.rules.json is rejected (exit 1)" \
    bash -c '! node "$1" --rules "$2" --root moat/mailbox >/dev/null' _ "$here/rtdb/rules-test.js" "$fx/$f.rules.json"
done

echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
