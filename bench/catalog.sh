#!/bin/sh
# bench/catalog.sh: build and run the catalog benchmark (bench/catalog.c).
# Arguments: [-s] [N [GUESTS [ROUNDS]]]; defaults 100000 snapshots over 4
# guests, 21 rounds per list query. Not part of "make check". Targets on
# the project's machine: the list under 50 ms, full retention under 500 ms.
set -eu
cd "$(dirname "$0")/.."
make --no-print-directory build/libcatalog.a build/libformat.a \
	build/libcommon.a >/dev/null
mkdir -p build/bench
${CC:-cc} -std=c11 -O2 -g -I. -D_GNU_SOURCE -o build/bench/catalog \
	bench/catalog.c build/libcatalog.a build/libformat.a build/libcommon.a \
	-lsqlite3 -lzstd -laio -lxxhash -lm
exec nice -n 10 build/bench/catalog "$@"
