#!/bin/sh
# bench/bench.sh: "make bench", the whole comparison in one run (issue 8).
# Not part of "make check". See bench/README.md for how to read the table.
#
#   nice -n 10 bench/bench.sh          (what "make bench" runs)
#
# Environment: BENCH_SIZES (guest sizes in MiB; default "1024 4096", plus
# 8192 when at least 24 GiB of memory is available), ROUNDS (default 5 for
# guests up to 1 GiB, 3 above), BENCH_DIR (work directory; default
# build/bench/all, which must be on the disk to measure, not tmpfs),
# BENCH_KEEP (keep the work directory).
#
# It installs what it needs (fio, libvirt; through scripts/deps.sh), then on
# one disk and with the same guest images:
#   * the machine's limits: memory copy bandwidth (bench/memcpy.c) and fio
#     sequential O_DIRECT libaio queue-depth-16 write and read of as many
#     bytes as snapd's save wrote and snapctl verify read;
#   * for each size: QEMU alone (migrate exec:cat into /dev/null and into a
#     file; -incoming exec:cat), libvirt 9.0 (virsh save / virsh restore of
#     the same guest under the QEMU driver with TCG; libvirtd and virtlogd
#     started for the run and stopped after it unless they were already
#     running), snapd (save stopped and live, restore lazy and eager, verify);
#   * at the first size: 4 lazy clones restored at once, and their
#     proportional set size against that of one running guest;
# then prints the table (median, min, max of the rounds) and the ratios,
# and appends both with the machine's description to bench/RESULTS.md.
set -eu
cd "$(dirname "$0")/.."
scripts/deps.sh fio libvirt-daemon-system libvirt-clients
make --no-print-directory all >/dev/null
. bench/lib.sh
t_start=$(date +%s)

avail_gib=$(awk '/^MemAvailable:/ { print int($2 / 1048576) }' /proc/meminfo)
sizes=${BENCH_SIZES:-"1024 4096"}
if [ -z "${BENCH_SIZES:-}" ] && [ "$avail_gib" -ge 24 ]; then
	sizes="$sizes 8192"
fi
first=${sizes%% *}

bench_setup all
mkdir -p "$build/bench"
${CC:-cc} -std=c11 -O2 -D_GNU_SOURCE -o "$build/bench/memcpy" bench/memcpy.c
machine >"$work/machine"

# ---- libvirt ------------------------------------------------------------

VIRSH="virsh -q -c qemu:///system"
lv_pids=
libvirt_start() {
	if $VIRSH version >/dev/null 2>&1; then
		log "libvirt: using the libvirtd that is already running"
		return 0
	fi
	mkdir -p /run/libvirt
	virtlogd >"$work/virtlogd.log" 2>&1 &
	lv_pids="$lv_pids $!"
	libvirtd >"$work/libvirtd.log" 2>&1 &
	lv_pids="$lv_pids $!"
	i=0
	until $VIRSH version >/dev/null 2>&1; do
		i=$((i + 1))
		[ $i -lt 100 ] || die "libvirtd did not start (see $work/libvirtd.log)"
		sleep 0.1
	done
}
libvirt_stop() {
	$VIRSH destroy snapbench >/dev/null 2>&1 || true
	for p in $lv_pids; do
		kill "$p" 2>/dev/null || true
		wait "$p" 2>/dev/null || true
	done
	lv_pids=
}
bench_cleanup_hook=libvirt_stop

# bench_virsh MIB ROUNDS: ROUNDS times virsh save then virsh restore of a
# transient domain running the test guest (TCG, pc-i440fx-7.2), each timed
# from running virsh to its return (restore returns with the guest running).
bench_virsh() {
	mib=$1 rounds=$2 g=${1}M
	serial=$work/virsh-serial.log
	: >"$serial"
	cat >"$work/dom.xml" <<-EOF
	<domain type='qemu'>
	  <name>snapbench</name>
	  <memory unit='MiB'>$mib</memory>
	  <vcpu>1</vcpu>
	  <os>
	    <type arch='x86_64' machine='pc-i440fx-7.2'>hvm</type>
	    <kernel>$(realpath "$build/guest/snapguest.elf")</kernel>
	    <cmdline>$GUEST_ARGS</cmdline>
	  </os>
	  <devices>
	    <emulator>$(command -v "${SNAP_QEMU:-qemu-system-x86_64}")</emulator>
	    <serial type='file'><source path='$serial'/><target port='0'/></serial>
	    <memballoon model='none'/>
	  </devices>
	</domain>
	EOF
	log "libvirt: $rounds virsh save and restore of a $g guest"
	$VIRSH create "$work/dom.xml" >/dev/null
	wait_line "$serial" READY $((60 + mib / 64))
	r=1
	while [ "$r" -le "$rounds" ]; do
		rm -f "$work/virsh.sav"
		t0=$(now_ns)
		$VIRSH save snapbench "$work/virsh.sav" >/dev/null
		rec "save $g: virsh save (ms)" "$(ms_since "$t0")"
		sync
		t0=$(now_ns)
		$VIRSH restore "$work/virsh.sav" >/dev/null
		rec "restore $g: virsh restore, to running (ms)" "$(ms_since "$t0")"
		r=$((r + 1))
	done
	rec "save $g: virsh save file, allocated (MiB)" \
		"$(calc "$(stat -c '%b * %B' "$work/virsh.sav") / 1048576")"
	$VIRSH destroy snapbench >/dev/null
	rm -f "$work/virsh.sav"
}

