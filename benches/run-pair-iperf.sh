#!/usr/bin/env bash
# Guest transmit and receive through netfront/netback, measured with iperf3 between two
# network namespaces, next to its two peers in the same run:
#   veth  - the kernel's own path between the same namespaces (a veth pair, offloads on);
#   fwd   - tap_forwarder: one process moving frames + vnet headers between two TAPs
#           (no rings, no grants: the cost of "no virtualization" in user space);
#   pair  - guest TAP -> netfront -> Xen rings + grants in a memfd -> netback -> host TAP.
# The three paths live side by side (one subnet each) and are measured one at a time,
# interleaved, REPS times; the median of each is reported with the ratios and goals:
#   pair transmit >= 0.9x fwd transmit, >= 0.7x veth transmit; pair receive >= 0.9x pair transmit.
# "transmit" = iperf3 client in the guest namespace sending; "receive" = iperf3 -R.
# Usage (root): benches/run-pair-iperf.sh [SECONDS_PER_RUN (5)] [REPS (3)]
# Needs: ip, iperf3, /dev/net/tun. Builds the release binaries first.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-5}"
reps="${2:-3}"
[ "$(id -u)" = 0 ] || { echo "skipped: needs root (namespaces, TAP devices)"; exit 0; }
command -v iperf3 >/dev/null || { echo "skipped: iperf3 is not installed"; exit 0; }
[ -e /dev/net/tun ] || { echo "skipped: no /dev/net/tun"; exit 0; }

cargo build --release -q -p pvio-examples --bin netfront --bin netback --bin tap_forwarder
bin="${CARGO_TARGET_DIR:-target}/release"

G="pvio-bench-g-$$"
H="pvio-bench-h-$$"
SOCK="/tmp/pvio-bench-$$.sock"
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
    ip netns del "$G" 2>/dev/null || true
    ip netns del "$H" 2>/dev/null || true
    rm -f "$SOCK"
}
trap cleanup EXIT
ip netns add "$G"
ip netns add "$H"
ip -n "$G" link set lo up
ip -n "$H" link set lo up

wait_dev() { # ns dev
    for _ in $(seq 100); do ip -n "$1" link show "$2" >/dev/null 2>&1 && return 0; sleep 0.1; done
    echo "device $2 never appeared in $1" >&2; exit 1
}
addr() { # ns dev ip
    wait_dev "$1" "$2"
    ip -n "$1" addr add "$3/24" dev "$2"
    ip -n "$1" link set "$2" up
}

# veth: 10.78.1.0/24
ip link add pvbv-g netns "$G" type veth peer name pvbv-h netns "$H"
addr "$G" pvbv-g 10.78.1.1
addr "$H" pvbv-h 10.78.1.2
# tap_forwarder: 10.78.2.0/24
"$bin/tap_forwarder" "pvbf-g@$G" "pvbf-h@$H" --stats 0 2>/tmp/pvio-bench-fwd-$$.log &
pids+=($!)
fwd_pid=$!
addr "$G" pvbf-g 10.78.2.1
addr "$H" pvbf-h 10.78.2.2
# netfront/netback: 10.78.3.0/24
ip netns exec "$H" "$bin/netback" --socket "$SOCK" --backend tap:pvbp-h --stats 0 2>/tmp/pvio-bench-back-$$.log &
pids+=($!)
back_pid=$!
for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
ip netns exec "$G" "$bin/netfront" --socket "$SOCK" --tap pvbp-g --stats 0 2>/tmp/pvio-bench-front-$$.log &
pids+=($!)
front_pid=$!
addr "$G" pvbp-g 10.78.3.1
addr "$H" pvbp-h 10.78.3.2
for net in 1 2 3; do
    ip netns exec "$G" ping -q -c 3 -i 0.2 -W 2 -w 10 "10.78.$net.2" >/dev/null \
        || { echo "no connectivity on 10.78.$net.0/24" >&2; cat /tmp/pvio-bench-*-$$.log >&2; exit 1; }
done

# CPU time (utime + stime, in clock ticks) of the user-space processes of a path.
ticks() { # subnet
    local p t=0
    case "$1" in 1) return 0 ;; 2) p="$fwd_pid" ;; 3) p="$back_pid $front_pid" ;; esac
    for pid in $p; do t=$((t + $(awk '{ print $14 + $15 }' "/proc/$pid/stat"))); done
    echo "$t"
}
hz="$(getconf CLK_TCK)"

