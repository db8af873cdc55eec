# bench/lib.sh: shared by bench/save.sh, bench/restore.sh and bench/bench.sh
# (sourced, not run). It keeps one snapd with a private store in the work
# directory, boots test guests in it, records measurements as "row<TAB>value"
# lines in $tsv (bench/table.py summarizes them) and cleans everything up on
# exit: snapd, its guests, QEMU and libvirt processes it started, and files.
#
# Guests are the test guest (tests/guest/) with every usable page filled and
# zero=25: 75% of the pages hold incompressible data, a quarter are zero (a
# fifth of those single pages, the rest 256 KiB runs). They tick every 100 ms
# and rewrite 64 pages per tick, and never verify on their own, so that an
# idle guest costs the host almost nothing while others are measured. The
# live case uses a busier guest (LIVE_ARGS).

build=${SNAP_BUILD:-build}
GUEST_ARGS=${GUEST_ARGS:-"seed=7 zero=25 single=20 dirty=64 verify=0 tick_ms=100"}
LIVE_ARGS=${LIVE_ARGS:-"seed=7 zero=25 single=20 dirty=2048 verify=0 tick_ms=20"}
export SNAP_BUILD=$build SNAP_GUEST_ARGS="$GUEST_ARGS"

spid=
bench_pids=
bench_cleanup_hook=:

