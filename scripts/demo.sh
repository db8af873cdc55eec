#!/bin/sh
# scripts/demo.sh: the demonstration behind "make demo".
#
# For now it boots the self-verifying test guest (tests/guest/) under QEMU
# with TCG, fills 256 MiB of guest memory with its pattern, shows the
# guest's serial console (READY, then TICK and OK lines as it rewrites and
# re-verifies its memory) for a few ticks, and stops QEMU again. Save and
# restore steps will be added here as they come.
#
# Environment: SNAP_BUILD (build directory, default "build"), DEMO_MEM
# (guest RAM, default 320M), DEMO_FILL (default 256M), DEMO_TICKS (default 5).
set -eu

build=${SNAP_BUILD:-build}
guest=$build/guest/snapguest.elf
mem=${DEMO_MEM:-320M}
fill=${DEMO_FILL:-256M}
ticks=${DEMO_TICKS:-5}
qemu=${SNAP_QEMU:-qemu-system-x86_64}

[ -r "$guest" ] || { echo "demo: no test guest at '$guest'; run make" >&2; exit 1; }

dir=$(mktemp -d /tmp/snap-demo.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

args="fill=$fill seed=42 zero=25 single=20 dirty=64 verify=1 tick_ms=200"
echo "demo: booting the test guest: $mem of RAM, guest arguments: $args"
start=$(date +%s%N)
"$qemu" -machine pc-i440fx-7.2 -accel tcg -m "$mem" -no-user-config \
	-display none -monitor none -parallel none -nic none \
	-serial "file:$dir/serial.log" \
	-kernel "$guest" -append "$args" >"$dir/qemu.log" 2>&1 &
pid=$!

# Show the console until the guest has verified its memory $ticks times.
# (A shell read loop: awk and tr would buffer the stream.)
cr=$(printf '\r')
status=1
partial=
touch "$dir/serial.log"
exec 3<"$dir/serial.log"
deadline=$(($(date +%s) + 120))
while [ "$(date +%s)" -lt "$deadline" ]; do
	# At the end of the file, read returns false with a partial line.
	if ! IFS= read -r part <&3; then
		partial=$partial$part
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.05
		continue
	fi
	line=$partial$part
	partial=
	line=${line%"$cr"}
	echo "guest| $line"
	case $line in
	READY*)
		now=$(date +%s%N)
		echo "demo: READY $(( (now - start) / 1000000 )) ms after QEMU started" ;;
	BAD*|ERROR*|FAULT*)
		break ;;
	"OK "*)
		[ "${line#OK }" -ge "$ticks" ] && { status=0; break; } ;;
	esac
done
exec 3<&-
if [ "$status" -ne 0 ]; then
	echo "demo: the guest did not check out; QEMU said:" >&2
	cat "$dir/qemu.log" >&2
	exit 1
fi

echo "demo: stopping QEMU"
kill "$pid"
wait "$pid" 2>/dev/null || true
pid=
echo "demo: done"
