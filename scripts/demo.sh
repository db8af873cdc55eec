#!/bin/sh
# scripts/demo.sh: placeholder replaced below once the guest exists.
echo "demo: nothing to show yet" >&2
exit 1
