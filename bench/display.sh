#!/bin/sh
# bench/display.sh: milliseconds from a restored guest's RESUME to the first
# full frame at a VNC client connected to snapd's endpoint (issue 7's figure),
# for the 720x400 text-mode test guest. Builds and runs bench/display.c
# against a private snapd; not part of "make check".
#
#   nice -n 10 bench/display.sh [RUNS]        (default 7)
#
# Prints each run and the median, minimum and maximum. A negative figure
# means the client had the restored frame before the guest resumed (snapd
# attaches clients between the end of the load and "cont").
set -eu
cd "$(dirname "$0")/.."
make --no-print-directory all build/libharness.a >/dev/null
mkdir -p build/bench
${CC:-cc} -std=c11 -O2 -g -I. -D_GNU_SOURCE -o build/bench/display \
	bench/display.c build/libharness.a build/libsnapd.a build/librestore.a \
	build/libcatalog.a build/libformat.a build/libcommon.a \
	-lzstd -laio -lxxhash -lsqlite3 -ljansson -lpthread -lm -lnettle
SNAP_BUILD=${SNAP_BUILD:-build} exec nice -n 10 build/bench/display "$@"
