#!/bin/sh
# scripts/deps.sh: install every Debian package that the build, the tests and
# the demo need. Idempotent and quiet: when everything is present it asks
# dpkg once and exits. Run by "make check" and "make demo".
#
# Extra packages (for example the benchmark's) may be passed as arguments.
set -eu

PKGS="make gcc libc6-dev binutils clang libclang-rt-14-dev
 libzstd-dev libaio-dev libxxhash-dev libsqlite3-dev libcmocka-dev
 libjansson-dev qemu-system-x86 qemu-utils mandoc cppcheck sqlite3
 python3 nettle-dev vncsnapshot xvfb gvncviewer libjpeg-turbo-progs
 xauth $*"

missing=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' $PKGS 2>/dev/null |
	awk '$2 != "ii" { print $1 }')
# dpkg-query prints nothing at all for packages it has never heard of.
for p in $PKGS; do
	dpkg-query -W -f='${db:Status-Abbrev}' "$p" >/dev/null 2>&1 ||
		missing="$missing $p"
done
missing=$(echo $missing | tr ' ' '\n' | sort -u | tr '\n' ' ')
[ -z "${missing# }" ] && exit 0

echo "deps: installing Debian packages:$missing" >&2
SUDO=
if [ "$(id -u)" -ne 0 ]; then
	if command -v sudo >/dev/null 2>&1; then
		SUDO=sudo
	else
		echo "deps: not root and no sudo; please install:$missing" >&2
		exit 1
	fi
fi
export DEBIAN_FRONTEND=noninteractive
log=$(mktemp)
install() {
	$SUDO apt-get install -y -q --no-install-recommends $missing >"$log" 2>&1
}
if ! install; then
	echo "deps: refreshing package lists (apt-get update)" >&2
	$SUDO apt-get update -q >"$log" 2>&1 || { cat "$log" >&2; rm -f "$log"; exit 1; }
	install || { cat "$log" >&2; rm -f "$log"; exit 1; }
fi
rm -f "$log"
echo "deps: done" >&2
