#!/usr/bin/env bash
# The checksum bench built twice, as issue 4's goal asks: for generic x86-64 (the default
# build, where pvio picks AVX2 at run time) and with `-C target-cpu=native` (where every
# peer's code is compiled for this CPU), each in its own target directory. The native run
# goes first and leaves its medians in a file; the generic run reads them and prints both
# goals:
#   pvio (generic) >= 2x fastest peer (generic) at 1500 B and 64 KiB
#   pvio (generic) within 10% of fastest peer (native)
# Usage: benches/run-checksum-native.sh   (from anywhere in the workspace; ~1 minute)
set -euo pipefail
cd "$(dirname "$0")/.."
target="${CARGO_TARGET_DIR:-target}"
mkdir -p "$target"
# Absolute: cargo runs benches from the package directory.
results="$(cd "$target" && pwd)/checksum-native-results.tsv"
rm -f "$results"

echo "== build: -C target-cpu=native (target dir $target/native) =="
CARGO_TARGET_DIR="$target/native" RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=native" \
    cargo bench -p pvio-benches --bench checksum --no-run
echo "== build: generic x86-64 (target dir $target) =="
CARGO_TARGET_DIR="$target" cargo bench -p pvio-benches --bench checksum --no-run

echo
echo "== run: -C target-cpu=native =="
CARGO_TARGET_DIR="$target/native" RUSTFLAGS="${RUSTFLAGS:-} -C target-cpu=native" \
    PVIO_CHECKSUM_RESULTS="$results" \
    cargo bench -q -p pvio-benches --bench checksum
echo
echo "== run: generic x86-64 =="
CARGO_TARGET_DIR="$target" PVIO_CHECKSUM_NATIVE_RESULTS="$results" \
    cargo bench -q -p pvio-benches --bench checksum
