#!/usr/bin/env bash
# Checks that docs/configuration.md documents every configuration key.
#
# The keys are read from the config module, crates/server/src/config/ (every .rs file in it,
# one per TOML section): the fields of the raw (serde) structs, walked from `RawConfig` down
# (a field whose type is another raw struct is a section), the members of `server.tls` that
# its `fn tls` reads, and the members of a route's rate limit (`RATE_LIMIT_KEYS`). A key
# counts as documented when its dotted name (`sms.twilio.auth_token`, `route.prefix`)
# appears in backticks in docs/configuration.md.
#
# Keys documented but absent from the config module are listed as warnings (they may be about
# to be added); with --strict they fail the check too.
#
# Usage: scripts/check-config-docs.sh [--strict]
set -euo pipefail
cd "$(dirname "$0")/.."
exec python3 - "$@" <<'PY'
import glob
import os
import re
import sys

strict = "--strict" in sys.argv[1:]
# The config module as one text, whether it is a directory of section files or one file.
files = sorted(glob.glob("crates/server/src/config/**/*.rs", recursive=True))
files = [f for f in files if os.path.basename(f) != "tests.rs"]
if os.path.exists("crates/server/src/config.rs"):
    files.append("crates/server/src/config.rs")
if not files:
    sys.exit("check-config-docs: the config module (crates/server/src/config/) not found")
src = "\n".join(open(f, encoding="utf-8").read() for f in files)
doc = open("docs/configuration.md", encoding="utf-8").read()

# Every `pub struct Name { … }` that derives Deserialize, with its fields.
structs = {}
for m in re.finditer(r"#\[derive\(([^)]*)\)\]\s*(?:#\[[^\]]*\]\s*)*pub struct (\w+)\s*\{(.*?)\n\}", src, re.S):
    derives, name, body = m.groups()
    if "Deserialize" not in derives:
        continue
    fields = []
    rename = None
    for line in body.splitlines():
        line = line.strip()
        r = re.search(r'rename\s*=\s*"([^"]+)"', line)
        if line.startswith("#[") and r:
            rename = r.group(1)
            continue
        f = re.match(r"pub (\w+):\s*(.+?),?$", line)
        if f:
            fields.append((rename or f.group(1), f.group(2)))
            rename = None
    structs[name] = fields

if "RawConfig" not in structs:
    sys.exit("check-config-docs: RawConfig not found in the config module")

def inner(ty):
    """The struct a field type names, through Option<…> and Vec<…>."""
    m = re.fullmatch(r"(?:Option|Vec)<(.+)>", ty)
    return inner(m.group(1)) if m else ty

keys = set()
def walk(struct, prefix):
    for name, ty in structs[struct]:
        key = f"{prefix}.{name}" if prefix else name
        target = inner(ty)
        if target in structs:
            walk(target, key)
        elif prefix:
            keys.add(key)
        else:
            sys.exit(f"check-config-docs: top-level field {name} is not a section")
        if prefix and target in structs:
            keys.add(key)  # the sub-table itself (sms.twilio) is documented too
walk("RawConfig", "")

# Members of tables that are parsed by hand.
tls = re.search(r"\bfn tls\b.*?\n\}", src, re.S)
for member in re.findall(r'\.get\("(\w+)"\)', tls.group(0) if tls else ""):
    keys.add(f"server.tls.{member}")
rl = re.search(r"\bconst RATE_LIMIT_KEYS\b[^=]*=\s*\[([^\]]*)\]", src, re.S)
for member in re.findall(r'"(\w+)"', rl.group(1) if rl else ""):
    keys.add(f"route.rate_limit.{member}")
for required in ("server.tls.cert", "server.tls.key", "route.rate_limit.per_second"):
    if required not in keys:
        sys.exit(f"check-config-docs: could not find {required} in the config module; update this script")

documented = set(re.findall(r"`\[{0,2}([a-z_]+(?:\.[a-z_]+)+)\]{0,2}`", doc))
missing = sorted(k for k in keys if k not in documented)

sections = {k.split(".")[0] for k in keys}
extra = sorted(
    d for d in documented
    if d.split(".")[0] in sections | {"audit"} and d not in keys
    and not any(k.startswith(d + ".") for k in keys)
)

print(f"config module: {len(keys)} keys; docs/configuration.md documents {len(keys) - len(missing)} of them")
for d in extra:
    print(f"warning: documented but not in the config module: {d}")
for k in missing:
    print(f"missing from docs/configuration.md: {k}")
if missing or (strict and extra):
    sys.exit(1)
PY
