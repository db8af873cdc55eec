#!/bin/sh
# bench/format.sh: the snapshot writer and verifier against fio on the same
# disk (issue 3's "done when" figures). Not part of "make check".
#
#   bench/format.sh [DIR [SIZE_MIB [ROUNDS]]]
#
# In DIR (default build/bench-format, which must be on a real disk, not
# tmpfs), one run:
#   1. write a SIZE_MIB (default 2048) snapshot with 30% zero pages (a fifth
#      of them single pages, the rest in long runs) with the writer;
#   2. fio: sequential O_DIRECT libaio queue-depth-16 write of the same
#      number of bytes the writer wrote;
#   3. verify the snapshot;
#   4. fio: sequential O_DIRECT libaio queue-depth-16 read of the same number
#      of bytes the verifier read;
# then print both throughputs, the ratios, and allocated vs apparent size.
# The four steps are repeated ROUNDS times (default 5), alternating ours and
# fio's, and the medians are compared: shared machines are noisy.
# Needs about 2 x SIZE_MIB of free space; removes its files at the end.
set -eu
cd "$(dirname "$0")/.."
dir=${1:-build/bench-format}
mib=${2:-2048}
rounds=${3:-5}

scripts/deps.sh fio
make --no-print-directory build/libformat.a build/libcommon.a >/dev/null
mkdir -p build/bench "$dir"
${CC:-cc} -std=c11 -O2 -g -I. -D_GNU_SOURCE -o build/bench/format \
	bench/format.c build/libformat.a build/libcommon.a -lzstd -laio -lxxhash

snap=$dir/bench.snap
fiofile=$dir/fio.dat
cleanup() { rm -f "$snap" "$fiofile"; }
trap cleanup EXIT
cleanup

kv() { echo "$1" | tr ' ' '\n' | sed -n "s/^$2=//p"; }
fio_mibs() {
	# fio_mibs RW BYTES -> MiB/s
	fio --name=bench --filename="$fiofile" --rw="$1" --bs=1M --direct=1 \
		--ioengine=libaio --iodepth=16 --size="$2" --end_fsync=1 \
		--output-format=json 2>/dev/null |
	python3 -c 'import json,sys
j=json.load(sys.stdin)["jobs"][0]
k="write" if "'"$1"'"=="write" else "read"
print("%.1f" % (j[k]["bw_bytes"]/1048576.0))'
}
ratio() { python3 -c "print('%.2f' % ($1 / $2))"; }

echo "bench/format: $mib MiB image in $dir ($(df -T "$dir" | awk 'NR==2 {print $2}')), $rounds rounds"
ws= fws= vs= frs=
r=1
while [ "$r" -le "$rounds" ]; do
	cleanup
	w=$(build/bench/format write "$dir" bench.snap "$mib" "$r")
	wbytes=$(kv "$w" bytes_written)
	wmibs=$(python3 -c "print('%.1f' % ($wbytes / 1048576.0 / $(kv "$w" seconds)))")
	sync
	fw=$(fio_mibs write "$wbytes")
	v=$(build/bench/format verify "$snap")
	vbytes=$(kv "$v" bytes_read)
	vmibs=$(python3 -c "print('%.1f' % ($vbytes / 1048576.0 / $(kv "$v" seconds)))")
	fr=$(fio_mibs read "$vbytes")
	echo "round $r: writer $wmibs MiB/s ($w)"
	echo "round $r: fio write $fw MiB/s; verify $vmibs MiB/s ($v); fio read $fr MiB/s"
	ws="$ws $wmibs" fws="$fws $fw" vs="$vs $vmibs" frs="$frs $fr"
	r=$((r + 1))
done
median() { python3 -c "import statistics,sys; print('%.1f' % statistics.median(float(x) for x in sys.argv[1:]))" "$@"; }
mw=$(median $ws) mfw=$(median $fws) mv=$(median $vs) mfr=$(median $frs)

apparent=$(kv "$w" apparent)
allocated=$(kv "$w" allocated)
present=$(kv "$w" present)
echo
printf '%-8s %12s %12s %8s\n' "median" "ours MiB/s" "fio MiB/s" "ratio"
printf '%-8s %12s %12s %8s\n' write "$mw" "$mfw" "$(ratio "$mw" "$mfw")"
printf '%-8s %12s %12s %8s\n' verify "$mv" "$mfr" "$(ratio "$mv" "$mfr")"
echo
echo "size: apparent $apparent, allocated $allocated ($(ratio "$allocated" "$apparent") of apparent);"
echo "      present pages $present x 4096 = $((present * 4096)); allocated - present data = $((allocated - present * 4096))"
