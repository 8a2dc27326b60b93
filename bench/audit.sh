#!/usr/bin/env bash
# `moat audit` throughput on a ~100 MB synthetic APK (release build).
#
# The package mixes what real apps ship: several large DEX files (real string tables with
# identifiers, log messages and obfuscated names), resources.arsc, native libraries (ELF with
# .rodata and incompressible .text), a big JavaScript bundle and JSON assets, stored images and
# a video. A few secrets are planted so the scan also has findings to report. Times the scan
# with hyperfine when installed, otherwise a loop of runs, and prints MB/s of package.
#   bench/audit.sh                 # ~100 MB package, 5 runs
#   SIZE_MB=300 RUNS=3 bench/audit.sh
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
SIZE_MB=${SIZE_MB:-100}
RUNS=${RUNS:-5}
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}

cargo build --release --locked -q -p moat-cli
MOAT=$TARGET/release/moat

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
APK=$WORK/bench.apk

python3 - "$APK" "$SIZE_MB" <<'PY'
import os, random, struct, sys, zipfile

path, size_mb = sys.argv[1], int(sys.argv[2])
scale = size_mb / 100.0
rnd = random.Random(7)
B62 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
WORDS = ("account user session token load save view model state item list adapter fragment "
         "activity service manager provider repository request response cache image network "
         "payment checkout cart order profile settings notification message chat feed").split()

def word(): return rnd.choice(WORDS)
def ident():
    return "L" + "/".join(["com", "example", word(), word()]) + "/" + word().capitalize() + word().capitalize() + ";"
def sentence():
    return " ".join(word() for _ in range(rnd.randint(3, 9))) + ": %s (%d)"
def obfuscated(): return "".join(rnd.choice(B62) for _ in range(rnd.randint(2, 12)))

def uleb(v):
    out = bytearray()
    while True:
        b = v & 0x7f; v >>= 7
        if v: out.append(b | 0x80)
        else: out.append(b); return bytes(out)

def dex(strings):
    strings = sorted(set(strings))
    header = 0x70
    data_off = header + 4 * len(strings)
    ids, data = bytearray(), bytearray()
    for s in strings:
        ids += struct.pack("<I", data_off + len(data))
        b = s.encode("utf-8")
        data += uleb(len(s)) + b + b"\0"
    # Code and other sections: bytecode is varied, roughly as compressible as real code.
    code = bytes(rnd.getrandbits(8) & 0x3f for _ in range(len(data)))
    f = bytearray(header)
    f[0:8] = b"dex\n035\0"
    struct.pack_into("<I", f, 0x20, header + len(ids) + len(data) + len(code))
    struct.pack_into("<I", f, 0x24, header)
    struct.pack_into("<I", f, 0x28, 0x12345678)
    struct.pack_into("<I", f, 0x38, len(strings))
    struct.pack_into("<I", f, 0x3c, header)
    return bytes(f + ids + data + code)

def elf(rodata, text):
    shstrtab = b"\0.rodata\0.text\0.shstrtab\0"
    ro_off = 64; tx_off = ro_off + len(rodata); sh_str = tx_off + len(text)
    sh_off = (sh_str + len(shstrtab) + 7) & ~7
    f = bytearray(b"\x7fELF\x02\x01\x01\0" + b"\0" * 8)
    f += struct.pack("<HHIQQQIHHHHHH", 3, 0xb7, 1, 0, 0, sh_off, 0, 64, 56, 0, 64, 4, 3)
    f += rodata + text + shstrtab
    f += b"\0" * (sh_off - len(f))
    def sh(name, kind, off, size): return struct.pack("<IIQQQQIIQQ", name, kind, 0, 0, off, size, 0, 0, 1, 0)
    f += b"\0" * 64 + sh(1, 1, ro_off, len(rodata)) + sh(9, 1, tx_off, len(text)) + sh(15, 3, sh_str, len(shstrtab))
    return bytes(f)

def planted(prefix, n): return prefix + "".join(rnd.choice(B62) for _ in range(n))

with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=6) as z:
    for i in range(max(1, round(6 * scale))):
        n = 90_000
        strings = [ident() for _ in range(n // 3)] + [sentence() for _ in range(n // 3)] + [obfuscated() for _ in range(n // 3)]
        if i == 0:
            strings.append(planted("AI" + "za", 35))
        z.writestr("classes%s.dex" % ("" if i == 0 else i + 1), dex(strings))
    pool = b"".join(sentence().encode() + b"\0" for _ in range(int(60_000 * scale)))
    z.writestr(zipfile.ZipInfo("resources.arsc"), b"\x02\x00\x0c\x00" + struct.pack("<II", len(pool) + 12, 0) + pool, zipfile.ZIP_STORED)
    for i, abi in enumerate(["arm64-v8a", "armeabi-v7a", "x86_64"][: max(1, round(3 * scale))]):
        rodata = b"".join(sentence().encode() + b"\0" for _ in range(40_000))
        if i == 0:
            rodata += planted("sk_" + "live_", 32).encode() + b"\0"
        z.writestr("lib/%s/libgame.so" % abi, elf(rodata, os.urandom(int(8 << 20))))
    js = ";".join("var %s=function(%s){return %s.%s(%d)}" % (obfuscated(), word(), word(), word(), rnd.randint(0, 1 << 20)) for _ in range(int(500_000 * scale)))
    z.writestr("assets/index.android.bundle", js)
    for i in range(int(40 * scale)):
        z.writestr("assets/data/catalog%d.json" % i, "[" + ",".join('{"id":"%s","name":"%s %s","price":%d}' % (obfuscated(), word(), word(), rnd.randint(1, 9999)) for _ in range(2000)) + "]")
    for i in range(int(520 * scale)):
        info = zipfile.ZipInfo("res/drawable-xxhdpi/img%d.png" % i)
        z.writestr(info, b"\x89PNG\r\n\x1a\n" + os.urandom(60_000), zipfile.ZIP_STORED)
    z.writestr(zipfile.ZipInfo("assets/intro.mp4"), b"\0\0\0\x18ftypmp42" + os.urandom(int((10 << 20) * scale)), zipfile.ZIP_STORED)
PY

BYTES=$(stat -c %s "$APK")
ENTRIES=$(python3 -c "import zipfile,sys; z=zipfile.ZipFile(sys.argv[1]); print(len(z.infolist()), sum(i.file_size for i in z.infolist()))" "$APK")
echo "package: $(awk "BEGIN{printf \"%.1f\", $BYTES/1e6}") MB, $(echo "$ENTRIES" | cut -d' ' -f1) entries, $(awk "BEGIN{printf \"%.1f\", $(echo "$ENTRIES" | cut -d' ' -f2)/1e6}") MB uncompressed; $(nproc) cores"
"$MOAT" audit "$APK" --fail-on never | tail -n 1

if command -v hyperfine >/dev/null; then
    hyperfine --warmup 1 --runs "$RUNS" --export-json "$WORK/h.json" "$MOAT audit $APK --format json --fail-on never --output /dev/null"
    MEAN=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['results'][0]['mean'])" "$WORK/h.json")
else
    "$MOAT" audit "$APK" --format json --fail-on never --output /dev/null # warm the page cache
    START=$(date +%s.%N)
    for _ in $(seq "$RUNS"); do "$MOAT" audit "$APK" --format json --fail-on never --output /dev/null; done
    END=$(date +%s.%N)
    MEAN=$(awk "BEGIN{print ($END-$START)/$RUNS}")
fi
awk "BEGIN{printf \"moat audit: %.2f s per scan, %.0f MB/s of package\n\", $MEAN, $BYTES/1e6/$MEAN}"
