#!/usr/bin/env bash
# Builds libmoat_ffi for this machine and writes the Kotlin and Swift bindings for it.
#
#   crates/ffi/bindings.sh [--release] OUT_DIR
#
# OUT_DIR/kotlin/uniffi/moat/moat.kt          Kotlin (JNA + kotlinx-coroutines)
# OUT_DIR/swift/moat.swift, moatFFI.h, moatFFI.modulemap
# OUT_DIR/lib/libmoat_ffi.{so|dylib} and libmoat_ffi.a (host architecture only; phones need
#   the library cross-compiled, see docs/mobile-bindings.md)
#
# The tests (cargo test -p moat-ffi) generate and check the same files on their own.
set -euo pipefail
cd "$(dirname "$0")/../.."

profile=debug
flags=()
if [ "${1:-}" = --release ]; then
    profile=release
    flags=(--release)
    shift
fi
out=${1:?usage: crates/ffi/bindings.sh [--release] OUT_DIR}
mkdir -p "$out"
out=$(cd "$out" && pwd)

cargo build -p moat-ffi "${flags[@]}"
target=$(cargo metadata --format-version 1 --no-deps |
    python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
case "$(uname -s)" in
    Darwin) lib=libmoat_ffi.dylib ;;
    *) lib=libmoat_ffi.so ;;
esac
for language in kotlin swift; do
    # Run from the workspace: the generator reads uniffi.toml files through cargo metadata.
    "$target/$profile/uniffi-bindgen" generate "$target/$profile/$lib" \
        --language "$language" --out-dir "$out/$language" --metadata-no-deps
done
mkdir -p "$out/lib"
cp "$target/$profile/$lib" "$target/$profile/libmoat_ffi.a" "$out/lib/"
echo "bindings and host libraries in $out"