# bench_setup NAME: a fresh work directory build/bench/NAME (on the disk the
# tree is on, never tmpfs) and the cleanup trap.
bench_setup() {
	work=$(realpath -m "${BENCH_DIR:-$build/bench/$1}")
	[ -e "$work" ] && rm -rf "$work"
	mkdir -p "$work"
	tsv=$work/results.tsv
	: >"$tsv"
	home=$work/store
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

bench_cleanup() {
	set +e
	$bench_cleanup_hook
	for p in $bench_pids; do
		kill "$p" 2>/dev/null
	done
	snapd_stop
	[ -n "${BENCH_KEEP:-}" ] || rm -rf "$work"
}

log() { printf '%s: %s\n' "${0##*/}" "$*" >&2; }
die() { log "$*"; exit 1; }

now_ns() { date +%s%N; }
ms_since() { python3 -c "print('%.1f' % (($(now_ns) - $1) / 1e6))"; }

# rec ROW VALUE: one measurement.
rec() {
	[ -n "$2" ] || die "no value for the row '$1'"
	printf '%s\t%s\n' "$1" "$2" >>"$tsv"
}

# jget KEY...: values from the JSON object on standard input.
jget() {
	python3 -c 'import json, sys
o = json.load(sys.stdin)
print(" ".join(str(o[k]) for k in sys.argv[1:]))' "$@"
}

calc() { python3 -c "print('%.1f' % ($*))"; }

ctl() { "$build/bin/snapctl" --socket "$home/control.sock" "$@"; }

snapd_start() {
	"$build/bin/snapd" -d ${SNAPD_ARGS:-} --home "$home" >"$work/snapd.log" 2>&1 &
	spid=$!
	i=0
	while [ ! -S "$home/control.sock" ]; do
		i=$((i + 1))
		[ $i -lt 200 ] || die "snapd did not start (see $work/snapd.log)"
		sleep 0.05
	done
}

snapd_stop() {
	[ -n "$spid" ] || return 0
	for g in $(ctl --json vm list 2>/dev/null | python3 -c 'import json, sys
for g in json.load(sys.stdin):
	if g.get("state") != "down": print(g["name"])' 2>/dev/null); do
		ctl vm stop "$g" >/dev/null 2>&1
	done
	kill "$spid" 2>/dev/null || true
	wait "$spid" 2>/dev/null || true
	spid=
}

# wait_line FILE PATTERN [TIMEOUT_S]: until FILE has a line starting with
# PATTERN.
wait_line() {
	t=${3:-120}
	end=$(($(date +%s) + t))
	until grep -q "^$2" "$1" 2>/dev/null; do
		[ "$(date +%s)" -lt "$end" ] || die "no '$2' in '$1' after ${t}s"
		sleep 0.05
	done
}

# guest_up NAME MIB [ARGS]: define and boot a guest with MIB MiB of RAM and
# wait until it has filled its memory.
guest_up() {
	ctl vm define "$1" --memory "${2}M" --kernel "$(realpath "$build/guest/snapguest.elf")" \
		--append "${3:-$GUEST_ARGS}" --display none >/dev/null
	ctl vm start "$1" >/dev/null
	wait_line "$home/guests/$1/serial.log" READY $((60 + $2 / 64))
}

# guest_gone NAME: stop a guest, remove its snapshots and undefine it.
guest_gone() {
	ctl vm stop "$1" >/dev/null 2>&1 || true
	for s in $(ctl --json list "$1" | python3 -c 'import json, sys
for s in json.load(sys.stdin): print(s["name"])'); do
		ctl rm "$1" "$s" >/dev/null
	done
	ctl vm undefine "$1" >/dev/null
}

# guest_pid NAME: the PID of a guest's QEMU.
guest_pid() {
	ctl --json vm list | python3 -c 'import json, sys
for g in json.load(sys.stdin):
	if g["name"] == sys.argv[1]: print(g.get("pid", ""))' "$1"
}

# pss_mib PID: proportional set size of a process in MiB.
pss_mib() {
	awk '/^Pss:/ { printf "%.1f\n", $2 / 1024 }' "/proc/$1/smaps_rollup"
}

# snapd_save VM NAME [--live]: a snapd save; prints its JSON result.
snapd_save() {
	vm=$1 name=$2
	shift 2
	ctl --json save "$vm" --name "$name" "$@"
}

# snapd_load SNAPSHOT CLONE [OPTION...]: load SNAPSHOT as CLONE; prints
# snapctl's client-ms, or nothing when the load did not finish within
# LOAD_TIMEOUT seconds (default 120): then the row "snapctl load: did not
# return (count)" counts it and snapd's own logged time, if any, is printed,
# so that a hang shows in the results instead of stopping the run.
snapd_load() {
	snap=$1 clone=$2
	shift 2
	if j=$(timeout "${LOAD_TIMEOUT:-120}" "$build/bin/snapctl" \
			--socket "$home/control.sock" --json load "$snap" \
			--as "$clone" "$@"); then
		echo "$j" | jget client-ms
		return 0
	fi
	rec "snapctl load: did not return (count)" 1
	ms=$(sed -n "s/^snapd: guest '$clone': restored from .* in \([0-9]*\) ms.*/\1/p" \
		"$work/snapd.log" | tail -n 1)
	log "snapctl load of '$clone' did not return${ms:+; snapd logged $ms ms}"
	echo "$ms"
}

# rec_if ROW VALUE: rec when VALUE is not empty.
rec_if() { [ -z "$2" ] || rec "$1" "$2"; }

# machine: one paragraph describing this machine.
machine() {
	cpu=$(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -n 1)
	mem=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
	dev=$(df -P "$work" | awk 'NR == 2 { print $1 }')
	fs=$(df -PT "$work" | awk 'NR == 2 { print $2 }')
	disk=$(lsblk -dno NAME,SIZE,ROTA,MODEL "$dev" 2>/dev/null | head -n 1)
	echo "- CPU: $cpu, $(nproc) cores online"
	echo "- memory: $mem, available at start $(awk '/^MemAvailable:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "- disk: $dev ($fs) ${disk:+[$disk]}"
	echo "- kernel: $(uname -srm)"
	echo "- QEMU: $(${SNAP_QEMU:-qemu-system-x86_64} --version | head -n 1)"
	echo "- load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
}

# bench_save MIB ROUNDS: QEMU alone and snapd saving the same guest image
# (bench/save.sh describes the rounds); save_ratios MIB prints the ratios
# for bench/table.py.
bench_save() {
	mib=$1 rounds=$2 g=${1}M
	log "QEMU alone: $rounds x exec:cat into /dev/null and into a file ($g guest)"
	python3 bench/qemu.py save "$mib" "$rounds" "$work" >"$work/qemu.out"
	while read -r l; do
		case $l in
		null_ms=*) rec "save $g: QEMU migrate exec:cat > /dev/null (ms)" "${l#null_ms=}" ;;
		file_ms=*)
			set -- $l
			rec "save $g: QEMU migrate exec:cat > file (ms)" "${1#file_ms=}"
			qbytes=${2#file_bytes=} ;;
		esac
	done <"$work/qemu.out"
	rm -f "$work/qemu.stream"

	log "snapd: $rounds stopped saves"
	guest_up sv "$mib"
	r=1
	while [ "$r" -le "$rounds" ]; do
		t0=$(now_ns)
		j=$(snapd_save sv s$r)
		ms=$(ms_since "$t0")
		rec "save $g: snapd stopped, request to done (ms)" "$ms"
		set -- $(echo "$j" | jget bytes allocated path)
		apparent=$1 alloc=$2 path=$3
		rec "save $g: snapd stopped, bytes on disk / time (MiB/s)" "$(calc "$alloc / 1048576 / ($ms / 1000)")"
		if [ "$r" -eq "$rounds" ]; then
			present=$(ctl inspect "$path" --json | jget present_pages)
			rec "save $g: snapshot apparent size (MiB)" "$(calc "$apparent / 1048576")"
			rec "save $g: snapshot allocated on disk (MiB)" "$(calc "$alloc / 1048576")"
			rec "save $g: non-zero guest pages (MiB)" "$(calc "$present * 4096 / 1048576")"
			rec "save $g: QEMU's stream size (MiB)" "$(calc "$qbytes / 1048576")"
			save_bytes=$alloc
		fi
		ctl rm sv s$r >/dev/null
		r=$((r + 1))
	done
	guest_gone sv

	log "snapd: $rounds live saves of a guest that dirties pages ($LIVE_ARGS)"
	guest_up lv "$mib" "$LIVE_ARGS"
	r=1
	while [ "$r" -le "$rounds" ]; do
		t0=$(now_ns)
		j=$(snapd_save lv l$r --live)
		rec "save $g: snapd live, request to done (ms)" "$(ms_since "$t0")"
		rec "save $g: snapd live, guest downtime (ms)" "$(echo "$j" | jget downtime-ms)"
		ctl rm lv l$r >/dev/null
		r=$((r + 1))
	done
	guest_gone lv
}

save_ratios() {
	g=${1}M
	set -- \
	"save $g: snapd stopped / QEMU -> /dev/null|save $g: snapd stopped, request to done (ms)|save $g: QEMU migrate exec:cat > /dev/null (ms)|<=1.2" \
	"save $g: snapd stopped / QEMU -> file|save $g: snapd stopped, request to done (ms)|save $g: QEMU migrate exec:cat > file (ms)|<=0.5" \
	"save $g: snapshot allocated / apparent|save $g: snapshot allocated on disk (MiB)|save $g: snapshot apparent size (MiB)" \
	"save $g: snapshot allocated / non-zero pages|save $g: snapshot allocated on disk (MiB)|save $g: non-zero guest pages (MiB)"
	for a; do printf '%s\n' "$a"; done
}

# bench_restore MIB ROUNDS [clones]: time from request to running guest for
# QEMU alone (-incoming "exec:cat FILE" from a stream QEMU saved itself)
# and snapd (lazy with verify=none after a verify, lazy with
# verify=background, lazy with the default full verify, eager with
# verify=none and with verify=full), each mode once per round in turn; the verify throughput; with "clones", 4 lazy
# clones loaded at once and their memory against one guest's.
bench_restore() {
	mib=$1 rounds=$2 g=${1}M clones=${3:-} rs=rs$1
	if [ ! -e "$work/qemu.stream" ]; then
		log "QEMU alone: saving a $g guest with exec:cat"
		python3 bench/qemu.py save "$mib" 1 "$work" >/dev/null
	fi
	log "QEMU alone: $rounds restores of $g with -incoming exec:cat"
	r=1
	while [ "$r" -le "$rounds" ]; do
		l=$(python3 bench/qemu.py restore "$mib" "$work/qemu.stream" "$work")
		set -- $l
		rec "restore $g: QEMU -incoming exec:cat, start to running (ms)" "${1#restore_ms=}"
		r=$((r + 1))
	done
	rm -f "$work/qemu.stream"

	log "snapd: saving a $g guest"
	guest_up "$rs" "$mib"
	path=$(snapd_save "$rs" base | jget path)
	guest_pss=
	if [ "$clones" = clones ]; then
		guest_pss=$(pss_mib "$(guest_pid "$rs")")
	fi
	ctl vm stop "$rs" >/dev/null
	sync
	# Offline verify: its throughput (direct I/O). It records nothing in the
	# catalog: verify=none is allowed once a full-verify load has passed,
	# hence "full" first in each round.
	v=$(ctl verify "$path" --json)
	set -- $(echo "$v" | jget bytes_read seconds)
	rec "verify $g: snapctl verify (MiB/s)" "$(calc "$1 / 1048576 / $2")"
	verify_bytes=$1
	# The file was written and verified with O_DIRECT: read it once so
	# that its page cache is as warm as QEMU's stream file is.
	cat "$path" >/dev/null
	log "snapd: $rounds rounds of lazy (verify full, none, background) and eager (none, full) restores"
	r=1
	while [ "$r" -le "$rounds" ]; do
		for m in full none background eager eagerfull; do
			case $m in
			eager) opt="--eager --verify=none" row="snapd eager (verify=none)" ;;
			eagerfull) opt="--eager" row="snapd eager, verify=full" ;;
			*) opt="--verify=$m" row="snapd lazy, verify=$m" ;;
			esac
			rec_if "restore $g: $row, request to running (ms)" \
				"$(snapd_load "$rs/base" "c$m$r" $opt)"
			ctl vm stop "c$m$r" >/dev/null || true
			ctl vm undefine "c$m$r" >/dev/null || true
		done
		r=$((r + 1))
	done

	if [ -n "$guest_pss" ]; then
		log "snapd: 4 lazy clones of $g at once"
		rec "clones $g: one guest's QEMU, PSS (MiB)" "$guest_pss"
		t0=$(now_ns)
		for k in 1 2 3 4; do
			snapd_load "$rs/base" "k$k" --verify=none >"$work/k$k.ms" &
			bench_pids="$bench_pids $!"
		done
		for p in $bench_pids; do
			wait "$p" || die "a clone's load failed (see $work/k*.json)"
		done
		bench_pids=
		rec "clones $g: 4 lazy clones at once, request to all running (ms)" "$(ms_since "$t0")"
		sleep 2
		tot=0
		for k in 1 2 3 4; do
			p=$(pss_mib "$(guest_pid "k$k")")
			tot=$(calc "$tot + $p")
		done
		rec "clones $g: 4 clones' QEMUs, total PSS after 2 s (MiB)" "$tot"
		for k in 1 2 3 4; do
			ctl vm stop "k$k" >/dev/null
			ctl vm undefine "k$k" >/dev/null
		done
	fi
	# bench_growth loads it again, interleaved with the other sizes.
	[ -n "${keep_snapshots:-}" ] || guest_gone "$rs"
}