# One iperf3 run: prints the receiver's Gbit/s and the path's user-space CPU seconds per GB.
measure() { # subnet reverse(0/1)
    local port=$((5400 + $1 * 2 + $2)) extra=""
    [ "$2" = 1 ] && extra="-R"
    ip netns exec "$H" iperf3 -s -1 -p "$port" -B "10.78.$1.2" >/dev/null 2>&1 &
    local srv=$!
    sleep 0.3
    local out t0 t1
    t0="$(ticks "$1")"
    out="$(ip netns exec "$G" iperf3 -c "10.78.$1.2" -p "$port" -t "$secs" -f g $extra 2>&1)" || {
        echo "iperf3 failed on 10.78.$1.0/24: $out" >&2; kill "$srv" 2>/dev/null; exit 1; }
    t1="$(ticks "$1")"
    wait "$srv" 2>/dev/null || true
    echo "$out" | awk -v t0="$t0" -v t1="$t1" -v hz="$hz" '/receiver/ {
        for (i = 1; i <= NF; i++) {
            if ($i == "GBytes") gb = $(i-1)
            if ($i == "Gbits/sec") g = $(i-1)
        }
        cpu = (t0 == "" || gb == 0) ? 0 : (t1 - t0) / hz / (gb * 1.073741824)
        printf "%s %.3f\n", g, cpu
    }'
}

declare -A runs cpus
names=([1]=veth [2]=fwd [3]=pair)
for rep in $(seq "$reps"); do
    for dir in 0 1; do
        for net in 1 2 3; do
            read -r g cpu <<<"$(measure "$net" "$dir")"
            runs["${names[$net]}-$dir"]+="$g "
            cpus["${names[$net]}-$dir"]+="$cpu "
            printf 'rep %d/%d  %-4s %-8s %6.2f Gbit/s  %6.3f CPU s/GB\n' "$rep" "$reps" "${names[$net]}" \
                "$([ "$dir" = 0 ] && echo transmit || echo receive)" "$g" "$cpu" >&2
        done
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{ a[NR] = $1 } END { print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
declare -A med cmed
for k in "${!runs[@]}"; do
    med[$k]="$(echo "${runs[$k]}" | median)"
    cmed[$k]="$(echo "${cpus[$k]}" | median)"
done

echo
echo "== iperf3, guest namespace <-> host namespace, ${secs}s x ${reps} (median Gbit/s) =="
printf '%-34s %10s %10s\n' "path" "transmit" "receive"
printf '%-34s %10.2f %10.2f\n' "veth (kernel)" "${med[veth-0]}" "${med[veth-1]}"
printf '%-34s %10.2f %10.2f\n' "tap_forwarder (user space, no VM)" "${med[fwd-0]}" "${med[fwd-1]}"
printf '%-34s %10.2f %10.2f\n' "netfront/netback (rings+grants)" "${med[pair-0]}" "${med[pair-1]}"
echo
echo "user-space CPU seconds per GB moved (the path's own processes; veth has none):"
printf '%-34s %10.3f %10.3f\n' "tap_forwarder" "${cmed[fwd-0]}" "${cmed[fwd-1]}"
printf '%-34s %10.3f %10.3f\n' "netfront + netback" "${cmed[pair-0]}" "${cmed[pair-1]}"
echo
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", (b > 0) ? a / b : 0 }'; }
goal() { # label ratio target
    local ok
    ok="$(awk -v r="$2" -v t="$3" 'BEGIN { print (r >= t) ? "met" : "MISSED" }')"
    printf 'goal: %-44s %6sx (>= %sx) %s\n' "$1" "$2" "$3" "$ok"
}
goal "pair transmit / tap_forwarder transmit" "$(ratio "${med[pair-0]}" "${med[fwd-0]}")" 0.9
goal "pair transmit / veth transmit" "$(ratio "${med[pair-0]}" "${med[veth-0]}")" 0.7
goal "pair receive / pair transmit" "$(ratio "${med[pair-1]}" "${med[pair-0]}")" 0.9
echo "(also: pair receive / tap_forwarder receive $(ratio "${med[pair-1]}" "${med[fwd-1]}")x," \
    "pair receive / veth receive $(ratio "${med[pair-1]}" "${med[veth-1]}")x)"
echo
echo "final statistics:"
for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
pids=()
tail -n 2 /tmp/pvio-bench-fwd-$$.log /tmp/pvio-bench-back-$$.log /tmp/pvio-bench-front-$$.log
rm -f /tmp/pvio-bench-*-$$.log
