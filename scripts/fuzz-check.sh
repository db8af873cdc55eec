#!/bin/sh
# Part of "make check": build the fuzz targets and run each briefly.
cd "$(dirname "$0")/.." && exec make --no-print-directory fuzz-smoke
