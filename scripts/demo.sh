#!/bin/sh
# scripts/demo.sh: the demonstration behind "make demo".
#
# The whole story on the self-verifying test guest (tests/guest/):
#   1. snapd starts with a fresh store in a temporary directory;
#   2. a guest is defined and booted: it fills 256 MiB with its pattern and
#      keeps checking it (READY, TICK, OK on its serial console);
#   3. snapctl saves it into a mapped-RAM snapshot file, which is verified
#      and inspected offline;
#   4. snapctl loads the snapshot as a clone, lazily (the file is mapped as
#      the clone's RAM): the clone's tick counter goes on from the saved
#      moment without a reboot, and its full memory check says OK;
#   5. the original guest is "fast-rebooted" back to the snapshot;
#   6. everything is stopped and removed.
# Times are printed as they happen.
#
# Environment: SNAP_BUILD (build directory, default "build"), DEMO_MEM
# (guest RAM, default 320M), DEMO_FILL (default 256M).
set -eu

build=${SNAP_BUILD:-build}
guest=$(realpath "$build/guest/snapguest.elf")
snapd=$build/bin/snapd
mem=${DEMO_MEM:-320M}
fill=${DEMO_FILL:-256M}

for f in "$guest" "$snapd" "$build/bin/snapctl"; do
	[ -r "$f" ] || { echo "demo: '$f' is missing; run make" >&2; exit 1; }
done

dir=$(mktemp -d /tmp/snap-demo.XXXXXX)
home=$dir/store
spid=
cleanup() {
	if [ -n "$spid" ]; then
		kill "$spid" 2>/dev/null && wait "$spid" 2>/dev/null
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ctl() {
	"$build/bin/snapctl" --socket "$home/control.sock" "$@"
}
say() {
	printf '\n\033[1mdemo: %s\033[0m\n' "$*"
}
ms_since() {
	echo $(( ($(date +%s%N) - $1) / 1000000 ))
}

# follow NAME OKS: show guest NAME's console from where the last call left
# off until it has printed OKS "OK" lines (or a BAD/ERROR/FAULT line, which
# fails the demo). A restore starts a new console file: "fresh NAME".
fresh() {
	rm -f "$dir/$1.seen"
}
follow() {
	log=$home/guests/$1/serial.log
	want=$2
	oks=0
	partial=
	cr=$(printf '\r')
	seen=$(cat "$dir/$1.seen" 2>/dev/null || echo 0)
	while [ ! -e "$log" ]; do sleep 0.05; done
	exec 3<"$log"
	i=0
	while [ $i -lt "$seen" ] && IFS= read -r part <&3; do i=$((i + 1)); done
	deadline=$(($(date +%s) + 120))
	while [ "$(date +%s)" -lt "$deadline" ]; do
		# At the end of the file, read returns false with a partial line.
		if ! IFS= read -r part <&3; then
			partial=$partial$part
			sleep 0.05
			continue
		fi
		line=$partial$part
		partial=
		line=${line%"$cr"}
		seen=$((seen + 1))
		echo "$seen" >"$dir/$1.seen"
		echo "  $1| $line"
		case $line in
		BAD*|ERROR*|FAULT*)
			exec 3<&-
			echo "demo: guest '$1' reports a problem" >&2
			return 1 ;;
		"OK "*)
			oks=$((oks + 1))
			if [ "$oks" -ge "$want" ]; then
				exec 3<&-
				return 0
			fi ;;
		esac
	done
	exec 3<&-
	echo "demo: guest '$1' went quiet" >&2
	return 1
}

say "starting snapd with a new store in $home"
"$snapd" -d --home "$home" >"$dir/snapd.log" 2>&1 &
spid=$!
i=0
while [ ! -S "$home/control.sock" ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i + 1)); done

args="fill=$fill seed=42 zero=25 single=20 dirty=64 verify=2 tick_ms=200"
say "defining and booting guest 'demo': $mem of RAM, guest arguments: $args"
ctl vm define demo --memory "$mem" --kernel "$guest" --append "$args" \
	--display none
t0=$(date +%s%N)
ctl vm start demo
follow demo 2
echo "demo: booted, filled and checked in $(ms_since "$t0") ms"

say "saving 'demo' (stopped save; the guest resumes afterwards)"
ctl save demo --name demo-1
file=$home/snapshots/demo/demo-1.snap
ls -ls "$file" | awk '{ printf "demo: %s: %d bytes apparent, %d KiB allocated (zero pages are holes)\n", $10, $6, $1 }'

say "verifying and inspecting the snapshot file offline"
ctl verify "$file"
ctl inspect "$file" | sed -n '1,14p'

say "the original keeps running"
follow demo 1

say "loading the snapshot as a clone 'demo-clone' (lazy: the file is its RAM)"
ctl load demo/demo-1 --as demo-clone
echo "demo: the clone goes on from the saved tick, no reboot, memory checked:"
follow demo-clone 2

say "fast reboot: bringing 'demo' itself back to the snapshot"
ctl load demo/demo-1 --verify=none
fresh demo
follow demo 1

say "what snapd knows"
ctl vm list
ctl list

say "stopping the guests and snapd"
ctl vm stop demo-clone
ctl vm stop demo
kill "$spid"
wait "$spid" 2>/dev/null || true
spid=
echo "demo: done"
