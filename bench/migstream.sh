#!/bin/sh
# bench/migstream.sh: build and run the migration stream parser benchmark
# (bench/migstream.c). Arguments: [SIZE_MIB [CHUNK_KIB [ROUNDS]]].
# Not part of "make check". Needs about 2 x SIZE_MIB of memory.
set -eu
cd "$(dirname "$0")/.."
make --no-print-directory build/libformat.a build/libcommon.a >/dev/null
mkdir -p build/bench
${CC:-cc} -std=c11 -O2 -g -I. -D_GNU_SOURCE -o build/bench/migstream \
	bench/migstream.c build/libformat.a build/libcommon.a
exec build/bench/migstream "$@"
