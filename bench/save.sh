#!/bin/sh
# bench/save.sh: snapd's save against QEMU's own (issue 5's "done when"
# figures). Not part of "make check".
#
#   nice -n 10 bench/save.sh [MIB [ROUNDS]]
#
# One run, on the disk the tree is on (build/bench/save), for one guest of
# MIB MiB (default 1024) with 75% of its pages filled:
#   1. QEMU alone (bench/qemu.py save): the guest stopped, max-bandwidth
#      lifted, ROUNDS times (default 5) in turn  migrate "exec:cat > /dev/null"
#      (the rate QEMU can produce) and  migrate "exec:cat > FILE"  (QEMU's
#      own save; QEMU does not fsync it);
#   2. snapd (the same guest image, booted in snapd): ROUNDS stopped saves
#      (snapctl save: snapd stops the guest, writes, fsyncs, publishes and
#      resumes it) and ROUNDS live saves of a guest that rewrites 2048 pages
#      every 20 ms, with the downtime snapd reports;
# then the table of medians, min and max, and the ratios against the
# targets: snapd stopped save <= 1.2 x QEMU into /dev/null and <= 0.5 x QEMU
# into a file; allocated vs apparent size of the snapshot.
# Times are wall clock from request to completion, in milliseconds.
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
mib=${1:-1024}
rounds=${2:-5}

make --no-print-directory all >/dev/null
bench_setup save

snapd_start
bench_save "$mib" "$rounds"
snapd_stop
echo
echo "bench/save: ${mib}M guest, $rounds rounds, in $work ($(df -PT "$work" | awk 'NR == 2 { print $2 }'))"
save_ratios "$mib" >"$work/ratios"
python3 bench/table.py "$tsv" @"$work/ratios"