# ---- fio ----------------------------------------------------------------

# fio_mibs RW BYTES: MiB/s of one sequential O_DIRECT libaio qd16 pass.
fio_mibs() {
	fio --name=bench --filename="$work/fio.dat" --rw="$1" --bs=1M --direct=1 \
		--ioengine=libaio --iodepth=16 --size="$2" --end_fsync=1 \
		--output-format=json 2>/dev/null |
	python3 -c 'import json, sys
j = json.load(sys.stdin)["jobs"][0]
print("%.1f" % (j[sys.argv[1]]["bw_bytes"] / 1048576.0))' "$1"
}

bench_fio() {
	# Whole MiB: O_DIRECT wants aligned sizes.
	g=${1}M rounds=$2 wbytes=$(($3 / 1048576 * 1048576))
	rbytes=$(($4 / 1048576 * 1048576))
	log "fio: $rounds x write $wbytes and read $rbytes bytes"
	r=1
	while [ "$r" -le "$rounds" ]; do
		rm -f "$work/fio.dat"
		rec "limits $g: fio write, bytes of snapd's save (MiB/s)" "$(fio_mibs write "$wbytes")"
		rec "limits $g: fio read, bytes of snapctl verify (MiB/s)" "$(fio_mibs read "$rbytes")"
		r=$((r + 1))
	done
	rm -f "$work/fio.dat"
}

# ---- the run ------------------------------------------------------------

log "sizes: $sizes MiB; work directory $work"
rec "limits: memcpy of 256 MiB (MiB/s)" "$("$build/bench/memcpy" 256 5 | sed 's/.*median=\([0-9]*\).*/\1/')"
libvirt_start
snapd_start
keep_snapshots=1
for mib in $sizes; do
	rounds=${ROUNDS:-$([ "$mib" -le 1024 ] && echo 5 || echo 3)}
	bench_save "$mib" "$rounds"
	bench_virsh "$mib" "$rounds"
	if [ "$mib" = "$first" ]; then
		bench_restore "$mib" "$rounds" clones
	else
		bench_restore "$mib" "$rounds"
	fi
	bench_fio "$mib" 3 "$save_bytes" "$verify_bytes"
done
# shellcheck disable=SC2086
bench_growth "${ROUNDS:-5}" $sizes
snapd_stop
libvirt_stop

ratios=$work/ratios
: >"$ratios"
for mib in $sizes; do
	g=${mib}M
	save_ratios "$mib" >>"$ratios"
	cat >>"$ratios" <<-EOF
	save $g: snapd stopped / virsh save|save $g: snapd stopped, request to done (ms)|save $g: virsh save (ms)
	save $g: snapd live / virsh save|save $g: snapd live, request to done (ms)|save $g: virsh save (ms)
	save $g: snapd write rate / fio write|save $g: snapd stopped, bytes on disk / time (MiB/s)|limits $g: fio write, bytes of snapd's save (MiB/s)
	verify $g: snapctl verify / fio read|verify $g: snapctl verify (MiB/s)|limits $g: fio read, bytes of snapctl verify (MiB/s)
	restore $g: virsh / snapd lazy verify=none|restore $g: virsh restore, to running (ms)|restore $g: snapd lazy, verify=none, request to running (ms)
	restore $g: virsh / snapd eager|restore $g: virsh restore, to running (ms)|restore $g: snapd eager (verify=none), request to running (ms)
	EOF
done
# shellcheck disable=SC2086
restore_ratios $sizes >>"$ratios"
g=${first}M
echo "clones $g: 4 clones' PSS / one guest's|clones $g: 4 clones' QEMUs, total PSS after 2 s (MiB)|clones $g: one guest's QEMU, PSS (MiB)" >>"$ratios"
rec "target (ms)" 150

minutes=$(calc "($(date +%s) - $t_start) / 60")
out=$work/table.md
{
	echo "## $(date -u '+%Y-%m-%d %H:%M UTC'): make bench"
	echo
	cat "$work/machine"
	echo "- sizes: $sizes MiB; the run took $minutes minutes"
	echo
	python3 bench/table.py "$tsv" @"$ratios"
	echo
} >"$out"
echo
cat "$out"
[ -e bench/RESULTS.md ] || printf '# make bench results\n\nEach run appends its table (bench/README.md explains the rows).\n\n' >bench/RESULTS.md
cat "$out" >>bench/RESULTS.md
log "appended to bench/RESULTS.md ($minutes minutes)"
