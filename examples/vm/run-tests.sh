#!/bin/bash
# pvio VFIO VM test: boot a QEMU guest (TCG, q35, emulated Intel IOMMU with interrupt remapping,
# e1000e + virtio-net-pci on host TAPs), bind both NICs to vfio-pci inside it, run the project's
# static `vfio_probe` on each and check its output. Run as root from anywhere:
#     examples/vm/run-tests.sh
# Prints `skipped: <reason>` and exits 0 when not root or a prerequisite is missing (apt packages:
# qemu-system-x86 busybox-static cpio tcpdump bc iproute2; the musl rustup target or glibc static libs); fails loudly
# otherwise. Env: PVIO_VM_WORK (build dir, default ${TMPDIR:-/tmp}/pvio-vfio-vm), VFIO_PROBE (use
# this binary instead of building one), TIMEOUT (seconds, default 300).
set -u
HERE=$(cd "$(dirname "$0")" && pwd); ROOT=$(cd "$HERE/../.." && pwd)
WORK=${PVIO_VM_WORK:-${TMPDIR:-/tmp}/pvio-vfio-vm}; TIMEOUT=${TIMEOUT:-300}
skip() { echo "skipped: $*"; exit 0; }
die() { echo "FAIL: $*" >&2; exit 1; }
T0=$(date +%s.%N)

[ "$(id -u)" = 0 ] || skip "not root (needs TAP devices)"
for c in qemu-system-x86_64 cpio gzip dpkg-deb apt-get apt-cache ip timeout tcpdump bc; do
  command -v $c >/dev/null || skip "$c not found (apt-get install qemu-system-x86 cpio iproute2 tcpdump bc)"
done
is_static() { ! ldd "$1" 2>&1 | grep -q "=>"; }   # ldd: "statically linked" or "not a dynamic executable"
[ -x /bin/busybox ] && is_static /bin/busybox || skip "no static /bin/busybox (apt-get install busybox-static)"
[ -c /dev/net/tun ] || skip "no /dev/net/tun"
mkdir -p "$WORK" || die "cannot create $WORK"

# 1. The probe, static. musl if the rustup target is installed, else glibc with crt-static.
if [ -z "${VFIO_PROBE:-}" ]; then
  if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
    TGT=x86_64-unknown-linux-musl; FLAGS=""
  else
    TGT=x86_64-unknown-linux-gnu; FLAGS="-C target-feature=+crt-static"
  fi
  (cd "$ROOT" && RUSTFLAGS="$FLAGS" CARGO_PROFILE_RELEASE_STRIP=symbols cargo build -q --release -p pvio-examples --bin vfio_probe --target $TGT) \
    || die "cargo build of vfio_probe failed"
  VFIO_PROBE=$ROOT/target/$TGT/release/vfio_probe
fi
[ -x "$VFIO_PROBE" ] || die "no probe binary at $VFIO_PROBE"
is_static "$VFIO_PROBE" || die "$VFIO_PROBE is dynamically linked"
T1=$(date +%s.%N)

