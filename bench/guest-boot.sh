#!/bin/sh
# bench/guest-boot.sh: how fast the test guest boots and fills memory under
# TCG. For each fill size it starts QEMU, and reports the wall-clock time
# from starting QEMU to the READY line, the guest's own fill time (READY
# ms=, PIT-based) with the fill rate it implies, and the time to the first
# full verification (OK 1). Runs each size $RUNS times (default 3).
#
#   nice -n 10 bench/guest-boot.sh [SIZE...]      (default: 256M 1G)
#
# Environment: SNAP_BUILD (default build), SNAP_QEMU, RUNS.
set -eu

build=${SNAP_BUILD:-build}
guest=$build/guest/snapguest.elf
qemu=${SNAP_QEMU:-qemu-system-x86_64}
runs=${RUNS:-3}
[ $# -gt 0 ] || set -- 256M 1G
[ -r "$guest" ] || { echo "guest-boot: no '$guest'; run make" >&2; exit 1; }

dir=$(mktemp -d /tmp/snap-bench.XXXXXX)
pid=
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$dir"' EXIT
cr=$(printf '\r')

ms_since() { echo $(( ($(date +%s%N) - $1) / 1000000 )); }

# mib SIZE: the size in MiB (accepts M and G suffixes).
mib() {
	case $1 in
	*G) echo $(( ${1%G} * 1024 )) ;;
	*M) echo "${1%M}" ;;
	*) echo "guest-boot: size '$1' must end in M or G" >&2; exit 1 ;;
	esac
}

echo "size   run  ready_ms  fill_ms  fill_MiB/s  ok1_ms"
for size in "$@"; do
	m=$(mib "$size")
	for run in $(seq "$runs"); do
		: >"$dir/serial.log"
		start=$(date +%s%N)
		"$qemu" -machine pc-i440fx-7.2 -accel tcg -m $((m + 64))M \
			-no-user-config -display none -monitor none \
			-parallel none -nic none -serial "file:$dir/serial.log" \
			-kernel "$guest" \
			-append "fill=$size dirty=64 verify=1 tick_ms=100" \
			>"$dir/qemu.log" 2>&1 &
		pid=$!
		exec 3<"$dir/serial.log"
		partial= ready= fill_ms= ok=
		while [ -z "$ok" ]; do
			if ! IFS= read -r part <&3; then
				partial=$partial$part
				kill -0 "$pid" 2>/dev/null ||
					{ cat "$dir/qemu.log" >&2; exit 1; }
				sleep 0.01
				continue
			fi
			line=${partial}${part}
			partial=
			line=${line%"$cr"}
			case $line in
			READY*)
				ready=$(ms_since "$start")
				fill_ms=${line##* ms=} ;;
			"OK 1")
				ok=$(ms_since "$start") ;;
			BAD*|ERROR*|FAULT*)
				echo "guest-boot: $line" >&2; exit 1 ;;
			esac
		done
		exec 3<&-
		kill "$pid"
		wait "$pid" 2>/dev/null || true
		pid=
		rate=$(( fill_ms > 0 ? m * 1000 / fill_ms : 0 ))
		printf '%-6s %3d  %8d  %7d  %10d  %6d\n' "$size" "$run" \
			"$ready" "$fill_ms" "$rate" "$ok"
	done
done
