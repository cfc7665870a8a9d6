#!/usr/bin/env bash
# pvio's whole test suite, from a fresh machine: installs what it needs (when run as root),
# then runs every check CI runs and ends with one line "total: N passed, N failed".
#
#   scripts/test-all.sh            # everything
#   FUZZ_SECONDS=60 scripts/test-all.sh
#   SKIP_INSTALL=1 scripts/test-all.sh   # trust what is installed
#
# Each cargo test suite contributes its individual test counts; every other check (format,
# lints, docs, a fuzz run, ...) counts as one.
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$(pwd)

# The nightly used for miri and cargo-fuzz, pinned by date so CI is reproducible.
NIGHTLY=nightly-2026-05-20
FUZZ_SECONDS=${FUZZ_SECONDS:-30}
NO_STD_TARGET=x86_64-unknown-none
LIB_CRATES=(-p pvio-ring -p pvio-grant -p pvio-offload -p pvio-paging)
export CARGO_TERM_COLOR=never
LOG_DIR=${LOG_DIR:-$ROOT/target/test-all}
mkdir -p "$LOG_DIR"

passed=0
failed=0
failures=()

say() { printf '\n=== %s\n' "$*"; }

# --- installation (idempotent) -------------------------------------------------------------
install_deps() {
  if [ "${SKIP_INSTALL:-0}" = 1 ]; then
    echo "SKIP_INSTALL=1: using what is installed"
    return
  fi
  say "install: toolchain pieces, cargo tools, Debian packages"
  rustup component add rustfmt clippy >/dev/null 2>&1 || true
  rustup target list --installed | grep -qx "$NO_STD_TARGET" || rustup target add "$NO_STD_TARGET"
  # The VFIO probe runs inside a minimal VM as a static binary.
  rustup target list --installed | grep -qx x86_64-unknown-linux-musl || rustup target add x86_64-unknown-linux-musl
  if ! rustup run "$NIGHTLY" cargo miri --version >/dev/null 2>&1; then
    rustup toolchain install "$NIGHTLY" --profile minimal -c miri,rust-src
  fi
  if ! cargo fuzz --version >/dev/null 2>&1; then
    cargo install cargo-fuzz --locked
  fi
  local pkgs=(libxen-dev gcc libc6-dev ethtool iproute2 libdpdk-dev pkg-config qemu-system-x86 binutils iperf3 iputils-ping busybox-static cpio tcpdump bc)
  local missing=()
  for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
    else
      echo "not root: cannot install ${missing[*]}; tests that need them print 'skipped: <reason>'"
    fi
  fi
}

# --- bookkeeping ---------------------------------------------------------------------------
# check NAME CMD...: a single pass/fail check.
check() {
  local name=$1
  shift
  say "$name"
  if "$@" 2>&1 | tee "$LOG_DIR/$name.log"; then
    passed=$((passed + 1))
    echo "--- $name: ok"
  else
    failed=$((failed + 1))
    failures+=("$name")
    echo "--- $name: FAILED"
  fi
}

# suite NAME CMD...: a cargo test run; adds up its "test result:" lines.
suite() {
  local name=$1
  shift
  say "$name"
  local rc=0
  "$@" 2>&1 | tee "$LOG_DIR/$name.log" || rc=$?
  local p f
  p=$(grep -Eo 'test result: [A-Za-z]+\. [0-9]+ passed' "$LOG_DIR/$name.log" | awk '{s+=$4} END {print s+0}')
  f=$(grep -Eo '; [0-9]+ failed' "$LOG_DIR/$name.log" | awk '{s+=$2} END {print s+0}')
  passed=$((passed + p))
  failed=$((failed + f))
  if [ "$rc" != 0 ] && [ "$f" = 0 ]; then
    # The run failed before or outside any test (a build error, a crash): count it.
    failed=$((failed + 1))
  fi
  if [ "$rc" != 0 ] || [ "$f" != 0 ]; then
    failures+=("$name")
  fi
  echo "--- $name: $p passed, $f failed (exit $rc)"
}

# --- the checks ----------------------------------------------------------------------------
install_deps

check fmt cargo fmt --all -- --check
check clippy-host cargo clippy --workspace --all-targets --locked -- -D warnings
check clippy-no-std cargo clippy "${LIB_CRATES[@]}" --no-default-features --target "$NO_STD_TARGET" --locked -- -D warnings
# The virtio driver side needs `alloc` (free list and tokens); lint that no_std combination too,
# and the rust-vmm adapter (feature vm-memory) with the interop tests that use it.
check clippy-no-std-alloc cargo clippy -p pvio-ring --no-default-features --features alloc --target "$NO_STD_TARGET" --locked -- -D warnings
check clippy-vm-memory cargo clippy -p pvio-ring --features vm-memory --all-targets --locked -- -D warnings
check build-no-std cargo build "${LIB_CRATES[@]}" --no-default-features --target "$NO_STD_TARGET" --locked
check rustdoc env RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --features pvio-ring/vm-memory --locked

