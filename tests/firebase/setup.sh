#!/usr/bin/env bash
# Install the Firebase test peers (tests/firebase/auth and tests/firebase/rtdb)
# from their lockfiles. Idempotent: a project is skipped when its node_modules
# was installed from the same package-lock.json (sha256 stamp) by the same
# Node major version. Safe for CI (no prompts; only the npm registry is used).
#
# Usage: tests/firebase/setup.sh            # install what is out of date
#        MOAT_FIREBASE_FORCE=1 tests/firebase/setup.sh   # reinstall both
#
# --ignore-scripts: none of the install scripts is needed (re2's native build is
# only for the hosting emulator, and first tries a download from GitHub; the
# others only print notices), and skipping them cuts `npm ci` for auth/ from
# about 57 s to about 17 s on a 2-core machine.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "tests/firebase/setup.sh: node and npm are required" >&2
  exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "$node_major" -lt 20 ]; then
  echo "tests/firebase/setup.sh: Node >= 20 is required (firebase-tools 15) (found $(node --version))" >&2
  exit 1
fi

export NO_UPDATE_NOTIFIER=1
export npm_config_update_notifier=false

for project in auth rtdb; do
  dir="$here/$project"
  stamp_file="$dir/node_modules/.moat-setup-stamp"
  want="$( (sha256sum "$dir/package-lock.json" | cut -d' ' -f1; echo "node$node_major") | tr '\n' ' ')"
  if [ -z "${MOAT_FIREBASE_FORCE:-}" ] && [ -f "$stamp_file" ] && [ "$(cat "$stamp_file")" = "$want" ]; then
    echo "tests/firebase/$project: node_modules up to date"
    continue
  fi
  echo "tests/firebase/$project: npm ci"
  start=$(date +%s)
  (cd "$dir" && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error)
  printf '%s' "$want" > "$stamp_file"
  echo "tests/firebase/$project: installed in $(( $(date +%s) - start )) s"
done
