#!/bin/sh
# bench/restore.sh: time from request to running guest, snapd against QEMU's
# own restore (issue 6's "done when" figures). Not part of "make check".
#
#   nice -n 10 bench/restore.sh [ROUNDS [MIB...]]
#
# One run, on the disk the tree is on (build/bench/restore), for guests of
# each MIB (default 1024 2048 4096) with 75% of their pages filled; for
# each size:
#   1. QEMU alone saves the guest with migrate "exec:cat > FILE" (guest
#      stopped), then restores it ROUNDS times (default 3): QEMU started with
#      -incoming defer, migrate-incoming "exec:cat FILE", cont; measured from
#      starting the process to query-status saying "running";
#   2. snapd saves the same guest image (stopped save), the file is verified
#      once (snapctl verify: its throughput is a row), then each round loads
#      it as a clone five ways: lazy with --verify=none (allowed after a
#      verify), lazy with --verify=background, lazy with the default full
#      verify, eager with --verify=none and eager with the default full
#      verify (checked as the pages are sent). The figure is snapctl load's
#      client-ms: from sending migrate-incoming to snapd's RESTORED event.
#   3. the growth with guest size: ROUNDS rounds of lazy (verify=none)
#      restores of the snapshots of step 2, one of each size in turn, so
#      that the sizes are compared side by side (the per-size figures of
#      step 2 are minutes apart and drift with the machine's load).
# The page cache is warm for every contender (QEMU's stream was just
# written through it; snapd's file, written and verified with O_DIRECT, is
# read once before the rounds). Targets: lazy 1 GiB under 150 ms, at least 5x faster than QEMU,
# and growing by no more than 20% from the first size to each other one
# (measured in step 3).
set -eu
cd "$(dirname "$0")/.."
. bench/lib.sh
rounds=${1:-3}
[ $# -gt 0 ] && shift
[ $# -gt 0 ] || set -- 1024 2048 4096

make --no-print-directory all >/dev/null
bench_setup restore
rec "target (ms)" 150
# What fresh memory costs here: QEMU's eager loads write every page into it.
${CC:-cc} -std=c11 -O2 -D_GNU_SOURCE -o "$build/bench/memtouch" bench/memtouch.c
touch=$("$build/bench/memtouch" 1024 4)
first=${touch#first=}
rec "limits: first touch of 1 GiB of fresh memory (ms)" "${first%% *}"
rec "limits: touch of 1 GiB just freed (ms)" "${touch##*again=}"
snapd_start
keep_snapshots=1
for mib; do
	bench_restore "$mib" "$rounds"
done
bench_growth "$rounds" "$@"
snapd_stop
echo
echo "bench/restore: $* MiB guests, $rounds rounds, in $work ($(df -PT "$work" | awk 'NR == 2 { print $2 }'))"
restore_ratios "$@" >"$work/ratios"
python3 bench/table.py "$tsv" @"$work/ratios"