# Unit, integration, doc tests, C interop, proptest, corpus replay.
suite tests cargo test --workspace --locked
# virtio interop with rust-vmm's virtio-queue over one GuestMemoryMmap (feature vm-memory).
# (Only the adapter's own unit tests from --lib: the rest ran above.)
suite virtio-interop bash -c "cargo test -p pvio-ring --features vm-memory --locked --test virtio_interop &&
  cargo test -p pvio-ring --features vm-memory --locked --lib vm_memory"

# loom models, in their own target dir so they don't invalidate the normal build.
suite loom-ring env RUSTFLAGS="--cfg loom" cargo test -p pvio-ring --test loom --release --locked --target-dir target/loom
suite loom-virtio env RUSTFLAGS="--cfg loom" cargo test -p pvio-ring --test loom_virtio --release --locked --target-dir target/loom
suite loom-grant env RUSTFLAGS="--cfg loom" cargo test -p pvio-grant --test loom --release --locked --target-dir target/loom

# miri on the shared-memory module, the ring unit tests and the property tests. Weak-memory
# emulation is off: miri cannot represent mixed-size atomic accesses to the same bytes (it
# aborts with "partially overlapping store buffer"), which Rust allows when they don't race
# and which shm.rs makes when one slot is copied as u64+u32 and later as u32. Data-race and
# aliasing checks stay on; loom model-checks the weak-memory behaviour of the ring protocol.
suite miri env MIRIFLAGS="-Zmiri-disable-weak-memory-emulation" \
  cargo +"$NIGHTLY" miri test -p pvio-ring --lib --test proptest_ring --test proptest_virtqueue --locked
suite miri-grant env MIRIFLAGS="-Zmiri-disable-weak-memory-emulation" \
  cargo +"$NIGHTLY" miri test -p pvio-grant --lib --locked
# offload: the checksum kernels (SIMD intrinsics), header views, GSO and GRO unit tests; the
# multi-megabyte arithmetic tests are native-only (#[cfg_attr(miri, ignore)]).
suite miri-offload env MIRIFLAGS="-Zmiri-disable-weak-memory-emulation" \
  cargo +"$NIGHTLY" miri test -p pvio-offload --lib --locked

# paging: entry codecs, table accessors and the mapper's unit tests.
suite miri-paging env MIRIFLAGS="-Zmiri-disable-weak-memory-emulation" \
  cargo +"$NIGHTLY" miri test -p pvio-paging --lib --locked

# Every fuzz target for a short run; the corpus replay runs in `tests` above.
if [ -d fuzz/fuzz_targets ]; then
  for t in $(cd fuzz && cargo +"$NIGHTLY" fuzz list); do
    # New inputs go to a scratch directory; the committed corpus is only read.
    scratch=$(mktemp -d)
    check "fuzz-$t" bash -c "cd fuzz && cargo +$NIGHTLY fuzz run $t $scratch corpus/$t -- -max_total_time=$FUZZ_SECONDS -rss_limit_mb=2048 2>&1 | tail -n 25; exit \${PIPESTATUS[0]}"
    rm -rf "$scratch"
  done
fi

# VFIO inside a QEMU guest (TCG, q35, intel-iommu): e1000e and virtio-net-pci bound to
# vfio-pci, probed by the project's static binary, frames checked on the host TAPs, and a DMA
# from an unmapped IOVA refused by the IOMMU. As root a "skipped:" here is a failure: CI has
# everything it needs, so a skip would hide a broken set-up.
vm_check() {
  local out rc=0
  out=$(examples/vm/run-tests.sh 2>&1) || rc=$?
  printf '%s\n' "$out" | tail -n 40
  if [ "$(id -u)" = 0 ] && printf '%s\n' "$out" | grep -q '^skipped:'; then
    echo "running as root, but the VM test skipped"
    return 1
  fi
  return $rc
}
check vfio-vm vm_check

check bench-build cargo bench --workspace --no-run --locked
check demo bash -c "cargo run --release --locked -p pvio-examples --bin netpair -- --quick --plot $LOG_DIR/netpair.svg"
check ring-demo bash -c "cargo run --release --locked -p pvio-examples --bin ring_demo -- 200000 32"

echo
if [ ${#failures[@]} -gt 0 ]; then
  echo "failed checks: ${failures[*]} (logs in $LOG_DIR)"
fi
echo "total: $passed passed, $failed failed"
[ "$failed" = 0 ]