# bench_growth ROUNDS MIB...: lazy restores (verify=none) of the snapshots
# bench_restore kept (keep_snapshots=1), one of each size in turn per round,
# so that the growth with guest size is measured side by side and not
# across minutes of drift on a shared machine; then the snapshots go.
bench_growth() {
	rounds=$1
	shift
	log "snapd: $rounds rounds of lazy restores, sizes $* in turn"
	r=1
	while [ "$r" -le "$rounds" ]; do
		for mib; do
			rec_if "growth ${mib}M: snapd lazy, verify=none, sizes in turn (ms)" \
				"$(snapd_load "rs$mib/base" "gr${mib}x$r" --verify=none)"
			ctl vm stop "gr${mib}x$r" >/dev/null || true
			ctl vm undefine "gr${mib}x$r" >/dev/null || true
		done
		r=$((r + 1))
	done
	for mib; do
		guest_gone "rs$mib"
	done
}

# restore_ratios MIB...: ratios for bench/table.py, the first size against
# the others.
restore_ratios() {
	a=${1}M
	echo "restore $a: QEMU / snapd lazy verify=none|restore $a: QEMU -incoming exec:cat, start to running (ms)|restore $a: snapd lazy, verify=none, request to running (ms)|>=5"
	echo "restore $a: snapd lazy verify=none / 150 ms|restore $a: snapd lazy, verify=none, request to running (ms)|target (ms)|<=1"
	echo "restore $a: QEMU / snapd lazy verify=background|restore $a: QEMU -incoming exec:cat, start to running (ms)|restore $a: snapd lazy, verify=background, request to running (ms)"
	echo "restore $a: QEMU / snapd eager|restore $a: QEMU -incoming exec:cat, start to running (ms)|restore $a: snapd eager (verify=none), request to running (ms)"
	echo "restore $a: QEMU / snapd eager verify=full|restore $a: QEMU -incoming exec:cat, start to running (ms)|restore $a: snapd eager, verify=full, request to running (ms)"
	shift
	for b in "$@"; do
		b=${b}M
		echo "restore $b: QEMU / snapd lazy verify=none|restore $b: QEMU -incoming exec:cat, start to running (ms)|restore $b: snapd lazy, verify=none, request to running (ms)|>=5"
		echo "restore $b: QEMU / snapd eager|restore $b: QEMU -incoming exec:cat, start to running (ms)|restore $b: snapd eager (verify=none), request to running (ms)"
		echo "restore $b: QEMU / snapd eager verify=full|restore $b: QEMU -incoming exec:cat, start to running (ms)|restore $b: snapd eager, verify=full, request to running (ms)"
		echo "restore: lazy verify=none $b / $a|restore $b: snapd lazy, verify=none, request to running (ms)|restore $a: snapd lazy, verify=none, request to running (ms)"
		echo "restore: lazy verify=background $b / $a|restore $b: snapd lazy, verify=background, request to running (ms)|restore $a: snapd lazy, verify=background, request to running (ms)"
		echo "growth: lazy verify=none $b / $a, sizes in turn|growth $b: snapd lazy, verify=none, sizes in turn (ms)|growth $a: snapd lazy, verify=none, sizes in turn (ms)|<=1.2"
	done
}