# 2. Kernel: Debian's package unpacked into $WORK, never installed.
cd "$WORK" || die "cd $WORK"
KPKG=$(apt-cache depends linux-image-amd64 2>/dev/null | awk '/Depends: linux-image-/{print $2; exit}')
[ -n "$KPKG" ] || skip "apt-cache knows no linux-image-amd64 (not Debian?)"
KVER=${KPKG#linux-image-}
if ! ls debs/${KPKG}_*.deb >/dev/null 2>&1; then
  mkdir -p debs && (cd debs && apt-get download "$KPKG") || die "apt-get download $KPKG failed"
fi
if [ ! -f kpkg/boot/vmlinuz-$KVER ]; then
  rm -rf kpkg && mkdir kpkg && dpkg-deb -x "$(ls debs/${KPKG}_*.deb | head -1)" kpkg || die "unpacking $KPKG failed"
fi

# 3. initramfs: busybox, the VFIO modules (plain .ko in Debian 6.1), /init, the probe.
rm -rf rootfs && mkdir -p rootfs/bin rootfs/lib/modules rootfs/proc rootfs/sys rootfs/dev
cp /bin/busybox rootfs/bin/busybox
M=kpkg/lib/modules/$KVER/kernel
for f in virt/lib/irqbypass.ko drivers/vfio/vfio.ko drivers/vfio/vfio_iommu_type1.ko drivers/vfio/vfio_virqfd.ko \
         drivers/vfio/pci/vfio-pci-core.ko drivers/vfio/pci/vfio-pci.ko; do
  cp "$M/$f" rootfs/lib/modules/ || die "module $f missing from $KPKG"
done
install -m755 "$HERE/guest-init.sh" rootfs/init && install -m755 "$VFIO_PROBE" rootfs/vfio_probe || die "install"
(cd rootfs && find . | cpio -o -H newc --quiet | gzip -1) > initramfs.cpio.gz || die "cpio"
T2=$(date +%s.%N)

# 4. Host TAPs (our own names, removed on exit).
TAPS="pvfio0 pvfio1"
CAPS=""
cleanup() { [ -n "$CAPS" ] && kill $CAPS 2>/dev/null; for t in $TAPS; do ip link del $t 2>/dev/null; done; }
trap cleanup EXIT
for t in $TAPS; do
  ip link show $t >/dev/null 2>&1 || ip tuntap add dev $t mode tap || die "cannot create TAP $t"
  ip link set $t up
  # What the guest's NIC puts on the wire (the probe's frames have ethertype 0x88b5).
  rm -f cap-$t.pcap
  tcpdump --immediate-mode -U -n -i $t -w cap-$t.pcap ether proto 0x88b5 2>/dev/null & CAPS="$CAPS $!"
done
for t in $TAPS; do  # tcpdump creates its file once it is capturing
  for _ in $(seq 50); do [ -e cap-$t.pcap ] && break; sleep 0.1; done
  [ -e cap-$t.pcap ] || die "tcpdump on $t did not start"
done

# 5. Boot. intel-iommu first (intremap=on: type1 refuses the group without interrupt remapping);
# virtio-net modern only, behind the IOMMU (iommu_platform=on).
timeout "$TIMEOUT" qemu-system-x86_64 -accel tcg -cpu max -M q35 -vga none -m 512M -smp 2 -nographic -no-reboot \
  -device intel-iommu,intremap=on \
  -kernel kpkg/boot/vmlinuz-$KVER -initrd initramfs.cpio.gz \
  -append "console=ttyS0 intel_iommu=on iommu=pt panic=-1 loglevel=4" \
  -netdev tap,id=n0,ifname=pvfio0,script=no,downscript=no,vhost=off \
  -device virtio-net-pci,netdev=n0,disable-legacy=on,iommu_platform=on,mac=52:54:00:00:00:10,addr=0x1 \
  -netdev tap,id=n1,ifname=pvfio1,script=no,downscript=no,vhost=off \
  -device e1000e,netdev=n1,mac=52:54:00:00:00:20,addr=0x2 \
  > guest.log 2>&1 < /dev/null
QRC=$?
T3=$(date +%s.%N)
sleep 0.5; kill $CAPS 2>/dev/null; wait $CAPS 2>/dev/null; CAPS=""
tr -d '\r' < guest.log > guest.txt
sed -n '/^\[guest\]/p;/^=== vfio_probe/,/^RESULT/p' guest.txt

# 6. Checks: each line below must appear in the named device's section of the guest's output.
fails=0
need() { # need BDF TEXT
  sed -n "/=== vfio_probe $1/,/^RESULT $1/p" guest.txt | grep -qF -- "$2" || { echo "MISSING ($1): $2"; fails=$((fails + 1)); }
}
V=0000:00:01.0; E=0000:00:02.0
need $V "vendor=1af4 device=1041"
need $V "BAR4 size=0x4000"
need $V "VERSION_1=1 ACCESS_PLATFORM=1"
need $V "MAC=52:54:00:00:00:10"
need $V "-> TX OK"
need $V "-> IRQ OK"
need $V "Request device [00:01.0] fault addr 0x10400000"
need $V "-> NEG OK"
need $V "RESULT $V PASS"
need $E "vendor=8086 device=10d3"
need $E "BAR0 size=0x20000"
need $E "MAC=52:54:00:00:00:20"
need $E "-> IRQ OK"
need $E "-> TX OK"
need $E "Request device [00:02.0] fault addr 0x10300000"
need $E "-> NEG OK"
need $E "RESULT $E PASS"
grep -qF "[guest] done rc=0" guest.txt || { echo "MISSING: [guest] done rc=0"; fails=$((fails + 1)); }
# Host side of the transmits: exactly the one frame sent from the mapped buffer left each NIC
# (a descriptor-done bit alone proves nothing: emulated NICs complete faulted DMAs too).
for tw in "pvfio0 virtio" "pvfio1 e1000e"; do
  set -- $tw
  n=$(tcpdump -r cap-$1.pcap -A 2>/dev/null | grep -c "pvio vfio_probe $2 tx")
  echo "host: $n frame(s) 'pvio vfio_probe $2 tx' captured on $1"
  [ "$n" = 1 ] || { echo "MISSING (host): one $2 frame on $1, got $n"; fails=$((fails + 1)); }
done
# Host side of the negative tests: QEMU's IOMMU model reports a translation failure (once per run:
# error_report_once) for the first unmapped IOVA the guest used (virtio-net's, probed first).
grep -qF "detected translation failure (dev=00:01:00, iova=0x10400000)" guest.txt \
  || { echo "MISSING (QEMU): translation failure for 00:01.0 at 0x10400000"; fails=$((fails + 1)); }
# Any other QEMU message (e.g. the e1000e MSI-X throttling assertion) is a failure.
if grep -o "qemu-system-x86_64: .*" guest.txt | grep -vE "vtd_iova_to_slpte|vtd_iommu_translate|New fault is not recorded"; then
  echo "UNEXPECTED QEMU MESSAGE ABOVE"; fails=$((fails + 1))
fi
printf 'time: build %.1fs, initramfs %.1fs, boot+tests %.1fs, total %.1fs (qemu rc=%s)\n' \
  "$(echo "$T1 - $T0" | bc)" "$(echo "$T2 - $T1" | bc)" "$(echo "$T3 - $T2" | bc)" "$(echo "$T3 - $T0" | bc)" "$QRC"
[ "$QRC" = 0 ] || { echo "FAIL: qemu exit status $QRC (timeout=124), log: $WORK/guest.log"; exit 1; }
[ $fails = 0 ] || { echo "FAIL: $fails check(s) failed, log: $WORK/guest.log"; exit 1; }
echo "PASS: vfio VM tests"
