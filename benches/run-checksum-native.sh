#!/usr/bin/env bash
# The checksum bench built twice, as issue 4's goal asks: for generic x86-64 (the default
# build, where pvio picks AVX2 at run time) and with `-C target-cpu=native` (where every
# peer's code is compiled for this CPU), each in its own target directory. The generic
# build runs and drives the native one (`--serve`) one run at a time, so the runs of both
# interleave; it prints both tables and the goals:
#   pvio (generic) >= 2x fastest peer (generic) at 1500 B and 64 KiB
#   pvio (generic) within 10% of fastest peer (native)
# Usage: benches/run-checksum-native.sh   (from anywhere in the workspace; about a minute)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"

echo "== build: -C target-cpu=native (target dir $target/native) =="
native_bin="$(CARGO_TARGET_DIR="$target/native" RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=native" \
    cargo bench -p pvio-benches --bench checksum --no-run --message-format=json \
    | grep -o '"executable":"[^"]*"' | cut -d'"' -f4 | tail -n1)"
[ -x "$native_bin" ] || { echo "no native bench executable found" >&2; exit 1; }
echo "native executable: $native_bin"
echo "== build and run: generic x86-64 (target dir $target) =="
CARGO_TARGET_DIR="$target" PVIO_CHECKSUM_NATIVE_BIN="$native_bin" \
    cargo bench -p pvio-benches --bench checksum
