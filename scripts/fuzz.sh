#!/bin/sh
# scripts/fuzz.sh: run libFuzzer targets built by "make fuzz".
#   fuzz.sh smoke BUILD NAME...   each target over its committed corpus plus
#                                 a short time of new inputs (FUZZ_SMOKE_SECONDS,
#                                 default 15); new inputs go to a scratch dir
#   fuzz.sh run BUILD NAME SECS   one target for SECS seconds
set -eu
mode=$1 build=$2
shift 2
run_one() {
	name=$1 secs=$2
	bin=$build/fuzz/fuzz_$name
	seeds=tests/fuzz/corpus/$name
	work=$(mktemp -d)
	mkdir -p "$seeds"
	echo "fuzz: $name for $secs s (seeds: $(ls "$seeds" | wc -l))"
	rc=0
	"$bin" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$work/" "$work" "$seeds" \
		>"$work.log" 2>&1 || rc=$?
	grep -E '^stat::number_of_executed_units' "$work.log" || true
	if [ $rc -ne 0 ]; then
		tail -60 "$work.log"
		echo "fuzz: $name FAILED; crashing input kept in $work" >&2
		return 1
	fi
	rm -rf "$work" "$work.log"
}
case $mode in
smoke)
	fail=0
	for n in "$@"; do run_one "$n" "${FUZZ_SMOKE_SECONDS:-15}" || fail=1; done
	exit $fail ;;
run)
	run_one "$1" "$2" ;;
*)
	echo "usage: fuzz.sh smoke|run BUILD ..." >&2; exit 2 ;;
esac
