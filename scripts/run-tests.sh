#!/bin/sh
# scripts/run-tests.sh: run each test program given as an argument, show its
# output, and finish with one summary line "N passed, N failed". Exits
# non-zero when any program fails or when no program ran at all.
#
# A program that exits 77 counts as skipped (it says why on its own output).
set -u

passed=0 failed=0 skipped=0 failures=
start=$(date +%s)
for t in "$@"; do
	[ -x "$t" ] || { echo "run-tests: '$t' is not executable" >&2; failed=$((failed + 1)); failures="$failures $t"; continue; }
	echo "=== $t"
	t0=$(date +%s)
	"$t"
	rc=$?
	t1=$(date +%s)
	case $rc in
	0)  passed=$((passed + 1)); echo "=== $t: ok ($((t1 - t0)) s)" ;;
	77) skipped=$((skipped + 1)); echo "=== $t: skipped" ;;
	*)  failed=$((failed + 1)); failures="$failures $t"; echo "=== $t: FAILED (exit $rc)" ;;
	esac
done
echo
if [ $((passed + failed)) -eq 0 ]; then
	echo "run-tests: no test ran" >&2
	echo "0 passed, 0 failed"
	exit 1
fi
[ -n "$failures" ] && echo "failed programs:$failures"
echo "test programs: $((passed + failed + skipped)) in $(( $(date +%s) - start )) s"
echo "$passed passed, $failed failed, $skipped skipped"
[ "$failed" -eq 0 ]
